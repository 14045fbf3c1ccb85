// cuDNN's fused flash attention (--attention cudnn), the same contract as attention.cuh for bf16:
// out (B,T,C) and lse (B,NH,T) from qkv (B,T,3C), and dqkv from dout. Built only where cuDNN is found
// (make USE_CUDNN=1, the default when the probe finds it), in its own object file because its graph
// code is slow to compile; elsewhere these stubs say how to get it.
#pragma once

#include <cuda_runtime.h>

#include "common/cuda/common.cuh"
#include "common/error.h"

namespace coldstart::cuda {

// Why a build has no cuDNN attention, for the error that --attention cudnn gets there.
inline const char* cudnn_missing_reason() {
#ifdef COLDSTART_EMULATED
    return "the emulated CUDA device has no cuDNN (cuDNN is not emulated): use --attention flash";
#else
    return "this binary was built without cuDNN (make USE_CUDNN=1 with cuDNN found, see the README)";
#endif
}

#ifdef COLDSTART_CUDNN
inline bool cudnn_attention_available() { return true; }
// The device memory one forward and one backward of this shape need besides their operands (building
// both plans, once per shape), and that memory allocated now: a backend reserves it when it is made, so
// its memory plan counts it and no training step allocates.
size_t cudnn_attention_workspace_bytes(int B, int T_, int C, int NH);
void cudnn_attention_reserve(int B, int T_, int C, int NH);
size_t cudnn_attention_reserved_bytes();  // the workspace allocated so far
void cudnn_attention_forward(bf16* out /*B,T,C*/, float* lse /*B,NH,T*/, const bf16* qkv /*B,T,3C*/, int B, int T_, int C,
                             int NH, cudaStream_t stream);
void cudnn_attention_backward(bf16* dqkv /*B,T,3C*/, const bf16* dout /*B,T,C*/, const bf16* qkv /*B,T,3C*/,
                              const bf16* out /*B,T,C*/, const float* lse /*B,NH,T*/, int B, int T_, int C, int NH,
                              cudaStream_t stream);
#else
inline bool cudnn_attention_available() { return false; }
[[noreturn]] inline size_t cudnn_attention_workspace_bytes(int, int, int, int) { fail("--attention cudnn: %s", cudnn_missing_reason()); }
[[noreturn]] inline void cudnn_attention_reserve(int, int, int, int) { fail("--attention cudnn: %s", cudnn_missing_reason()); }
inline size_t cudnn_attention_reserved_bytes() { return 0; }
[[noreturn]] inline void cudnn_attention_forward(bf16*, float*, const bf16*, int, int, int, int, cudaStream_t) {
    fail("--attention cudnn: %s", cudnn_missing_reason());
}
[[noreturn]] inline void cudnn_attention_backward(bf16*, const bf16*, const bf16*, const bf16*, const float*, int, int, int, int,
                                                  cudaStream_t) {
    fail("--attention cudnn: %s", cudnn_missing_reason());
}
#endif

}  // namespace coldstart::cuda
