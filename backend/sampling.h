// Text samples from the model during training: ancestral sampling from the softmax, one token at a time.
#pragma once

#include <vector>

#include "backend/backend.h"
#include "common/random.h"

namespace coldstart {

// Index drawn from a probability vector with a uniform coin in [0, 1); rounding leftovers go to the last.
int sample_from(const std::vector<float>& probs, float coin);

// Generates n tokens after a start token (the end-of-text token, as llm.c does).
std::vector<int> generate(Backend& backend, int start_token, int n, Rng& rng);

// probs (V) reshaped for sampling, as nanoGPT's sample.py does with the logits: softmax(logits /
// temperature), that is p^(1/temperature) renormalised, then all but the top_k most likely set to zero
// (0: keep all). temperature > 0; top_k 1 is greedy decoding.
void shape_probs(std::vector<float>& probs, float temperature, int top_k);

// Generates n tokens after the context (at least one token), each drawn from the shaped probabilities.
std::vector<int> generate(Backend& backend, std::vector<int> context, int n, Rng& rng, float temperature, int top_k);

}  // namespace coldstart
