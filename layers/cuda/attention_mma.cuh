// Causal multi-head attention on tensor cores, in bf16 (FlashAttention-2's algorithm): the same interface and
// results as attention.cuh's kernel (CPU reference: layers/attention.h), for head sizes 64 and 128. The bf16
// training path takes it (--attention flash); fp32 and other head sizes keep attention.cuh's fp32 kernel.
#pragma once

#include <cuda_runtime.h>

#include "common/cuda/common.cuh"

namespace coldstart::cuda {

// Whether these kernels take the shape: a head size C / NH of 64 or 128.
bool attention_mma_supports(int C, int NH);

// out (B,T,C) from qkv (B,T,3C); lse[b, h, t] = logsumexp of row t's scaled scores (natural log). Every pointer
// 16-byte aligned; throws coldstart::Error for a shape attention_mma_supports refuses.
void attention_mma_forward(bf16* out /*B,T,C*/, float* lse /*B,NH,T*/, const bf16* qkv /*B,T,3C*/, int B, int T_, int C,
                           int NH, cudaStream_t stream);

// Writes (overwrites) all of dqkv. scratch holds B*NH*T floats (each row's dout . out). Deterministic: no atomics;
// each key's gradient is summed by the block that owns its key tile, each query's by the one that owns its query tile.
void attention_mma_backward(bf16* dqkv /*B,T,3C*/, const bf16* dout /*B,T,C*/, const bf16* qkv /*B,T,3C*/,
                            const bf16* out /*B,T,C*/, const float* lse /*B,NH,T*/, float* scratch /*B,NH,T*/, int B, int T_,
                            int C, int NH, cudaStream_t stream);

}  // namespace coldstart::cuda
