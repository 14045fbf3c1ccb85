// Softmax cross-entropy over GPT-2's padded vocabulary: the logits rows are Vp wide (a multiple of 64
// or 128, for fast kernels), but only the first V columns are real tokens. Padded columns never take
// part in the softmax and get probability and gradient 0.
//
// Both directions work in place on the logits buffer (N x 50304 floats is the largest activation), as
// llm.c does: logits -> probabilities -> gradients of the logits.
#pragma once

#include <cstddef>

namespace coldstart::cpu {

// Turns each row of logits into softmax probabilities over its first V columns (padded columns set to
// 0) and, when targets is given, writes losses[n] = logsumexp(logits[n]) - logits[n, targets[n]],
// computed from the max-subtracted sum, which stays precise where -log(prob) would underflow.
// losses may be nullptr only when targets is. Throws coldstart::Error for a target outside [0, V).
void classifier_forward(float* losses /*N, or nullptr when targets is nullptr*/, float* logits_to_probs /*N,Vp*/,
                        const int* targets /*N or nullptr*/, size_t N, int V, int Vp);

// Overwrites the probabilities with the gradient of the loss with respect to the logits:
// dloss * (probs - onehot(target)), 0 in the padded columns. This is where backward starts, so it does
// not accumulate. dloss is d(total loss)/d(each position's loss), e.g. 1 / (N * grad_accum_steps).
// Throws coldstart::Error for a target outside [0, V).
void classifier_backward(float* probs_to_dlogits /*N,Vp*/, const int* targets /*N*/, float dloss, size_t N, int V,
                         int Vp);

}  // namespace coldstart::cpu
