#include "backend/sampling.h"

#include <algorithm>
#include <cmath>

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

void shape_probs(std::vector<float>& probs, float temperature, int top_k) {
    if (probs.empty()) return;
    float cutoff = 0;  // the top_k-th largest probability: smaller ones are dropped
    if (top_k > 0 && size_t(top_k) < probs.size()) {
        std::vector<float> sorted = probs;
        std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<float>());
        cutoff = sorted[size_t(top_k - 1)];
    }
    // In logs relative to the largest, so that p^(1/temperature) neither underflows nor overflows.
    const double top = *std::max_element(probs.begin(), probs.end());
    double sum = 0;
    int kept = 0;
    for (float& p : probs) {
        const bool keep = p > 0 && p >= cutoff && (top_k <= 0 || kept < top_k);
        kept += keep;
        p = keep ? float(std::exp((std::log(double(p)) - std::log(top)) / temperature)) : 0.0f;
        sum += p;
    }
    for (float& p : probs) p = float(p / sum);
}

std::vector<int> generate(Backend& backend, std::vector<int> context, int n, Rng& rng, float temperature, int top_k) {
    const size_t start = context.size();
    std::vector<float> probs;
    for (int i = 0; i < n; ++i) {
        backend.next_token_probs(context.data(), int(context.size()), probs);
        shape_probs(probs, temperature, top_k);
        context.push_back(sample_from(probs, rng.uniform()));
    }
    return std::vector<int>(context.begin() + long(start), context.end());
}

}  // namespace coldstart
