// The global l2 norm of the gradient and the clipping factor derived from it.
#pragma once

#include <cstddef>

#include "optim/step_gate.h"  // clip_scale

namespace coldstart {

// sum(a * b) accumulated in double over fixed blocks that are added in order, so the result has the same
// bits whatever the number of threads (a resumed run on another machine continues identically). Also the
// RRC's Gram form <A^T A, G> (optim/rrc.h).
double dot_product(const float* a, const float* b, size_t n);

// sum(x^2), as dot_product(x, x, n).
inline double sum_of_squares(const float* x, size_t n) { return dot_product(x, x, n); }

}  // namespace coldstart
