// Lion and the paper's two variants of it, LionA and LionAR (METHODS.md section 3), the CPU reference.
//
// Lion (Chen et al. 2023), on every tensor that is not controlled, sign(0) = 0:
//   u = sign(b1 m + (1-b1) g);  W <- W (1 - lr wd) - lr u;  m <- b2 m + (1-b2) g
// LionA, "Lion that precisely controls the l2 update norm" (no angular control), on every tensor:
//   W <- W (1 - lr wd) - s u,  s = lr sqrt(C / nnz(u)),  so that ||s u|| = lr sqrt(C) exactly
// (C = the tensor's elements). Lion's ||lr u|| is lr sqrt(nnz(u)): already independent of the
// gradient's size, but short by the zero signs (tokens absent from a batch, padded vocabulary rows);
// the rule fixes the decay-free part of each tensor's update at Lion's nominal size whatever the
// weights and gradients do, which is the one l2 control that is exact and leaves Lion otherwise alone.
// The paper's exact rule is not quoted by any source: this is our reading (README).
// LionAR, the rotational Lion (REQ's wrapper around Lion), on each controlled group (a row, or a whole
// tensor with --control tensor):
//   at the first step: optionally centre each row; record the group's norm n, which is held from then on
//   u = the Lion direction; remove its radial part u -= w <u,w> / <w,w>; optionally re-centre each row of u
//   w <- w - tan(theta) |w| u / D, D = |u| (strict) or the bias-corrected RMS of |u| (smoothed, an EMA)
//   w <- w n / |w|
// With D = |u| the group turns by exactly theta (tan, not theta itself: METHODS.md's small-angle form
// w - theta n u/|u| turns by atan(theta)). theta = the target angle: Lion's equilibrium angle for
// (lr, wd) (the wrapper's), or the learning rate itself. Tensors it does not control take Lion's steps
// at lr. With the RRC correction, theta is further multiplied by a per-tensor k_t in [k_min, 1] from
// the gradient's estimated signal fraction (optim/lion_math.h), so that the step shrinks while
// gradients agree.
// Inverse bias correction (i) multiplies every step (lr, or theta) by 1 - b2^t. With row gains, the
// controlled variable is a direction v of fixed row norms and W = gain * v; gains take plain Lion steps.
#pragma once

#include <utility>

#include "optim/optimizer.h"
#include "optim/partition.h"

namespace coldstart {

class LionCpu : public Optimizer {
public:
    LionCpu(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors, const ParameterShard& shard = {},
            SumAcrossRanks sum_across_ranks = {});
    const OptimizerConfig& config() const override { return config_; }
    void step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out = {}) override;
    std::vector<StateBuffer> state_layout() const override;
    void read_state(size_t index, float* host) const override;
    void write_state(size_t index, const float* host) override;

private:
    // Where a controlled tensor's state lives: per group (a row, or the tensor) in norms_, norm_ema_,
    // gains_, gain_m_; its elements in directions_; its two EMA values in snr_ema_. Indices are local to
    // this shard; the logical ones (rank-independent, for checkpoints) are kept for the first tensor held.
    struct Controlled {
        size_t group = 0;      // first of its groups held here
        size_t direction = 0;  // first of its elements held here
        size_t snr = 0;        // its pair in snr_ema_
    };
    // step: the length of the sign step (lr, or LionA's rule); lr: the scheduled rate the decay uses.
    void plain_step(size_t k, float* params, const float* grads, float step, float lr, float grad_scale, const StepOutputs& out);
    void controlled_step(size_t k, float* params, const float* grads, const StepContext& ctx, double theta, double scale,
                         const StepOutputs& out);
    void start_control(size_t k, float* w);  // the first step: centre rows, record norms, gains at 1
    std::vector<double> snr_scales(const float* grads, const StepContext& ctx);  // the RRC correction: k per tensor
    std::vector<double> nonzero_signs(const float* grads, float grad_scale);    // LionA: nnz(u) per tensor
    size_t group_of(size_t k, size_t row) const;
    std::vector<std::pair<const char*, const std::vector<float>*>> named_state() const;  // checkpoint order

    OptimizerConfig config_;
    std::vector<TensorSlice> tensors_;
    std::vector<TensorRole> roles_;
    std::vector<RowRange> rows_;          // (tensors) the rows of each in the shard
    std::vector<Controlled> controlled_;  // (tensors) meaningful for controlled tensors held here
    size_t begin_, end_, total_;          // the shard [begin_, end_) of the flat buffer of total_ parameters
    SumAcrossRanks sum_across_ranks_;
    // The logical (rank-independent) sizes and where this shard's part starts, for state_layout().
    size_t groups_total_ = 0, groups_first_ = 0, directions_total_ = 0, directions_first_ = 0;
    size_t controlled_total_ = 0, controlled_first_ = 0;
    std::vector<float> m_;           // (end_ - begin_) momentum
    std::vector<float> norms_;       // (groups held) the norm each controlled group is held at
    std::vector<float> norm_ema_;    // (groups held) smoothed normalisation: EMA of |u|^2
    std::vector<float> snr_ema_;     // (2 per controlled tensor held) the RRC correction: EMA sum, number of estimates
    std::vector<float> gains_;       // (groups held) row gains
    std::vector<float> gain_m_;      // (groups held) their momentum
    std::vector<float> directions_;  // (controlled elements held) v of W = gain * v
    std::vector<float> u_, w_old_;   // scratch, (largest controlled tensor): update direction, W before
};

}  // namespace coldstart
