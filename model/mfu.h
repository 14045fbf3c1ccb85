// Model FLOPs utilisation: the share of the GPU's dense bf16 peak that the model's FLOPs per second
// reach. FLOPs per token are llm.c's count, 6N + 6LCT (N parameters, the padded vocabulary included;
// the second term is attention's QK^T and AV products, causal masking not discounted), so figures
// compare with llm.c's step line. GPUs missing from the peak table get no figure, never a wrong one.
#pragma once

#include <string>

#include "model/gpt2_config.h"

namespace coldstart {

// Dense bf16 tensor-core peak in FLOP/s for a CUDA device name (as cudaDeviceProp::name reports it),
// or 0 for a GPU the table does not know. H100 SXM 989e12, H100 PCIe 756e12, H200 989e12, A100 312e12.
double peak_bf16_flops(const std::string& device_name);

// 6N + 6LCT for a model with num_params parameters at sequence length T.
double flops_per_token(const GPT2Config& config, size_t num_params, int T);

// "38.0% bf16 MFU", or "MFU n/a" with the reason (unknown GPU, not bf16).
std::string mfu_text(const std::string& device_name, bool bf16, double flops_per_token, double tokens_per_s);

}  // namespace coldstart
