// What the parts of the emulated device share (nothing outside emu/ includes this).
//   options    the checks and limits, from COLDSTART_EMU_* environment variables
//   errors     the per-thread last error and the sticky error of a failed kernel, as the CUDA runtime keeps them
//   memory     the registry of device and pinned allocations (device memory is host memory)
//   streams    where work is queued: run at once, or deferred to the next synchronisation point
//   grid       running one launch: its blocks on the worker threads, or twice for the schedule check
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "emu/device.h"

namespace emu {

// ---- options (see the README's "CUDA without a GPU") ----
struct Options {
    bool strict = false;          // COLDSTART_EMU_STRICT=1: a barrier with exited threads is an error
    bool schedule_check = false;  // COLDSTART_EMU_SCHEDULE=1: each launch runs twice, in two orders, compared
    bool deferred = false;        // COLDSTART_EMU_DEFERRED=1: queued work runs only at synchronisation points
    bool abort_on_error = false;  // COLDSTART_EMU_ABORT=1: abort() at a kernel error (for a debugger)
    int threads = 1;              // COLDSTART_EMU_THREADS: OS threads that run blocks (default: all cores)
    size_t memory_bytes = 0;      // COLDSTART_EMU_MEMORY_MIB: the device's memory (default 16 GiB)
};
const Options& options();
Options& options_for_tests();  // the emulator's own tests switch the checks on and off

// ---- errors ----
// A failed call's error: what cudaGetLastError returns next (and clears).
cudaError_t set_last_error(cudaError_t err);
cudaError_t take_last_error();
cudaError_t peek_last_error();
// A kernel that failed (a deadlock, a race the schedule check saw, ...): reported on stderr and returned by
// every later call until cudaDeviceReset, as a GPU's context stays broken after a failed kernel.
void fail_device(cudaError_t err, const std::string& message);
cudaError_t sticky_error();
void clear_sticky_error();
std::string last_failure();  // the message of the newest failed kernel (for the emulator's own tests)

// ---- memory ----
struct Allocation {
    char* base;
    size_t bytes;
    bool pinned;  // cudaMallocHost / cudaHostAlloc (host memory); else device memory
};
// The allocation that holds [p, p + bytes), or nullptr.
const Allocation* find_allocation(const void* p, size_t bytes = 1);
std::vector<Allocation> device_allocations();
void free_all_allocations();

// ---- streams ----
// Runs `work` on `stream` after everything queued there before (at once, unless deferred).
void enqueue(cudaStream_t stream, std::function<void()> work);
// Runs what `stream` has queued (and what it waits for); nullptr: every stream.
void drain(cudaStream_t stream);

// ---- the grid ----
// Whether the launch's shape is possible: cudaSuccess, or the error a GPU returns at the launch (printed).
cudaError_t check_launch(const KernelCall& call, const LaunchConfig& config);
// Runs every block of the launch; a failure becomes the device's sticky error.
void run_launch(const KernelCall& call, const LaunchConfig& config);
// The kernel's cudaFuncAttributeMaxDynamicSharedMemorySize (0: never set).
int max_dynamic_shared(const void* kernel);
void set_max_dynamic_shared(const void* kernel, int bytes);

constexpr size_t kDefaultSharedBytes = 48 * 1024;
constexpr size_t kOptInSharedBytes = 227 * 1024;  // an H100's or H200's per-block maximum
constexpr int kMultiprocessors = 132;

}  // namespace emu
