#include "layers/sampling.h"

namespace coldstart {

int sample_from(const std::vector<float>& probs, float coin) {
    float cdf = 0.0f;
    for (size_t i = 0; i < probs.size(); ++i) {
        cdf += probs[i];
        if (coin < cdf) return int(i);
    }
    return int(probs.size()) - 1;
}

std::vector<int> generate(Backend& backend, int start_token, int n, Rng& rng) {
    std::vector<int> tokens = {start_token};
    std::vector<float> probs;
    for (int i = 0; i < n; ++i) {
        backend.next_token_probs(tokens.data(), int(tokens.size()), probs);
        tokens.push_back(sample_from(probs, rng.uniform()));
    }
    return std::vector<int>(tokens.begin() + 1, tokens.end());
}

}  // namespace coldstart
