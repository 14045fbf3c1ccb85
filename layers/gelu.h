// GELU with GPT-2's tanh approximation: GELU(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// GPT-2 was trained with this form, so the exact erf GELU would give different logits.
#pragma once

#include <cstddef>

namespace coldstart::cpu {

void gelu_forward(float* out /*N*/, const float* inp /*N*/, size_t N);

// Accumulates dinp += GELU'(inp) * dout.
void gelu_backward(float* dinp /*N*/, const float* inp /*N*/, const float* dout /*N*/, size_t N);

}  // namespace coldstart::cpu
