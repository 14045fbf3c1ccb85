// Text samples from the model during training: ancestral sampling from the softmax, one token at a time.
#pragma once

#include <vector>

#include "common/random.h"
#include "layers/backend.h"

namespace coldstart {

// Index drawn from a probability vector with a uniform coin in [0, 1); rounding leftovers go to the last.
int sample_from(const std::vector<float>& probs, float coin);

// Generates n tokens after a start token (the end-of-text token, as llm.c does).
std::vector<int> generate(Backend& backend, int start_token, int n, Rng& rng);

}  // namespace coldstart
