#include "config/resolve.h"

#include <cmath>
#include <cstdlib>

#include "common/error.h"

namespace coldstart {

bool is_warmup_text(const std::string& text) {
    if (text.empty()) return false;
    const bool percent = text.back() == '%';
    const std::string number = percent ? text.substr(0, text.size() - 1) : text;
    if (number.empty() || number.size() > 18) return false;
    size_t dots = 0;
    for (char ch : number) {
        if (ch == '.') ++dots;
        else if (ch < '0' || ch > '9') return false;
    }
    if (!percent) return dots == 0 && std::strtod(number.c_str(), nullptr) <= 1e9;
    return dots <= 1 && number != "." && std::strtod(number.c_str(), nullptr) <= 100.0;
}

int warmup_steps(const std::string& text, int64_t steps) {
    if (!is_warmup_text(text)) fail("-u/--warmup: expected steps (700) or a percentage of the run's steps (5%%), got '%s'", text.c_str());
    if (text.back() != '%') return std::atoi(text.c_str());
    return int(std::llround(std::strtod(text.c_str(), nullptr) / 100.0 * double(steps)));
}

void resolve_optimizer_defaults(Config& cfg) {
    const bool lion = cfg.optimizer != "adamw";
    if (cfg.beta2 < 0) cfg.beta2 = lion ? 0.99f : 0.95f;
    if (cfg.nesterov) {
        if (!lion) fail("--nesterov 1 applies to the lion family (lion, liona, lionar), not to --optimizer %s", cfg.optimizer.c_str());
        // Nesterov momentum with factor b looks ahead by one step: the direction b m_t + (1-b) g =
        // b^2 m_{t-1} + (1 - b^2) g, which is Lion's interpolation with beta1 = b^2.
        const float nesterov_beta1 = cfg.beta2 * cfg.beta2;
        if (cfg.beta1 >= 0 && cfg.beta1 != nesterov_beta1)
            fail("--nesterov 1 sets beta1 = beta2^2 = %g; --beta1 %g contradicts it (leave --beta1 out)", double(nesterov_beta1),
                 double(cfg.beta1));
        cfg.beta1 = nesterov_beta1;
    }
    if (cfg.beta1 < 0) cfg.beta1 = 0.9f;
}

OptimizerConfig optimizer_config(const Config& cfg) {
    OptimizerConfig o;
    o.name = cfg.optimizer;
    o.beta1 = cfg.beta1;
    o.beta2 = cfg.beta2;
    o.eps = cfg.eps;
    o.weight_decay = cfg.weight_decay;
    o.bias_correction = cfg.bias_correction != 0;
    o.inverse_bias_correction = cfg.inverse_bias_correction == "step" ? InverseBiasCorrection::step
                              : cfg.inverse_bias_correction == "snr"  ? InverseBiasCorrection::snr
                                                                      : InverseBiasCorrection::none;
    o.control = cfg.control == "tensor" ? ControlScope::tensor : ControlScope::rows;
    o.control_embeddings = cfg.control_embeddings != 0;
    o.center = cfg.center != 0;
    o.angle_norm = cfg.angle_norm == "smoothed" ? AngleNorm::smoothed : AngleNorm::strict;
    o.norm_ema = cfg.norm_ema;
    o.target_angle = cfg.target_angle == "equilibrium" ? TargetAngle::equilibrium : TargetAngle::lr;
    o.rrc_correction = cfg.rrc_correction == "alignment"    ? RrcCorrection::alignment
                     : cfg.rrc_correction == "norm-ratio" ? RrcCorrection::norm_ratio
                                                          : RrcCorrection::none;
    o.k_min = cfg.k_min;
    o.snr_ema = cfg.snr_ema;
    o.row_gains = cfg.row_gains != 0;
    o.rrc_target = cfg.rrc_target;
    return o;
}

ProcessOptions process_options(const Config& cfg) {
    ProcessOptions options;
    options.processes = cfg.processes;
    options.rank = cfg.process_rank;
    options.meeting.method = cfg.process_init;
    options.meeting.dir = !cfg.process_dir.empty() ? cfg.process_dir : cfg.output_dir;
    options.meeting.server = cfg.process_server;
    return options;
}

}  // namespace coldstart
