// Layernorm kernels. The forward uses one warp per row: a row of C <= a few thousand values is read
// three times (mean, variance, output) from L1/L2, which keeps the two-pass variance of the CPU
// reference (no E[x^2] - E[x]^2 cancellation) at the cost of cached re-reads, not DRAM traffic.
// The backward splits what is per row (dinp, one warp per row) from what sums over rows (dweight,
// dbias: one thread per channel over a fixed range of rows, then a fixed-order sum of the partials),
// which is deterministic without atomics and reads the rows coalesced along the channels.
#include "layers/cuda/layernorm.cuh"

#include <algorithm>

#include "common/cuda/common.cuh"

namespace coldstart::cuda {
namespace {

constexpr float kEps = 1e-5f;
constexpr int kRowsPerBlock = 8;  // warps per block in the row kernels
constexpr int kMaxParts = 256;

// Normalises row x (already the values as stored) into out; lane owns channels lane, lane+32, ...
template <typename T>
__device__ void normalise_row(T* out, float* mean, float* rstd, const T* x, const T* weight, const T* bias, int C,
                              int lane) {
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) sum += to_float(x[c]);
    const float m = warp_sum(sum) / float(C);
    float squares = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float d = to_float(x[c]) - m;
        squares += d * d;
    }
    const float s = 1.0f / sqrtf(warp_sum(squares) / float(C) + kEps);
    for (int c = lane; c < C; c += 32)
        out[c] = from_float<T>((to_float(x[c]) - m) * s * to_float(weight[c]) + to_float(bias[c]));
    if (lane == 0) {
        *mean = m;
        *rstd = s;
    }
}

template <typename T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias,
                                         int N, int C) {
    const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
    if (row >= N) return;
    const size_t o = size_t(row) * C;
    normalise_row(out + o, mean + row, rstd + row, inp + o, weight, bias, C, threadIdx.x % 32);
}

template <typename T>
__global__ void residual_layernorm_forward_kernel(T* residual_out, T* out, float* mean, float* rstd, const T* a,
                                                  const T* b, const T* weight, const T* bias, int N, int C) {
    const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
    if (row >= N) return;
    const int lane = threadIdx.x % 32;
    const size_t o = size_t(row) * C;
    // Each lane re-reads only what it wrote itself, so no synchronisation is needed.
    for (int c = lane; c < C; c += 32) residual_out[o + c] = from_float<T>(to_float(a[o + c]) + to_float(b[o + c]));
    normalise_row(out + o, mean + row, rstd + row, residual_out + o, weight, bias, C, lane);
}

// With xhat = (x - mean) * rstd and g = weight * dout: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
template <typename T>
__global__ void layernorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp, const T* weight, const float* mean,
                                               const float* rstd, int N, int C, bool accumulate) {
    const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
    if (row >= N) return;
    const int lane = threadIdx.x % 32;
    const size_t o = size_t(row) * C;
    const float m = mean[row], s = rstd[row];
    float g_sum = 0.0f, g_xhat_sum = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float g = to_float(weight[c]) * to_float(dout[o + c]);
        g_sum += g;
        g_xhat_sum += g * (to_float(inp[o + c]) - m) * s;
    }
    const float g_mean = warp_sum(g_sum) / float(C), g_xhat_mean = warp_sum(g_xhat_sum) / float(C);
    for (int c = lane; c < C; c += 32) {
        const float xhat = (to_float(inp[o + c]) - m) * s;
        const float d = s * (to_float(weight[c]) * to_float(dout[o + c]) - g_mean - xhat * g_xhat_mean);
        dinp[o + c] = from_float<T>(accumulate ? to_float(dinp[o + c]) + d : d);
    }
}

// grid (channel blocks, parts): partial[p] = (sum of dout * xhat, sum of dout) over part p's rows.
template <typename T>
__global__ void layernorm_backward_partial_kernel(float* partial /*parts,2C*/, const T* dout, const T* inp,
                                                  const float* mean, const float* rstd, int N, int C, int rows_per_part) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int p = blockIdx.y;
    const int r0 = p * rows_per_part, r1 = min(N, r0 + rows_per_part);
    float dw = 0.0f, db = 0.0f;
    for (int r = r0; r < r1; ++r) {
        const size_t i = size_t(r) * C + c;
        const float d = to_float(dout[i]);
        dw += (to_float(inp[i]) - mean[r]) * rstd[r] * d;
        db += d;
    }
    partial[size_t(p) * 2 * C + c] = dw;
    partial[size_t(p) * 2 * C + C + c] = db;
}

__global__ void layernorm_backward_sum_kernel(float* dweight, float* dbias, const float* partial, int parts, int C) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;  // over 2C: weights then biases
    if (j >= 2 * C) return;
    float sum = 0.0f;
    for (int p = 0; p < parts; ++p) sum += partial[size_t(p) * 2 * C + j];
    if (j < C) dweight[j] += sum;
    else dbias[j - C] += sum;
}

unsigned row_blocks(int N) { return unsigned(ceil_div(size_t(N), kRowsPerBlock)); }

}  // namespace

int column_reduction_parts(int N) { return int(std::min<size_t>(kMaxParts, ceil_div(size_t(N), 64))); }

size_t layernorm_scratch_floats(int N, int C) { return size_t(column_reduction_parts(N)) * 2 * size_t(C); }

template <typename T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C,
                       cudaStream_t stream) {
    layernorm_forward_kernel<<<row_blocks(N), kRowsPerBlock * 32, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C);
    KERNEL_CHECK("layernorm_forward_kernel");
}

template <typename T>
void residual_layernorm_forward(T* residual_out, T* out, float* mean, float* rstd, const T* a, const T* b, const T* weight,
                                const T* bias, int N, int C, cudaStream_t stream) {
    residual_layernorm_forward_kernel<<<row_blocks(N), kRowsPerBlock * 32, 0, stream>>>(residual_out, out, mean, rstd, a, b,
                                                                                        weight, bias, N, C);
    KERNEL_CHECK("residual_layernorm_forward_kernel");
}

template <typename T>
void layernorm_backward(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp, const T* weight,
                        const float* mean, const float* rstd, int N, int C, bool accumulate, float* scratch,
                        cudaStream_t stream) {
    layernorm_backward_dinp_kernel<<<row_blocks(N), kRowsPerBlock * 32, 0, stream>>>(dinp, dout, inp, weight, mean, rstd, N,
                                                                                     C, accumulate);
    KERNEL_CHECK("layernorm_backward_dinp_kernel");
    const int parts = column_reduction_parts(N);
    const int rows_per_part = int(ceil_div(size_t(N), size_t(parts)));
    const int threads = 128;
    const dim3 grid(unsigned(ceil_div(size_t(C), threads)), unsigned(parts));
    layernorm_backward_partial_kernel<<<grid, threads, 0, stream>>>(scratch, dout, inp, mean, rstd, N, C, rows_per_part);
    KERNEL_CHECK("layernorm_backward_partial_kernel");
    layernorm_backward_sum_kernel<<<unsigned(ceil_div(2 * size_t(C), 256)), 256, 0, stream>>>(dweight, dbias, scratch, parts, C);
    KERNEL_CHECK("layernorm_backward_sum_kernel");
}

#define INSTANTIATE(T)                                                                                                \
    template void layernorm_forward<T>(T*, float*, float*, const T*, const T*, const T*, int, int, cudaStream_t);      \
    template void residual_layernorm_forward<T>(T*, T*, float*, float*, const T*, const T*, const T*, const T*, int, int, \
                                                cudaStream_t);                                                       \
    template void layernorm_backward<T>(T*, float*, float*, const T*, const T*, const T*, const float*, const float*, int, \
                                        int, bool, float*, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(bf16)

}  // namespace coldstart::cuda
