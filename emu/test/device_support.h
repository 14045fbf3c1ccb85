// What the emulator's own tests share: device vectors, and the failure a kernel broken on purpose left.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "emu/internal.h"

namespace emu_test {

inline bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// After a kernel that must fail: the error it left, and a fresh device for the next test.
inline std::string failure_and_reset() {
    const cudaError_t err = cudaDeviceSynchronize();
    const std::string message = err == cudaSuccess ? std::string("(no failure)") : emu::last_failure();
    cudaDeviceReset();
    return message;
}

// n elements of T in device memory, freed with the vector.
template <typename T>
struct DeviceVector {
    T* p = nullptr;
    size_t n;
    explicit DeviceVector(size_t count) : n(count) { REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess); }
    DeviceVector(const std::vector<T>& host) : DeviceVector(host.size()) {
        REQUIRE(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
    }
    ~DeviceVector() { cudaFree(p); }
    std::vector<T> get() const {
        std::vector<T> h(n);
        REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
        return h;
    }
};

}  // namespace emu_test
