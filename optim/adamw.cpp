#include "optim/adamw.h"

#include <cmath>

#include "common/error.h"

namespace coldstart {

AdamWCpu::AdamWCpu(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors)
    : config_(config), tensors_(tensors) {
    size_t total = 0;
    for (const auto& t : tensors) total += t.numel;
    m_.assign(total, 0.0f);
    v_.assign(total, 0.0f);
}

void AdamWCpu::step(float* params, const float* grads, const StepContext& ctx) {
    const float b1 = config_.beta1, b2 = config_.beta2;
    // The scalars in double, as PyTorch computes them in Python floats.
    const double bias_correction1 = 1.0 - std::pow(double(b1), double(ctx.t));
    const float bias_correction2_sqrt = float(std::sqrt(1.0 - std::pow(double(b2), double(ctx.t))));
    const float step_size = float(double(ctx.lr) / bias_correction1);
    for (const TensorSlice& t : tensors_) {
        const float decay = t.is_matrix ? 1.0f - ctx.lr * config_.weight_decay : 1.0f;
        float* w = params + t.offset;
        const float* g = grads + t.offset;
        float* m = m_.data() + t.offset;
        float* v = v_.data() + t.offset;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < t.numel; ++i) {
            const float grad = g[i] * ctx.grad_scale;
            m[i] = m[i] * b1 + (1.0f - b1) * grad;
            v[i] = v[i] * b2 + (1.0f - b2) * grad * grad;
            const float denom = std::sqrt(v[i]) / bias_correction2_sqrt + config_.eps;
            w[i] = w[i] * decay - step_size * (m[i] / denom);
        }
    }
}

void AdamWCpu::save_state(File& f) const {
    f.write_all(m_.data(), m_.size() * sizeof(float));
    f.write_all(v_.data(), v_.size() * sizeof(float));
}

void AdamWCpu::load_state(File& f) {
    f.read_exact(m_.data(), m_.size() * sizeof(float), "AdamW first moment");
    f.read_exact(v_.data(), v_.size() * sizeof(float), "AdamW second moment");
}

std::unique_ptr<Optimizer> make_cpu_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors) {
    if (config.name == "adamw") return std::make_unique<AdamWCpu>(config, tensors);
    fail("--optimizer: unknown optimizer '%s' (available: adamw)", config.name.c_str());
}

}  // namespace coldstart
