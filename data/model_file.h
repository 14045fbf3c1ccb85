// llm.c model files: a header of 256 int32 then the 16 parameter tensors in layout order.
//   header[0] = 20240326 (magic), [1] = 3 (fp32) or 5 (bf16), [2] = max_seq_len, [3] = vocab_size,
//   [4] = num_layers, [5] = num_heads, [6] = channels, [7] = padded_vocab_size, rest 0.
// Byte-compatible with llm.c, so its tools and other trainers (modded-nanogpt, ...) read ours and we
// read theirs.
#pragma once

#include <string>
#include <vector>

#include "model/gpt2_config.h"

namespace coldstart {

enum class ModelDtype { fp32, bf16 };

struct LoadedModel {
    GPT2Config config;
    std::vector<float> params;  // (ParamLayout(config).total) converted to fp32
    ModelDtype stored_as;
};

// Reads and validates a model file; every problem names the file and the field.
LoadedModel load_model_file(const std::string& path);

// Writes atomically (temporary name, flush, rename): a crash never leaves a half-written model.
// bf16 rounds to nearest even.
void save_model_file(const std::string& path, const GPT2Config& config, const float* params, ModelDtype dtype);

uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t x);

}  // namespace coldstart
