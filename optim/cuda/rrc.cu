#include "optim/cuda/rrc.cuh"

#include "optim/rrc.h"  // rrc_step_scale, on host and device

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;  // one warp per row

__global__ void frobenius_parts_kernel(double* parts, const float* a, const float* b, size_t n) {
    __shared__ double shared[32];
    double s = 0.0;
    for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        s += double(a[i]) * double(b[i]);
    s = block_sum(s, shared);
    if (threadIdx.x == 0) parts[blockIdx.x] = s;
}

// A whole warp takes a row or none (r is the same for its 32 lanes), so the shuffles see every lane.
template <typename T>
__global__ void row_square_sums_kernel(double* rows, const T* y, const T* bias, int N, int out) {
    const int r = blockIdx.x * kRowsPerBlock + int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    if (r >= N) return;
    const T* row = y + size_t(r) * size_t(out);
    double s = 0.0;
    for (int o = lane; o < out; o += 32) {
        const double v = double(to_float(row[o]) - (bias ? to_float(bias[o]) : 0.0f));
        s += v * v;
    }
    s = warp_sum(s);
    if (lane == 0) rows[r] = s;
}

template <typename T>
__global__ void difference_kernel(T* delta, const float* after, const float* before, size_t n) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) delta[i] = from_float<T>(after[i] - before[i]);
}

__global__ void scale_step_kernel(float* w, const float* before, size_t n, const double* sums, double target) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float kappa = float(rrc_step_scale(target, sums[0], sums[1]));
    w[i] = fmaf(kappa, w[i] - before[i], before[i]);
}

// One block per segment: its threads take fixed strided subsets, then a fixed tree (block_sum).
__global__ void reduce_segments_kernel(double* sums, const double* parts, const size_t* offsets) {
    __shared__ double shared[32];
    const size_t first = offsets[blockIdx.x], last = offsets[blockIdx.x + 1];
    double s = 0.0;
    for (size_t i = first + threadIdx.x; i < last; i += blockDim.x) s += parts[i];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) sums[blockIdx.x] = s;
}

}  // namespace

void frobenius_parts(double* parts, const float* a, const float* b, size_t n, cudaStream_t stream) {
    frobenius_parts_kernel<<<kFrobeniusParts, kThreads, 0, stream>>>(parts, a, b, n);
    KERNEL_CHECK("frobenius_parts_kernel");
}

template <typename T>
void row_square_sums(double* rows, const T* y, const T* bias, int N, int out, cudaStream_t stream) {
    row_square_sums_kernel<<<unsigned(ceil_div(size_t(N), kRowsPerBlock)), kThreads, 0, stream>>>(rows, y, bias, N, out);
    KERNEL_CHECK("row_square_sums_kernel");
}

template <typename T>
void difference(T* delta, const float* after, const float* before, size_t n, cudaStream_t stream) {
    difference_kernel<<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(delta, after, before, n);
    KERNEL_CHECK("difference_kernel");
}

void scale_step(float* w, const float* before, size_t n, const double* sums, double target, cudaStream_t stream) {
    scale_step_kernel<<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(w, before, n, sums, target);
    KERNEL_CHECK("scale_step_kernel");
}

RrcSumsDevice::RrcSumsDevice(const std::vector<unsigned>& counts, cudaStream_t stream) {
    std::vector<size_t> offsets(1, 0);
    for (unsigned c : counts) offsets.push_back(offsets.back() + c);
    host_offsets_.assign(offsets.begin(), offsets.end() - 1);
    const size_t parts_bytes = offsets.back() * sizeof(double), sums_bytes = counts.size() * sizeof(double);
    memory_ = device_alloc(parts_bytes + sums_bytes + offsets.size() * sizeof(size_t), "the RRC's sums");
    parts_ = static_cast<double*>(memory_.get());
    sums_ = parts_ + offsets.back();
    offsets_ = reinterpret_cast<size_t*>(sums_ + counts.size());
    // Segments a step leaves unfilled (the layers it does not measure) add up to 0, not to what the memory held.
    CUDA_CHECK(cudaMemsetAsync(parts_, 0, parts_bytes, stream));
    CUDA_CHECK(cudaMemcpyAsync(offsets_, offsets.data(), offsets.size() * sizeof(size_t), cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
}

void RrcSumsDevice::reduce(cudaStream_t stream) {
    reduce_segments_kernel<<<unsigned(results()), kThreads, 0, stream>>>(sums_, parts_, offsets_);
    KERNEL_CHECK("reduce_segments_kernel");
}

template void row_square_sums<float>(double*, const float*, const float*, int, int, cudaStream_t);
template void row_square_sums<bf16>(double*, const bf16*, const bf16*, int, int, cudaStream_t);
template void difference<float>(float*, const float*, const float*, size_t, cudaStream_t);
template void difference<bf16>(bf16*, const float*, const float*, size_t, cudaStream_t);

}  // namespace coldstart::cuda
