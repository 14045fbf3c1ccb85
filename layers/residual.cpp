#include "layers/residual.h"

namespace coldstart::cpu {

void residual_forward(float* out, const float* a, const float* b, size_t N) {
#pragma omp parallel for simd
    for (size_t i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

void residual_backward(float* da, float* db, const float* dout, size_t N) {
#pragma omp parallel for simd
    for (size_t i = 0; i < N; ++i) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

}  // namespace coldstart::cpu
