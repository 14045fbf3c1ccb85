// The residual connection: out = a + b. Its backward passes dout unchanged to both inputs.
#pragma once

#include <cstddef>

namespace coldstart::cpu {

void residual_forward(float* out /*N*/, const float* a /*N*/, const float* b /*N*/, size_t N);

// Accumulates da += dout and db += dout.
void residual_backward(float* da /*N*/, float* db /*N*/, const float* dout /*N*/, size_t N);

}  // namespace coldstart::cpu
