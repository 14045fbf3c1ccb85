#include "optim/rrc.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"
#include "optim/lion_math.h"
#include "optim/update_metrics.h"

namespace coldstart {

ParamTensor linear_bias(ParamTensor weight) {
    switch (weight) {
        case QKVW: return QKVB;
        case ATTPROJW: return ATTPROJB;
        case FCW: return FCB;
        case FCPROJW: return FCPROJB;
        case WTE: return NUM_PARAM_TENSORS;
        default: fail("%s is not the weight of a linear layer", kParamTensorNames[weight]);
    }
}

double sum_of_squares_without_bias(const float* y, const float* bias, size_t N, int out) {
    std::vector<double> rows(N);
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; ++r) {
        const float* row = y + r * size_t(out);
        double s = 0;
        for (int o = 0; o < out; ++o) {
            const double v = double(row[o] - (bias ? bias[o] : 0.0f));
            s += v * v;
        }
        rows[r] = s;
    }
    double total = 0;
    for (double s : rows) total += s;
    return total;
}

std::vector<bool> rrc_controlled(const OptimizerConfig& c, const std::vector<TensorSlice>& tensors) {
    std::vector<bool> controlled(tensors.size(), false);
    if (!(c.rrc_target > 0)) return controlled;
    const std::vector<TensorRole> roles = tensor_roles(c, tensors);
    for (size_t k = 0; k < tensors.size(); ++k)
        controlled[k] = is_linear_layer(tensors[k].kind) && (c.is_l2_controlled() || (c.is_angular() && roles[k].controlled));
    return controlled;
}

double rrc_target_at(const OptimizerConfig& c, double lr, double peak_lr, int64_t t) {
    if (!(c.rrc_target > 0) || !(peak_lr > 0)) return 0.0;
    return double(c.rrc_target) * (lr / peak_lr) * step_ramp(c.inverse_bias_correction, c.beta2, double(t));
}

void scale_step(float* w, const float* before, size_t n, float kappa) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) w[i] = std::fma(kappa, w[i] - before[i], before[i]);
}

}  // namespace coldstart
