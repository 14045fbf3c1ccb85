// Folder model/: the model's description, which data/, layers/, optim/ and the backends all use: GPT-2's
// shapes and parameter layout (here), its FLOPs per token (mfu.h). May include common/ only
// (tools/check_includes.py).
//
// GPT-2's shape and the layout of its parameters, exactly as llm.c stores them.
//
// All 16 parameter tensors live in one contiguous fp32 buffer in the order of the llm.c model file, each
// stacked over layers, so loading a model file is one read and the optimizer sees one flat array. The
// optimizer and the metrics work per tensor and per layer: parameter_tensors() cuts the buffer into
// those pieces (h0.qkvw, h1.qkvw, ...) and says which are matrices (weight decay, row control).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace coldstart {

struct GPT2Config {
    int max_seq_len = 0;        // maxT: rows of wpe
    int vocab_size = 0;         // V: real tokens (50257 for GPT-2)
    int padded_vocab_size = 0;  // Vp: rows of wte, V rounded up to a multiple of 128 (rows >= V stay zero)
    int num_layers = 0;         // L
    int num_heads = 0;          // NH
    int channels = 0;           // C, a multiple of NH

    int head_size() const { return channels / num_heads; }
    std::string describe() const;  // "L=12 NH=12 C=768 maxT=1024 V=50257 Vp=50304"
};

// GPT-2 with N layers from a descriptor: "dN" or "gpt2:dN". N <= 12: channels 64*N, one head per 64
// channels (d12 = GPT-2 124M); d24, d36, d48 are GPT-2 medium, large and XL. maxT 1024, V 50257.
// Throws with the descriptor and the accepted forms when it is not one of these.
GPT2Config config_from_descriptor(const std::string& descriptor);
bool looks_like_descriptor(const std::string& init);  // "d12", "gpt2:d24": not a file path

// Throws an Error prefixed by `source` (a file or flag) if the shape is inconsistent.
void validate_config(const GPT2Config& config, const std::string& source);

enum ParamTensor {
    WTE, WPE, LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB,
    LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB, LNFW, LNFB, NUM_PARAM_TENSORS
};
extern const char* const kParamTensorNames[NUM_PARAM_TENSORS];  // "wte", "wpe", "ln1w", ...

// Element count of each of the 16 stacked tensors, and where each starts in the flat buffer.
struct ParamLayout {
    std::array<size_t, NUM_PARAM_TENSORS> sizes{};
    std::array<size_t, NUM_PARAM_TENSORS> offsets{};
    size_t total = 0;
    explicit ParamLayout(const GPT2Config& config);
};

// One parameter tensor of one layer, as the optimizer and the metrics see it.
struct TensorSlice {
    std::string name;  // llm.c's name, with the layer for stacked ones: "wte", "h3.qkvw", "lnfb"
    ParamTensor kind;
    int layer;         // -1 for wte, wpe, lnfw, lnfb
    size_t offset;     // into the flat parameter buffer
    size_t numel;
    int rows, cols;    // (out, in) for matrices, (Vp, C) for wte, (maxT, C) for wpe; (1, n) for vectors
    bool is_matrix;    // 2 or more dimensions: takes weight decay
};
std::vector<TensorSlice> parameter_tensors(const GPT2Config& config);

// llm.c's initialisation: N(0, 0.02) for weights, residual projections scaled by 1/sqrt(2L), layernorm
// gains 1, biases 0, padded vocabulary rows 0. Deterministic in `seed`.
void init_parameters(float* params, const GPT2Config& config, unsigned long long seed);

}  // namespace coldstart
