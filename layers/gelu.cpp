#include "layers/gelu.h"

#include <cmath>

namespace coldstart::cpu {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

}  // namespace

void gelu_forward(float* out, const float* inp, size_t N) {
#pragma omp parallel for
    for (size_t i = 0; i < N; ++i) {
        const float x = inp[i];
        out[i] = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x)));
    }
}

// d/dx [0.5 x (1 + tanh(u))] = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) du/dx,
// with u = sqrt(2/pi) (x + 0.044715 x^3) and du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
#pragma omp parallel for
    for (size_t i = 0; i < N; ++i) {
        const float x = inp[i];
        const float tanh_u = std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x));
        const float du_dx = kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
        const float local_grad = 0.5f * (1.0f + tanh_u) + 0.5f * x * (1.0f - tanh_u * tanh_u) * du_dx;
        dinp[i] += local_grad * dout[i];
    }
}

}  // namespace coldstart::cpu
