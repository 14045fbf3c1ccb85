#include "backend/gpt2_cpu.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "layers/attention.h"
#include "layers/classifier.h"
#include "layers/encoder.h"
#include "layers/gelu.h"
#include "layers/layernorm.h"
#include "layers/matmul.h"
#include "layers/residual.h"
#include "optim/grad_norm.h"

namespace coldstart {

using namespace cpu;

// Element counts of the activations for a micro-batch of B x T, in the order carve_activations uses.
static size_t activation_floats(const GPT2Config& c, size_t B, size_t T) {
    const size_t L = c.num_layers, C = c.channels, NH = c.num_heads, Vp = c.padded_vocab_size, BT = B * T;
    return BT * C                       // encoded
         + L * BT * C + 2 * L * BT      // ln1, mean, rstd
         + L * BT * 3 * C               // qkv
         + L * BT * C                   // atty
         + L * B * NH * T * T           // att
         + L * BT * C                   // residual2
         + L * BT * C + 2 * L * BT      // ln2, mean, rstd
         + 2 * L * BT * 4 * C           // fch, fch_gelu
         + L * BT * C                   // residual3
         + BT * C + 2 * BT              // lnf, mean, rstd
         + BT * Vp + BT                 // logits, losses
         + L * BT * C                   // mlp_out
         + BT * C;                      // scratch
}

Gpt2Cpu::Gpt2Cpu(const GPT2Config& config, int max_B, int max_T)
    : config_(config), layout_(config), max_B_(max_B), max_T_(max_T) {
    validate_config(config, "model");
    if (max_T > config.max_seq_len)
        fail("sequence length %d exceeds the model's maximum sequence length %d", max_T, config.max_seq_len);
    params_.assign(layout_.total, 0.0f);
    grads_.assign(layout_.total, 0.0f);
    act_memory_.assign(activation_floats(config, size_t(max_B), size_t(max_T)), 0.0f);
    const size_t BT = size_t(max_B) * size_t(max_T), C = size_t(config.channels);
    grad_scratch_memory_.assign(BT * C * (1 + 1 + 3 + 1 + 4 + 4), 0.0f);
    float* g = grad_scratch_memory_.data();
    gs_.dresidual = g; g += BT * C;
    gs_.dln = g; g += BT * C;
    gs_.dqkv = g; g += BT * 3 * C;
    gs_.datty = g; g += BT * C;
    gs_.dfch = g; g += BT * 4 * C;
    gs_.dfch_gelu = g;
}

void Gpt2Cpu::carve_activations(int B, int T) {
    if (B > max_B_ || T > max_T_ || B <= 0 || T <= 0)
        fail("micro-batch %dx%d does not fit the %dx%d the model was allocated for", B, T, max_B_, max_T_);
    const size_t L = config_.num_layers, C = config_.channels, NH = config_.num_heads;
    const size_t Vp = config_.padded_vocab_size, BT = size_t(B) * size_t(T);
    float* p = act_memory_.data();
    auto take = [&p](size_t n) { float* q = p; p += n; return q; };
    acts_.encoded = take(BT * C);
    acts_.ln1 = take(L * BT * C);
    acts_.ln1_mean = take(L * BT);
    acts_.ln1_rstd = take(L * BT);
    acts_.qkv = take(L * BT * 3 * C);
    acts_.atty = take(L * BT * C);
    acts_.att = take(L * size_t(B) * NH * size_t(T) * size_t(T));
    acts_.residual2 = take(L * BT * C);
    acts_.ln2 = take(L * BT * C);
    acts_.ln2_mean = take(L * BT);
    acts_.ln2_rstd = take(L * BT);
    acts_.fch = take(L * BT * 4 * C);
    acts_.fch_gelu = take(L * BT * 4 * C);
    acts_.residual3 = take(L * BT * C);
    acts_.lnf = take(BT * C);
    acts_.lnf_mean = take(BT);
    acts_.lnf_rstd = take(BT);
    acts_.logits = take(BT * Vp);
    acts_.losses = take(BT);
    acts_.mlp_out = take(L * BT * C);
    acts_.scratch = take(BT * C);
    B_ = B;
    T_ = T;
}

float Gpt2Cpu::forward(const int* tokens, const int* targets, int B, int T, float* logits_out) {
    carve_activations(B, T);
    const GPT2Config& c = config_;
    const int C = c.channels, NH = c.num_heads, L = c.num_layers, V = c.vocab_size, Vp = c.padded_vocab_size;
    const size_t BT = size_t(B) * size_t(T), BTC = BT * size_t(C);
    for (size_t i = 0; i < BT; ++i)
        if (tokens[i] < 0 || tokens[i] >= V) fail("input token %d at position %zu is outside the vocabulary [0, %d)", tokens[i], i, V);
    tokens_.assign(tokens, tokens + BT);
    if (targets) targets_.assign(targets, targets + BT);
    else targets_.clear();

    const float* p = params_.data();
    const auto& off = layout_.offsets;
    encoder_forward(acts_.encoded, tokens, p + off[WTE], p + off[WPE], B, T, C);
    for (int l = 0; l < L; ++l) {
        const size_t lC = size_t(l) * C, l3C = lC * 3, l4C = lC * 4;
        const size_t lCC = lC * C, l3CC = lCC * 3, l4CC = lCC * 4;
        const float* residual = l == 0 ? acts_.encoded : acts_.residual3 + (l - 1) * BTC;
        float* ln1 = acts_.ln1 + l * BTC;
        float* qkv = acts_.qkv + l * BTC * 3;
        float* atty = acts_.atty + l * BTC;
        float* att = acts_.att + size_t(l) * B * NH * size_t(T) * T;
        float* residual2 = acts_.residual2 + l * BTC;
        float* ln2 = acts_.ln2 + l * BTC;
        float* fch = acts_.fch + l * BTC * 4;
        float* fch_gelu = acts_.fch_gelu + l * BTC * 4;
        float* residual3 = acts_.residual3 + l * BTC;
        float* mlp_out = acts_.mlp_out + l * BTC;

        layernorm_forward(ln1, acts_.ln1_mean + l * BT, acts_.ln1_rstd + l * BT, residual, p + off[LN1W] + lC,
                          p + off[LN1B] + lC, BT, C);
        matmul_forward(qkv, ln1, p + off[QKVW] + l3CC, p + off[QKVB] + l3C, BT, C, 3 * C);
        attention_forward(atty, att, qkv, B, T, C, NH);
        matmul_forward(acts_.scratch, atty, p + off[ATTPROJW] + lCC, p + off[ATTPROJB] + lC, BT, C, C);
        residual_forward(residual2, residual, acts_.scratch, BTC);
        layernorm_forward(ln2, acts_.ln2_mean + l * BT, acts_.ln2_rstd + l * BT, residual2, p + off[LN2W] + lC,
                          p + off[LN2B] + lC, BT, C);
        matmul_forward(fch, ln2, p + off[FCW] + l4CC, p + off[FCB] + l4C, BT, C, 4 * C);
        gelu_forward(fch_gelu, fch, BT * 4 * C);
        matmul_forward(mlp_out, fch_gelu, p + off[FCPROJW] + l4CC, p + off[FCPROJB] + lC, BT, 4 * C, C);
        residual_forward(residual3, residual2, mlp_out, BTC);
    }
    const float* last = acts_.residual3 + (L - 1) * BTC;
    layernorm_forward(acts_.lnf, acts_.lnf_mean, acts_.lnf_rstd, last, p + off[LNFW], p + off[LNFB], BT, C);
    matmul_forward(acts_.logits, acts_.lnf, p + off[WTE], nullptr, BT, C, Vp);  // the lm head is tied to wte
    if (logits_out) std::memcpy(logits_out, acts_.logits, BT * Vp * sizeof(float));
    classifier_forward(targets ? acts_.losses : nullptr, acts_.logits, targets, BT, V, Vp);
    if (!targets) return 0.0f;
    double sum = 0;  // in double, in order: the mean loss does not depend on the thread count
    for (size_t i = 0; i < BT; ++i) sum += acts_.losses[i];
    return float(sum / double(BT));
}

LinearActivations Gpt2Cpu::linear_activations(ParamTensor kind, int layer) const {
    if (tokens_.empty()) fail("the activations of a linear layer exist only after a forward pass");
    const size_t C = config_.channels, BTC = size_t(B_) * size_t(T_) * C, l = layer > 0 ? size_t(layer) : 0;
    const int c = int(C);
    switch (kind) {
        case QKVW: return {acts_.ln1 + l * BTC, c, 3 * c, acts_.qkv + l * BTC * 3};
        case ATTPROJW: return {acts_.atty + l * BTC, c, c, nullptr};
        case FCW: return {acts_.ln2 + l * BTC, c, 4 * c, acts_.fch + l * BTC * 4};
        case FCPROJW: return {acts_.fch_gelu + l * BTC * 4, 4 * c, c, acts_.mlp_out + l * BTC};
        case WTE: return {acts_.lnf, c, config_.padded_vocab_size, nullptr};  // the tied lm head
        default: fail("%s is not the weight of a linear layer", kParamTensorNames[kind]);
    }
}

void Gpt2Cpu::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

void Gpt2Cpu::backward(float loss_scale) {
    if (targets_.empty()) fail("backward needs a forward pass with targets first");
    const GPT2Config& c = config_;
    const int B = B_, T = T_, C = c.channels, NH = c.num_heads, L = c.num_layers, V = c.vocab_size;
    const int Vp = c.padded_vocab_size;
    const size_t BT = size_t(B) * size_t(T), BTC = BT * size_t(C);
    const float* p = params_.data();
    float* g = grads_.data();
    const auto& off = layout_.offsets;
    auto zero = [](float* x, size_t n) { std::memset(x, 0, n * sizeof(float)); };

    // The loss is the mean over positions: each position's loss enters with weight loss_scale / BT.
    float* dlogits = acts_.logits;
    classifier_backward(dlogits, targets_.data(), loss_scale / float(BT), BT, V, Vp);
    zero(gs_.dln, BTC);
    matmul_backward(gs_.dln, g + off[WTE], nullptr, dlogits, acts_.lnf, p + off[WTE], BT, C, Vp);
    zero(gs_.dresidual, BTC);
    layernorm_backward(gs_.dresidual, g + off[LNFW], g + off[LNFB], gs_.dln, acts_.residual3 + (L - 1) * BTC,
                       p + off[LNFW], acts_.lnf_mean, acts_.lnf_rstd, BT, C);

    for (int l = L - 1; l >= 0; --l) {
        const size_t lC = size_t(l) * C, l3C = lC * 3, l4C = lC * 4;
        const size_t lCC = lC * C, l3CC = lCC * 3, l4CC = lCC * 4;
        const float* residual = l == 0 ? acts_.encoded : acts_.residual3 + (l - 1) * BTC;
        // dresidual holds d(residual3); residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))).
        zero(gs_.dfch_gelu, BTC * 4);
        matmul_backward(gs_.dfch_gelu, g + off[FCPROJW] + l4CC, g + off[FCPROJB] + lC, gs_.dresidual,
                        acts_.fch_gelu + l * BTC * 4, p + off[FCPROJW] + l4CC, BT, 4 * C, C);
        zero(gs_.dfch, BTC * 4);
        gelu_backward(gs_.dfch, acts_.fch + l * BTC * 4, gs_.dfch_gelu, BTC * 4);
        zero(gs_.dln, BTC);
        matmul_backward(gs_.dln, g + off[FCW] + l4CC, g + off[FCB] + l4C, gs_.dfch, acts_.ln2 + l * BTC,
                        p + off[FCW] + l4CC, BT, C, 4 * C);
        // Adding the layernorm path turns d(residual3) into d(residual2) in place.
        layernorm_backward(gs_.dresidual, g + off[LN2W] + lC, g + off[LN2B] + lC, gs_.dln, acts_.residual2 + l * BTC,
                           p + off[LN2W] + lC, acts_.ln2_mean + l * BT, acts_.ln2_rstd + l * BT, BT, C);
        // residual2 = residual + attproj(attention(qkv(ln1(residual)))).
        zero(gs_.datty, BTC);
        matmul_backward(gs_.datty, g + off[ATTPROJW] + lCC, g + off[ATTPROJB] + lC, gs_.dresidual,
                        acts_.atty + l * BTC, p + off[ATTPROJW] + lCC, BT, C, C);
        zero(gs_.dqkv, BTC * 3);
        attention_backward(gs_.dqkv, gs_.datty, acts_.qkv + l * BTC * 3,
                           acts_.att + size_t(l) * B * NH * size_t(T) * T, B, T, C, NH);
        zero(gs_.dln, BTC);
        matmul_backward(gs_.dln, g + off[QKVW] + l3CC, g + off[QKVB] + l3C, gs_.dqkv, acts_.ln1 + l * BTC,
                        p + off[QKVW] + l3CC, BT, C, 3 * C);
        layernorm_backward(gs_.dresidual, g + off[LN1W] + lC, g + off[LN1B] + lC, gs_.dln, residual,
                           p + off[LN1W] + lC, acts_.ln1_mean + l * BT, acts_.ln1_rstd + l * BT, BT, C);
    }
    encoder_backward(g + off[WTE], g + off[WPE], gs_.dresidual, tokens_.data(), B, T, C);
}

}  // namespace coldstart
