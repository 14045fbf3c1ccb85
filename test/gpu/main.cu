// The doctest runner of the GPU suite. Like the CPU suite's it ends with "N passed, M failed". Without
// a usable GPU it says why, prints "0 passed, 0 failed" and fails (exit 1), unless
// COLDSTART_ALLOW_NO_GPU=1 (make test-gpu ALLOW_NO_GPU=1) says that a machine without one is expected:
// a GPU machine whose driver is broken must never look green.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "test/doctest_counts.h"

int main(int argc, char** argv) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        const char* allow = std::getenv("COLDSTART_ALLOW_NO_GPU");
        const bool allowed = allow && std::strcmp(allow, "1") == 0;
        std::printf("test-gpu: no usable CUDA GPU (%s); no GPU test ran.%s\n",
                    err != cudaSuccess ? cudaGetErrorString(err) : "no device found",
                    allowed ? " ALLOW_NO_GPU=1: not a failure." : " Failing: on a machine without a GPU run make test-gpu ALLOW_NO_GPU=1.");
        std::printf("0 passed, 0 failed\n");
        return allowed ? 0 : 1;
    }
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    std::printf("test-gpu: %s (compute capability %d.%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    return doctest_counts::run(argc, argv);
}
