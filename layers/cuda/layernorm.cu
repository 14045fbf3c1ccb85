// Layernorm kernels: one warp per row, each row read from global memory once.
//
// The warp copies its row into shared memory (128-bit loads where the rows allow, see Vec in
// common.cuh) and takes everything else from there: the forward's mean, its two-pass variance (no
// E[x^2] - E[x]^2 cancellation, as the CPU reference) and the output; the backward's two row sums and
// dinp. The row sums run over the cached row in the same lane order whatever the access width, so the
// statistics have the same bits on the packed and the scalar path, and the fused residual forward gives
// exactly what layernorm_forward computes from the stored residual (what -r 2 relies on).
//
// The backward is one pass for what is per row (dinp) and what sums over rows (dweight, dbias, and the
// column sums of dinp that the residual stream's bias gradients need): every warp keeps running
// column sums of its rows in shared memory, the block adds its warps' sums in order into one partial
// per part (column_sums.cuh), and add_partials adds the parts in order. No atomics, the same bits
// every run.
#include "layers/cuda/layernorm.cuh"

#include <algorithm>

#include "common/cuda/common.cuh"
#include "common/error.h"
#include "layers/cuda/column_sums.cuh"

namespace coldstart::cuda {
namespace {

constexpr float kEps = 1e-5f;
constexpr int kForwardWarps = 8;   // rows in flight per block
constexpr int kBackwardWarps = 4;
constexpr size_t kDefaultSharedBytes = 48 * 1024;  // more must be asked for with cudaFuncSetAttribute

__device__ inline unsigned char* block_shared() {
    extern __shared__ __align__(16) unsigned char layernorm_shared[];
    return layernorm_shared;
}

// Bytes of a per-warp piece of shared memory, rounded up so the next piece stays 16-byte aligned.
__host__ __device__ inline size_t shared_piece(size_t bytes) { return (bytes + 15) / 16 * 16; }

// Warps per block so that per_warp bytes each plus `fixed` fit in the default 48 KiB; at least one.
inline int warps_that_fit(size_t per_warp, size_t fixed, int most) {
    const size_t room = kDefaultSharedBytes > fixed ? kDefaultSharedBytes - fixed : 0;
    return int(std::max<size_t>(1, std::min<size_t>(size_t(most), room / per_warp)));
}

// Above 48 KiB (channels in the thousands) the kernel must be allowed more shared memory.
template <typename Kernel>
void allow_shared(Kernel kernel, size_t bytes) {
    if (bytes > kDefaultSharedBytes)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// Copies `count` rows' chunks of W elements: the warp's lane takes columns lane*W, (lane+32)*W, ...
template <int W, typename T>
__device__ inline void copy_row(T* dst, const T* src, int C, int lane) {
    for (int c = lane * W; c < C; c += 32 * W) store_vec(dst + c, load_vec<W>(src + c));
}

// mean, rstd and the normalised row out of the cached row x (as stored); lane sums run c = lane + 32 j.
template <int W, typename T>
__device__ void normalise_row(T* out, float* mean, float* rstd, const T* x, const T* weight, const T* bias, int C, int lane) {
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) sum += to_float(x[c]);
    const float m = warp_sum(sum) / float(C);
    float squares = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float d = to_float(x[c]) - m;
        squares += d * d;
    }
    const float s = 1.0f / sqrtf(warp_sum(squares) / float(C) + kEps);
    for (int c = lane * W; c < C; c += 32 * W) {
        const Vec<T, W> xs = load_vec<W>(x + c), w = load_vec<W>(weight + c), b = load_vec<W>(bias + c);
        Vec<T, W> y;
        for (int k = 0; k < W; ++k) y.v[k] = from_float<T>((to_float(xs.v[k]) - m) * s * to_float(w.v[k]) + to_float(b.v[k]));
        store_vec(out + c, y);
    }
    if (lane == 0) {
        *mean = m;
        *rstd = s;
    }
}

// Dynamic shared memory: one row of T per warp.
template <typename T, int W>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N,
                                         int C) {
    const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * warps + warp;
    if (row >= N) return;
    T* x = reinterpret_cast<T*>(block_shared()) + size_t(warp) * C;
    const size_t o = size_t(row) * C;
    copy_row<W>(x, inp + o, C, lane);
    __syncwarp();
    normalise_row<W>(out + o, mean + row, rstd + row, x, weight, bias, C, lane);
}

// residual_out = a + b rounded to T, kept in shared memory as stored, then normalised from there.
template <typename T, int W>
__global__ void residual_layernorm_forward_kernel(T* residual_out, T* out, float* mean, float* rstd, const T* a, const T* b,
                                                  const T* weight, const T* bias, int N, int C) {
    const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * warps + warp;
    if (row >= N) return;
    T* x = reinterpret_cast<T*>(block_shared()) + size_t(warp) * C;
    const size_t o = size_t(row) * C;
    for (int c = lane * W; c < C; c += 32 * W) {
        const Vec<T, W> u = load_vec<W>(a + o + c), v = load_vec<W>(b + o + c);
        Vec<T, W> r;
        for (int k = 0; k < W; ++k) r.v[k] = from_float<T>(to_float(u.v[k]) + to_float(v.v[k]));
        store_vec(residual_out + o + c, r);
        store_vec(x + c, r);
    }
    __syncwarp();
    normalise_row<W>(out + o, mean + row, rstd + row, x, weight, bias, C, lane);
}

// The backward's shared memory: the weight (C of T) for the block, then per warp its running column
// sums (sums x C floats) and its cached row of dout and of inp (C of T each).
struct BackwardShared {
    size_t weight_bytes, sums_bytes, row_bytes;
    __host__ __device__ BackwardShared(int C, int sums, size_t t_size)
        : weight_bytes(shared_piece(size_t(C) * t_size)),
          sums_bytes(shared_piece(size_t(sums) * C * sizeof(float))),
          row_bytes(shared_piece(size_t(C) * t_size)) {}
    __host__ __device__ size_t warp_bytes() const { return sums_bytes + 2 * row_bytes; }
    size_t bytes(int warps) const { return weight_bytes + size_t(warps) * warp_bytes(); }
};

// A warp's running column sums are stored k-major: column c0 + k of the chunk at c0 sits at
// k * (C / W) + c0 / W, so that the 32 lanes touch 32 consecutive floats (no bank conflicts).
template <int W>
__device__ inline int sum_slot(int c, int C) {
    return (c % W) * (C / W) + c / W;
}

// With xhat = (x - mean) * rstd and g = weight * dout: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
// Block p (kBackwardWarps warps or fewer) takes part p's rows, warp w every warps-th of them from the
// w-th; partial (parts, sums, C) gets the block's sums of dout * xhat, dout and (sums = 3) dinp as stored.
template <typename T, int W>
__global__ void layernorm_backward_kernel(T* dinp, float* partial, const T* dout, const T* inp, const T* weight,
                                          const float* mean, const float* rstd, int N, int C, int rows_per_part,
                                          bool accumulate, int sums) {
    const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const BackwardShared layout(C, sums, sizeof(T));
    unsigned char* const shared = block_shared();
    auto warp_sums = [&](int v) { return reinterpret_cast<float*>(shared + layout.weight_bytes + size_t(v) * layout.warp_bytes()); };
    T* const w = reinterpret_cast<T*>(shared);
    float* const acc = warp_sums(warp);
    T* const d_row = reinterpret_cast<T*>(reinterpret_cast<unsigned char*>(acc) + layout.sums_bytes);
    T* const x_row = reinterpret_cast<T*>(reinterpret_cast<unsigned char*>(d_row) + layout.row_bytes);
    for (int c = threadIdx.x * W; c < C; c += blockDim.x * W) store_vec(w + c, load_vec<W>(weight + c));
    for (int i = lane; i < sums * C; i += 32) acc[i] = 0.0f;
    __syncthreads();

    const int r1 = min(N, (int(blockIdx.x) + 1) * rows_per_part);
    for (int r = int(blockIdx.x) * rows_per_part + warp; r < r1; r += warps) {
        const size_t o = size_t(r) * C;
        copy_row<W>(d_row, dout + o, C, lane);
        copy_row<W>(x_row, inp + o, C, lane);
        __syncwarp();
        const float m = mean[r], s = rstd[r];
        float g_sum = 0.0f, g_xhat_sum = 0.0f;
        for (int c = lane; c < C; c += 32) {
            const float g = to_float(w[c]) * to_float(d_row[c]);
            g_sum += g;
            g_xhat_sum += g * (to_float(x_row[c]) - m) * s;
        }
        const float g_mean = warp_sum(g_sum) / float(C), g_xhat_mean = warp_sum(g_xhat_sum) / float(C);
        for (int c = lane * W; c < C; c += 32 * W) {
            const Vec<T, W> dy = load_vec<W>(d_row + c), x = load_vec<W>(x_row + c), wc = load_vec<W>(w + c);
            Vec<T, W> out;
            if (accumulate) out = load_vec<W>(dinp + o + c);
            for (int k = 0; k < W; ++k) {
                const float g = to_float(dy.v[k]), xhat = (to_float(x.v[k]) - m) * s;
                const float d = s * (to_float(wc.v[k]) * g - g_mean - xhat * g_xhat_mean);
                out.v[k] = from_float<T>(accumulate ? to_float(out.v[k]) + d : d);
                const int slot = sum_slot<W>(c + k, C);
                acc[slot] += xhat * g;
                acc[C + slot] += g;
                if (sums == 3) acc[2 * C + slot] += to_float(out.v[k]);
            }
            store_vec(dinp + o + c, out);
        }
        __syncwarp();  // the next row overwrites the cached one
    }
    __syncthreads();
    // The block's partial: its warps' sums added in warp order.
    for (int j = threadIdx.x; j < sums * C; j += blockDim.x) {
        const int slot = j / C * C + sum_slot<W>(j % C, C);
        float sum = 0.0f;
        for (int v = 0; v < warps; ++v) sum += warp_sums(v)[slot];
        partial[size_t(blockIdx.x) * sums * C + j] = sum;
    }
}

template <typename T, int W>
void launch_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C,
                    cudaStream_t stream) {
    const size_t row_bytes = shared_piece(size_t(C) * sizeof(T));
    const int warps = warps_that_fit(row_bytes, 0, kForwardWarps);
    allow_shared(layernorm_forward_kernel<T, W>, warps * row_bytes);
    layernorm_forward_kernel<T, W><<<unsigned(ceil_div(size_t(N), warps)), warps * 32, warps * row_bytes, stream>>>(
        out, mean, rstd, inp, weight, bias, N, C);
    KERNEL_CHECK("layernorm_forward_kernel");
}

template <typename T, int W>
void launch_residual_forward(T* residual_out, T* out, float* mean, float* rstd, const T* a, const T* b, const T* weight,
                             const T* bias, int N, int C, cudaStream_t stream) {
    const size_t row_bytes = shared_piece(size_t(C) * sizeof(T));
    const int warps = warps_that_fit(row_bytes, 0, kForwardWarps);
    allow_shared(residual_layernorm_forward_kernel<T, W>, warps * row_bytes);
    residual_layernorm_forward_kernel<T, W><<<unsigned(ceil_div(size_t(N), warps)), warps * 32, warps * row_bytes, stream>>>(
        residual_out, out, mean, rstd, a, b, weight, bias, N, C);
    KERNEL_CHECK("residual_layernorm_forward_kernel");
}

template <typename T, int W>
void launch_backward(T* dinp, float* partial, const T* dout, const T* inp, const T* weight, const float* mean,
                     const float* rstd, int N, int C, bool accumulate, int sums, cudaStream_t stream) {
    const BackwardShared layout(C, sums, sizeof(T));
    const int warps = warps_that_fit(layout.warp_bytes(), layout.weight_bytes, kBackwardWarps);
    const size_t bytes = layout.bytes(warps);
    allow_shared(layernorm_backward_kernel<T, W>, bytes);
    layernorm_backward_kernel<T, W><<<unsigned(column_parts(N)), warps * 32, bytes, stream>>>(
        dinp, partial, dout, inp, weight, mean, rstd, N, C, rows_per_column_part(N), accumulate, sums);
    KERNEL_CHECK("layernorm_backward_kernel");
}

}  // namespace

size_t layernorm_scratch_floats(int N, int C) { return size_t(column_parts(N)) * 3 * size_t(C); }

template <typename T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C,
                       cudaStream_t stream) {
    if (packable<T>(size_t(C), {out, inp, weight, bias}))
        launch_forward<T, Pack<T>::n>(out, mean, rstd, inp, weight, bias, N, C, stream);
    else
        launch_forward<T, 1>(out, mean, rstd, inp, weight, bias, N, C, stream);
}

template <typename T>
void residual_layernorm_forward(T* residual_out, T* out, float* mean, float* rstd, const T* a, const T* b, const T* weight,
                                const T* bias, int N, int C, cudaStream_t stream) {
    if (packable<T>(size_t(C), {residual_out, out, a, b, weight, bias}))
        launch_residual_forward<T, Pack<T>::n>(residual_out, out, mean, rstd, a, b, weight, bias, N, C, stream);
    else
        launch_residual_forward<T, 1>(residual_out, out, mean, rstd, a, b, weight, bias, N, C, stream);
}

template <typename T>
void layernorm_backward(T* dinp, float* dweight, float* dbias, float* dsum, const T* dout, const T* inp, const T* weight,
                        const float* mean, const float* rstd, int N, int C, bool accumulate, float* scratch,
                        cudaStream_t stream) {
    const int sums = dsum ? 3 : 2;
    if (packable<T>(size_t(C), {dinp, dout, inp, weight}))
        launch_backward<T, Pack<T>::n>(dinp, scratch, dout, inp, weight, mean, rstd, N, C, accumulate, sums, stream);
    else
        launch_backward<T, 1>(dinp, scratch, dout, inp, weight, mean, rstd, N, C, accumulate, sums, stream);
    add_partials({{dweight, dbias, dsum}, sums}, scratch, column_parts(N), C, stream);
}

#define INSTANTIATE(T)                                                                                                \
    template void layernorm_forward<T>(T*, float*, float*, const T*, const T*, const T*, int, int, cudaStream_t);      \
    template void residual_layernorm_forward<T>(T*, T*, float*, float*, const T*, const T*, const T*, const T*, int, int, \
                                                cudaStream_t);                                                       \
    template void layernorm_backward<T>(T*, float*, float*, float*, const T*, const T*, const T*, const float*, const float*, \
                                        int, int, bool, float*, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(bf16)

}  // namespace coldstart::cuda
