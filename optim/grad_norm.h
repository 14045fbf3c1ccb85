// The global l2 norm of the gradient and the clipping factor derived from it.
#pragma once

#include <cstddef>

#include "optim/step_gate.h"  // clip_scale

namespace coldstart {

// sum(x^2) accumulated in double over fixed blocks that are added in order, so the result has the same
// bits whatever the number of threads (a resumed run on another machine continues identically).
double sum_of_squares(const float* x, size_t n);

}  // namespace coldstart
