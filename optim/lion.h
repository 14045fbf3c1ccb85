// Lion and its angle-controlled variants LionA and LionAR (METHODS.md section 3), the CPU reference.
//
// Lion (Chen et al. 2023), on every tensor that is not controlled, sign(0) = 0:
//   u = sign(b1 m + (1-b1) g);  W <- W (1 - lr wd) - lr u;  m <- b2 m + (1-b2) g
// LionA, on each controlled group (a row, or a whole tensor with --control tensor):
//   at the first step: optionally centre each row; record the group's norm n, which is held from then on
//   u = the Lion direction; remove its radial part u -= w <u,w> / <w,w>; optionally re-centre each row of u
//   w <- w - tan(theta) |w| u / D, D = |u| (strict) or the bias-corrected RMS of |u| (smoothed, an EMA)
//   w <- w n / |w|
// With D = |u| the group turns by exactly theta (tan, not theta itself: METHODS.md's small-angle form
// w - theta n u/|u| turns by atan(theta)). theta = the target angle (the learning rate, or Lion's
// equilibrium angle for (lr, wd)).
// LionAR: theta is further multiplied by a per-tensor k_t in [k_min, 1] from the gradient's estimated
// signal fraction (optim/lion_math.h), so that the step shrinks while gradients agree.
// Inverse bias correction (i) multiplies every step (lr, or theta) by 1 - b2^t. With row gains, the
// controlled variable is a direction v of fixed row norms and W = gain * v; gains take plain Lion steps.
#pragma once

#include <utility>

#include "optim/optimizer.h"

namespace coldstart {

class LionCpu : public Optimizer {
public:
    LionCpu(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors);
    const OptimizerConfig& config() const override { return config_; }
    void step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out = {}) override;
    std::vector<StateBuffer> state_layout() const override;
    void read_state(size_t index, float* host) const override;
    void write_state(size_t index, const float* host) override;

private:
    void plain_step(size_t k, float* params, const float* grads, float lr, float grad_scale, const StepOutputs& out);
    void controlled_step(size_t k, float* params, const float* grads, const StepContext& ctx, double theta,
                         const StepOutputs& out);
    void start_control(size_t k, float* w);  // the first step: centre rows, record norms, gains at 1
    double snr_scale(size_t k, const float* grads, const StepContext& ctx);
    // The state buffers in checkpoint order, with their names.
    std::vector<std::pair<const char*, const std::vector<float>*>> named_state() const;

    OptimizerConfig config_;
    std::vector<TensorSlice> tensors_;
    std::vector<TensorRole> roles_;
    // Per controlled tensor k: where its groups start in the per-group buffers (norms_, norm_ema_,
    // gains_, gain_m_), and its ordinal among controlled tensors (snr_ema_); SIZE_MAX when not controlled.
    std::vector<size_t> group_offset_, controlled_index_, direction_offset_;
    std::vector<float> m_;           // (total params) momentum
    std::vector<float> norms_;       // (groups) the norm each controlled group is held at
    std::vector<float> norm_ema_;    // (groups) smoothed normalisation: EMA of |u|^2
    std::vector<float> snr_ema_;     // (2 per controlled tensor) LionAR: EMA sum, number of estimates
    std::vector<float> gains_;       // (groups) row gains
    std::vector<float> gain_m_;      // (groups) their momentum
    std::vector<float> directions_;  // (controlled elements) v of W = gain * v
    std::vector<float> u_, w_old_;   // scratch, (largest controlled tensor): update direction, W before
};

}  // namespace coldstart
