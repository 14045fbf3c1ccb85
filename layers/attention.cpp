#include "layers/attention.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "common/error.h"

namespace coldstart::cpu {
namespace {

// Where head h's query, key and value of one token start inside qkv (or dqkv), and its output slice.
struct HeadLayout {
    int T, C, hs;
    size_t query(size_t b, size_t t, int h) const { return (b * T + t) * 3 * C + size_t(h) * hs; }
    size_t key(size_t b, size_t t, int h) const { return query(b, t, h) + C; }
    size_t value(size_t b, size_t t, int h) const { return query(b, t, h) + 2 * C; }
    size_t output(size_t b, size_t t, int h) const { return (b * T + t) * C + size_t(h) * hs; }
};

int head_size(int C, int NH) {
    if (NH <= 0 || C % NH != 0) fail("attention: %d channels do not split into %d heads", C, NH);
    return C / NH;
}

// The simd reduction lets the compiler keep one partial sum per vector lane (a fixed order, so still
// deterministic); a single scalar sum would wait on the latency of every add.
float dot(const float* a, const float* b, int n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

// y += alpha * x
void axpy(float* y, float alpha, const float* x, int n) {
#pragma omp simd
    for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// One query position of one head: fills att_row (T floats) and the head's slice of the output.
void attend(float* out /*hs*/, float* att_row /*T*/, const float* qkv, const HeadLayout& L, size_t b, int t, int h) {
    const float scale = 1.0f / std::sqrt(float(L.hs));
    const float* q = qkv + L.query(b, t, h);
    float max_score = -INFINITY;
    for (int t2 = 0; t2 <= t; ++t2) {
        att_row[t2] = dot(q, qkv + L.key(b, t2, h), L.hs) * scale;
        max_score = std::max(max_score, att_row[t2]);
    }
    float sum = 0.0f;  // of exp(score - max): no overflow, and the largest term is exactly 1
    for (int t2 = 0; t2 <= t; ++t2) {
        att_row[t2] = std::exp(att_row[t2] - max_score);
        sum += att_row[t2];
    }
    const float inv_sum = 1.0f / sum;
    for (int t2 = 0; t2 <= t; ++t2) att_row[t2] *= inv_sum;
    std::fill(att_row + t + 1, att_row + L.T, 0.0f);

    std::fill(out, out + L.hs, 0.0f);
    for (int t2 = 0; t2 <= t; ++t2) axpy(out, att_row[t2], qkv + L.value(b, t2, h), L.hs);
}

// The backward pass of attend for one query position, accumulating into dqkv. datt and dscore are
// scratch rows of T floats.
void attend_backward(float* dqkv, float* datt, float* dscore, const float* dout /*hs*/, const float* att_row /*T*/,
                     const float* qkv, const HeadLayout& L, size_t b, int t, int h) {
    const float scale = 1.0f / std::sqrt(float(L.hs));
    // out = sum att[t2] v[t2]
    for (int t2 = 0; t2 <= t; ++t2) {
        datt[t2] = dot(dout, qkv + L.value(b, t2, h), L.hs);
        axpy(dqkv + L.value(b, t2, h), att_row[t2], dout, L.hs);
    }
    // softmax: dscore = att * (datt - sum(att * datt))
    const float weighted = dot(att_row, datt, t + 1);
    for (int t2 = 0; t2 <= t; ++t2) dscore[t2] = att_row[t2] * (datt[t2] - weighted) * scale;
    // score = scale * q . k[t2]  (the scale is already folded into dscore)
    const float* q = qkv + L.query(b, t, h);
    float* dq = dqkv + L.query(b, t, h);
    for (int t2 = 0; t2 <= t; ++t2) {
        axpy(dq, dscore[t2], qkv + L.key(b, t2, h), L.hs);
        axpy(dqkv + L.key(b, t2, h), dscore[t2], q, L.hs);
    }
}

}  // namespace

void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
    const HeadLayout layout{T, C, head_size(C, NH)};
    const size_t rows = size_t(B) * NH * T;  // one softmax row per (b, h, t)
#pragma omp parallel for schedule(dynamic, 16)
    for (size_t row = 0; row < rows; ++row) {
        const size_t b = row / (size_t(NH) * T);
        const int h = int(row / T % NH), t = int(row % T);
        attend(out + layout.output(b, t, h), att + row * T, qkv, layout, b, t, h);
    }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B, int T, int C,
                        int NH) {
    const HeadLayout layout{T, C, head_size(C, NH)};
#pragma omp parallel
    {
        std::vector<float> datt(T), dscore(T);
#pragma omp for schedule(dynamic)
        for (int pair = 0; pair < B * NH; ++pair) {
            const size_t b = size_t(pair / NH);
            const int h = pair % NH;
            for (int t = 0; t < T; ++t) {
                const float* att_row = att + (size_t(pair) * T + t) * T;
                attend_backward(dqkv, datt.data(), dscore.data(), dout + layout.output(b, t, h), att_row, qkv,
                                layout, b, t, h);
            }
        }
    }
}

}  // namespace coldstart::cpu
