// The CUDA backend: the whole GPT-2 step on one GPU (kernels in layers/cuda/, AdamW and the gradient
// norm in optim/cuda/). Plain C++: the trainer includes it whether or not it is built by nvcc, but
// make_cuda_backend exists only in a CUDA build (COLDSTART_CUDA).
//
// Precision (--precision): bf16 keeps fp32 master weights, fp32 gradients and fp32 optimizer state,
// and a bf16 copy of the weights plus bf16 activations for the matrix work (fp32 accumulation
// everywhere); fp32 runs everything in fp32 (no TF32) and is what the tests compare with the CPU
// reference at 1e-5. Gradients are fp32 in both: micro-batches accumulate into them without bf16
// rounding, cuBLASLt writes weight gradients into them directly (bf16 inputs, fp32 output), and the
// norm and AdamW read them as they are.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace coldstart {

class NcclCommunicator;

struct CudaOptions {
    std::string precision = "bf16";  // bf16 | fp32
    std::string attention = "flash"; // flash (our kernel) | cudnn (cuDNN's fused attention, bf16 only)
    int recompute = 1;               // 0: keep all activations; 1: recompute GELU; 2: GELU and layernorms
    int gelu_fusion = 0;             // 1: GELU in cuBLASLt's epilogue (forward and backward)
    int device = 0;                  // the GPU (with a communicator: its device)
    // Measure the RRC (--metrics-rrc 1) or control it (--rrc-target): keep each layer's MLP output for fcprojw's
    // ||W X|| (L*B*T*C activations more) and allocate the RRC's buffers (the weights before the step, fp32).
    // Direct RRC control (OptimizerConfig::rrc_target) turns it on by itself.
    bool rrc = false;
    // Several processes (data parallel): the gradient is summed across them with NCCL, each layer's as
    // soon as the backward pass has finished it, on the communicator's stream, overlapped with the
    // backward pass of the layers below. nullptr: one process.
    NcclCommunicator* comm = nullptr;
    // With comm: 1 (ZeRO-1) shards the fp32 master weights and the optimizer state between the processes
    // as optim/partition.h cuts them; each layer's gradient is reduce-scattered to the shards' owners and
    // the updated weights are all-gathered after the step. 0: every process holds and steps all of them.
    int zero_stage = 1;
};

// The Backend plus what the GPU tests need to compare the model with the CPU reference.
class CudaBackend : public Backend {
public:
    virtual void get_gradients(float* host_grads) = 0;  // (ParamLayout.total) fp32, as accumulated since zero_grad
    virtual void get_logits(float* host_logits) = 0;    // (B,T,Vp) of the last evaluate() call
    virtual std::string memory_plan() const = 0;        // the table printed at construction
};

std::unique_ptr<CudaBackend> make_cuda_backend(const GPT2Config& config, int B, int T, const OptimizerConfig& opt,
                                               const CudaOptions& options);

// True if this binary was built with cuDNN (--attention cudnn is available).
bool cuda_backend_has_cudnn();

}  // namespace coldstart
