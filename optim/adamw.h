// AdamW with PyTorch's semantics (torch.optim.AdamW), the baseline of every experiment:
//   W <- W * (1 - lr * wd)          (matrices only)
//   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//   W <- W - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The order of operations follows PyTorch's so the two agree to fp32 rounding step for step.
// With bias_correction off, m is used as it is (v keeps its correction): METHODS.md's "AdamW without
// momentum bias correction", whose first updates are about (1 - b1^t) times smaller.
#pragma once

#include "optim/optimizer.h"

namespace coldstart {

class AdamWCpu : public Optimizer {
public:
    AdamWCpu(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors);
    const OptimizerConfig& config() const override { return config_; }
    void step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out = {}) override;
    std::vector<StateBuffer> state_layout() const override;
    void read_state(size_t index, float* host) const override;
    void write_state(size_t index, const float* host) override;

private:
    OptimizerConfig config_;
    std::vector<TensorSlice> tensors_;
    std::vector<TensorRole> roles_;
    std::vector<float> m_, v_;  // (total params) first and second moments
};

}  // namespace coldstart
