// The global gradient norm on the GPU (CPU reference: optim/grad_norm.h) and the conversion of the
// fp32 master weights into the bf16 copy the matrix products read.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace coldstart::cuda {

// *result = sum of x[i]^2 in double: a fixed grid of blocks, each summing a fixed grid-stride subset,
// then one block adding the block sums in order. The same bits every run. scratch: kSumOfSquaresParts doubles.
constexpr int kSumOfSquaresParts = 1024;
void sum_of_squares(double* result /*1 device*/, const float* x /*n*/, size_t n, double* scratch, cudaStream_t stream);

// dst[i] = src[i] rounded to the element type (round to nearest even).
template <typename T>
void convert_floats(T* dst /*n*/, const float* src /*n*/, size_t n, cudaStream_t stream);

}  // namespace coldstart::cuda
