// AdamW on the GPU: the same math as optim/adamw.cpp (PyTorch's torch.optim.AdamW, weight decay on
// matrices only), in one kernel launch over the flat fp32 buffers.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "optim/optimizer.h"

namespace coldstart::cuda {

// The Optimizer whose step() takes device pointers: params (fp32 master weights) and grads (fp32),
// both (ParamLayout.total) in the GPU's memory. The gradient scale (clipping) is read by the kernel
// from device memory (grad_scale_device), so the host never waits on the device inside a step.
// save_state/load_state move the moments through the host in the CPU optimizer's file layout, so a
// checkpoint written on the GPU resumes on the CPU and back.
class CudaOptimizer : public Optimizer {
public:
    // Where step() reads the gradient multiplier; the backend writes it (from ctx.grad_scale).
    virtual float* grad_scale_device() = 0;
    virtual size_t state_bytes() const = 0;
};

std::unique_ptr<CudaOptimizer> make_cuda_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                                   cudaStream_t stream);

}  // namespace coldstart::cuda
