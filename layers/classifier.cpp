#include "layers/classifier.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace coldstart::cpu {
namespace {

// A bad target would index outside the row (or silently train on a padded column): that is a bug
// upstream, so it is reported before any row is touched.
void check_targets(const int* targets /*N*/, size_t N, int V, const char* where) {
    for (size_t n = 0; n < N; ++n)
        if (targets[n] < 0 || targets[n] >= V)
            fail("%s: target %d at position %zu is outside the vocabulary [0, %d)", where, targets[n], n, V);
}

// Softmax of row[0, V) in place, padding set to 0; returns logsumexp of the original logits.
float softmax_row(float* row /*Vp*/, int V, int Vp) {
    const float max_logit = *std::max_element(row, row + V);
    // The sum of exp(logit - max) cannot overflow, and its largest term is exactly 1. It is kept in
    // double: over 50k terms an fp32 sum drifts by ~1e-5 relative, the exp calls cost far more anyway.
    double sum = 0.0;
    for (int v = 0; v < V; ++v) {
        row[v] = std::exp(row[v] - max_logit);
        sum += row[v];
    }
    const float inv_sum = float(1.0 / sum);
    for (int v = 0; v < V; ++v) row[v] *= inv_sum;
    std::fill(row + V, row + Vp, 0.0f);
    return max_logit + float(std::log(sum));
}

}  // namespace

void classifier_forward(float* losses, float* logits_to_probs, const int* targets, size_t N, int V, int Vp) {
    if (targets) check_targets(targets, N, V, "classifier_forward");
#pragma omp parallel for
    for (size_t n = 0; n < N; ++n) {
        float* row = logits_to_probs + n * Vp;
        const float target_logit = targets ? row[targets[n]] : 0.0f;  // read before the row is overwritten
        const float logsumexp = softmax_row(row, V, Vp);
        if (targets) losses[n] = logsumexp - target_logit;
    }
}

void classifier_backward(float* probs_to_dlogits, const int* targets, float dloss, size_t N, int V, int Vp) {
    check_targets(targets, N, V, "classifier_backward");
#pragma omp parallel for
    for (size_t n = 0; n < N; ++n) {
        float* row = probs_to_dlogits + n * Vp;
#pragma omp simd
        for (int v = 0; v < V; ++v) row[v] *= dloss;
        row[targets[n]] -= dloss;
        std::fill(row + V, row + Vp, 0.0f);
    }
}

}  // namespace coldstart::cpu
