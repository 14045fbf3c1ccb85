// Elementwise GELU: memory-bound, so each thread moves 16 bytes at a time (8 bf16 or 4 floats) when
// the buffers are 16-byte aligned and N a multiple of the pack, else one element (the test sizes).
#include "layers/cuda/gelu.cuh"

#include "common/cuda/common.cuh"

namespace coldstart::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

__device__ inline float gelu(float x) { return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kCubic * x * x * x))); }

__device__ inline float gelu_grad(float x) {
    const float tanh_u = tanhf(kSqrt2OverPi * (x + kCubic * x * x * x));
    const float du_dx = kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
    return 0.5f * (1.0f + tanh_u) + 0.5f * x * (1.0f - tanh_u * tanh_u) * du_dx;
}

template <typename T, bool kPacked>
__global__ void gelu_forward_kernel(T* out, const T* inp, size_t n) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if constexpr (kPacked) {
        constexpr int P = Pack<T>::n;
        if (i * P >= n) return;
        Pack<T> x = reinterpret_cast<const Pack<T>*>(inp)[i], y;
        for (int k = 0; k < P; ++k) y.v[k] = from_float<T>(gelu(to_float(x.v[k])));
        reinterpret_cast<Pack<T>*>(out)[i] = y;
    } else {
        if (i < n) out[i] = from_float<T>(gelu(to_float(inp[i])));
    }
}

template <typename T, bool kPacked>
__global__ void gelu_backward_kernel(T* d, const T* inp, size_t n) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if constexpr (kPacked) {
        constexpr int P = Pack<T>::n;
        if (i * P >= n) return;
        Pack<T> x = reinterpret_cast<const Pack<T>*>(inp)[i], g = reinterpret_cast<const Pack<T>*>(d)[i];
        for (int k = 0; k < P; ++k) g.v[k] = from_float<T>(gelu_grad(to_float(x.v[k])) * to_float(g.v[k]));
        reinterpret_cast<Pack<T>*>(d)[i] = g;
    } else {
        if (i < n) d[i] = from_float<T>(gelu_grad(to_float(inp[i])) * to_float(d[i]));
    }
}

template <typename T>
bool packable(const void* a, const void* b, size_t n) {
    return aligned16(a) && aligned16(b) && n % Pack<T>::n == 0;
}

}  // namespace

template <typename T>
void gelu_forward(T* out, const T* inp, size_t n, cudaStream_t stream) {
    const int threads = 256;
    if (packable<T>(out, inp, n)) {
        gelu_forward_kernel<T, true><<<unsigned(ceil_div(n / Pack<T>::n, threads)), threads, 0, stream>>>(out, inp, n);
    } else {
        gelu_forward_kernel<T, false><<<unsigned(ceil_div(n, threads)), threads, 0, stream>>>(out, inp, n);
    }
    KERNEL_CHECK("gelu_forward_kernel");
}

template <typename T>
void gelu_backward_inplace(T* d, const T* inp, size_t n, cudaStream_t stream) {
    const int threads = 256;
    if (packable<T>(d, inp, n)) {
        gelu_backward_kernel<T, true><<<unsigned(ceil_div(n / Pack<T>::n, threads)), threads, 0, stream>>>(d, inp, n);
    } else {
        gelu_backward_kernel<T, false><<<unsigned(ceil_div(n, threads)), threads, 0, stream>>>(d, inp, n);
    }
    KERNEL_CHECK("gelu_backward_kernel");
}

template void gelu_forward<float>(float*, const float*, size_t, cudaStream_t);
template void gelu_forward<bf16>(bf16*, const bf16*, size_t, cudaStream_t);
template void gelu_backward_inplace<float>(float*, const float*, size_t, cudaStream_t);
template void gelu_backward_inplace<bf16>(bf16*, const bf16*, size_t, cudaStream_t);

}  // namespace coldstart::cuda
