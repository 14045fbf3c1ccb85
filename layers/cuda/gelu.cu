// GELU: memory-bound, so each thread moves 16 bytes at a time (8 bf16 or 4 floats) when the buffers are
// 16-byte aligned, with a scalar tail; misaligned buffers take one element per thread. The backward is
// also the bias gradient's pass (column_sums.cuh): it reads the rows anyway.
#include "layers/cuda/gelu.cuh"

#include "common/cuda/common.cuh"
#include "layers/cuda/column_sums.cuh"

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

// Thread i takes elements [i W, i W + W); the one whose chunk passes n takes what is left of it.
template <typename T, int W>
__global__ void gelu_forward_kernel(T* out, const T* inp, size_t n) {
    const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * W;
    if (i + W <= n) {
        const Vec<T, W> x = load_vec<W>(inp + i);
        Vec<T, W> y;
        for (int k = 0; k < W; ++k) y.v[k] = from_float<T>(gelu(to_float(x.v[k])));
        store_vec(out + i, y);
    } else {
        for (size_t j = i; j < n; ++j) out[j] = from_float<T>(gelu(to_float(inp[j])));
    }
}

template <typename T, int W>
__global__ void __launch_bounds__(32 * kRowGroups)
    gelu_backward_bias_kernel(float* partial, T* d, const T* inp, int N, int OC, int rows_per_part) {
    column_tile_sums<T, W>(partial, d, N, OC, rows_per_part, [&](Vec<T, W>& g, int r, int c0) {
        const size_t at = size_t(r) * OC + c0;
        const Vec<T, W> x = load_vec<W>(inp + at);
        for (int k = 0; k < W; ++k) g.v[k] = from_float<T>(gelu_grad(to_float(x.v[k])) * to_float(g.v[k]));
        store_vec(d + at, g);
    });
}

template <typename T, int W>
void launch_gelu_backward_bias(T* d, float* dbias, const T* inp, int N, int OC, float* scratch, cudaStream_t stream) {
    gelu_backward_bias_kernel<T, W><<<column_tile_grid(OC, W, N), column_tile_block(), 0, stream>>>(scratch, d, inp, N, OC,
                                                                                                    rows_per_column_part(N));
    KERNEL_CHECK("gelu_backward_bias_kernel");
    add_partials({{dbias}, 1}, scratch, column_parts(N), OC, stream);
}

}  // namespace

template <typename T>
void gelu_forward(T* out, const T* inp, size_t n, cudaStream_t stream) {
    const int threads = 256;
    if (packable<T>(0, {out, inp})) {
        constexpr int W = Pack<T>::n;
        gelu_forward_kernel<T, W><<<unsigned(ceil_div(ceil_div(n, W), threads)), threads, 0, stream>>>(out, inp, n);
    } else {
        gelu_forward_kernel<T, 1><<<unsigned(ceil_div(n, threads)), threads, 0, stream>>>(out, inp, n);
    }
    KERNEL_CHECK("gelu_forward_kernel");
}

size_t gelu_backward_scratch_floats(int N, int OC) { return size_t(column_parts(N)) * size_t(OC); }

template <typename T>
void gelu_backward_bias(T* d, float* dbias, const T* inp, int N, int OC, float* scratch, cudaStream_t stream) {
    if (packable<T>(size_t(OC), {d, inp}))
        launch_gelu_backward_bias<T, Pack<T>::n>(d, dbias, inp, N, OC, scratch, stream);
    else
        launch_gelu_backward_bias<T, 1>(d, dbias, inp, N, OC, scratch, stream);
}

template void gelu_forward<float>(float*, const float*, size_t, cudaStream_t);
template void gelu_forward<bf16>(bf16*, const bf16*, size_t, cudaStream_t);
template void gelu_backward_bias<float>(float*, float*, const float*, int, int, float*, cudaStream_t);
template void gelu_backward_bias<bf16>(bf16*, float*, const bf16*, int, int, float*, cudaStream_t);

}  // namespace coldstart::cuda
