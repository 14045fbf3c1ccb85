// AdamW with PyTorch's semantics (torch.optim.AdamW), the baseline of every experiment:
//   W <- W * (1 - lr * wd)          (matrices only)
//   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//   W <- W - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The order of operations follows PyTorch's so the two agree to fp32 rounding step for step.
#pragma once

#include "optim/optimizer.h"

namespace coldstart {

class AdamWCpu : public Optimizer {
public:
    AdamWCpu(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors);
    const char* name() const override { return "adamw"; }
    void step(float* params, const float* grads, const StepContext& ctx) override;
    void save_state(File& f) const override;
    void load_state(File& f) override;

private:
    OptimizerConfig config_;
    std::vector<TensorSlice> tensors_;
    std::vector<float> m_, v_;  // (total params) first and second moments
};

}  // namespace coldstart
