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
// dweight += sum over rows of dout * xhat, dbias += sum of dout (fp32 gradients). Deterministic: each
// block writes fp32 partial sums of a fixed range of rows into scratch, and a second kernel adds the
// partials in order. scratch needs layernorm_scratch_floats(N, C) floats.
template <typename T>
void layernorm_backward(T* dinp /*N,C*/, float* dweight /*C*/, float* dbias /*C*/, const T* dout /*N,C*/, const T* inp /*N,C*/,
                        const T* weight /*C*/, const float* mean /*N*/, const float* rstd /*N*/, int N, int C,
                        bool accumulate, float* scratch, cudaStream_t stream);
size_t layernorm_scratch_floats(int N, int C);

// Rows per partial sum of a column reduction over N rows, and the number of partials: fixed by N alone
// (never by the GPU), so the summation order, and the bits, are the same on every run.
int column_reduction_parts(int N);

}  // namespace coldstart::cuda
