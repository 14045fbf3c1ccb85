// Folder emu/: the emulated CUDA device, a room of its own: only the emulated build (make emu-build)
// uses it, nothing in the product includes it (tools/check_includes.py).
//
// The device side of the emulated CUDA device: what a kernel body sees (threadIdx and the other built-in
// variables, __syncthreads, the warp shuffles, shared memory) and the launch that the rewrite of
// k<<<...>>>(...) calls (emu/rewrite.py). Every CUDA thread is a fiber; the fibers of a block run on one OS
// thread and switch only at a barrier, a shuffle or their end (emu/block.cpp), so a kernel's code between
// two of those runs as one uninterrupted piece, which is one of the schedules a GPU may choose.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

namespace emu {

struct BlockRun;

// One CUDA thread of the block being run. Only the fields a kernel reads inline are public knowledge.
struct ThreadState {
    uint3 thread_idx;
    BlockRun* block;
    int linear;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
};

// The block being run on this OS thread, as the kernel's built-in variables see it.
struct BlockView {
    uint3 block_idx;
    dim3 block_dim, grid_dim;
    void* dynamic_shared;
};

extern thread_local ThreadState* tls_thread;  // the fiber running now on this OS thread
extern thread_local BlockView tls_block;

inline const uint3& thread_idx() { return tls_thread->thread_idx; }

// ---- synchronisation: each is a scheduling point of the block's fibers ----
void syncthreads(const char* file, int line);
void syncwarp(unsigned mask, const char* file, int line);
// Exchanges 8 bytes within the lanes of `mask`: returns the bits that lane src_lane passed.
uint64_t warp_exchange(unsigned mask, uint64_t bits, int src_lane, const char* op, const char* file, int line);

// A warp-collective operation of any size (the tensor-core instructions of common/cuda/mma.cuh): every lane
// of `mask` calls it with its own input and output; when the last lane arrives, combine runs once, sees every
// lane's input and writes every lane's output, and the lanes go on. It is a scheduling point, and its misuse is
// reported as a shuffle's is: a lane of the mask missing or exited, lanes at different operations or masks.
struct WarpLanes {
    unsigned mask;
    const void* in[32];  // lane l's input; null for lanes outside the mask
    void* out[32];       // lane l's output
};
void warp_collective(unsigned mask, const void* in, void* out, void (*combine)(const WarpLanes&), const char* op,
                     const char* file, int line);

enum class Shuffle { index, xor_, up, down };

template <typename V>
V shuffle(Shuffle kind, unsigned mask, V value, int operand, int width, const char* op, const char* file, int line) {
    static_assert(sizeof(V) <= 8 && std::is_trivially_copyable<V>::value, "the emulated shuffles move at most 8 bytes");
    const int lane = tls_thread->linear % 32;
    const int segment = lane & ~(width - 1);
    int src = lane;
    switch (kind) {
        case Shuffle::index: src = segment + (operand & (width - 1)); break;
        case Shuffle::xor_: src = lane ^ operand; if (src >= segment + width) src = lane; break;
        case Shuffle::up: src = lane - operand >= segment ? lane - operand : lane; break;
        case Shuffle::down: src = lane + operand < segment + width ? lane + operand : lane; break;
    }
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(V));
    bits = warp_exchange(mask, bits, src, op, file, line);
    V result;
    std::memcpy(&result, &bits, sizeof(V));
    return result;
}

// ---- shared memory ----
void* dynamic_shared();
// Called where a static __shared__ variable is declared: the first touch in a block poisons it.
void shared_touch(void* address, size_t bytes);
// Stops the block with a report naming op and file:line unless [p, p + bytes) lies inside this block's shared
// memory (dynamic, or one static __shared__ variable) and p is aligned to `align` bytes.
void require_shared(const void* p, size_t bytes, size_t align, const char* op, const char* file, int line);

// ---- asynchronous copies (cp.async), per thread as the PTX ISA defines them ----
// async_copy poisons dst (0xFF bytes) and records the copy; the bytes land (src_bytes from src, the rest
// zeros) only when a later async_wait completes the copy's group, so a read before the wait, or another
// thread's read before a barrier after it, sees the poison. A thread that ends with copies it never waited
// for is reported.
void async_copy(void* dst, const void* src, size_t bytes, size_t src_bytes, const char* file, int line);
void async_commit();  // closes the thread's open group (possibly empty), as cp.async.commit_group
void async_wait(int newest_pending);  // cp.async.wait_group newest_pending: all but the newest groups have landed

// ---- the kernel and its launch ----
// The first statement of every kernel (added by the rewrite): its address (cudaFuncSetAttribute's key)
// and its __launch_bounds__ (0: none), checked against the launch.
void kernel_entry(const void* kernel, const char* name, int max_threads);

struct LaunchConfig {
    dim3 grid, block;
    size_t shared_bytes;
    cudaStream_t stream;
    LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr) : grid(g), block(b), shared_bytes(s), stream(st) {}
};

// Type-erased kernel call: invoke(closure) runs the kernel body for the current thread.
struct KernelCall {
    void (*invoke)(const void* closure);
    const void* closure;
    void (*destroy)(const void* closure);
    const char* name;
    const char* file;
    int line;
};

// Queues (or runs, in the synchronous mode) the launch; takes ownership of the call's closure.
void submit_launch(const KernelCall& call, const LaunchConfig& config);

template <typename Kernel, typename... Args>
void launch(Kernel kernel, const char* name, const char* file, int line, const LaunchConfig& config, Args&&... args) {
    // The arguments are copied now, as a GPU copies them at the launch, so a deferred launch sees the values
    // they had here.
    using Closure = std::pair<Kernel, std::tuple<std::decay_t<Args>...>>;
    auto* closure = new Closure(kernel, std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...));
    KernelCall call;
    call.invoke = [](const void* c) {
        const Closure& k = *static_cast<const Closure*>(c);
        std::apply([&](const auto&... a) { k.first(a...); }, k.second);
    };
    call.closure = closure;
    call.destroy = [](const void* c) { delete static_cast<const Closure*>(c); };
    call.name = name;
    call.file = file;
    call.line = line;
    submit_launch(call, config);
}

// ---- for the GPU suite's tests of host round trips (visible there through the prelude) ----
// Deferred streams on or off from here on (COLDSTART_EMU_DEFERRED=1 turns them on at the start); turning
// them off first runs what is queued.
void set_deferred_streams(bool on);
// How many host waits (a synchronisation, a blocking copy) have run queued device work so far: with
// deferred streams, a stretch of host code that leaves it unchanged never waited for the device.
unsigned long host_waits_that_ran_work();

}  // namespace emu
