// Helpers of the GPU suite: device buffers that start poisoned, host <-> device copies through the
// element type, random data already rounded to that type, and the tolerance of each precision.
//
// Tolerances (relative l2 error ||gpu - cpu|| / ||cpu||). fp32: near 1e-5, as the CPU suite: both
// sides round in fp32, in different orders. bf16: inputs are rounded to bf16 before either side sees
// them, so what remains is the GPU rounding its outputs and intermediates to bf16 (unit round-off
// 2^-9 = 2e-3, about 1e-3 in l2 over many elements) a few times in a row: 1e-2.
#pragma once

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/cuda/common.cuh"
#include "common/random.h"
#include "test/test_util.h"

namespace gpu_test {

using coldstart::cuda::bf16;
using Floats = std::vector<float>;

template <typename T> constexpr double tolerance();
template <> constexpr double tolerance<float>() { return 1e-5; }
template <> constexpr double tolerance<bf16>() { return 1e-2; }
template <typename T> const char* type_name();
template <> inline const char* type_name<float>() { return "fp32"; }
template <> inline const char* type_name<bf16>() { return "bf16"; }

// What a value becomes when stored as T.
template <typename T>
float round_to(float x) {
    return coldstart::cuda::to_float(coldstart::cuda::from_float<T>(x));
}

template <typename T>
Floats random_floats(coldstart::Rng& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
    Floats v(n);
    for (float& x : v) x = round_to<T>(lo + (hi - lo) * rng.uniform());
    return v;
}

inline std::vector<int> random_ints(coldstart::Rng& rng, size_t n, int below) {
    std::vector<int> v(n);
    for (int& x : v) x = int(rng.below(uint64_t(below)));
    return v;
}

// A device buffer of n elements of U, filled with 0xFF bytes (NaN for floats and bf16) when made
// and by poison(), so that an element no kernel wrote shows up as NaN (relative_error: infinity).
template <typename U>
class Buffer {
public:
    explicit Buffer(size_t n) : n_(n) {
        REQUIRE(cudaMalloc(&p_, (n ? n : 1) * sizeof(U)) == cudaSuccess);
        poison();
    }
    ~Buffer() { cudaFree(p_); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    U* get() const { return p_; }
    operator U*() const { return p_; }
    size_t size() const { return n_; }
    void poison() { REQUIRE(cudaMemset(p_, 0xFF, n_ * sizeof(U)) == cudaSuccess); }

    // From floats, rounded to U (U = float, bf16); or raw for ints.
    void upload(const std::vector<float>& host) {
        REQUIRE(host.size() == n_);
        std::vector<U> staged(n_);
        for (size_t i = 0; i < n_; ++i) staged[i] = coldstart::cuda::from_float<U>(host[i]);
        REQUIRE(cudaMemcpy(p_, staged.data(), n_ * sizeof(U), cudaMemcpyHostToDevice) == cudaSuccess);
    }
    void upload_raw(const std::vector<U>& host) {
        REQUIRE(host.size() == n_);
        REQUIRE(cudaMemcpy(p_, host.data(), n_ * sizeof(U), cudaMemcpyHostToDevice) == cudaSuccess);
    }
    std::vector<float> download() const {
        std::vector<U> staged(n_);
        sync();
        REQUIRE(cudaMemcpy(staged.data(), p_, n_ * sizeof(U), cudaMemcpyDeviceToHost) == cudaSuccess);
        std::vector<float> host(n_);
        for (size_t i = 0; i < n_; ++i) host[i] = coldstart::cuda::to_float(staged[i]);
        return host;
    }
    std::vector<U> download_raw() const {
        std::vector<U> host(n_);
        sync();
        REQUIRE(cudaMemcpy(host.data(), p_, n_ * sizeof(U), cudaMemcpyDeviceToHost) == cudaSuccess);
        return host;
    }
    static void sync() {
        const cudaError_t err = cudaDeviceSynchronize();
        REQUIRE_MESSAGE(err == cudaSuccess, "a kernel failed: " << cudaGetErrorString(err));
    }

private:
    U* p_ = nullptr;
    size_t n_;
};

// The CUDA trainer binary the end-to-end tests drive: ./train_gpt2, or COLDSTART_TRAINER (the emulated
// device's suite runs ./train_gpt2_emu).
inline std::string cuda_trainer() {
    const char* t = std::getenv("COLDSTART_TRAINER");
    return t && *t ? t : "./train_gpt2";
}

inline double rel(const Floats& got, const Floats& expected) { return test_util::relative_error(got, expected); }

inline bool same_bits(const Floats& a, const Floats& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace gpu_test
