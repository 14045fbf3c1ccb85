#include "optim/update_metrics.h"

#include <cmath>

#include "common/error.h"
#include "optim/step_sums.h"

namespace coldstart {

bool is_linear_layer(ParamTensor kind) {
    return kind == QKVW || kind == ATTPROJW || kind == FCW || kind == FCPROJW || kind == WTE;
}

double gradient_noise_scale(double small_sq, double small_tokens, double big_sq, double big_tokens) {
    const double true_sq = (big_tokens * big_sq - small_tokens * small_sq) / (big_tokens - small_tokens);
    const double trace_sigma = (small_sq - big_sq) / (1.0 / small_tokens - 1.0 / big_tokens);
    return true_sq > 0 ? trace_sigma / true_sq : NAN;
}

namespace {

nlohmann::json number_or_null(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

nlohmann::json tensor_metrics(const TensorSlice& t, const TensorStepSums& s, bool has_snr_scale, double momentum_correction) {
    const double w_norm = std::sqrt(s.w_sq), update_norm = std::sqrt(s.d_sq), grad_norm = std::sqrt(s.g_sq);
    const double angle = angle_from_sums(s.w_sq, s.d_sq, s.w_dot_d);
    nlohmann::json j = {{"w_norm", w_norm},
                        {"update_norm", update_norm},
                        {"rel_update", number_or_null(s.w_sq > 0 ? update_norm / w_norm : NAN)},
                        {"angle", number_or_null(angle >= 0 ? angle : NAN)},
                        {"grad_norm", grad_norm}};
    if (t.is_matrix && s.rows > 0) j["angle_rows"] = std::sqrt(s.row_angle_sq / s.rows);
    if (s.g_sq > 0 && s.mprev_sq > 0) j["grad_mom_cos"] = s.g_dot_mprev / std::sqrt(s.g_sq * s.mprev_sq);
    if (s.g_sq > 0) j["mom_grad_ratio"] = std::sqrt(s.m_sq) / momentum_correction / grad_norm;
    if (has_snr_scale) j["snr_scale"] = s.snr_scale;
    return j;
}

}  // namespace

nlohmann::json metrics_record(int64_t step, float lr, int64_t t, const StepMeasurement& m,
                              const std::vector<TensorSlice>& tensors, const OptimizerConfig& opt,
                              const NoiseScaleSums* noise) {
    if (m.tensors.size() != tensors.size())
        fail("metrics: %zu tensor sums for %zu tensors", m.tensors.size(), tensors.size());
    const std::vector<TensorRole> roles = tensor_roles(opt, tensors);
    const double momentum_correction = 1.0 - std::pow(double(opt.momentum_beta()), double(t));
    nlohmann::json per_tensor = nlohmann::json::object();
    double d_sq = 0, g_sq = 0;
    for (size_t k = 0; k < tensors.size(); ++k) {
        const bool snr = opt.has_rrc_correction() && roles[k].controlled;
        per_tensor[tensors[k].name] = tensor_metrics(tensors[k], m.tensors[k], snr, momentum_correction);
        d_sq += m.tensors[k].d_sq;
        g_sq += m.tensors[k].g_sq;
    }
    for (const RrcSums& r : m.rrc)
        per_tensor[tensors.at(r.tensor).name]["rrc"] =
            number_or_null(r.output_sq > 0 ? std::sqrt(r.change_sq / r.output_sq) : NAN);
    nlohmann::json record = {{"type", "metrics"}, {"step", step}, {"lr", lr}, {"update_norm", std::sqrt(d_sq)},
                             {"grad_norm", std::sqrt(g_sq)}};
    if (noise) {
        record["b_noise"] = number_or_null(gradient_noise_scale(noise->small_sq, noise->small_tokens, noise->big_sq, noise->big_tokens));
        record["grad_sq_small"] = noise->small_sq;
        record["grad_sq_big"] = noise->big_sq;
    }
    record["tensors"] = per_tensor;
    return record;
}

std::string metrics_summary(const nlohmann::json& record) {
    auto largest = [&](const char* field) {
        std::string name;
        double best = -1;
        for (const auto& [tensor, values] : record["tensors"].items())
            if (values.contains(field) && values[field].is_number() && values[field].get<double>() > best) {
                best = values[field].get<double>();
                name = tensor;
            }
        return name.empty() ? std::string("n/a") : format("%.3e (%s)", best, name.c_str());
    };
    std::string s = format("metrics: |dW| %.3e | largest angle %s | largest rel update %s", record["update_norm"].get<double>(),
                           largest("angle").c_str(), largest("rel_update").c_str());
    const std::string rrc = largest("rrc");
    if (rrc != "n/a") s += " | largest rrc " + rrc;
    if (record.contains("b_noise") && record["b_noise"].is_number()) s += format(" | B_noise %.3g tokens", record["b_noise"].get<double>());
    return s;
}

}  // namespace coldstart
