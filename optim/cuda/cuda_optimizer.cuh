// Folder optim/cuda/: the optimizers' CUDA kernels behind this interface. May include optim/, model/,
// common/ and common/cuda/ (tools/check_includes.py).
//
// The optimizers on the GPU: the same math as the CPU references (optim/adamw.cpp, optim/lion.cpp), the
// same named state buffers (a checkpoint resumes on either device), steps that take device pointers.
//
// A step is a fixed number of launches with no host round trip: the gradient scale (clipping) and whether
// the update is taken at all are read by the kernels from device memory (gate_device(), which the backend
// fills on the device from the gradient's norm, optim/cuda/grad_norm.cuh; ctx.grad_scale is not read),
// per-tensor statistics (LionAR's signal estimate) are reduced on the device, and per-row work (LionA's
// radial removal, scaling and renormalisation) is one fused pass per row. A measured step
// (--metrics-every) also leaves per-row sums that one more launch reduces per tensor; one copy brings
// them to the host (optim/cuda/step_sums.cuh). StepOutputs are host memory.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "optim/optimizer.h"
#include "optim/partition.h"

namespace coldstart::cuda {

// What a step's kernels read from device memory rather than from the host. skip: the update is not taken
// (a non-finite or spiking step, decided on the device): every kernel that writes the weights or the
// state returns at once, so a skipped step leaves both as they were; a measured step's sums are then
// not meaningful (the training loop drops them).
struct DeviceStepGate {
    float grad_scale;  // multiplies every gradient (clipping)
    int skip;
};

// An Optimizer whose step() takes device pointers to this optimizer's shard of two flat buffers
// (optim/partition.h; with the default shard, all of them): params, the fp32 master weights of
// [shard.begin, shard.end) of the flat parameter buffer, and grads, the summed gradient of the same range.
// Unlike the CPU optimizers, which take the whole buffers, the CUDA optimizers take only the shard: the
// backend holds no fp32 weights outside it (ZeRO-1). StepOutputs::update receives [shard.begin, shard.end).
class CudaOptimizer : public Optimizer {
public:
    virtual DeviceStepGate* gate_device() = 0;  // (1) device memory
    virtual size_t state_bytes() const = 0;     // this shard's state
};

// Throws coldstart::Error naming the optimizer when it has no CUDA version. shard: the part of the
// parameters it steps. sum_across_ranks: sums per-tensor statistics over the ranks whose shards share the
// tensors (LionAR's signal estimate, LionA's counts), once per step, in place, on device memory; it is
// called between the step's launches on `stream` and must leave the sums ready for the launches that
// follow on that stream. Empty: this optimizer steps all of them alone.
std::unique_ptr<CudaOptimizer> make_cuda_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                                   cudaStream_t stream, const ParameterShard& shard = {},
                                                   SumAcrossRanks sum_across_ranks = {});
// Each optimizer's own maker (optim/cuda/adamw.cu, optim/cuda/lion.cu).
std::unique_ptr<CudaOptimizer> make_adamw_cuda(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                               cudaStream_t stream, const ParameterShard& shard);
std::unique_ptr<CudaOptimizer> make_lion_cuda(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                              cudaStream_t stream, const ParameterShard& shard, SumAcrossRanks sum_across_ranks);

}  // namespace coldstart::cuda
