// Causal multi-head attention on the GPU (CPU reference and semantics: layers/attention.h), as a
// flash-style fused kernel: the T x T scores and probabilities are never stored. The forward keeps
// only each row's logsumexp (B, NH, T floats) for the backward, which recomputes the probabilities.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace coldstart::cuda {

// out (B,T,C) from qkv (B,T,3C); lse[b, h, t] = logsumexp of row t's scaled scores. Head size
// C / NH must be at most 128 (GPT-2 uses 64); throws coldstart::Error otherwise.
template <typename T>
void attention_forward(T* out /*B,T,C*/, float* lse /*B,NH,T*/, const T* qkv /*B,T,3C*/, int B, int T_, int C, int NH,
                       cudaStream_t stream);

// Writes (overwrites) all of dqkv from dout, the forward's inputs qkv, output out and lse. scratch
// holds B*NH*T floats (each row's dout . out). Deterministic: keys' and values' gradients are summed by
// the block that owns them, queries' gradients by another pass, never by atomics.
template <typename T>
void attention_backward(T* dqkv /*B,T,3C*/, const T* dout /*B,T,C*/, const T* qkv /*B,T,3C*/, const T* out /*B,T,C*/,
                        const float* lse /*B,NH,T*/, float* scratch /*B,NH,T*/, int B, int T_, int C, int NH,
                        cudaStream_t stream);

}  // namespace coldstart::cuda
