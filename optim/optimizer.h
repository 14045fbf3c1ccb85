// Folder optim/: the optimizers behind this interface, each with a CPU reference (here and beside) and
// CUDA kernels (optim/cuda/); schedules, clipping, the update-size metrics. May include model/ and
// common/ (optim/cuda/ also common/cuda/), never layers/ (tools/check_includes.py).
//
// The optimizer interface: one step over the flat parameter buffer, tensor by tensor.
//
// Each optimizer (AdamW and its variant without momentum bias correction, Lion, LionA, LionAR; the
// formulas are in ../shared/docs/METHODS.md section 3) implements this once for the CPU reference and
// once as CUDA kernels; the training loop only ever sees this interface, so swapping the optimizer is a
// flag. Tensors come from parameter_tensors() (which are matrices, their rows) and tensor_roles() below
// (which take weight decay, which are under angular control, whose update norm is held).
//
// A measured step (--metrics-every) also asks the step for the sums the update-size metrics are made of
// (TensorStepSums): the optimizer reads W, g and its momentum and writes the update anyway, so it emits
// them as it goes instead of a second pass over the weights.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/gpt2_config.h"

namespace coldstart {

class File;

enum class InverseBiasCorrection { none, step, snr };  // readings: none, (i) and (ii) of METHODS.md
enum class ControlScope { rows, tensor };               // LionAR: per row (neuron) or per tensor
enum class AngleNorm { strict, smoothed };              // divide the update by its norm, or by an EMA of it
enum class TargetAngle { lr, equilibrium };             // angle per step = lr, or Lion's equilibrium angle
enum class RrcCorrection { none, alignment, norm_ratio };  // LionAR's step scale from the gradient's SNR: off, or its estimator

struct OptimizerConfig {
    std::string name = "adamw";  // adamw | lion | liona (l2-controlled Lion) | lionar (rotational Lion)
    float beta1 = 0.9f;          // adamw: first moment; lion family: interpolation of the update direction
    float beta2 = 0.95f;         // adamw: second moment; lion family: the momentum's EMA factor
    float eps = 1e-8f;           // adamw
    float weight_decay = 0.0f;   // decoupled; on matrices only, never on controlled tensors
    bool bias_correction = true; // adamw: divide the first moment by 1 - beta1^t
    InverseBiasCorrection inverse_bias_correction = InverseBiasCorrection::none;
    // LionAR (the rotational wrapper of REQ around Lion); the defaults follow the authors' wrapper.
    ControlScope control = ControlScope::rows;
    bool control_embeddings = false;  // also control wte and wpe (else they take plain Lion steps)
    bool center = false;              // centre controlled rows at the start and each update after
    AngleNorm angle_norm = AngleNorm::smoothed;
    float norm_ema = 0.9f;            // rho of the smoothed normalisation
    TargetAngle target_angle = TargetAngle::equilibrium;
    RrcCorrection rrc_correction = RrcCorrection::none;
    float k_min = 0.1f;               // the RRC correction's smallest step scale
    float snr_ema = 0.9f;             // the RRC correction's EMA factor of the signal-fraction estimate
    bool row_gains = false;           // a learnable gain per controlled row
    // Direct RRC control (liona, lionar; optim/rrc.h): each controlled linear layer's step is scaled so that
    // its RRC equals this at the peak learning rate (the schedule scales it); 0: off.
    float rrc_target = 0.0f;

    bool is_lion_family() const { return name == "lion" || name == "liona" || name == "lionar"; }
    bool is_angular() const { return name == "lionar"; }
    bool is_l2_controlled() const { return name == "liona"; }
    bool has_rrc_correction() const { return is_angular() && rrc_correction != RrcCorrection::none; }
    // The EMA factor of the momentum m (the one whose bias correction is 1 - b^t).
    float momentum_beta() const { return name == "adamw" ? beta1 : beta2; }
};

// How one tensor is stepped: plainly (the base optimizer's elementwise update, with weight decay when
// `decay`; LionA rescales it to its l2 rule), or under angular control (LionAR: norm held, turned by the
// target angle).
struct TensorRole {
    bool decay;       // takes decoupled weight decay
    bool controlled;  // under angular control
};
std::vector<TensorRole> tensor_roles(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors);
// The startup table: the optimizer's settings and, per kind of tensor, its shape, count and step.
std::string describe_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors);

struct StepContext {
    float lr;          // the scheduled learning rate; for LionAR also the basis of the target angle
    float grad_scale;  // multiplies every gradient before use (gradient clipping)
    int64_t t;         // 1-based count of updates taken, for bias corrections
    // Direct RRC control (OptimizerConfig::rrc_target): the RRC this step's controlled layers are scaled to,
    // rrc_target_at() of this step (optim/rrc.h); unused without it.
    float rrc_target = 0.0f;
};

// Per tensor, what one step produces beside the update, in double. W = W_t (before), d = W_{t+1} - W_t
// as stored (the difference of the two fp32 values), g = the gradient after clipping, m = momentum.
// optim/update_metrics.h turns these into the logged measures.
struct TensorStepSums {
    double w_sq = 0;          // ||W||^2
    double d_sq = 0;          // ||d||^2
    double w_dot_d = 0;       // <W, d>
    double g_sq = 0;          // ||g||^2
    double g_dot_mprev = 0;   // <g, m_{t-1}>
    double mprev_sq = 0;      // ||m_{t-1}||^2
    double m_sq = 0;          // ||m_t||^2
    double row_angle_sq = 0;  // matrices: sum over rows with ||w_r|| > 0 of angle(w_r, w_r + d_r)^2
    double rows = 0;          // the number of rows in that sum
    double snr_scale = 0;     // LionAR's RRC correction: the step scale k_t, from the rank holding the tensor's first row (0 elsewhere)
};

// What a measured step asks for besides the update; null members are not computed. The step sets every
// entry of sums (a tensor this rank holds no rows of gets zeros), on every backend: the caller never
// clears them, and a buffer reused from an earlier step holds only this step's sums.
struct StepOutputs {
    TensorStepSums* sums = nullptr;  // (number of tensors)
    float* update = nullptr;         // (ParamLayout.total) receives W_{t+1} - W_t
};

// One buffer of an optimizer's state (moments, row norms, EMAs), as checkpoints store it: `count` values
// in a layout that does not depend on the number of ranks, of which this optimizer (one rank's shard,
// with ZeRO-1) holds [begin, end). Values that several ranks need (a tensor's EMAs when its rows are
// spread over ranks) are held by each of them, alike.
struct StateBuffer {
    std::string name;
    size_t count;       // fp32 values in the whole buffer
    size_t begin, end;  // the part this optimizer holds
};

class Optimizer {
public:
    virtual ~Optimizer() = default;
    virtual const OptimizerConfig& config() const = 0;
    // params, grads: (ParamLayout.total) flat buffers in the memory of the backend that owns them.
    virtual void step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out = {}) = 0;

    // The state, as named fp32 buffers in a fixed order, copied to and from host memory. The CPU and
    // CUDA versions of an optimizer have the same layout, so a checkpoint resumes on either, and on any
    // number of ranks.
    virtual std::vector<StateBuffer> state_layout() const = 0;
    virtual void read_state(size_t index, float* host) const = 0;   // (end - begin of state_layout()[index])
    virtual void write_state(size_t index, const float* host) = 0;  // (end - begin of state_layout()[index])
};

// Checkpoint I/O of any optimizer's state, from where f stands: per buffer its name, its count and its
// values. Each rank writes (and reads) the headers and the part it holds, at offsets that follow from the
// layout alone, so the ranks of a run fill one file together and any number of ranks reads it back. The
// reader names the file, the buffer and both sizes on any mismatch. Returns the offset after the state.
size_t save_optimizer_state(const Optimizer& optimizer, File& f);
size_t load_optimizer_state(Optimizer& optimizer, File& f);

// Checks a configuration for contradictions (e.g. the equilibrium angle without weight decay) with
// messages that name the flags; peak_lr is the schedule's largest learning rate.
void validate_optimizer_config(const OptimizerConfig& config, float peak_lr);

// Sums per-tensor statistics over the ranks whose shards share the tensors (LionAR's signal estimate,
// LionA's count of non-zero signs),
// in place; every rank calls it with the same n. Without it (one process) nothing is summed.
using SumAcrossRanks = std::function<void(double* values, size_t n)>;

struct ParameterShard;

// The CPU reference implementation of the optimizer named in config.name, for the shard of the
// parameters it steps (optim/partition.h; all of them by default).
std::unique_ptr<Optimizer> make_cpu_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors);
std::unique_ptr<Optimizer> make_cpu_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                              const ParameterShard& shard, SumAcrossRanks sum_across_ranks);

}  // namespace coldstart
