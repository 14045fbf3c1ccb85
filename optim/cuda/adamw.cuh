// AdamW on the GPU: the same math as optim/adamw.cpp (PyTorch's torch.optim.AdamW, with or without
// momentum bias correction, weight decay on the tensors tensor_roles() gives it: matrices only), in
// one kernel launch over the flat fp32 buffers.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "optim/optimizer.h"

namespace coldstart::cuda {

// An Optimizer whose step() takes device pointers: params (fp32 master weights) and grads (fp32),
// both (ParamLayout.total) in the GPU's memory. The gradient scale (clipping) is read by the kernel
// from device memory (grad_scale_device()), which the backend writes from ctx.grad_scale, so a step is
// one launch with no host round trip. StepOutputs (a measured step of --metrics-every) are host
// memory: the step then copies W, g and the momentum to the host around the launch and adds the sums
// there, row by row in order, exactly as the CPU optimizer does (slow, but only on measured steps).
// The state is the CPU optimizer's (the same named buffers), so a checkpoint resumes on either.
class CudaOptimizer : public Optimizer {
public:
    virtual float* grad_scale_device() = 0;  // (1) device memory
    virtual size_t state_bytes() const = 0;
};

// Throws coldstart::Error naming the optimizer when it has no CUDA version yet.
std::unique_ptr<CudaOptimizer> make_cuda_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                                   cudaStream_t stream);

}  // namespace coldstart::cuda
