#include "common/cuda/common.cuh"

#include <nvtx3/nvToolsExt.h>

#include <cstdio>
#include <string>

#include "common/error.h"

namespace coldstart::cuda {

static const char* cuda_hint(cudaError_t err) {
    switch (err) {
        case cudaErrorMemoryAllocation:
            return "out of GPU memory: try a smaller -b, or -r 2 to recompute activations";
        case cudaErrorInsufficientDriver:
            return "the NVIDIA driver is older than this CUDA runtime: update the driver or build with an older toolkit";
        case cudaErrorNoDevice:
            return "no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES), or use --device cpu";
        case cudaErrorNoKernelImageForDevice:
        case cudaErrorUnsupportedPtxVersion:
            return "the binary has no code for this GPU: rebuild with make GPU_ARCHS=<its compute capability, e.g. 90>";
        case cudaErrorInvalidConfiguration:
        case cudaErrorInvalidValue:
            return "a kernel was launched with an impossible shape: a bug; the call above names it";
        default:
            return "an earlier kernel may have failed: rerun with CUDA_LAUNCH_BLOCKING=1 or under compute-sanitizer "
                   "(make sanitize-gpu) to find it";
    }
}

void throw_cuda_error(const char* call, cudaError_t err, const char* file, int line) {
    fail("%s failed: %s (%s) at %s:%d; %s", call, cudaGetErrorString(err), cudaGetErrorName(err), file, line,
         cuda_hint(err));
}

void throw_library_error(const char* library, const char* call, int status, const char* reason, const char* hint,
                         const char* file, int line) {
    fail("%s call %s failed with status %d (%s) at %s:%d; %s", library, call, status, reason, file, line, hint);
}

NvtxRange::NvtxRange(const char* name) { nvtxRangePushA(name); }
NvtxRange::NvtxRange(const char* name, int index) { nvtxRangePushA((std::string(name) + " " + std::to_string(index)).c_str()); }
NvtxRange::~NvtxRange() { nvtxRangePop(); }

}  // namespace coldstart::cuda

namespace coldstart::cuda {

DeviceMemory device_alloc(size_t bytes, const char* what) {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err == cudaErrorMemoryAllocation) {
        size_t free_bytes = 0, total_bytes = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_bytes, &total_bytes);
        fail("out of GPU memory allocating %.1f MiB for the %s (%.1f MiB free of %.1f MiB): try a smaller -b, or -r 2",
             double(bytes) / (1 << 20), what, double(free_bytes) / (1 << 20), double(total_bytes) / (1 << 20));
    }
    if (err != cudaSuccess) throw_cuda_error("cudaMalloc", err, __FILE__, __LINE__);
    return DeviceMemory(p);
}

PinnedMemory pinned_alloc(size_t bytes, const char* what) {
    void* p = nullptr;
    const cudaError_t err = cudaMallocHost(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) fail("cudaMallocHost of %zu bytes for the %s failed: %s", bytes, what, cudaGetErrorString(err));
    return PinnedMemory(p);
}

}  // namespace coldstart::cuda
