// Folder backend/: one training step on a device: the CPU model (gpt2_cpu) and backend, the CUDA
// backend, sampling. It joins the floors below: layers/, optim/, dist/, model/, common/
// (tools/check_includes.py).
//
// The seam between the training loop and the hardware. The loop (train_gpt2.cu) drives a Backend; the
// CPU reference backend implements it with plain C++ and OpenMP, the CUDA backend with kernels and
// cuBLASLt. Both hold the parameters, gradients and optimizer state in their own memory and exchange
// only tokens, scalars and (for checkpoints) the fp32 parameters with the host. With several processes
// (data parallel), the backend sums the gradients across them through its Communicator, and with ZeRO-1
// steps only its shard of the parameters (optim/partition.h) and gathers the others' after the step.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/gpt2_config.h"
#include "optim/optimizer.h"
#include "optim/step_gate.h"
#include "optim/update_metrics.h"

namespace coldstart {

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string device_name() const = 0;
    virtual const GPT2Config& config() const = 0;

    virtual void zero_grad() = 0;  // also starts the step's loss at 0
    // One micro-batch: tokens and targets (B,T). Accumulates the gradient of loss * loss_scale (loss_scale =
    // 1 / micro-batches per step over all processes) and adds the micro-batch's mean loss to the step's,
    // where the backend computes (on the GPU nothing waits for the device: no host round trip). After the
    // step's last micro-batch the gradient is summed across the processes (overlapped with the backward
    // pass where the hardware allows), so optimizer_step() sees the whole step's; the loss is summed there.
    virtual void forward_backward(const int* inputs, const int* targets, float loss_scale, bool last_micro_batch = true) = 0;
    virtual float evaluate(const int* inputs, const int* targets) = 0;  // mean loss, no gradient
    // Read now (on the GPU a round trip; the training loop reads step_report() instead): this process's mean
    // loss over the micro-batches since zero_grad(), and the l2 norm of the gradient accumulated so far
    // (this process's before the last micro-batch, the whole step's after it).
    virtual double step_loss() = 0;
    virtual float grad_norm() = 0;
    // The update, taken or skipped as step_verdict(plan, loss, norm) (optim/step_gate.h) decides from the
    // step's mean loss over its micro-batches and processes and the whole step's gradient norm, with the
    // gradient clipped to plan.grad_clip. The CUDA backend computes the norm, the verdict and the clip scale
    // on the device, so the update does not wait for the host. With a measurement (a measured step of
    // --metrics-every), also fills measure->tensors and, if measure->with_rrc, measure->rrc from the last
    // micro-batch's activations (of every process: the sums are over all of their tokens), the same on
    // every process (reading them waits for the step); on a skipped step they mean nothing.
    virtual void optimizer_step(const StepPlan& plan, StepMeasurement* measure = nullptr) = 0;
    // The last optimizer_step's loss, norm and verdict: the step's one read (on the GPU it waits for the step).
    virtual StepReport step_report() = 0;

    // Next-token probabilities (V) after the sequence tokens[0..n), for sampling.
    virtual void next_token_probs(const int* tokens, int n, std::vector<float>& probs) = 0;

    // With several processes every process calls them, set_parameters with the same values: with ZeRO-1
    // on GPUs each holds only its shard of the fp32 weights, and they gather the others' (collectives).
    virtual void get_parameters(float* host_params) = 0;        // (ParamLayout.total) fp32
    virtual void set_parameters(const float* host_params) = 0;  // (ParamLayout.total) fp32
    virtual Optimizer& optimizer() = 0;  // with ZeRO-1, this process's shard of it
};

class Communicator;

// comm: the processes of a data-parallel run (nullptr: this process alone); zero_stage 1 shards the
// optimizer across them.
std::unique_ptr<Backend> make_cpu_backend(const GPT2Config& config, int B, int T, const OptimizerConfig& opt,
                                          Communicator* comm = nullptr, int zero_stage = 1);

}  // namespace coldstart
