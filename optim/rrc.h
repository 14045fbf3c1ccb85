// The relative representation change (RRC) of a linear layer, ||dW X|| / ||W X|| over the tokens X of a
// step's last micro-batch (METHODS.md section 2), and direct RRC control (--rrc-target; METHODS.md section 3,
// beyond the paper): the rules both backends share, and the CPU reference of the device's reductions
// (optim/cuda/rrc.cuh). The backends hold the activations and run the products; this file holds the sums.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "optim/optimizer.h"
#include "optim/step_sums.h"  // COLDSTART_HOST_DEVICE

namespace coldstart {

// How a layer's two sums ||A X||^2 (A = dW or W, (out, in); X (tokens, in)) are taken; every backend takes
// them the same way, so that they agree to rounding. By the Gram matrix of the inputs, G = X^T X (in x in):
// ||A X||^2 = <A^T A, G>, which costs tokens * in^2 multiply-adds for G and out * in^2 for each A^T A, where
// the product A X costs tokens * in * out for each A. With the tokens of a training micro-batch far more than
// in, the Gram form is the cheaper one for every layer that does not narrow (qkvw, attprojw, fcw, and the lm
// head, where it is ~50 times cheaper at GPT-2's vocabulary); fcprojw (4C in, C out) takes the product, 4 times
// cheaper, and ||W X|| from its output, which the forward pass keeps.
inline bool rrc_by_gram(int in_features, int out_features) { return in_features <= out_features; }

// The bias whose sum the kept output of the layer whose weight is `weight` includes (NUM_PARAM_TENSORS for
// the lm head, which has none).
ParamTensor linear_bias(ParamTensor weight);

// ||Y - 1 bias^T||^2 for a layer's kept output Y (N, out) and its bias (out): ||W X||^2, summed per token
// (row) in double and then over the tokens in order (the device's order of operations, optim/cuda/rrc.cuh).
double sum_of_squares_without_bias(const float* y, const float* bias, size_t N, int out);

// ---- direct RRC control (--rrc-target) ----
// After the optimizer has computed a step dW, each controlled layer's step is multiplied by kappa so that the
// step taken has the target RRC: W_{t+1} = W_t + kappa dW. kappa comes from this step's own RRC, at the cost of
// one product per layer (the RRC's), not from the previous measured step's: the RRC moves fastest at the start of
// training, which is where warmup matters and where a lagging controller would take the very steps it exists for
// blind (the first step's RRC is the largest of a run). So the control is exact, needs no --metrics-every, and
// keeps no state (checkpoints are unchanged).
// The tensors under it: for liona every linear layer's weight (is_linear_layer: qkvw, attprojw, fcw, fcprojw
// and the tied lm head wte), for lionar those of them under angular control (wte only with
// --control-embeddings 1); none for other optimizers. (tensors.size()) flags.
std::vector<bool> rrc_controlled(const OptimizerConfig& c, const std::vector<TensorSlice>& tensors);

// The RRC a controlled layer's step is scaled to at 1-based step t: --rrc-target at the peak learning rate,
// following the schedule (lr / peak_lr: the warmup and cooldown apply to it as to every step size) and, with
// --inverse-bias-correction step, its ramp 1 - beta2^t. 0 without direct control.
double rrc_target_at(const OptimizerConfig& c, double lr, double peak_lr, int64_t t);

// The factor a controlled layer's update is multiplied by so that its RRC becomes `target`: the RRC of
// kappa dW is kappa times that of dW. 1 where the RRC is undefined (||W X|| = 0) or the step is empty.
COLDSTART_HOST_DEVICE inline double rrc_step_scale(double target, double change_sq, double output_sq) {
    return change_sq > 0 && output_sq > 0 ? target * sqrt(output_sq / change_sq) : 1.0;
}

// w = before + kappa (w - before) over n elements, one fused multiply-add each (as on the device).
void scale_step(float* w, const float* before, size_t n, float kappa);

}  // namespace coldstart
