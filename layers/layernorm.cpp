#include "layers/layernorm.h"

#include <algorithm>
#include <cmath>

namespace coldstart::cpu {
namespace {

constexpr float kEps = 1e-5f;

// Two passes (mean, then the mean of squared deviations) rather than E[x^2] - E[x]^2, which cancels
// catastrophically when the mean is large against the spread. The simd reductions keep one partial sum
// per vector lane: a fixed order (deterministic), without waiting on the latency of every add.
void normalise_row(float* out /*C*/, float* mean, float* rstd, const float* x /*C*/, const float* weight /*C*/,
                   const float* bias /*C*/, int C) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < C; ++c) sum += x[c];
    const float m = sum / C;
    float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
    for (int c = 0; c < C; ++c) squares += (x[c] - m) * (x[c] - m);
    const float s = 1.0f / std::sqrt(squares / C + kEps);
#pragma omp simd
    for (int c = 0; c < C; ++c) out[c] = (x[c] - m) * s * weight[c] + bias[c];
    *mean = m;
    *rstd = s;
}

// With xhat = (x - mean) * rstd and g = weight * dout, the gradient through the normalisation is
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
void accumulate_row_dinp(float* dinp /*C*/, const float* dout /*C*/, const float* x /*C*/, const float* weight /*C*/,
                         float mean, float rstd, int C) {
    float g_sum = 0.0f, g_xhat_sum = 0.0f;
#pragma omp simd reduction(+ : g_sum, g_xhat_sum)
    for (int c = 0; c < C; ++c) {
        const float g = weight[c] * dout[c];
        g_sum += g;
        g_xhat_sum += g * (x[c] - mean) * rstd;
    }
    const float g_mean = g_sum / C, g_xhat_mean = g_xhat_sum / C;
#pragma omp simd
    for (int c = 0; c < C; ++c) {
        const float xhat = (x[c] - mean) * rstd;
        dinp[c] += rstd * (weight[c] * dout[c] - g_mean - xhat * g_xhat_mean);
    }
}

}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       size_t N, int C) {
#pragma omp parallel for
    for (size_t n = 0; n < N; ++n) normalise_row(out + n * C, mean + n, rstd + n, inp + n * C, weight, bias, C);
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, size_t N, int C) {
#pragma omp parallel for
    for (size_t n = 0; n < N; ++n)
        accumulate_row_dinp(dinp + n * C, dout + n * C, inp + n * C, weight, mean[n], rstd[n], C);

    constexpr int kChannels = 64;  // whole cache lines per row; C / 64 tasks
#pragma omp parallel for
    for (int c0 = 0; c0 < C; c0 += kChannels) {
        const int c1 = std::min(C, c0 + kChannels);
        for (size_t n = 0; n < N; ++n) {
            const float* dout_row = dout + n * C;
            const float* x = inp + n * C;
#pragma omp simd
            for (int c = c0; c < c1; ++c) {
                dweight[c] += (x[c] - mean[n]) * rstd[n] * dout_row[c];
                dbias[c] += dout_row[c];
            }
        }
    }
}

}  // namespace coldstart::cpu
