// The global l2 norm of the gradient and the clipping factor derived from it.
#pragma once

#include <cstddef>

namespace coldstart {

// sum(x^2) accumulated in double over fixed blocks that are added in order, so the result has the same
// bits whatever the number of threads (a resumed run on another machine continues identically).
double sum_of_squares(const float* x, size_t n);

// llm.c's clipping: gradients are multiplied by clip / norm when the norm exceeds clip (clip <= 0: off).
inline float clip_scale(float grad_norm, float clip) {
    return clip > 0.0f && grad_norm > clip ? clip / grad_norm : 1.0f;
}

}  // namespace coldstart
