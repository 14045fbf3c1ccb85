// The per-step scalars of Lion, LionA and LionAR (METHODS.md section 3), shared by the CPU reference and
// the CUDA kernels so both compute the same angle and step scale from the same sums.
#pragma once

#include <cmath>

#include "optim/optimizer.h"
#include "optim/step_sums.h"  // COLDSTART_HOST_DEVICE

namespace coldstart {

// Inverse bias correction, reading (i): the step is multiplied by 1 - b^t, a built-in exponential ramp
// with a time constant of 1 / (1 - b) steps (b = the momentum's EMA factor).
COLDSTART_HOST_DEVICE inline double step_ramp(InverseBiasCorrection ibc, double b, double t) {
    return ibc == InverseBiasCorrection::step ? 1.0 - pow(b, t) : 1.0;
}

// Lion's equilibrium angle per step under decoupled weight decay (REQ; METHODS.md section 2):
// sqrt(pi/2) * sqrt(2 lr wd) * sqrt((1-b1)^2 + b1^2 (1-b2)/(1+b2)).
COLDSTART_HOST_DEVICE inline double lion_equilibrium_angle(double lr, double wd, double b1, double b2) {
    const double shape = (1 - b1) * (1 - b1) + b1 * b1 * (1 - b2) / (1 + b2);
    return sqrt(3.14159265358979323846 / 2) * sqrt(2 * lr * wd) * sqrt(shape);
}

// LionA's step length: the l2 rule ||lr * u|| = lr * sqrt(C) for a tensor of C elements, whatever the
// number of zeros in the sign u (an entry of u is +-1 or 0, so ||u||^2 = the count of non-zero signs);
// a tensor whose signs are all 0 does not move.
COLDSTART_HOST_DEVICE inline double l2_controlled_step(double lr, double elements, double nonzero_signs) {
    return nonzero_signs > 0 ? lr * sqrt(elements / nonzero_signs) : 0.0;
}

// The angle a controlled tensor's rows turn by in one step, before the RRC correction's scale.
COLDSTART_HOST_DEVICE inline double target_angle(TargetAngle target, double lr, double wd, double b1, double b2) {
    return target == TargetAngle::lr ? lr : lion_equilibrium_angle(lr, wd, b1, b2);
}

// LionAR's RRC correction: the fraction of the gradient's energy that is signal rather than noise, estimated from one
// tensor's ||g_t||^2, <g_t, m_{t-1}> and ||m_{t-1}||^2 (b = the momentum's EMA factor, t = 1-based step).
// Returns NaN where the step gives no estimate (no previous momentum, or no gradient).
//   alignment:  a = <g_t, m^_{t-1}> / ||g_t||^2, m^_{t-1} = m_{t-1} / (1 - b^(t-1)); signal = a.
//   norm ratio: r = ||m^_t||^2 / ||g_t||^2 with m_t = b m_{t-1} + (1-b) g_t expanded from the three sums;
//               pure noise gives r = c, all-equal gradients r = 1, so signal = (r - c) / (1 - c), where
//               c = (1-b)/(1+b), or with inverse bias correction (ii) c_t = (1-b)(1+b^t) / ((1+b)(1-b^t)),
//               the variance factor of a bias-corrected EMA of t noise samples.
COLDSTART_HOST_DEVICE inline double signal_fraction(RrcCorrection estimator, InverseBiasCorrection ibc, double b,
                                                    double t, double g_sq, double g_dot_mprev, double mprev_sq) {
    if (!(g_sq > 0)) return NAN;
    if (estimator == RrcCorrection::alignment) {
        if (t < 2) return NAN;
        return g_dot_mprev / (1.0 - pow(b, t - 1)) / g_sq;
    }
    const double bt = pow(b, t);
    const double m_sq = b * b * mprev_sq + 2 * b * (1 - b) * g_dot_mprev + (1 - b) * (1 - b) * g_sq;
    const double r = m_sq / ((1 - bt) * (1 - bt)) / g_sq;
    const double c = ibc == InverseBiasCorrection::snr ? (1 - b) * (1 + bt) / ((1 + b) * (1 - bt)) : (1 - b) / (1 + b);
    if (!(1 - c > 1e-12)) return NAN;
    return (r - c) / (1 - c);
}

// The RRC correction's step scale from the smoothed signal fraction: k = sqrt(clamp(1 - s, k_min^2, 1)): 1 for pure
// noise, k_min when every gradient agrees. ema_sum and ema_count are the EMA state (see below); before
// the first estimate the scale is 1.
COLDSTART_HOST_DEVICE inline double snr_step_scale(double ema_sum, double ema_count, double ema_factor, double k_min) {
    if (ema_count < 1) return 1.0;
    const double smoothed = ema_sum / (1.0 - pow(ema_factor, ema_count));  // bias-corrected EMA
    const double x = 1.0 - smoothed;
    const double lo = k_min * k_min;
    return sqrt(x < lo ? lo : (x > 1 ? 1 : x));
}

}  // namespace coldstart
