// Folder common/cuda/: the CUDA helpers that layers/cuda, optim/cuda, dist and backend/ share (this
// file). May include common/ only (tools/check_includes.py).
//
// What every CUDA file of coldstart shares: checked calls, the two element types, conversions, warp
// and block reductions, and NVTX ranges.
//
// Element types. Kernels are templates over T = float (the fp32 test mode, compared with the CPU
// reference at 1e-5) or T = bf16 (training: parameters and activations in bfloat16, arithmetic in fp32).
// Every kernel loads T, converts to float, computes in float and rounds once when it stores.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace coldstart::cuda {

using bf16 = __nv_bfloat16;

// Throws coldstart::Error "<call> failed: <reason> at file:line (hint)"; the hint says what usually
// causes that error (out of memory: smaller -b or -r 2; a launch failure: run compute-sanitizer).
[[noreturn]] void throw_cuda_error(const char* call, cudaError_t err, const char* file, int line);
[[noreturn]] void throw_library_error(const char* library, const char* call, int status, const char* reason,
                                      const char* hint, const char* file, int line);

#define CUDA_CHECK(call)                                                                        \
    do {                                                                                        \
        const cudaError_t cuda_check_err_ = (call);                                             \
        if (cuda_check_err_ != cudaSuccess)                                                     \
            ::coldstart::cuda::throw_cuda_error(#call, cuda_check_err_, __FILE__, __LINE__);    \
    } while (0)

// After every kernel launch: a bad launch configuration is reported here, at the launch that made it.
#define KERNEL_CHECK(name) CUDA_CHECK(((void)(name), cudaGetLastError()))

inline size_t ceil_div(size_t n, size_t d) { return (n + d - 1) / d; }

// ---- conversions: load as T, compute in float, store as T (round to nearest even) ----
__host__ __device__ inline float to_float(float x) { return x; }
__host__ __device__ inline float to_float(bf16 x) { return __bfloat162float(x); }
template <typename T> __host__ __device__ inline T from_float(float x);
template <> __host__ __device__ inline float from_float<float>(float x) { return x; }
template <> __host__ __device__ inline bf16 from_float<bf16>(float x) { return __float2bfloat16_rn(x); }

// W consecutive elements of T that one thread loads or stores in one access. W = 16 / sizeof(T) (a
// Pack: 8 bf16 or 4 floats) is one 128-bit access, what a memory-bound kernel needs to reach the GPU's
// bandwidth; W = 1 is the fallback for data that is not 16-byte aligned or whose rows are not a
// multiple of the pack. Kernels are written once over W and launched with the widest W that
// pack_width() allows, so both paths run the same arithmetic on the same elements.
template <typename T, int W>
struct alignas(sizeof(T) * W) Vec {
    static constexpr int n = W;
    T v[W];
};
template <typename T>
using Pack = Vec<T, 16 / int(sizeof(T))>;

template <int W, typename T>
__host__ __device__ inline Vec<T, W> load_vec(const T* p) {
    return *reinterpret_cast<const Vec<T, W>*>(p);
}
template <int W, typename T>
__host__ __device__ inline void store_vec(T* p, const Vec<T, W>& x) {
    *reinterpret_cast<Vec<T, W>*>(p) = x;
}
// Four floats at once, for the fp32 side of a kernel whose T side is a Pack (gradients, partial sums).
template <int W>
__device__ inline void add_floats(float* dst, const float (&x)[W]) {
    if constexpr (W % 4 == 0) {
        for (int k = 0; k < W; k += 4) {
            Vec<float, 4> d = load_vec<4>(dst + k);
            for (int j = 0; j < 4; ++j) d.v[j] += x[k + j];
            store_vec(dst + k, d);
        }
    } else {
        for (int k = 0; k < W; ++k) dst[k] += x[k];
    }
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
// True when every pointer is 16-byte aligned (nullptr counts as aligned) and the row length, in
// elements of T, is a multiple of the pack: then every row of every buffer starts 16-byte aligned.
template <typename T>
bool packable(size_t row_elements, std::initializer_list<const void*> pointers) {
    if (row_elements % size_t(Pack<T>::n) != 0) return false;
    for (const void* p : pointers)
        if (!aligned16(p)) return false;
    return true;
}

// ---- reductions: butterfly shuffles and fixed trees, so every sum has the same order every run ----
__device__ inline float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ inline double warp_sum(double x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ inline float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// shared must hold 32 values of the type. Calls __syncthreads: every thread of the block must call it.
template <typename F>
__device__ inline F block_sum(F x, F* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    x = warp_sum(x);
    __syncthreads();  // shared may still be read by a previous call
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    x = lane < warps ? shared[lane] : F(0);
    return warp_sum(x);
}

// The index of the last entry of a table sorted by `first` whose first is <= index: which tensor a block
// or a row of a launch that deals them out tensor by tensor belongs to.
template <typename Entry>
__device__ inline int last_at_or_below(const Entry* table, int count, unsigned index, unsigned Entry::*first) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (table[mid].*first <= index) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// NVTX range for Nsight Systems: names a phase of the step (forward, layer 3 backward, optimizer...).
class NvtxRange {
public:
    explicit NvtxRange(const char* name);
    NvtxRange(const char* name, int index);  // "name index", e.g. "layer 3"
    ~NvtxRange();
    NvtxRange(const NvtxRange&) = delete;
    NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace coldstart::cuda

#include <memory>

namespace coldstart::cuda {

// Owners of device and pinned host allocations, so that a constructor that throws half way leaks nothing.
struct DeviceFree {
    void operator()(void* p) const { cudaFree(p); }
};
struct PinnedFree {
    void operator()(void* p) const { cudaFreeHost(p); }
};
using DeviceMemory = std::unique_ptr<void, DeviceFree>;
using PinnedMemory = std::unique_ptr<void, PinnedFree>;
// `what` names the buffer in the out-of-memory message ("activations", "parameters").
DeviceMemory device_alloc(size_t bytes, const char* what);
PinnedMemory pinned_alloc(size_t bytes, const char* what);

}  // namespace coldstart::cuda
