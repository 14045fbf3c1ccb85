// Layer normalisation on the GPU (CPU reference and semantics: layers/layernorm.h), and its fusion
// with the residual add that precedes every layernorm but the first.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace coldstart::cuda {

template <typename T>
void layernorm_forward(T* out /*N,C*/, float* mean /*N*/, float* rstd /*N*/, const T* inp /*N,C*/, const T* weight /*C*/,
                       const T* bias /*C*/, int N, int C, cudaStream_t stream);

// residual_out = a + b (rounded to T), then out = layernorm(residual_out): one pass over the rows
// instead of two. The statistics are computed from the rounded residual, exactly as
// layernorm_forward(residual_out) computes them, so recomputing the layernorm in the backward pass
// (-r 2) gives the same bits. residual_out must not alias a or b.
template <typename T>
void residual_layernorm_forward(T* residual_out /*N,C*/, T* out /*N,C*/, float* mean /*N*/, float* rstd /*N*/,
                                const T* a /*N,C*/, const T* b /*N,C*/, const T* weight /*C*/, const T* bias /*C*/,
                                int N, int C, cudaStream_t stream);

// dinp (+)= d layernorm / d inp (accumulate: add to dinp, as the residual stream needs; else overwrite);
// dweight += sum over rows of dout * xhat, dbias += sum of dout and, unless dsum is null, dsum += the
// column sums of dinp as stored (fp32 gradients). dsum is for the residual stream: the gradient this
// writes is what the bias of the projection that fed the stream needs, so its bias gradient costs no
// pass of its own. One pass over the rows, deterministic without atomics (column_sums.cuh); scratch
// needs layernorm_scratch_floats(N, C) floats.
template <typename T>
void layernorm_backward(T* dinp /*N,C*/, float* dweight /*C*/, float* dbias /*C*/, float* dsum /*C or nullptr*/,
                        const T* dout /*N,C*/, const T* inp /*N,C*/, const T* weight /*C*/, const float* mean /*N*/,
                        const float* rstd /*N*/, int N, int C, bool accumulate, float* scratch, cudaStream_t stream);
size_t layernorm_scratch_floats(int N, int C);

}  // namespace coldstart::cuda
