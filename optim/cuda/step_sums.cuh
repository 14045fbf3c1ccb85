// The sums of a measured step (TensorStepSums, optim/optimizer.h) reduced on the GPU. The optimizer's
// kernels, which read W, g and the momentum and write the update anyway, leave one row of sums per
// weight row (RowSumsDevice); one launch then adds each tensor's rows in a fixed order (the same bits
// every run), turns them into the tensor's sums with the per-row angles of matrices, and one copy brings
// every tensor's sums to the host: no extra pass over the weights, no synchronisation per tensor.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "common/cuda/common.cuh"
#include "optim/optimizer.h"
#include "optim/partition.h"

namespace coldstart::cuda {

// One row's sums, in double, as optim/step_sums.h's RowSums.
struct RowSumsDevice {
    double w_sq, d_sq, w_dot_d, g_sq, g_dot_mprev, mprev_sq, m_sq;
};

// Where the rows of each tensor that the shard holds are in the row-sum buffer, and what the reduction
// needs to know of them. A tensor the shard holds no rows of has rows = 0 (its sums are zeros).
struct TensorRows {
    size_t offset;     // of its first row held, into the shard's part of the flat parameter buffer
    unsigned first;    // that row's index in the row-sum buffer (over all tensors)
    int rows, cols;    // rows held
    int is_matrix;     // its rows' angles count (angle_rows)
    int snr;           // reports LionAR's step scale k: its index into the step-scale array; -1: a tensor not
                       // controlled, or one whose first row another shard holds (that shard reports it)
};

// Adds one element's values into a thread's partial row sums; the block then adds them (block_row_sums).
struct ThreadRowSums {
    double w_sq = 0, d_sq = 0, w_dot_d = 0, g_sq = 0, g_dot_mprev = 0, mprev_sq = 0, m_sq = 0;
    __device__ void add_weights(float w_old, float w_new) {
        const double d = double(w_new) - double(w_old);
        w_sq += double(w_old) * w_old;
        d_sq += d * d;
        w_dot_d += double(w_old) * d;
    }
    __device__ void add_moments(float g, float m_prev, float m_new) {
        g_sq += double(g) * g;
        g_dot_mprev += double(g) * m_prev;
        mprev_sq += double(m_prev) * m_prev;
        m_sq += double(m_new) * m_new;
    }
};

// Sum the threads' partial sums over the block (fixed tree); thread 0 stores them: the weights' part,
// the moments' part (for kernels that see them in different passes), or both. Every thread of the block
// must call them; shared holds 32 doubles.
__device__ inline void store_block_weight_sums(const ThreadRowSums& t, RowSumsDevice* out, double* shared) {
    const double w_sq = block_sum(t.w_sq, shared), d_sq = block_sum(t.d_sq, shared), w_dot_d = block_sum(t.w_dot_d, shared);
    if (threadIdx.x == 0) {
        out->w_sq = w_sq;
        out->d_sq = d_sq;
        out->w_dot_d = w_dot_d;
    }
}
__device__ inline void store_block_moment_sums(const ThreadRowSums& t, RowSumsDevice* out, double* shared) {
    const double g_sq = block_sum(t.g_sq, shared), g_dot_mprev = block_sum(t.g_dot_mprev, shared);
    const double mprev_sq = block_sum(t.mprev_sq, shared), m_sq = block_sum(t.m_sq, shared);
    if (threadIdx.x == 0) {
        out->g_sq = g_sq;
        out->g_dot_mprev = g_dot_mprev;
        out->mprev_sq = mprev_sq;
        out->m_sq = m_sq;
    }
}
__device__ inline void store_block_row_sums(const ThreadRowSums& t, RowSumsDevice* out, double* shared) {
    store_block_weight_sums(t, out, shared);
    store_block_moment_sums(t, out, shared);
}

// The device buffers of a measured step: row sums for every row the shard holds, the tensors' sums (of
// those rows: ZeRO-1's ranks add theirs up, as the CPU's do), and the table that maps one to the other.
class StepSumsDevice {
public:
    // snr_index: per tensor, its index into the step-scale array (LionAR's controlled tensors), or -1; empty: all -1.
    StepSumsDevice(const std::vector<TensorSlice>& tensors, const ParameterShard& shard, const std::vector<int>& snr_index,
                   cudaStream_t stream);
    RowSumsDevice* rows() const { return rows_; }              // (total rows)
    const TensorRows* table() const { return table_; }         // (tensors)
    const std::vector<TensorRows>& host_table() const { return host_table_; }
    unsigned total_rows() const { return total_rows_; }
    // Reduces the row sums into one TensorStepSums per tensor (snr_scales: LionAR's k per controlled
    // tensor, device memory, or nullptr: a step scale of 1) and copies them to host_out (tensors.size()).
    void reduce_and_download(const double* snr_scales, TensorStepSums* host_out, cudaStream_t stream);

private:
    std::vector<TensorRows> host_table_;
    unsigned total_rows_ = 0;
    DeviceMemory memory_;
    RowSumsDevice* rows_ = nullptr;
    TensorStepSums* sums_ = nullptr;
    TensorRows* table_ = nullptr;
};

}  // namespace coldstart::cuda
