// The whole model against an independent PyTorch implementation (test/pytorch_oracle.py, Debian's
// python3-torch on the CPU): logits, loss and all 16 gradient tensors of a random small GPT-2 written in
// llm.c format, then 10 AdamW steps (with clipping and weight decay) through the training backend.
//
// Tolerance: both sides compute in fp32 with different summation orders. Each output is a chain of a few
// dozen reductions of length <= Vp, so the relative rounding difference is a small multiple of fp32's
// 6e-8 times sqrt(length): a few 1e-7 in practice, bounded well by 1e-5 (the "near 1e-5").
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/gpt2_cpu.h"
#include "common/error.h"
#include "common/random.h"
#include "data/model_file.h"
#include "optim/grad_norm.h"
#include "test/test_util.h"

using namespace coldstart;

namespace {

constexpr double kTolerance = 1e-5;

// The key-bias elements of qkvb (L, 3C) (which = true), or the query and value biases (false).
std::vector<float> key_bias_part(const float* qkvb, const GPT2Config& c, bool key) {
    std::vector<float> out;
    const int C = c.channels;
    for (int l = 0; l < c.num_layers; ++l)
        for (int i = 0; i < 3 * C; ++i)
            if ((i >= C && i < 2 * C) == key) out.push_back(qkvb[size_t(l) * 3 * C + i]);
    return out;
}

double norm(const std::vector<float>& x) {
    double s = 0;
    for (float v : x) s += double(v) * v;
    return std::sqrt(s);
}

struct Batches {
    int count, B, T;
    std::vector<int32_t> tokens;  // (count, 2, B, T): inputs then targets of each batch
    const int* inputs(int k) const { return tokens.data() + size_t(k) * 2 * B * T; }
    const int* targets(int k) const { return inputs(k) + size_t(B) * T; }
};

Batches random_batches(int count, int B, int T, int V, uint64_t seed) {
    Batches b{count, B, T, std::vector<int32_t>(size_t(count) * 2 * B * T)};
    Rng rng(seed);
    for (auto& t : b.tokens) t = int32_t(rng.below(uint64_t(V)));
    return b;
}

void write_batches(const std::string& path, const Batches& b) {
    std::vector<int32_t> raw = {b.count, b.B, b.T};
    raw.insert(raw.end(), b.tokens.begin(), b.tokens.end());
    test_util::write_bytes(path, raw.data(), raw.size() * sizeof(int32_t));
}

}  // namespace

TEST_CASE("model vs pytorch: logits, loss, 16 gradients and 10 AdamW steps") {
    const GPT2Config c = test_util::small_model_config();
    const ParamLayout layout(c);
    const int B = 2, T = 11, steps = 10;
    const float lr = 1e-2f, weight_decay = 0.1f, clip = 1.0f;
    const std::vector<float> params = test_util::random_model_params(c, 1234);
    const Batches batches = random_batches(steps, B, T, c.vocab_size, 99);

    test_util::TempDir dir;
    save_model_file(dir / "model.bin", c, params.data(), ModelDtype::fp32);
    write_batches(dir / "batches.bin", batches);
    const auto run = test_util::run_command(format("%s test/pytorch_oracle.py %s %s %s --steps %d --lr %g --weight-decay %g --clip %g",
                                                   test_util::python().c_str(), (dir / "model.bin").c_str(), (dir / "batches.bin").c_str(),
                                                   (dir / "out.bin").c_str(), steps, lr, weight_decay, clip));
    REQUIRE_MESSAGE(run.exit_code == 0, "the PyTorch oracle failed (needs python3-torch: make deps):\n" << run.output);
    const std::vector<char> raw = test_util::read_bytes(dir / "out.bin");
    const float* ref = reinterpret_cast<const float*>(raw.data());
    const size_t logits_n = size_t(B) * T * c.padded_vocab_size;
    REQUIRE(raw.size() == sizeof(float) * (1 + logits_n + layout.total + steps + layout.total));
    const float ref_loss = ref[0];
    const float* ref_logits = ref + 1;
    const float* ref_grads = ref_logits + logits_n;
    const float* ref_losses = ref_grads + layout.total;
    const float* ref_final = ref_losses + steps;

    // The oracle runs once (it takes seconds to import torch); both checks below read its output.
    {  // forward and backward
        Gpt2Cpu model(c, B, T);
        model.params() = params;
        model.zero_grad();
        std::vector<float> logits(logits_n);
        const float loss = model.forward(batches.inputs(0), batches.targets(0), B, T, logits.data());
        model.backward(1.0f);
        CHECK(test_util::relative_error(&loss, &ref_loss, 1) < kTolerance);
        // Padded vocabulary columns are excluded by the loss; compare the real ones.
        std::vector<float> ours, theirs;
        for (size_t i = 0; i < logits_n; ++i)
            if (int(i % c.padded_vocab_size) < c.vocab_size) {
                ours.push_back(logits[i]);
                theirs.push_back(ref_logits[i]);
            }
        CHECK(test_util::relative_error(ours, theirs) < kTolerance);
        double worst_grad = 0;
        for (int k = 0; k < NUM_PARAM_TENSORS; ++k) {
            const double err = test_util::relative_error(model.grads().data() + layout.offsets[k], ref_grads + layout.offsets[k], layout.sizes[k]);
            CHECK_MESSAGE(err < kTolerance, "gradient of " << std::string(kParamTensorNames[k]) << ": relative error " << err);
            worst_grad = std::max(worst_grad, err);
        }
        MESSAGE("vs PyTorch: loss " << test_util::relative_error(&loss, &ref_loss, 1) << ", logits " << test_util::relative_error(ours, theirs)
                                    << ", worst of the 16 gradients " << worst_grad << " (relative errors)");
        // The key bias cannot change the loss (it shifts all of a query's scores equally), so its exact
        // gradient is zero: ours must be rounding noise next to the query and value biases' gradients.
        const std::vector<float> key_bias_grad = key_bias_part(model.grads().data() + layout.offsets[QKVB], c, true);
        const std::vector<float> qv_bias_grad = key_bias_part(model.grads().data() + layout.offsets[QKVB], c, false);
        CHECK(norm(key_bias_grad) < kTolerance * norm(qv_bias_grad));
    }

    {  // 10 AdamW steps through the training backend, as the training loop drives it
        const OptimizerConfig opt{"adamw", 0.9f, 0.95f, 1e-8f, weight_decay};
        auto backend = make_cpu_backend(c, B, T, opt);
        backend->set_parameters(params.data());
        for (int s = 0; s < steps; ++s) {
            backend->zero_grad();
            backend->forward_backward(batches.inputs(s), batches.targets(s), 1.0f);
            backend->optimizer_step({lr, s + 1, clip});
            const float loss = float(backend->step_report().loss);
            CHECK_MESSAGE(test_util::relative_error(&loss, ref_losses + s, 1) < kTolerance, "step " << s + 1 << ": " << loss << " vs " << ref_losses[s]);
        }
        std::vector<float> final_params(layout.total);
        backend->get_parameters(final_params.data());
        double worst_param = 0;
        for (int k = 0; k < NUM_PARAM_TENSORS; ++k) {
            if (k == QKVB) continue;  // below, without the key bias
            const double err = test_util::relative_error(final_params.data() + layout.offsets[k], ref_final + layout.offsets[k], layout.sizes[k]);
            CHECK_MESSAGE(err < kTolerance, "parameters " << std::string(kParamTensorNames[k]) << " after 10 steps: relative error " << err);
            worst_param = std::max(worst_param, err);
        }
        MESSAGE("vs PyTorch after 10 AdamW steps: worst parameter tensor " << worst_param << " (relative error)");
        // Adam turns the key bias's zero-in-exact-arithmetic gradient into +-lr steps whose signs are
        // rounding noise, different on each side and without effect on the loss: compare q and v biases.
        CHECK(test_util::relative_error(key_bias_part(final_params.data() + layout.offsets[QKVB], c, false),
                                        key_bias_part(ref_final + layout.offsets[QKVB], c, false)) < kTolerance);
    }
}
