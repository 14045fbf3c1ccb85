// The speed of light of one training step: for each kernel the CUDA backend runs, the bytes it must move
// and the FLOPs it must do, derived from the model's shapes, and the least time a GPU of a given memory
// bandwidth and dense bf16 peak could take for it. A model, never a measurement: `make roofline` prints
// it, `make bench` prints each kernel's measured time beside its bound.
//
// What it counts (README, "Performance"):
//   - bytes: every input read once and every output written once, in the step's precision (bf16
//     activations and weights, fp32 master weights, gradients and optimizer state, fp32 row statistics);
//     an fp32 gradient that a product accumulates into is read and written; caches and re-reads are free,
//     and so is the work of launching kernels and the fixed-order reductions' few MB of partial sums.
//   - FLOPs: 2 per multiply-add of the matrix products; causal attention counts only the live half of the
//     T x T scores (QK^T and PV forward, five products backward: S recomputed, dV, dP, dQ, dK);
//     elementwise arithmetic (GELU, softmax, layernorm, AdamW) is left out: it is never the bound.
//   - the step's configuration: the default one (-r 1: GELU recomputed in the backward pass, -ge 0, our
//     attention kernels, AdamW), one micro-batch of B x T tokens and one optimizer update.
//   - the encoder backward's gradient rows: min(B*T, V) distinct tokens (an upper bound).
#pragma once

#include <string>
#include <vector>

#include "model/gpt2_config.h"

namespace coldstart {

// One kernel of the step (a kind of launch), with the cost of one call.
struct KernelCost {
    std::string name;  // as bench_gpu_kernels names its measurement
    int calls;         // per step
    double bytes;      // per call, moved to or from memory at least
    double flops;      // per call
};

struct GpuPeak {
    std::string name;
    double bytes_per_s;  // memory bandwidth
    double flops_per_s;  // dense bf16 tensor-core peak
};
// H100 SXM (3.35 TB/s, 989 TFLOP/s) and H200 (4.8 TB/s, 989 TFLOP/s).
std::vector<GpuPeak> roofline_gpus();

// The kernels of one bf16 training step of `config` at micro-batch B x T, in the order they run.
std::vector<KernelCost> step_kernels(const GPT2Config& config, int B, int T);

// The least time of one call on `gpu`: the larger of its memory time and its compute time.
double bound_seconds(const KernelCost& k, const GpuPeak& gpu);
bool memory_bound(const KernelCost& k, const GpuPeak& gpu);
// The sum over the step (calls included).
double step_bound_seconds(const std::vector<KernelCost>& kernels, const GpuPeak& gpu);

// The printed table: per kernel its calls, bytes, FLOPs, bound and time on each GPU, then the sums and
// the tokens/s the sums allow.
std::string roofline_table(const GPT2Config& config, int B, int T);

}  // namespace coldstart
