// Update-size measurements (METHODS.md section 2): what a measured step (--metrics-every) logs per tensor,
// computed from the sums the optimizer step emits (TensorStepSums) and, for the linear layers, the
// relative representation change (RRC) on the step's own inputs. The README documents every field.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "optim/optimizer.h"

namespace coldstart {

// The linear layers whose RRC is measured: each layer's qkvw, attprojw, fcw, fcprojw, and wte as the tied
// lm head. Their inputs X: ln1, atty, ln2, the GELU output, and the final layernorm's output.
bool is_linear_layer(ParamTensor kind);

// RRC sums of one linear layer: ||(W_{t+1} - W_t) X||^2 and ||W_t X||^2 over the tokens of the step's
// last micro-batch (the activations kept for the backward pass; the bias is not part of W X).
struct RrcSums {
    size_t tensor;     // index into parameter_tensors()
    double change_sq;
    double output_sq;
};

// What the backend measures on a measured step.
struct StepMeasurement {
    bool with_rrc = false;                // in: also the RRC of the linear layers
    std::vector<TensorStepSums> tensors;  // out: per tensor of parameter_tensors()
    std::vector<RrcSums> rrc;             // out: per linear layer, with_rrc only
};

// The gradient noise scale (McCandlish et al. 2018) from the squared norms of a small-batch gradient
// (b tokens) and the full step's (big tokens); in tokens. NaN where the estimate of |G|^2 is not positive.
double gradient_noise_scale(double small_sq, double small_tokens, double big_sq, double big_tokens);

struct NoiseScaleSums {
    double small_sq = 0, small_tokens = 0, big_sq = 0, big_tokens = 0;  // with gradient accumulation only
};

// The log record of type "metrics" for the update of step `step` (the model saved at step -> step + 1).
// t is the optimizer's 1-based update count (the momentum ratio is bias-corrected with it).
nlohmann::json metrics_record(int64_t step, float lr, int64_t t, const StepMeasurement& m,
                              const std::vector<TensorSlice>& tensors, const OptimizerConfig& opt,
                              const NoiseScaleSums* noise);

// One console line a person can read: the global update size, and the largest angle and RRC with their layer.
std::string metrics_summary(const nlohmann::json& record);

}  // namespace coldstart
