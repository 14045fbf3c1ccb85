#include "optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "optim/step_sums.h"

namespace coldstart {

AdamWCpu::AdamWCpu(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors, const ParameterShard& shard)
    : config_(config), tensors_(tensors), roles_(tensor_roles(config, tensors)) {
    total_ = 0;
    for (const auto& t : tensors) {
        total_ += t.numel;
        rows_.push_back(rows_in_shard(t, shard));
    }
    begin_ = std::min(shard.begin, total_);
    end_ = std::min(shard.end, total_);
    m_.assign(end_ - begin_, 0.0f);
    v_.assign(end_ - begin_, 0.0f);
}

void AdamWCpu::step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out) {
    const float b1 = config_.beta1, b2 = config_.beta2, eps = config_.eps;
    // The scalars in double, as PyTorch computes them in Python floats.
    const double bias_correction1 = config_.bias_correction ? 1.0 - std::pow(double(b1), double(ctx.t)) : 1.0;
    const float bias_correction2_sqrt = float(std::sqrt(1.0 - std::pow(double(b2), double(ctx.t))));
    const float step_size = float(double(ctx.lr) / bias_correction1);
    const bool measure = out.sums != nullptr;
    clear_step_sums(out, tensors_.size());
    for (size_t k = 0; k < tensors_.size(); ++k) {
        const TensorSlice& t = tensors_[k];
        const float decay = roles_[k].decay ? 1.0f - ctx.lr * config_.weight_decay : 1.0f;
        const size_t cols = t.numel / size_t(t.rows);
        for_each_row(t, rows_[k], measure ? &out.sums[k] : nullptr, [&](size_t r, RowSums& sums) {
            const size_t begin = t.offset + r * cols;
            float* w = params + begin;
            const float* g = grads + begin;
            float* m = m_.data() + (begin - begin_);
            float* v = v_.data() + (begin - begin_);
            for (size_t i = 0; i < cols; ++i) {
                const float grad = g[i] * ctx.grad_scale;
                const float m_prev = m[i], w_old = w[i];
                m[i] = m[i] * b1 + (1.0f - b1) * grad;
                v[i] = v[i] * b2 + (1.0f - b2) * grad * grad;
                const float denom = std::sqrt(v[i]) / bias_correction2_sqrt + eps;
                w[i] = w[i] * decay - step_size * (m[i] / denom);
                if (measure) sums.add(w_old, w[i], grad, m_prev, m[i]);
                if (out.update) out.update[begin + i] = w[i] - w_old;
            }
        });
    }
}

std::vector<StateBuffer> AdamWCpu::state_layout() const {
    return {{"adamw.m", total_, begin_, end_}, {"adamw.v", total_, begin_, end_}};
}

void AdamWCpu::read_state(size_t index, float* host) const {
    const std::vector<float>& b = index == 0 ? m_ : v_;
    std::memcpy(host, b.data(), b.size() * sizeof(float));
}

void AdamWCpu::write_state(size_t index, const float* host) {
    std::vector<float>& b = index == 0 ? m_ : v_;
    std::memcpy(b.data(), host, b.size() * sizeof(float));
}

}  // namespace coldstart
