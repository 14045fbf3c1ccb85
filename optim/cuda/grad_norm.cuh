// The global gradient norm on the GPU (CPU reference: optim/grad_norm.h), the step's verdict and clip
// scale derived from it on the device (optim/step_gate.h), and the conversion of the fp32 master weights
// into the bf16 copy the matrix products read.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "optim/cuda/cuda_optimizer.cuh"
#include "optim/step_gate.h"

namespace coldstart::cuda {

// *result = sum of x[i]^2 in double: a fixed grid of blocks, each summing a fixed grid-stride subset,
// then one block adding the block sums in order. The same bits every run. scratch: kSumOfSquaresParts doubles.
constexpr int kSumOfSquaresParts = 1024;
void sum_of_squares(double* result /*1 device*/, const float* x /*n*/, size_t n, double* scratch, cudaStream_t stream);

// One thread, after the norm's kernels: norm = sqrt(*norm_sq), loss = *loss_sum / loss_count, the verdict
// of step_verdict(plan, loss, norm) and the clip scale into *gate (what the optimizer's kernels read),
// and {loss (NaN when plan.poison_loss), norm, verdict} into *report for the host to read after the step.
void gate_step(DeviceStepGate* gate /*1 device*/, StepReport* report /*1 device*/, const double* norm_sq /*1 device*/,
               const double* loss_sum /*1 device*/, double loss_count, const StepPlan& plan, cudaStream_t stream);

// dst[i] = src[i] rounded to the element type (round to nearest even).
template <typename T>
void convert_floats(T* dst /*n*/, const float* src /*n*/, size_t n, cudaStream_t stream);

}  // namespace coldstart::cuda
