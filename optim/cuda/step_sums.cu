#include "optim/cuda/step_sums.cuh"

#include <algorithm>

#include "optim/step_sums.h"  // angle_from_sums, on host and device

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 256;

// One block per tensor: its rows are dealt to the threads in a fixed pattern and the partial sums added
// by a fixed tree, so the result has the same bits every run. The per-row angles use the same formula as
// the CPU (optim/step_sums.h).
__global__ void reduce_tensor_sums(const RowSumsDevice* rows, const TensorRows* table, const double* snr_scales,
                                   TensorStepSums* out) {
    __shared__ double shared[32];
    const TensorRows t = table[blockIdx.x];
    double s[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int r = threadIdx.x; r < t.rows; r += blockDim.x) {
        const RowSumsDevice& x = rows[t.first + unsigned(r)];
        s[0] += x.w_sq;
        s[1] += x.d_sq;
        s[2] += x.w_dot_d;
        s[3] += x.g_sq;
        s[4] += x.g_dot_mprev;
        s[5] += x.mprev_sq;
        s[6] += x.m_sq;
        if (t.is_matrix && x.w_sq > 0) {
            const double angle = angle_from_sums(x.w_sq, x.d_sq, x.w_dot_d);
            s[7] += angle * angle;
            s[8] += 1;
        }
    }
    double total[9];
    for (int i = 0; i < 9; ++i) total[i] = block_sum(s[i], shared);
    if (threadIdx.x == 0) {
        TensorStepSums& o = out[blockIdx.x];
        o.w_sq = total[0];
        o.d_sq = total[1];
        o.w_dot_d = total[2];
        o.g_sq = total[3];
        o.g_dot_mprev = total[4];
        o.mprev_sq = total[5];
        o.m_sq = total[6];
        o.row_angle_sq = total[7];
        o.rows = total[8];
        // A controlled tensor's step scale: LionAR's k, or 1 where nothing scales the step (as the CPU reports).
        o.snr_scale = t.snr < 0 ? 0.0 : snr_scales ? snr_scales[t.snr] : 1.0;
    }
}

}  // namespace

StepSumsDevice::StepSumsDevice(const std::vector<TensorSlice>& tensors, const ParameterShard& shard, const std::vector<int>& snr_index,
                               cudaStream_t stream) {
    const size_t begin = std::min(shard.begin, total_parameters(tensors));
    for (size_t k = 0; k < tensors.size(); ++k) {
        const TensorSlice& t = tensors[k];
        const RowRange held = rows_in_shard(t, shard);
        const size_t cols = t.numel / size_t(t.rows), rows = held.last - held.first;
        const bool reports_snr = !snr_index.empty() && !held.empty() && held.first == 0;
        host_table_.push_back({held.empty() ? 0 : t.offset + held.first * cols - begin, total_rows_, int(rows), int(cols),
                               t.is_matrix ? 1 : 0, reports_snr ? snr_index[k] : -1});
        total_rows_ += unsigned(rows);
    }
    const size_t row_bytes = size_t(total_rows_) * sizeof(RowSumsDevice);
    const size_t sum_bytes = tensors.size() * sizeof(TensorStepSums);
    memory_ = device_alloc(row_bytes + sum_bytes + tensors.size() * sizeof(TensorRows), "measured-step sums");
    rows_ = static_cast<RowSumsDevice*>(memory_.get());
    sums_ = reinterpret_cast<TensorStepSums*>(reinterpret_cast<char*>(rows_) + row_bytes);
    table_ = reinterpret_cast<TensorRows*>(reinterpret_cast<char*>(sums_) + sum_bytes);
    CUDA_CHECK(cudaMemcpyAsync(table_, host_table_.data(), tensors.size() * sizeof(TensorRows), cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
}

void StepSumsDevice::reduce_and_download(const double* snr_scales, TensorStepSums* host_out, cudaStream_t stream) {
    const unsigned count = unsigned(host_table_.size());
    reduce_tensor_sums<<<count, kThreads, 0, stream>>>(rows_, table_, snr_scales, sums_);
    KERNEL_CHECK("reduce_tensor_sums");
    CUDA_CHECK(cudaMemcpyAsync(host_out, sums_, count * sizeof(TensorStepSums), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace coldstart::cuda
