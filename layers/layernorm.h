// Layer normalisation over the channels of each position, as GPT-2 applies it before attention, before
// the MLP and at the end (pre-LN): out = (x - mean) * rstd * weight + bias, with the biased variance and
// eps = 1e-5 (PyTorch's defaults). mean and rstd are kept per position for the backward pass.
#pragma once

#include <cstddef>

namespace coldstart::cpu {

void layernorm_forward(float* out /*N,C*/, float* mean /*N*/, float* rstd /*N*/, const float* inp /*N,C*/,
                       const float* weight /*C*/, const float* bias /*C*/, size_t N, int C);

// Accumulates into dinp, dweight and dbias. dinp is parallel over positions; dweight and dbias sum over
// positions, so they are parallel over channel ranges instead (each thread adds the positions in order:
// the same bits for any thread count).
void layernorm_backward(float* dinp /*N,C*/, float* dweight /*C*/, float* dbias /*C*/, const float* dout /*N,C*/,
                        const float* inp /*N,C*/, const float* weight /*C*/, const float* mean /*N*/,
                        const float* rstd /*N*/, size_t N, int C);

}  // namespace coldstart::cpu
