// GPT-2 on the CPU: the fp32 reference forward and backward of the whole model, built from the layer
// references in this folder. It is the oracle for the CUDA path and trains (slowly) where there is no GPU.
#pragma once

#include <vector>

#include "model/gpt2_config.h"

namespace coldstart {

// What the last forward pass kept of one linear layer: its inputs X, (B*T, in_features) rows of tokens, and
// its output X W^T + bias, (B*T, out_features), where kept (nullptr where another buffer took its place).
struct LinearActivations {
    const float* inputs;
    int in_features, out_features;
    const float* kept_output;
};

class Gpt2Cpu {
public:
    // Allocates parameters, gradients and activations for micro-batches up to B x T (T <= maxT).
    Gpt2Cpu(const GPT2Config& config, int max_B, int max_T);

    const GPT2Config& config() const { return config_; }
    const ParamLayout& layout() const { return layout_; }
    std::vector<float>& params() { return params_; }  // (layout().total) llm.c order
    std::vector<float>& grads() { return grads_; }    // (layout().total) same layout as params

    // Runs the model on tokens (B,T). With targets, returns the mean loss over the B*T positions and
    // keeps what backward needs; without (nullptr), returns 0 and probs() holds the next-token softmax.
    // logits_out (B,T,Vp), if given, receives the logits before the softmax (for tests).
    float forward(const int* tokens, const int* targets, int B, int T, float* logits_out = nullptr);
    // Accumulates into grads() the gradient of (mean loss * loss_scale) of the last forward call.
    void backward(float loss_scale);
    void zero_grad();

    const float* probs() const { return acts_.logits; }  // (B,T,Vp) after forward

    // The activations of the linear layer whose weight is `kind` (is_linear_layer) in `layer` (ignored for
    // wte, the lm head), from the last forward pass. Kept outputs: qkv, fch (before the GELU) and the MLP's
    // output; attprojw's output is added into the residual stream in a shared scratch, and the lm head's
    // logits become the softmax in place.
    LinearActivations linear_activations(ParamTensor kind, int layer) const;
    int batch_tokens() const { return B_ * T_; }  // rows of the last forward pass

private:
    struct Activations {  // pointers into one allocation; layer-stacked buffers are (L, B, T, ...)
        float* encoded;    // (B,T,C) token + position embedding
        float* ln1;        // (L,B,T,C)
        float* ln1_mean;   // (L,B,T)
        float* ln1_rstd;   // (L,B,T)
        float* qkv;        // (L,B,T,3C)
        float* atty;       // (L,B,T,C) attention output before projection
        float* att;        // (L,B,NH,T,T) softmax probabilities
        float* residual2;  // (L,B,T,C) residual after attention
        float* ln2;        // (L,B,T,C)
        float* ln2_mean;   // (L,B,T)
        float* ln2_rstd;   // (L,B,T)
        float* fch;        // (L,B,T,4C) fc output before GELU
        float* fch_gelu;   // (L,B,T,4C)
        float* residual3;  // (L,B,T,C) residual after the MLP: the layer's output
        float* lnf;        // (B,T,C)
        float* lnf_mean;   // (B,T)
        float* lnf_rstd;   // (B,T)
        float* logits;     // (B,T,Vp) logits, softmax probabilities in place, then d(logits) in place
        float* losses;     // (B,T)
        float* mlp_out;    // (L,B,T,C) the MLP's output before the residual add (fcprojw's, for its RRC)
        float* scratch;    // (B,T,C) attention projection output before the residual add
    };
    // Gradient scratch reused by every layer during backward (gradients of activations are not kept).
    struct GradScratch {
        float* dresidual;  // (B,T,C) gradient flowing down the residual stream
        float* dln;        // (B,T,C) gradient of a layernorm output
        float* dqkv;       // (B,T,3C)
        float* datty;      // (B,T,C)
        float* dfch;       // (B,T,4C)
        float* dfch_gelu;  // (B,T,4C)
    };
    void carve_activations(int B, int T);

    GPT2Config config_;
    ParamLayout layout_;
    int max_B_, max_T_;
    std::vector<float> params_, grads_;
    std::vector<float> act_memory_, grad_scratch_memory_;
    std::vector<int> targets_;  // (B,T) of the last forward
    std::vector<int> tokens_;   // (B,T) of the last forward
    Activations acts_{};
    GradScratch gs_{};
    int B_ = 0, T_ = 0;
};

}  // namespace coldstart
