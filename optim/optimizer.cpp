// What every optimizer shares: which tensor takes which step, the startup table, checks between options,
// the checkpoint format of the state, and the factory.
#include "optim/optimizer.h"

#include <cmath>
#include <cstdint>

#include "common/error.h"
#include "optim/adamw.h"
#include "optim/lion.h"
#include "optim/lion_math.h"
#include "optim/partition.h"

namespace coldstart {

static bool is_layer_matrix(ParamTensor kind) {
    return kind == QKVW || kind == ATTPROJW || kind == FCW || kind == FCPROJW;
}

std::vector<TensorRole> tensor_roles(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors) {
    std::vector<TensorRole> roles;
    for (const TensorSlice& t : tensors) {
        const bool embedding = t.kind == WTE || t.kind == WPE;
        const bool controlled = config.is_angular() && (is_layer_matrix(t.kind) || (embedding && config.control_embeddings));
        roles.push_back({t.is_matrix && !controlled, controlled});
    }
    return roles;
}

static const char* on_off(bool b) { return b ? "on" : "off"; }

std::string describe_optimizer(const OptimizerConfig& c, const std::vector<TensorSlice>& tensors) {
    std::string s;
    if (c.name == "adamw") {
        s = format("optimizer adamw: beta1 %g, beta2 %g, eps %g, weight decay %g, momentum bias correction %s\n", c.beta1,
                   c.beta2, c.eps, c.weight_decay, on_off(c.bias_correction));
    } else {
        const char* ibc[] = {"none", "step (i)", "snr (ii)"};
        s = format("optimizer %s: beta1 %g, beta2 %g, weight decay %g, inverse bias correction %s\n", c.name.c_str(), c.beta1,
                   c.beta2, c.weight_decay, ibc[int(c.inverse_bias_correction)]);
    }
    if (c.is_angular()) {
        s += format("  angular control per %s: target angle %s, %s normalisation", c.control == ControlScope::rows ? "row" : "tensor",
                    c.target_angle == TargetAngle::lr ? "= lr" : "= Lion's equilibrium angle",
                    c.angle_norm == AngleNorm::strict ? "strict" : format("smoothed (EMA %g)", c.norm_ema).c_str());
        s += format(", centring %s, row gains %s\n", on_off(c.center), on_off(c.row_gains));
        if (c.has_rrc_correction())
            s += format("  RRC correction, a step scale from the gradient's signal fraction: %s estimator, EMA %g, k_min %g\n",
                        c.rrc_correction == RrcCorrection::alignment ? "alignment" : "norm-ratio", c.snr_ema, c.k_min);
    }
    if (c.is_l2_controlled()) s += "  l2 control per tensor: each sign step rescaled to lr * sqrt(elements), no angular control\n";
    if (c.rrc_target > 0)
        s += format("  direct RRC control: the steps of %s scaled so that each layer's RRC on the step's last micro-batch is "
                    "%g x lr / peak lr%s\n",
                    c.is_l2_controlled() || c.control_embeddings ? "qkvw, attprojw, fcw, fcprojw and the lm head (wte)"
                                                                 : "qkvw, attprojw, fcw and fcprojw",
                    c.rrc_target, c.inverse_bias_correction == InverseBiasCorrection::step ? " x (1 - beta2^t)" : "");
    const std::vector<TensorRole> roles = tensor_roles(c, tensors);
    s += format("  %-9s %-13s %-6s %s\n", "tensor", "shape", "count", "step");
    for (int kind = 0; kind < NUM_PARAM_TENSORS; ++kind) {
        size_t first = tensors.size(), count = 0;
        for (size_t k = 0; k < tensors.size(); ++k)
            if (tensors[k].kind == kind) {
                if (first == tensors.size()) first = k;
                ++count;
            }
        if (count == 0) continue;
        const TensorSlice& t = tensors[first];
        const TensorRole& r = roles[first];
        const std::string shape = t.is_matrix ? format("%d x %d", t.rows, t.cols) : format("%d", t.cols);
        const std::string base = c.name == "adamw" ? "adamw" : c.is_l2_controlled() ? "lion, l2 held" : "lion";
        const std::string step = r.controlled ? format("angular, %s", c.control == ControlScope::rows ? "per row" : "per tensor")
                                              : base + (r.decay ? ", weight decay" : "");
        s += format("  %-9s %-13s %-6zu %s\n", kParamTensorNames[kind], shape.c_str(), count, step.c_str());
    }
    return s;
}

void validate_optimizer_config(const OptimizerConfig& c, float peak_lr) {
    if (c.name != "adamw" && !c.is_lion_family())
        fail("--optimizer: unknown optimizer '%s' (available: adamw, lion, liona, lionar)", c.name.c_str());
    if (c.inverse_bias_correction != InverseBiasCorrection::none && !c.is_lion_family())
        fail("--inverse-bias-correction applies to lion, liona and lionar (this run: --optimizer %s)", c.name.c_str());
    if (c.rrc_correction != RrcCorrection::none && !c.is_angular())
        fail("--rrc-correction applies to lionar, the rotational Lion (this run: --optimizer %s)", c.name.c_str());
    if (c.inverse_bias_correction == InverseBiasCorrection::snr && c.rrc_correction != RrcCorrection::norm_ratio)
        fail("--inverse-bias-correction snr corrects the RRC correction's norm-ratio estimate: it needs --optimizer lionar "
             "--rrc-correction norm-ratio");
    if (c.row_gains && (!c.is_angular() || c.control != ControlScope::rows))
        fail("--row-gains 1 needs per-row angular control (--optimizer lionar, --control rows)");
    if (c.rrc_target > 0 && !c.is_l2_controlled() && !c.is_angular())
        fail("--rrc-target applies to liona and lionar, whose steps have a controlled size (this run: --optimizer %s)", c.name.c_str());
    if (c.rrc_target > 0 && c.has_rrc_correction())
        fail("--rrc-target and --rrc-correction both set the step's size from the representation change: choose one "
             "(--rrc-correction none, or --rrc-target 0)");
    if (c.rrc_target > 0 && c.row_gains)
        fail("--rrc-target scales the step of W after the optimizer; with --row-gains 1 LionAR rebuilds W from its gains and "
             "directions every step, which would undo it: leave one of them out");
    if (c.is_l2_controlled() && (c.center || c.control_embeddings || c.control != ControlScope::rows))
        fail("--center, --control-embeddings and --control apply to lionar, the rotational Lion (named liona before "
             "issue 15); liona is the l2-controlled Lion, without angular control");
    if (!c.is_angular()) return;
    if (c.target_angle == TargetAngle::equilibrium && !(c.weight_decay > 0))
        fail("--target-angle equilibrium (lionar's default): Lion's equilibrium angle needs a weight decay above 0 (-c), "
             "or give --target-angle lr");
    const double peak = target_angle(c.target_angle, peak_lr, c.weight_decay, c.beta1, c.beta2);
    if (!(peak < 1.5))
        fail("-l %g: lionar turns each controlled row by %g radians per step at the peak; the angle must stay below 1.5 "
             "(with --target-angle lr the learning rate is the angle)", double(peak_lr), peak);
}

// ---- checkpoint format of the state: per buffer, u32 name length, the name, u64 count, the floats ----

size_t save_optimizer_state(const Optimizer& optimizer, File& f) {
    const std::vector<StateBuffer> layout = optimizer.state_layout();
    size_t at = f.position();
    std::vector<float> host;
    for (size_t i = 0; i < layout.size(); ++i) {
        const StateBuffer& b = layout[i];
        const uint32_t name_bytes = uint32_t(b.name.size());
        const uint64_t count = b.count;
        f.seek(at);  // every rank writes the same header bytes
        f.write_all(&name_bytes, sizeof(name_bytes));
        f.write_all(b.name.data(), name_bytes);
        f.write_all(&count, sizeof(count));
        const size_t data = at + sizeof(name_bytes) + name_bytes + sizeof(count);
        host.resize(b.end - b.begin);
        optimizer.read_state(i, host.data());
        f.seek(data + b.begin * sizeof(float));
        f.write_all(host.data(), host.size() * sizeof(float));
        at = data + b.count * sizeof(float);
    }
    f.seek(at);
    return at;
}

size_t load_optimizer_state(Optimizer& optimizer, File& f) {
    const std::vector<StateBuffer> layout = optimizer.state_layout();
    const size_t file_size = f.size();
    size_t at = f.position();
    std::vector<float> host;
    for (size_t i = 0; i < layout.size(); ++i) {
        const StateBuffer& want = layout[i];
        if (at == file_size)
            fail("%s: the optimizer state ends after %zu buffers; this run's %s expects '%s' next (the state of another "
                 "optimizer or option set?)", f.path().c_str(), i, optimizer.config().name.c_str(), want.name.c_str());
        f.seek(at);
        uint32_t name_bytes = 0;
        f.read_exact(&name_bytes, sizeof(name_bytes), "an optimizer state buffer's name length");
        if (name_bytes > 256)
            fail("%s: optimizer state buffer %zu: a name of %u bytes; expected the buffer '%s'", f.path().c_str(), i,
                 name_bytes, want.name.c_str());
        std::string name(name_bytes, '\0');
        f.read_exact(name.data(), name_bytes, "an optimizer state buffer's name");
        if (name != want.name)
            fail("%s: optimizer state buffer %zu is '%s', expected '%s' (the state of another optimizer or option set?)",
                 f.path().c_str(), i, name.c_str(), want.name.c_str());
        uint64_t count = 0;
        f.read_exact(&count, sizeof(count), "an optimizer state buffer's size");
        if (count != want.count)
            fail("%s: optimizer state buffer '%s' holds %llu values, this run's optimizer has %zu", f.path().c_str(),
                 name.c_str(), (unsigned long long)count, want.count);
        const size_t data = f.position();
        if (data + count * sizeof(float) > file_size)
            fail("%s: file is truncated: optimizer state buffer '%s' needs %zu bytes, only %zu remain", f.path().c_str(),
                 name.c_str(), size_t(count) * sizeof(float), file_size - data);
        host.resize(want.end - want.begin);
        f.seek(data + want.begin * sizeof(float));
        f.read_exact(host.data(), host.size() * sizeof(float), want.name.c_str());
        optimizer.write_state(i, host.data());
        at = data + count * sizeof(float);
    }
    f.seek(at);
    return at;
}

std::unique_ptr<Optimizer> make_cpu_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors) {
    return make_cpu_optimizer(config, tensors, ParameterShard{}, {});
}

std::unique_ptr<Optimizer> make_cpu_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                              const ParameterShard& shard, SumAcrossRanks sum_across_ranks) {
    if (config.name == "adamw") return std::make_unique<AdamWCpu>(config, tensors, shard);
    if (config.is_lion_family()) return std::make_unique<LionCpu>(config, tensors, shard, std::move(sum_across_ranks));
    fail("--optimizer: unknown optimizer '%s' (available: adamw, lion, liona, lionar)", config.name.c_str());
}

}  // namespace coldstart
