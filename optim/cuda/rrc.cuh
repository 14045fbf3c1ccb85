// The RRC's sums and direct RRC control on the GPU (CPU reference and the rules: optim/rrc.h). The backend runs
// the products (cuBLASLt) on the activations it kept; these kernels turn them into sums, deterministically:
// every partial sum has a fixed place and every addition a fixed order (no atomics), so a run repeats bit for
// bit. Each measured layer leaves two segments of partial sums, ||dW X||^2 and ||W X||^2: the block sums of a
// Gram form's <A^T A, G> (frobenius_parts), or one sum per token of a product's rows (row_square_sums); one
// launch then adds every segment (RrcSumsDevice::reduce), and one copy brings them all to the host.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "common/cuda/common.cuh"

namespace coldstart::cuda {

constexpr int kFrobeniusParts = 64;  // block sums of one Gram form

// parts[b] = the sum, in double, of a[i] * b[i] over the i that block b takes (a fixed grid-stride subset).
void frobenius_parts(double* parts /*kFrobeniusParts*/, const float* a /*n*/, const float* b /*n*/, size_t n, cudaStream_t stream);

// rows[r] = sum over o of (y[r, o] - bias[o])^2 in double (bias nullptr: 0), one warp per row.
template <typename T>
void row_square_sums(double* rows /*N*/, const T* y /*N,out*/, const T* bias /*out or nullptr*/, int N, int out, cudaStream_t stream);

// delta[i] = after[i] - before[i] (exact in fp32 for a step smaller than the weight), rounded to T.
template <typename T>
void difference(T* delta /*n*/, const float* after /*n*/, const float* before /*n*/, size_t n, cudaStream_t stream);

// Direct RRC control: w = before + kappa (w - before), kappa = rrc_step_scale(target, sums[0], sums[1]) read from
// device memory (the layer's ||dW X||^2 and ||W X||^2): no host round trip. One fused multiply-add per
// element, as the CPU's scale_step.
void scale_step(float* w /*n*/, const float* before /*n*/, size_t n, const double* sums /*2*/, double target, cudaStream_t stream);

// The segments of partial sums of a step's RRC and their totals, in one allocation.
class RrcSumsDevice {
public:
    // counts[i]: the partial sums that result i adds (kFrobeniusParts, or the tokens of a micro-batch).
    RrcSumsDevice(const std::vector<unsigned>& counts, cudaStream_t stream);
    double* segment(size_t i) const { return parts_ + host_offsets_[i]; }  // (counts[i]) device
    double* sums() const { return sums_; }                                // (results) device
    size_t results() const { return host_offsets_.size(); }
    // sums[i] = the sum of segment i in a fixed order, for every i: one launch.
    void reduce(cudaStream_t stream);

private:
    std::vector<size_t> host_offsets_;
    DeviceMemory memory_;
    double* parts_ = nullptr;
    double* sums_ = nullptr;
    size_t* offsets_ = nullptr;  // (results + 1) device: segment i is [offsets_[i], offsets_[i+1])
};

}  // namespace coldstart::cuda
