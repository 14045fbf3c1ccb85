// The sum of squares runs over all ~10^8 gradients once per step: memory-bound, so a fixed grid of
// 1024 blocks streams the buffer and each thread keeps a double partial (exact enough that the order
// barely matters, and the order is fixed anyway).
#include "optim/cuda/grad_norm.cuh"

#include "common/cuda/common.cuh"

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void sum_of_squares_partial_kernel(double* partial, const float* x, size_t n) {
    __shared__ double shared[32];
    double s = 0.0;
    for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        s += double(x[i]) * double(x[i]);
    s = block_sum(s, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_parts_kernel(double* result, const double* partial, int parts) {
    __shared__ double shared[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < parts; i += blockDim.x) s += partial[i];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) *result = s;
}

template <typename T>
__global__ void convert_kernel(T* dst, const float* src, size_t n) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = from_float<T>(src[i]);
}

}  // namespace

void sum_of_squares(double* result, const float* x, size_t n, double* scratch, cudaStream_t stream) {
    sum_of_squares_partial_kernel<<<kSumOfSquaresParts, kThreads, 0, stream>>>(scratch, x, n);
    KERNEL_CHECK("sum_of_squares_partial_kernel");
    sum_parts_kernel<<<1, 1024, 0, stream>>>(result, scratch, kSumOfSquaresParts);
    KERNEL_CHECK("sum_parts_kernel");
}

template <typename T>
void convert_floats(T* dst, const float* src, size_t n, cudaStream_t stream) {
    convert_kernel<<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(dst, src, n);
    KERNEL_CHECK("convert_kernel");
}

template void convert_floats<bf16>(bf16*, const float*, size_t, cudaStream_t);
template void convert_floats<float>(float*, const float*, size_t, cudaStream_t);

}  // namespace coldstart::cuda
