// Runs one thread block of a launch: one fiber per CUDA thread on the calling OS thread, switched only at
// __syncthreads, the warp shuffles and a thread's end. Barriers and shuffles complete as on hardware
// (exited threads count as arrived; a shuffle needs every lane of its mask), and what a GPU would hang on
// or leave undefined is reported with the kernel, the file and the line: a deadlock, a shuffle naming an
// exited or absent lane, masks that disagree, and in strict mode a barrier that threads have left.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "emu/device.h"

namespace emu {

struct BlockOutcome {
    cudaError_t launch_error = cudaSuccess;  // the launch itself was impossible (found at the kernel's entry)
    std::string error;                       // empty: the block ran to its end
    const char* kernel = nullptr;            // the kernel's own name (from its entry), if it started
};

// Runs block `block_idx` of the launch on this OS thread; reverse: threads start and wake in
// descending order (the schedule check's second order).
BlockOutcome run_block(const KernelCall& call, const LaunchConfig& config, uint3 block_idx, bool reverse);

}  // namespace emu
