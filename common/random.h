// A small deterministic random number generator (xoshiro256** seeded by splitmix64).
//
// Why not <random>: std::normal_distribution and friends differ between standard libraries, and the
// trainer promises the same bits for the same seed everywhere (init, shuffling, sampling, resume). The
// whole state is four words, so checkpoints store it as is.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace coldstart {

class Rng {
public:
    explicit Rng(uint64_t seed) { reseed(seed); }

    void reseed(uint64_t seed) {
        for (auto& word : state_) word = splitmix64(seed);
    }

    uint64_t next_u64() {
        const uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    // Uniform in [0, 1) with 24 random bits: exact in fp32.
    float uniform() { return float(next_u64() >> 40) * (1.0f / 16777216.0f); }

    // Uniform integer in [0, n) (n > 0); the modulo bias is below 2^-40 for any n < 2^24.
    uint64_t below(uint64_t n) { return next_u64() % n; }

    // Standard normal by Box-Muller in double precision (one value per call, for simplicity).
    float normal() {
        const double u1 = (double(next_u64() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]: log is finite
        const double u2 = double(next_u64() >> 11) * 0x1.0p-53;
        return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }

    using State = std::array<uint64_t, 4>;
    State state() const { return state_; }
    void set_state(const State& s) { state_ = s; }

    static uint64_t splitmix64(uint64_t& x) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    State state_{};
};

}  // namespace coldstart
