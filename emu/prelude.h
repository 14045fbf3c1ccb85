// Force-included (g++ -include emu/prelude.h) before every CUDA source compiled for the emulated device.
// The real cuda_runtime.h and cuda_bf16.h give the types and the host-side declarations (under a host
// compiler they define __global__, __device__, __host__ and __shared__ as nothing); this adds what only
// nvcc knows: the built-in variables, barriers, shuffles, the device overloads of min/max, and the
// template overloads of the runtime API that cuda_runtime.h keeps for nvcc. The launch syntax and
// __shared__ declarations are rewritten before compiling (emu/rewrite.py).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "emu/device.h"

#define COLDSTART_EMULATED 1

#define __launch_bounds__(...)

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::tls_block.block_idx)
#define blockDim (::emu::tls_block.block_dim)
#define gridDim (::emu::tls_block.grid_dim)
static constexpr int warpSize = 32;

#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::emu::syncwarp(::emu::warp_mask_or_full(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_sync(mask, value, lane, ...) \
    ::emu::shuffle(::emu::Shuffle::index, mask, value, lane, ::emu::width_or_32(__VA_ARGS__), "__shfl_sync", __FILE__, __LINE__)
#define __shfl_xor_sync(mask, value, lane_mask, ...) \
    ::emu::shuffle(::emu::Shuffle::xor_, mask, value, lane_mask, ::emu::width_or_32(__VA_ARGS__), "__shfl_xor_sync", __FILE__, __LINE__)
#define __shfl_up_sync(mask, value, delta, ...) \
    ::emu::shuffle(::emu::Shuffle::up, mask, value, delta, ::emu::width_or_32(__VA_ARGS__), "__shfl_up_sync", __FILE__, __LINE__)
#define __shfl_down_sync(mask, value, delta, ...) \
    ::emu::shuffle(::emu::Shuffle::down, mask, value, delta, ::emu::width_or_32(__VA_ARGS__), "__shfl_down_sync", __FILE__, __LINE__)

namespace emu {
inline int width_or_32() { return 32; }
inline int width_or_32(int width) { return width; }
inline unsigned warp_mask_or_full() { return 0xffffffffu; }
inline unsigned warp_mask_or_full(unsigned mask) { return mask; }
}  // namespace emu

// Device code calls min and max unqualified on ints and floats, as CUDA's math headers allow.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
using std::isinf;
using std::isnan;

// cuda_runtime.h declares this template only for nvcc.
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}
