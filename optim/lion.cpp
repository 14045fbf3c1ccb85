#include "optim/lion.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "optim/lion_math.h"
#include "optim/step_sums.h"

namespace coldstart {

namespace {
inline float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }
}  // namespace

LionCpu::LionCpu(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors)
    : config_(config), tensors_(tensors), roles_(tensor_roles(config, tensors)) {
    size_t total = 0, groups = 0, controlled = 0, directions = 0, largest = 0;
    const size_t n = tensors.size();
    group_offset_.assign(n, SIZE_MAX);
    controlled_index_.assign(n, SIZE_MAX);
    direction_offset_.assign(n, SIZE_MAX);
    for (size_t k = 0; k < n; ++k) {
        const TensorSlice& t = tensors[k];
        total += t.numel;
        if (!roles_[k].controlled) continue;
        group_offset_[k] = groups;
        groups += config.control == ControlScope::rows ? size_t(t.rows) : 1;
        controlled_index_[k] = controlled++;
        if (config.row_gains) {
            direction_offset_[k] = directions;
            directions += t.numel;
        }
        largest = std::max(largest, t.numel);
    }
    m_.assign(total, 0.0f);
    norms_.assign(groups, 0.0f);
    if (config.angle_norm == AngleNorm::smoothed) norm_ema_.assign(groups, 0.0f);
    if (config.name == "lionar") snr_ema_.assign(2 * controlled, 0.0f);
    if (config.row_gains) {
        gains_.assign(groups, 1.0f);
        gain_m_.assign(groups, 0.0f);
        directions_.assign(directions, 0.0f);
    }
    u_.assign(largest, 0.0f);
    w_old_.assign(largest, 0.0f);
}

void LionCpu::step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out) {
    const double ramp = step_ramp(config_.inverse_bias_correction, config_.beta2, double(ctx.t));
    const double theta =
        target_angle(config_.target_angle, ctx.lr, config_.weight_decay, config_.beta1, config_.beta2) * ramp;
    const float plain_lr = float(double(ctx.lr) * ramp);
    for (size_t k = 0; k < tensors_.size(); ++k) {
        if (roles_[k].controlled) controlled_step(k, params, grads, ctx, theta, out);
        else plain_step(k, params, grads, plain_lr, ctx.grad_scale, out);
    }
}

void LionCpu::plain_step(size_t k, float* params, const float* grads, float lr, float grad_scale, const StepOutputs& out) {
    const TensorSlice& t = tensors_[k];
    const float b1 = config_.beta1, b2 = config_.beta2;
    const float decay = roles_[k].decay ? 1.0f - lr * config_.weight_decay : 1.0f;
    const size_t cols = t.numel / size_t(t.rows);
    const bool measure = out.sums != nullptr;
    for_each_row(t, measure ? &out.sums[k] : nullptr, [&](size_t r, RowSums& sums) {
        const size_t begin = t.offset + r * cols;
        float* w = params + begin;
        const float* g = grads + begin;
        float* m = m_.data() + begin;
        for (size_t i = 0; i < cols; ++i) {
            const float grad = g[i] * grad_scale;
            const float m_prev = m[i], w_old = w[i];
            const float u = sign_of(b1 * m_prev + (1.0f - b1) * grad);
            w[i] = w[i] * decay - lr * u;
            m[i] = b2 * m_prev + (1.0f - b2) * grad;
            if (measure) sums.add(w_old, w[i], grad, m_prev, m[i]);
            if (out.update) out.update[begin + i] = w[i] - w_old;
        }
    });
}

void LionCpu::start_control(size_t k, float* w) {
    const TensorSlice& t = tensors_[k];
    const size_t rows = size_t(t.rows), cols = t.numel / rows;
    float* x = config_.row_gains ? directions_.data() + direction_offset_[k] : w;
    std::vector<double> row_sq(rows);
#pragma omp parallel for schedule(static)
    for (long rl = 0; rl < long(rows); ++rl) {
        const size_t r = size_t(rl);
        float* wr = w + r * cols;
        if (config_.center) {
            double sum = 0;
            for (size_t i = 0; i < cols; ++i) sum += wr[i];
            const float mean = float(sum / double(cols));
            for (size_t i = 0; i < cols; ++i) wr[i] -= mean;
        }
        if (x != w) std::memcpy(x + r * cols, wr, cols * sizeof(float));
        double sq = 0;
        for (size_t i = 0; i < cols; ++i) sq += double(wr[i]) * wr[i];
        row_sq[r] = sq;
    }
    float* norms = norms_.data() + group_offset_[k];
    if (config_.control == ControlScope::rows) {
        for (size_t r = 0; r < rows; ++r) norms[r] = float(std::sqrt(row_sq[r]));
    } else {
        double sq = 0;
        for (double s : row_sq) sq += s;
        norms[0] = float(std::sqrt(sq));
    }
}

double LionCpu::snr_scale(size_t k, const float* grads, const StepContext& ctx) {
    const TensorSlice& t = tensors_[k];
    const size_t rows = size_t(t.rows), cols = t.numel / rows;
    const float* gain = config_.row_gains ? gains_.data() + group_offset_[k] : nullptr;
    struct Sums { double g_sq = 0, g_dot_m = 0, m_sq = 0; };
    std::vector<Sums> per_row(rows);
#pragma omp parallel for schedule(static)
    for (long rl = 0; rl < long(rows); ++rl) {
        const size_t r = size_t(rl), begin = t.offset + r * cols;
        const float row_gain = gain ? gain[r] : 1.0f;
        Sums s;
        for (size_t i = 0; i < cols; ++i) {
            const float gx = grads[begin + i] * ctx.grad_scale * row_gain;  // the controlled variable's gradient
            const float m = m_[begin + i];
            s.g_sq += double(gx) * gx;
            s.g_dot_m += double(gx) * m;
            s.m_sq += double(m) * m;
        }
        per_row[r] = s;
    }
    Sums total;
    for (const Sums& s : per_row) {
        total.g_sq += s.g_sq;
        total.g_dot_m += s.g_dot_m;
        total.m_sq += s.m_sq;
    }
    const double signal = signal_fraction(config_.snr_estimator, config_.inverse_bias_correction, config_.beta2,
                                          double(ctx.t), total.g_sq, total.g_dot_m, total.m_sq);
    float* ema = snr_ema_.data() + 2 * controlled_index_[k];
    if (!std::isnan(signal)) {
        ema[0] = float(double(config_.snr_ema) * ema[0] + (1.0 - double(config_.snr_ema)) * signal);
        ema[1] += 1.0f;
    }
    return snr_step_scale(ema[0], ema[1], config_.snr_ema, config_.k_min);
}

void LionCpu::controlled_step(size_t k, float* params, const float* grads, const StepContext& ctx, double theta,
                              const StepOutputs& out) {
    const TensorSlice& t = tensors_[k];
    const size_t rows = size_t(t.rows), cols = t.numel / rows;
    const bool measure = out.sums != nullptr;
    float* w = params + t.offset;
    const float* g = grads + t.offset;
    float* m = m_.data() + t.offset;
    float* x = config_.row_gains ? directions_.data() + direction_offset_[k] : w;  // the controlled variable
    float* gain = config_.row_gains ? gains_.data() + group_offset_[k] : nullptr;
    float* gain_m = config_.row_gains ? gain_m_.data() + group_offset_[k] : nullptr;
    const float* norms = norms_.data() + group_offset_[k];
    float* u = u_.data();
    float* w_old = w_old_.data();
    if (measure || out.update) std::memcpy(w_old, w, t.numel * sizeof(float));
    if (ctx.t == 1) start_control(k, w);

    double scale = 1.0;
    if (config_.name == "lionar") scale = snr_scale(k, grads, ctx);
    if (measure) out.sums[k].snr_scale = scale;
    const double tan_angle = std::tan(theta * scale);
    const float b1 = config_.beta1, b2 = config_.beta2;
    const float gain_lr = float(double(ctx.lr) * step_ramp(config_.inverse_bias_correction, b2, double(ctx.t)));
    const double rho = config_.norm_ema, rho_correction = 1.0 - std::pow(rho, double(ctx.t));
    std::vector<RowSums> row_sums(measure ? rows : 0);

    // The phases of a step, per row. direction(): the Lion direction u and the momentum update; returns
    // the gain's gradient <g_r, x_r> and leaves <x,u> and <x,x> of the row.
    auto direction = [&](size_t r, double& xu, double& xx) {
        const size_t o = r * cols;
        const float row_gain = gain ? gain[r] : 1.0f;
        double su = 0, sx = 0, sg = 0;
        for (size_t i = 0; i < cols; ++i) {
            const float grad = g[o + i] * ctx.grad_scale;  // dL/dW
            const float gx = grad * row_gain;             // dL/dx
            const float m_prev = m[o + i];
            u[o + i] = sign_of(b1 * m_prev + (1.0f - b1) * gx);
            m[o + i] = b2 * m_prev + (1.0f - b2) * gx;
            su += double(u[o + i]) * x[o + i];
            sx += double(x[o + i]) * x[o + i];
            sg += double(grad) * x[o + i];
            if (measure) row_sums[r].add_moments(grad, m_prev, m[o + i]);
        }
        xu = su;
        xx = sx;
        return sg;
    };
    auto step_gain = [&](size_t r, double gain_grad) {  // a plain Lion step, no weight decay
        const float gg = float(gain_grad);
        gain[r] -= gain_lr * sign_of(b1 * gain_m[r] + (1.0f - b1) * gg);
        gain_m[r] = b2 * gain_m[r] + (1.0f - b2) * gg;
    };
    auto remove_radial = [&](size_t r, double xu, double xx) {  // returns |u_r|^2
        const size_t o = r * cols;
        const float radial = xx > 0 ? float(xu / xx) : 0.0f;
        for (size_t i = 0; i < cols; ++i) u[o + i] -= radial * x[o + i];
        if (config_.center) {
            double sum = 0;
            for (size_t i = 0; i < cols; ++i) sum += u[o + i];
            const float mean = float(sum / double(cols));
            for (size_t i = 0; i < cols; ++i) u[o + i] -= mean;
        }
        double uu = 0;
        for (size_t i = 0; i < cols; ++i) uu += double(u[o + i]) * u[o + i];
        return uu;
    };
    auto divisor = [&](size_t group, double uu) {  // D: |u|, or the bias-corrected RMS of |u| over steps
        if (config_.angle_norm == AngleNorm::strict) return std::sqrt(uu);
        float& ema = norm_ema_[group_offset_[k] + group];
        ema = float(rho * ema + (1.0 - rho) * uu);
        return std::sqrt(double(ema) / rho_correction);
    };
    auto move = [&](size_t r, float step) {  // x -= step u; returns |x_r|^2 after
        const size_t o = r * cols;
        double sq = 0;
        for (size_t i = 0; i < cols; ++i) {
            x[o + i] -= step * u[o + i];
            sq += double(x[o + i]) * x[o + i];
        }
        return sq;
    };
    auto finish = [&](size_t r, float renormalise) {  // back to the held norm; W = gain x; the sums
        const size_t o = r * cols;
        for (size_t i = 0; i < cols; ++i) {
            x[o + i] *= renormalise;
            if (gain) w[o + i] = gain[r] * x[o + i];
        }
        if (measure)
            for (size_t i = 0; i < cols; ++i) row_sums[r].add_weights(w_old[o + i], w[o + i]);
        if (out.update)
            for (size_t i = 0; i < cols; ++i) out.update[t.offset + o + i] = w[o + i] - w_old[o + i];
    };
    // The step length that turns x by the angle, and the factor back to the held norm.
    auto step_length = [&](double xx, double d) { return float(tan_angle * std::sqrt(xx) / d); };
    auto renormalisation = [](double held, double sq) { return sq > 0 ? float(held / std::sqrt(sq)) : 1.0f; };

    if (config_.control == ControlScope::rows) {
#pragma omp parallel for schedule(static)
        for (long rl = 0; rl < long(rows); ++rl) {
            const size_t r = size_t(rl);
            double xu, xx;
            const double gain_grad = direction(r, xu, xx);
            if (gain) step_gain(r, gain_grad);
            const double d = divisor(r, remove_radial(r, xu, xx));
            float factor = 1.0f;
            if (d > 0 && xx > 0) factor = renormalisation(norms[r], move(r, step_length(xx, d)));
            finish(r, factor);
        }
    } else {
        std::vector<double> xu_rows(rows), xx_rows(rows);
#pragma omp parallel for schedule(static)
        for (long rl = 0; rl < long(rows); ++rl) direction(size_t(rl), xu_rows[size_t(rl)], xx_rows[size_t(rl)]);
        double xu = 0, xx = 0;
        for (size_t r = 0; r < rows; ++r) {
            xu += xu_rows[r];
            xx += xx_rows[r];
        }
        const double d = divisor(0, ordered_row_sum(rows, [&](size_t r) { return remove_radial(r, xu, xx); }));
        float factor = 1.0f;
        if (d > 0 && xx > 0) {
            const float step = step_length(xx, d);
            factor = renormalisation(norms[0], ordered_row_sum(rows, [&](size_t r) { return move(r, step); }));
        }
#pragma omp parallel for schedule(static)
        for (long rl = 0; rl < long(rows); ++rl) finish(size_t(rl), factor);
    }
    if (measure)
        for (const RowSums& r : row_sums) add_row(out.sums[k], r, t.is_matrix);
}

std::vector<std::pair<const char*, const std::vector<float>*>> LionCpu::named_state() const {
    std::vector<std::pair<const char*, const std::vector<float>*>> buffers = {{"lion.m", &m_}};
    if (!norms_.empty()) buffers.push_back({"lion.norms", &norms_});
    if (!norm_ema_.empty()) buffers.push_back({"lion.norm_ema", &norm_ema_});
    if (!snr_ema_.empty()) buffers.push_back({"lion.snr_ema", &snr_ema_});
    if (!gains_.empty()) {
        buffers.push_back({"lion.gains", &gains_});
        buffers.push_back({"lion.gain_m", &gain_m_});
        buffers.push_back({"lion.directions", &directions_});
    }
    return buffers;
}

std::vector<StateBuffer> LionCpu::state_layout() const {
    std::vector<StateBuffer> layout;
    for (const auto& [name, buffer] : named_state()) layout.push_back({name, buffer->size()});
    return layout;
}

void LionCpu::read_state(size_t index, float* host) const {
    const std::vector<float>& b = *named_state().at(index).second;
    std::memcpy(host, b.data(), b.size() * sizeof(float));
}

void LionCpu::write_state(size_t index, const float* host) {
    auto& b = const_cast<std::vector<float>&>(*named_state().at(index).second);  // one of this object's own members
    std::memcpy(b.data(), host, b.size() * sizeof(float));
}

}  // namespace coldstart
