#include "optim/lion.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/error.h"
#include "optim/lion_math.h"
#include "optim/step_sums.h"

namespace coldstart {

namespace {
inline float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }
// Lion's update direction, one expression for the step and for LionA's count of its non-zero entries.
inline float lion_direction(float b1, float m_prev, float grad) { return sign_of(b1 * m_prev + (1.0f - b1) * grad); }
}  // namespace

LionCpu::LionCpu(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors, const ParameterShard& shard,
                 SumAcrossRanks sum_across_ranks)
    : config_(config), tensors_(tensors), roles_(tensor_roles(config, tensors)), controlled_(tensors.size()),
      sum_across_ranks_(std::move(sum_across_ranks)) {
    const bool per_row = config.control == ControlScope::rows;
    size_t groups = 0, directions = 0, controlled = 0, largest = 0;
    bool first_held = true;
    total_ = 0;
    for (size_t k = 0; k < tensors.size(); ++k) {
        const TensorSlice& t = tensors[k];
        total_ += t.numel;
        rows_.push_back(rows_in_shard(t, shard));
        if (!roles_[k].controlled) continue;
        const RowRange& held = rows_[k];
        const size_t cols = t.numel / size_t(t.rows);
        if (!held.empty()) {
            if (!per_row && (held.first != 0 || held.last != size_t(t.rows)))
                fail("%s: a tensor controlled as a whole (--control tensor) is split between shards", t.name.c_str());
            if (first_held) {
                groups_first_ = groups_total_ + (per_row ? held.first : 0);
                directions_first_ = directions_total_ + held.first * cols;
                controlled_first_ = controlled_total_;
                first_held = false;
            }
            controlled_[k] = {groups, directions, controlled};
            groups += per_row ? held.last - held.first : 1;
            directions += (held.last - held.first) * cols;
            controlled += 1;
            largest = std::max(largest, t.numel);
        }
        groups_total_ += per_row ? size_t(t.rows) : 1;
        directions_total_ += t.numel;
        controlled_total_ += 1;
    }
    begin_ = std::min(shard.begin, total_);
    end_ = std::min(shard.end, total_);
    m_.assign(end_ - begin_, 0.0f);
    norms_.assign(groups, 0.0f);
    if (config.angle_norm == AngleNorm::smoothed) norm_ema_.assign(groups, 0.0f);
    if (config.has_rrc_correction()) snr_ema_.assign(2 * controlled, 0.0f);
    if (config.row_gains) {
        gains_.assign(groups, 1.0f);
        gain_m_.assign(groups, 0.0f);
        directions_.assign(directions, 0.0f);
    }
    u_.assign(largest, 0.0f);
    w_old_.assign(largest, 0.0f);
}

size_t LionCpu::group_of(size_t k, size_t row) const {
    return controlled_[k].group + (config_.control == ControlScope::rows ? row - rows_[k].first : 0);
}

void LionCpu::step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out) {
    const double ramp = step_ramp(config_.inverse_bias_correction, config_.beta2, double(ctx.t));
    const double theta =
        target_angle(config_.target_angle, ctx.lr, config_.weight_decay, config_.beta1, config_.beta2) * ramp;
    const float plain_lr = float(double(ctx.lr) * ramp);
    const std::vector<double> scales = config_.has_rrc_correction() ? snr_scales(grads, ctx) : std::vector<double>();
    const std::vector<double> nonzero = config_.is_l2_controlled() ? nonzero_signs(grads, ctx.grad_scale) : std::vector<double>();
    clear_step_sums(out, tensors_.size());
    for (size_t k = 0; k < tensors_.size(); ++k) {
        if (rows_[k].empty()) continue;
        if (roles_[k].controlled) {
            controlled_step(k, params, grads, ctx, theta, scales.empty() ? 1.0 : scales[k], out);
        } else {
            const float step = nonzero.empty() ? plain_lr : float(l2_controlled_step(double(ctx.lr) * ramp, double(tensors_[k].numel), nonzero[k]));
            plain_step(k, params, grads, step, plain_lr, ctx.grad_scale, out);
        }
    }
}

std::vector<double> LionCpu::nonzero_signs(const float* grads, float grad_scale) {
    // Over the rows held here, then over the ranks: a tensor's rule needs its whole count.
    std::vector<double> counts(tensors_.size(), 0.0);
    const float b1 = config_.beta1;
    for (size_t k = 0; k < tensors_.size(); ++k) {
        const TensorSlice& t = tensors_[k];
        const size_t cols = t.numel / size_t(t.rows);
        counts[k] = ordered_row_sum(rows_[k], [&](size_t r) {
            const size_t begin = t.offset + r * cols;
            const float* m = m_.data() + (begin - begin_);
            double n = 0;
            for (size_t i = 0; i < cols; ++i) n += lion_direction(b1, m[i], grads[begin + i] * grad_scale) != 0.0f;
            return n;
        });
    }
    if (sum_across_ranks_) sum_across_ranks_(counts.data(), counts.size());
    return counts;
}

void LionCpu::plain_step(size_t k, float* params, const float* grads, float step, float lr, float grad_scale,
                         const StepOutputs& out) {
    const TensorSlice& t = tensors_[k];
    const float b1 = config_.beta1, b2 = config_.beta2;
    const float decay = roles_[k].decay ? 1.0f - lr * config_.weight_decay : 1.0f;
    const size_t cols = t.numel / size_t(t.rows);
    const bool measure = out.sums != nullptr;
    for_each_row(t, rows_[k], measure ? &out.sums[k] : nullptr, [&](size_t r, RowSums& sums) {
        const size_t begin = t.offset + r * cols;
        float* w = params + begin;
        const float* g = grads + begin;
        float* m = m_.data() + (begin - begin_);
        for (size_t i = 0; i < cols; ++i) {
            const float grad = g[i] * grad_scale;
            const float m_prev = m[i], w_old = w[i];
            const float u = lion_direction(b1, m_prev, grad);
            w[i] = w[i] * decay - step * u;
            m[i] = b2 * m_prev + (1.0f - b2) * grad;
            if (measure) sums.add(w_old, w[i], grad, m_prev, m[i]);
            if (out.update) out.update[begin + i] = w[i] - w_old;
        }
    });
}

void LionCpu::start_control(size_t k, float* w) {
    const TensorSlice& t = tensors_[k];
    const RowRange held = rows_[k];
    const size_t cols = t.numel / size_t(t.rows);
    float* x = config_.row_gains ? directions_.data() + controlled_[k].direction : nullptr;
    std::vector<double> row_sq(held.last - held.first);
#pragma omp parallel for schedule(static)
    for (long rl = long(held.first); rl < long(held.last); ++rl) {
        const size_t r = size_t(rl);
        float* wr = w + r * cols;
        if (config_.center) {
            double sum = 0;
            for (size_t i = 0; i < cols; ++i) sum += wr[i];
            const float mean = float(sum / double(cols));
            for (size_t i = 0; i < cols; ++i) wr[i] -= mean;
        }
        if (x) std::memcpy(x + (r - held.first) * cols, wr, cols * sizeof(float));
        double sq = 0;
        for (size_t i = 0; i < cols; ++i) sq += double(wr[i]) * wr[i];
        row_sq[r - held.first] = sq;
    }
    if (config_.control == ControlScope::rows) {
        for (size_t r = held.first; r < held.last; ++r) norms_[group_of(k, r)] = float(std::sqrt(row_sq[r - held.first]));
    } else {
        double sq = 0;
        for (double s : row_sq) sq += s;
        norms_[controlled_[k].group] = float(std::sqrt(sq));
    }
}

std::vector<double> LionCpu::snr_scales(const float* grads, const StepContext& ctx) {
    // ||g||^2, <g, m_{t-1}> and ||m_{t-1}||^2 of every controlled tensor over the rows held here, in the
    // logical order, so that every rank sums arrays of the same length: one reduction per step.
    std::vector<double> sums(3 * controlled_total_, 0.0);
    std::vector<size_t> ordinal(tensors_.size(), 0);
    size_t next = 0;
    for (size_t k = 0; k < tensors_.size(); ++k) {
        if (!roles_[k].controlled) continue;
        ordinal[k] = next++;
        if (rows_[k].empty()) continue;
        const TensorSlice& t = tensors_[k];
        const size_t cols = t.numel / size_t(t.rows);
        struct Sums { double g_sq = 0, g_dot_m = 0, m_sq = 0; };
        std::vector<Sums> per_row(rows_[k].last - rows_[k].first);
#pragma omp parallel for schedule(static)
        for (long rl = long(rows_[k].first); rl < long(rows_[k].last); ++rl) {
            const size_t r = size_t(rl), begin = t.offset + r * cols;
            const float row_gain = config_.row_gains ? gains_[group_of(k, r)] : 1.0f;
            Sums s;
            for (size_t i = 0; i < cols; ++i) {
                const float gx = grads[begin + i] * ctx.grad_scale * row_gain;  // the controlled variable's gradient
                const float m = m_[begin + i - begin_];
                s.g_sq += double(gx) * gx;
                s.g_dot_m += double(gx) * m;
                s.m_sq += double(m) * m;
            }
            per_row[r - rows_[k].first] = s;
        }
        double* total = sums.data() + 3 * ordinal[k];
        for (const Sums& s : per_row) {
            total[0] += s.g_sq;
            total[1] += s.g_dot_m;
            total[2] += s.m_sq;
        }
    }
    if (sum_across_ranks_) sum_across_ranks_(sums.data(), sums.size());
    std::vector<double> scales(tensors_.size(), 1.0);
    for (size_t k = 0; k < tensors_.size(); ++k) {
        if (!roles_[k].controlled || rows_[k].empty()) continue;
        const double* total = sums.data() + 3 * ordinal[k];
        const double signal = signal_fraction(config_.rrc_correction, config_.inverse_bias_correction, config_.beta2,
                                              double(ctx.t), total[0], total[1], total[2]);
        float* ema = snr_ema_.data() + 2 * controlled_[k].snr;
        if (!std::isnan(signal)) {
            ema[0] = float(double(config_.snr_ema) * ema[0] + (1.0 - double(config_.snr_ema)) * signal);
            ema[1] += 1.0f;
        }
        scales[k] = snr_step_scale(ema[0], ema[1], config_.snr_ema, config_.k_min);
    }
    return scales;
}

void LionCpu::controlled_step(size_t k, float* params, const float* grads, const StepContext& ctx, double theta,
                              double scale, const StepOutputs& out) {
    const TensorSlice& t = tensors_[k];
    const RowRange held = rows_[k];
    const size_t cols = t.numel / size_t(t.rows);
    const bool measure = out.sums != nullptr;
    float* w = params + t.offset;  // w, g, u, w_old: indices count from the tensor's start
    const float* g = grads + t.offset;
    float* u = u_.data();
    float* w_old = w_old_.data();
    // Row r of the momentum, and of the controlled variable: W itself, or the direction of W = gain * v.
    auto m_row = [&](size_t r) { return m_.data() + (t.offset + r * cols - begin_); };
    auto x_row = [&](size_t r) {
        return config_.row_gains ? directions_.data() + controlled_[k].direction + (r - held.first) * cols : w + r * cols;
    };
    if (measure || out.update)
        std::memcpy(w_old + held.first * cols, w + held.first * cols, (held.last - held.first) * cols * sizeof(float));
    if (ctx.t == 1) start_control(k, w);
    if (measure && held.first == 0) out.sums[k].snr_scale = scale;

    const double tan_angle = std::tan(theta * scale);
    const float b1 = config_.beta1, b2 = config_.beta2;
    const float gain_lr = float(double(ctx.lr) * step_ramp(config_.inverse_bias_correction, b2, double(ctx.t)));
    const double rho = config_.norm_ema, rho_correction = 1.0 - std::pow(rho, double(ctx.t));
    std::vector<RowSums> row_sums(measure ? held.last - held.first : 0);

    // The phases of a step, per row r (counted from the tensor's first row). direction(): the Lion
    // direction u and the momentum update; returns the gain's gradient <g_r, x_r> and leaves <x,u> and
    // <x,x> of the row.
    auto direction = [&](size_t r, double& xu, double& xx) {
        const size_t o = r * cols;
        float* x = x_row(r);
        float* m = m_row(r);
        const float row_gain = config_.row_gains ? gains_[group_of(k, r)] : 1.0f;
        double su = 0, sx = 0, sg = 0;
        for (size_t i = 0; i < cols; ++i) {
            const float grad = g[o + i] * ctx.grad_scale;  // dL/dW
            const float gx = grad * row_gain;             // dL/dx
            const float m_prev = m[i];
            u[o + i] = lion_direction(b1, m_prev, gx);
            m[i] = b2 * m_prev + (1.0f - b2) * gx;
            su += double(u[o + i]) * x[i];
            sx += double(x[i]) * x[i];
            sg += double(grad) * x[i];
            if (measure) row_sums[r - held.first].add_moments(grad, m_prev, m[i]);
        }
        xu = su;
        xx = sx;
        return sg;
    };
    auto step_gain = [&](size_t r, double gain_grad) {  // a plain Lion step, no weight decay
        const size_t gi = group_of(k, r);
        const float gg = float(gain_grad);
        gains_[gi] -= gain_lr * lion_direction(b1, gain_m_[gi], gg);
        gain_m_[gi] = b2 * gain_m_[gi] + (1.0f - b2) * gg;
    };
    auto remove_radial = [&](size_t r, double xu, double xx) {  // returns |u_r|^2
        const size_t o = r * cols;
        const float* x = x_row(r);
        const float radial = xx > 0 ? float(xu / xx) : 0.0f;
        for (size_t i = 0; i < cols; ++i) u[o + i] -= radial * x[i];
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
        float& ema = norm_ema_[group];
        ema = float(rho * ema + (1.0 - rho) * uu);
        return std::sqrt(double(ema) / rho_correction);
    };
    auto move = [&](size_t r, float step) {  // x -= step u; returns |x_r|^2 after
        const size_t o = r * cols;
        float* x = x_row(r);
        double sq = 0;
        for (size_t i = 0; i < cols; ++i) {
            x[i] -= step * u[o + i];
            sq += double(x[i]) * x[i];
        }
        return sq;
    };
    auto finish = [&](size_t r, float renormalise) {  // back to the held norm; W = gain x; the sums
        const size_t o = r * cols;
        float* x = x_row(r);
        for (size_t i = 0; i < cols; ++i) {
            x[i] *= renormalise;
            if (config_.row_gains) w[o + i] = gains_[group_of(k, r)] * x[i];
        }
        if (measure)
            for (size_t i = 0; i < cols; ++i) row_sums[r - held.first].add_weights(w_old[o + i], w[o + i]);
        if (out.update)
            for (size_t i = 0; i < cols; ++i) out.update[t.offset + o + i] = w[o + i] - w_old[o + i];
    };
    // The step length that turns x by the angle, and the factor back to the held norm.
    auto step_length = [&](double xx, double d) { return float(tan_angle * std::sqrt(xx) / d); };
    auto renormalisation = [](double held_norm, double sq) { return sq > 0 ? float(held_norm / std::sqrt(sq)) : 1.0f; };

    if (config_.control == ControlScope::rows) {
#pragma omp parallel for schedule(static)
        for (long rl = long(held.first); rl < long(held.last); ++rl) {
            const size_t r = size_t(rl);
            double xu, xx;
            const double gain_grad = direction(r, xu, xx);
            if (config_.row_gains) step_gain(r, gain_grad);
            const double d = divisor(group_of(k, r), remove_radial(r, xu, xx));
            float factor = 1.0f;
            if (d > 0 && xx > 0) factor = renormalisation(norms_[group_of(k, r)], move(r, step_length(xx, d)));
            finish(r, factor);
        }
    } else {
        std::vector<double> xu_rows(held.last), xx_rows(held.last);
#pragma omp parallel for schedule(static)
        for (long rl = 0; rl < long(held.last); ++rl) direction(size_t(rl), xu_rows[size_t(rl)], xx_rows[size_t(rl)]);
        double xu = 0, xx = 0;
        for (size_t r = 0; r < held.last; ++r) {
            xu += xu_rows[r];
            xx += xx_rows[r];
        }
        const double d = divisor(controlled_[k].group, ordered_row_sum(held, [&](size_t r) { return remove_radial(r, xu, xx); }));
        float factor = 1.0f;
        if (d > 0 && xx > 0) {
            const float step = step_length(xx, d);
            factor = renormalisation(norms_[controlled_[k].group], ordered_row_sum(held, [&](size_t r) { return move(r, step); }));
        }
#pragma omp parallel for schedule(static)
        for (long rl = 0; rl < long(held.last); ++rl) finish(size_t(rl), factor);
    }
    if (measure)
        for (const RowSums& r : row_sums) add_row(out.sums[k], r, t.is_matrix);
}

// The buffers exist by the configuration alone, so that every rank has the same layout; what each rank
// holds of them is its shard's part.
std::vector<std::pair<const char*, const std::vector<float>*>> LionCpu::named_state() const {
    std::vector<std::pair<const char*, const std::vector<float>*>> buffers = {{"lion.m", &m_}};
    if (config_.is_angular()) buffers.push_back({"lion.norms", &norms_});
    if (config_.is_angular() && config_.angle_norm == AngleNorm::smoothed) buffers.push_back({"lion.norm_ema", &norm_ema_});
    if (config_.has_rrc_correction()) buffers.push_back({"lion.snr_ema", &snr_ema_});
    if (config_.row_gains) {
        buffers.push_back({"lion.gains", &gains_});
        buffers.push_back({"lion.gain_m", &gain_m_});
        buffers.push_back({"lion.directions", &directions_});
    }
    return buffers;
}

std::vector<StateBuffer> LionCpu::state_layout() const {
    std::vector<StateBuffer> layout;
    for (const auto& [name, buffer] : named_state()) {
        const std::string n = name;
        size_t count = total_, first = begin_;
        if (n == "lion.snr_ema") {
            count = 2 * controlled_total_;
            first = 2 * controlled_first_;
        } else if (n == "lion.directions") {
            count = directions_total_;
            first = directions_first_;
        } else if (n != "lion.m") {  // per group
            count = groups_total_;
            first = groups_first_;
        }
        layout.push_back({n, count, first, first + buffer->size()});
    }
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
