// Whether a step's update is taken, and by how much its gradient is scaled (clipping): decided from the
// step's mean loss and gradient norm where those are computed. The CPU backend calls step_verdict on
// the host; the CUDA backend calls the same function in a one-thread kernel after the norm's kernels, so
// that the update never waits for the host (optim/cuda/grad_norm.cuh). Both give the training loop the
// same verdict for the same loss and norm.
#pragma once

#include <cmath>
#include <cstdint>

#include "optim/step_sums.h"  // COLDSTART_HOST_DEVICE

namespace coldstart {

enum class StepVerdict : int {
    taken = 0,
    nonfinite = 1,   // the loss or the gradient norm is not finite
    loss_spike = 2,  // -sl: the loss's z-score over recent steps is above the limit
    norm_spike = 3,  // -sg: the gradient norm's z-score is above the limit
};
// The log's "skipped" text; nullptr for a step that was taken.
inline const char* verdict_reason(StepVerdict v) {
    switch (v) {
        case StepVerdict::nonfinite: return "non-finite loss or gradient norm";
        case StepVerdict::loss_spike: return "loss spike";
        case StepVerdict::norm_spike: return "gradient-norm spike";
        default: return nullptr;
    }
}

// A z-score limit from the recent accepted values (optim/outlier.h): a value x spikes when
// (x - mean) / std > z. Inactive (never spikes) when off or before the window has filled.
struct SpikeLimit {
    bool active = false;
    double mean = 0, std = 0, z = 0;
};

// What the training loop decides before the step's numbers exist.
struct StepPlan {
    float lr;           // the scheduled learning rate
    int64_t t;          // the optimizer's 1-based step, if this update is taken
    float grad_clip;    // clip the gradient norm to this (llm.c's rule); 0: off
    bool poison_loss;   // --inject-nonfinite: the step's loss counts as NaN
    SpikeLimit loss, norm;  // -sl, -sg
    float rrc_target = 0;   // direct RRC control's target for this step (optim/rrc.h, rrc_target_at); 0: off
    StepPlan(float lr_, int64_t t_, float grad_clip_ = 0, bool poison_loss_ = false, SpikeLimit loss_ = {},
             SpikeLimit norm_ = {})
        : lr(lr_), t(t_), grad_clip(grad_clip_), poison_loss(poison_loss_), loss(loss_), norm(norm_) {}
};

// What the step was: the mean loss over its micro-batches and processes, the gradient norm before
// clipping, and the verdict.
struct StepReport {
    double loss = 0;
    float norm = 0;
    StepVerdict verdict = StepVerdict::taken;
};

// x - x is 0 for a finite x and NaN for an infinite or NaN one, on host and device alike.
COLDSTART_HOST_DEVICE inline bool finite_value(double x) { return x - x == 0; }

COLDSTART_HOST_DEVICE inline bool spikes(const SpikeLimit& limit, double x) {
    return limit.active && (x - limit.mean) / limit.std > limit.z;
}

COLDSTART_HOST_DEVICE inline StepVerdict step_verdict(const StepPlan& plan, double loss, float norm) {
    if (plan.poison_loss || !finite_value(loss) || !finite_value(norm)) return StepVerdict::nonfinite;
    if (spikes(plan.loss, loss)) return StepVerdict::loss_spike;
    if (spikes(plan.norm, norm)) return StepVerdict::norm_spike;
    return StepVerdict::taken;
}

// llm.c's clipping: gradients are multiplied by clip / norm when the norm exceeds clip (clip <= 0: off).
COLDSTART_HOST_DEVICE inline float clip_scale(float grad_norm, float clip) {
    return clip > 0.0f && grad_norm > clip ? clip / grad_norm : 1.0f;
}

}  // namespace coldstart
