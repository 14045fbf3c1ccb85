// The whole model on the GPU against the CPU model (layers/gpt2_cpu): logits, loss and all 16 gradient
// tensors; 20 training steps through both Backends as the training loop drives them; determinism (two
// runs, the same bits); recomputation (-r 0/1/2 give the same bits); GELU fusion; cuDNN attention
// where built; evaluation, sampling and checkpoint state; the trainer binary end to end.
//
// Tolerances. fp32: each output is a chain of a few dozen fp32 reductions on both sides, in different
// orders: 1e-5 (as the PyTorch oracle test of the CPU model). bf16: the CPU model runs in fp32 on the
// same (bf16-rounded) weights, the GPU rounds every activation to bf16 (unit round-off 2^-9) at some
// 10 stages per layer; the errors add up like a random walk, sqrt(10 L) * 2^-9 / sqrt(3) ~ 1e-2 for
// L = 2, and the loss, an average over many positions, is much closer. Over 20 AdamW steps Adam
// normalises each gradient element, so an element whose gradient is rounding noise (the key bias,
// whose exact gradient is 0) takes +-lr steps of random sign on each side: the losses are compared
// at 1e-4 (fp32) and 2e-2 (bf16), the parameters not at all.
// The bf16 gradients are compared at 3e-2: measured on the emulated device (whose products round to bf16 as
// cuBLASLt's do, from exact fp32 sums), the error grows down the layers, from 0.004 at lnfw to 0.0204 at
// the first layer's ln1w: every layernorm backward on the way divides by the row's standard deviation,
// which the random-walk estimate above leaves out. Not yet measured on a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda_backend.h"
#include "backend/gpt2_cpu.h"
#include "common/error.h"
#include "common/random.h"
#include "layers/cuda/attention_cudnn.cuh"
#include "optim/grad_norm.h"
#include "optim/update_metrics.h"
#include "test/gpu/gpu_test_util.cuh"

using namespace coldstart;
using namespace gpu_test;

namespace {

GPT2Config small_config() {
    GPT2Config c;
    c.max_seq_len = 64;
    c.vocab_size = 97;  // padded to 128
    c.padded_vocab_size = 128;
    c.num_layers = 2;
    c.num_heads = 3;
    c.channels = 72;  // head size 24
    return c;
}

// Head size 64, so that the bf16 path runs the tensor-core attention (layers/cuda/attention_mma.cu; small_config's
// head size 24 takes the fp32 SIMT kernel), one head to keep the emulated runs short (the kernel tests take 1-3),
// and T up to 96: two query tiles of 64, the second ragged.
GPT2Config tensor_core_config() {
    GPT2Config c = small_config();
    c.max_seq_len = 96;
    c.channels = 64;
    c.num_heads = 1;
    return c;
}

// Every parameter random (gains near 1, non-zero biases) so that no term hides behind a 0 or a 1;
// padded vocabulary rows 0. Rounded to bf16 when the GPU side runs in bf16, so both sides see the
// same weights.
Floats random_params(const GPT2Config& c, uint64_t seed, bool bf16_values) {
    const ParamLayout layout(c);
    Floats p(layout.total);
    Rng rng(seed);
    for (int k = 0; k < NUM_PARAM_TENSORS; ++k) {
        const bool gain = k == LN1W || k == LN2W || k == LNFW;
        const bool bias = k == LN1B || k == LN2B || k == LNFB || k == QKVB || k == ATTPROJB || k == FCB || k == FCPROJB;
        for (size_t i = 0; i < layout.sizes[k]; ++i) {
            const float v = gain ? 1.0f + 0.2f * rng.normal() : (bias ? 0.1f : 0.2f) * rng.normal();
            p[layout.offsets[k] + i] = bf16_values ? round_to<bf16>(v) : v;
        }
    }
    for (size_t i = size_t(c.vocab_size) * c.channels; i < size_t(c.padded_vocab_size) * c.channels; ++i) p[i] = 0.0f;
    return p;
}

struct Batch {
    std::vector<int> inputs, targets;
};
std::vector<Batch> random_batches(int count, int B, int T, int V, uint64_t seed) {
    Rng rng(seed);
    std::vector<Batch> batches(count);
    for (auto& b : batches) {
        b.inputs = random_ints(rng, size_t(B) * T, V);
        b.targets = random_ints(rng, size_t(B) * T, V);
    }
    return batches;
}

CudaOptions options(const std::string& precision, int recompute = 1, int gelu_fusion = 0, const std::string& attention = "flash") {
    return {precision, attention, recompute, gelu_fusion};
}

// The gradient of qkvb without its key part (exactly 0 in exact arithmetic, so only noise is left to
// compare), and the other tensors whole.
Floats tensor_grad(const Floats& g, const ParamLayout& layout, const GPT2Config& c, int k) {
    Floats out(g.begin() + long(layout.offsets[k]), g.begin() + long(layout.offsets[k] + layout.sizes[k]));
    if (k != QKVB) return out;
    Floats qv;
    const int C = c.channels;
    for (size_t i = 0; i < out.size(); ++i)
        if (int(i % (3 * size_t(C))) < C || int(i % (3 * size_t(C))) >= 2 * C) qv.push_back(out[i]);
    return qv;
}

struct Result {
    float loss;
    Floats logits, grads;
};

// One forward and backward of the CPU model.
Result cpu_step(const GPT2Config& c, const Floats& params, const Batch& batch, int B, int T) {
    Gpt2Cpu model(c, B, T);
    model.params() = params;
    model.zero_grad();
    Result r;
    r.logits.resize(size_t(B) * T * c.padded_vocab_size);
    r.loss = model.forward(batch.inputs.data(), batch.targets.data(), B, T, r.logits.data());
    model.backward(1.0f);
    r.grads = model.grads();
    return r;
}

// The same on the GPU: logits from evaluate(), loss and gradients from forward_backward() (the loss summed
// on the device, read by step_loss()).
Result gpu_step(CudaBackend& backend, const Floats& params, const Batch& batch) {
    const ParamLayout layout(backend.config());
    backend.set_parameters(params.data());
    Result r;
    const float eval_loss = backend.evaluate(batch.inputs.data(), batch.targets.data());
    r.logits.resize(batch.inputs.size() * size_t(backend.config().padded_vocab_size));
    backend.get_logits(r.logits.data());
    backend.zero_grad();
    backend.forward_backward(batch.inputs.data(), batch.targets.data(), 1.0f);
    r.loss = float(backend.step_loss());
    CHECK_MESSAGE(eval_loss == r.loss, "evaluate() and forward_backward() disagree on the loss: " << eval_loss << " vs " << r.loss);
    r.grads.resize(layout.total);
    backend.get_gradients(r.grads.data());
    return r;
}

void compare_with_cpu(const GPT2Config& c, const CudaOptions& opts, int B, int T, double tol_logits, double tol_grads) {
    const bool bf16 = opts.precision == "bf16";
    const Floats params = random_params(c, 1234, bf16);
    const Batch batch = random_batches(1, B, T, c.vocab_size, 77)[0];
    const Result ref = cpu_step(c, params, batch, B, T);
    auto backend = make_cuda_backend(c, B, T, OptimizerConfig{}, opts);
    const Result got = gpu_step(*backend, params, batch);
    const ParamLayout layout(c);
    CHECK_MESSAGE(std::fabs(got.loss - ref.loss) / ref.loss < tol_logits, "loss " << got.loss << " vs CPU " << ref.loss);
    Floats ours, theirs;  // the real vocabulary columns
    for (size_t i = 0; i < ref.logits.size(); ++i)
        if (int(i % c.padded_vocab_size) < c.vocab_size) {
            ours.push_back(got.logits[i]);
            theirs.push_back(ref.logits[i]);
        }
    CHECK_MESSAGE(rel(ours, theirs) < tol_logits, "logits: relative error " << rel(ours, theirs));
    double worst = 0;
    for (int k = 0; k < NUM_PARAM_TENSORS; ++k) {
        const double err = rel(tensor_grad(got.grads, layout, c, k), tensor_grad(ref.grads, layout, c, k));
        CHECK_MESSAGE(err < tol_grads, "gradient of " << std::string(kParamTensorNames[k]) << ": relative error " << err);
        worst = std::max(worst, err);
        if (std::getenv("COLDSTART_VERBOSE")) MESSAGE(std::string(kParamTensorNames[k]) << " " << err);
    }
    MESSAGE(opts.precision << " -r " << opts.recompute << " gelu-fusion " << opts.gelu_fusion << " attention " << opts.attention
                           << " vs CPU: loss " << std::fabs(got.loss - ref.loss) / ref.loss << ", logits " << rel(ours, theirs)
                           << ", worst gradient " << worst);
}

// n training steps of a backend with gradient accumulation over `accum` micro-batches and clipping,
// as train_gpt2.cu drives it (the verdict, the clip scale and the step's loss from the backend, read once
// a step). Returns the losses and, in norms, the gradient norms.
Floats train(Backend& backend, const Floats& params, const std::vector<Batch>& batches, int steps, int accum, Floats* norms,
             Floats* final_params) {
    backend.set_parameters(params.data());
    Floats losses;
    for (int s = 0; s < steps; ++s) {
        backend.zero_grad();
        for (int m = 0; m < accum; ++m) {
            const Batch& b = batches[size_t(s * accum + m) % batches.size()];
            backend.forward_backward(b.inputs.data(), b.targets.data(), 1.0f / float(accum));
        }
        backend.optimizer_step({2e-3f, s + 1, 1.0f});
        const StepReport report = backend.step_report();
        REQUIRE(report.verdict == StepVerdict::taken);
        losses.push_back(float(report.loss));
        if (norms) norms->push_back(report.norm);
    }
    if (final_params) {
        final_params->resize(ParamLayout(backend.config()).total);
        backend.get_parameters(final_params->data());
    }
    return losses;
}

}  // namespace

TEST_CASE("cuda model vs CPU model, fp32: logits, loss, 16 gradients") {
    compare_with_cpu(small_config(), options("fp32", 0), 3, 37, 1e-5, 1e-5);
    // fp32 rounding grows as the square root of the longest sum (the fc products' 4C terms) and through each
    // layer's layernorm backward: the small model's 1e-5 (4C = 96) scales by sqrt(4C / 96). Measured here with
    // the AVX-512 CPU reference: 1.03e-5 at C = 200 (two layers), 7.5e-6 at C = 192, 2.9e-6 with one layer.
    GPT2Config wide = small_config();
    wide.channels = 200;  // head size 40
    wide.num_heads = 5;
    const double wide_tol = 1e-5 * std::sqrt(4.0 * wide.channels / 96.0);
    compare_with_cpu(wide, options("fp32", 2), 2, 19, 1e-5, wide_tol);
}

TEST_CASE("cuda model vs CPU model, bf16: logits, loss, 16 gradients") {
    compare_with_cpu(small_config(), options("bf16", 1), 3, 37, 1e-2, 3e-2);
    compare_with_cpu(tensor_core_config(), options("bf16", 1), 2, 70, 1e-2, 3e-2);
}

TEST_CASE("cuda model, GELU fusion (cuBLASLt epilogues) vs CPU model") {
    compare_with_cpu(small_config(), options("fp32", 1, 1), 3, 37, 1e-5, 1e-5);
    compare_with_cpu(small_config(), options("bf16", 0, 1), 3, 37, 1e-2, 3e-2);
}

TEST_CASE("cuda model, cuDNN attention vs CPU model (where built with cuDNN)") {
    if (!cuda_backend_has_cudnn()) {
        // Refused at the start, saying why this build has none (the emulated device: cuDNN is not emulated).
        const std::string why = test_util::error_of([] { make_cuda_backend(small_config(), 2, 11, OptimizerConfig{}, options("bf16", 1, 0, "cudnn")); });
        CHECK(test_util::contains(why, "--attention cudnn: "));
        CHECK(test_util::contains(why, cuda::cudnn_missing_reason()));
        MESSAGE("built without cuDNN: " << why);
        return;
    }
    GPT2Config c = small_config();
    c.channels = 128;  // head size 64: what cuDNN's fused attention is built for
    c.num_heads = 2;
    compare_with_cpu(c, options("bf16", 1, 0, "cudnn"), 3, 37, 1e-2, 3e-2);
}

// The memory plan counts cuDNN's workspace (its deterministic backward's grows with B*NH*T*T), reserved when
// the backend is made: a training step then needs no allocation, so a run that "fits" does not fail mid-step.
// Only a GPU with cuDNN shows it (the emulated device has no cuDNN: the test above checks the refusal there).
TEST_CASE("cuda model, cuDNN attention: the workspace is in the memory plan and no step allocates") {
    if (!cuda_backend_has_cudnn()) return;
    GPT2Config c = small_config();
    c.channels = 128;
    c.num_heads = 2;
    const int B = 3, T = 37;
    auto gpu = make_cuda_backend(c, B, T, OptimizerConfig{}, options("bf16", 1, 0, "cudnn"));
    const size_t needed = cuda::cudnn_attention_workspace_bytes(B, T, c.channels, c.num_heads);
    CHECK(needed > size_t(B) * c.num_heads * T * sizeof(float));  // cuDNN's scratch and the row sums D
    CHECK(test_util::contains(gpu->memory_plan(), "cuDNN"));
    CHECK(cuda::cudnn_attention_reserved_bytes() >= needed);  // allocated before any step
    gpu->set_parameters(random_params(c, 5, true).data());
    const auto batches = random_batches(1, B, T, c.vocab_size, 9);
    gpu->forward_backward(batches[0].inputs.data(), batches[0].targets.data(), 1.0f);
    CHECK(cuda::cudnn_attention_reserved_bytes() >= needed);
}

// With GELU fusion too: there the recomputation redoes the fc product with cuBLASLt's GELU epilogue (bf16 shows
// it: our GELU kernel on the rounded pre-activation gives other bits than the epilogue's).
TEST_CASE("cuda model: -r 0, 1 and 2 give the same bits, with and without GELU fusion") {
    const auto batches = random_batches(1, 3, 37, small_config().vocab_size, 8);
    for (int fusion : {0, 1})
    for (const char* precision : {"fp32", "bf16", "bf16 tensor cores"}) {
        CAPTURE(fusion);
        CAPTURE(precision);
        const bool tensor_cores = std::string(precision) == "bf16 tensor cores";
        if (tensor_cores && fusion) continue;  // the fusion does not touch attention
        const GPT2Config c = tensor_cores ? tensor_core_config() : small_config();
        const Floats params = random_params(c, 5, true);
        std::vector<Result> results;
        for (int r = 0; r <= 2; ++r) {
            auto backend = make_cuda_backend(c, 3, 37, OptimizerConfig{}, options(tensor_cores ? "bf16" : precision, r, fusion));
            results.push_back(gpu_step(*backend, params, batches[0]));
        }
        for (int r = 1; r <= 2; ++r) {
            CHECK(results[r].loss == results[0].loss);
            CHECK_MESSAGE(same_bits(results[r].grads, results[0].grads), "-r " << r << " changed the gradients");
        }
    }
}

TEST_CASE("cuda backend vs CPU backend: 12 training steps with accumulation and clipping, AdamW and LionAR") {
    const GPT2Config c = small_config();
    const int B = 2, T = 37, steps = 12, accum = 2;
    const auto batches = random_batches(8, B, T, c.vocab_size, 21);
    const OptimizerConfig adamw{"adamw", 0.9f, 0.95f, 1e-8f, 0.1f};
    OptimizerConfig lionar{"lionar", 0.98f * 0.98f, 0.98f, 1e-8f, 0.1f};  // as paper-lionar-best: Nesterov, inverse bias correction
    lionar.inverse_bias_correction = InverseBiasCorrection::step;
    lionar.rrc_correction = RrcCorrection::alignment;
    for (const OptimizerConfig& opt : {adamw, lionar})
    for (const char* precision : {"fp32", "bf16"}) {
        CAPTURE(opt.name);
        CAPTURE(precision);
        const bool bf16 = std::string(precision) == "bf16";
        const Floats params = random_params(c, 3, bf16);
        auto cpu = make_cpu_backend(c, B, T, opt);
        auto gpu = make_cuda_backend(c, B, T, opt, options(precision));
        Floats cpu_norms, gpu_norms;
        const Floats cpu_losses = train(*cpu, params, batches, steps, accum, &cpu_norms, nullptr);
        const Floats gpu_losses = train(*gpu, params, batches, steps, accum, &gpu_norms, nullptr);
        const double tol = bf16 ? 2e-2 : 1e-4;
        for (int s = 0; s < steps; ++s)
            CHECK_MESSAGE(std::fabs(gpu_losses[s] - cpu_losses[s]) / cpu_losses[s] < tol,
                          "step " << s + 1 << ": loss " << gpu_losses[s] << " vs CPU " << cpu_losses[s]);
        CHECK(rel(gpu_norms, cpu_norms) < (bf16 ? 5e-2 : 1e-3));
        CHECK_MESSAGE(gpu_losses.back() < gpu_losses.front(), "the GPU run should learn: " << gpu_losses.front() << " -> " << gpu_losses.back());
        MESSAGE(opt.name << " " << precision << ": " << steps << " steps, CPU loss " << cpu_losses.front() << " -> " << cpu_losses.back() << ", GPU "
                          << gpu_losses.front() << " -> " << gpu_losses.back());
    }
}

TEST_CASE("cuda backend: a measured step (--metrics-every) gives the CPU backend's per-tensor sums; the RRC needs a backend made for it") {
    const GPT2Config c = small_config();
    const Floats params = random_params(c, 12, false);
    const auto batch = random_batches(1, 2, 37, c.vocab_size, 4)[0];
    auto cpu = make_cpu_backend(c, 2, 37, OptimizerConfig{});
    auto gpu = make_cuda_backend(c, 2, 37, OptimizerConfig{}, options("fp32"));
    StepMeasurement m_cpu, m_gpu;
    for (Backend* b : {static_cast<Backend*>(cpu.get()), static_cast<Backend*>(gpu.get())}) {
        b->set_parameters(params.data());
        b->zero_grad();
        b->forward_backward(batch.inputs.data(), batch.targets.data(), 1.0f);
        b->optimizer_step({1e-3f, 1, 1.0f}, b == cpu.get() ? &m_cpu : &m_gpu);
    }
    REQUIRE(m_gpu.tensors.size() == m_cpu.tensors.size());
    for (size_t k = 0; k < m_cpu.tensors.size(); ++k) {
        const TensorStepSums &a = m_gpu.tensors[k], &b = m_cpu.tensors[k];
        const Floats got = {float(a.w_sq), float(a.d_sq), float(a.g_sq), float(a.m_sq), float(a.rows)};
        const Floats want = {float(b.w_sq), float(b.d_sq), float(b.g_sq), float(b.m_sq), float(b.rows)};
        CHECK_MESSAGE(rel(got, want) < 1e-4, "tensor " << k << ": relative error " << rel(got, want));
    }
    // Without CudaOptions::rrc the MLP outputs were not kept: refused, naming what turns it on (test_rrc.cu measures it).
    StepMeasurement with_rrc;
    with_rrc.with_rrc = true;
    CHECK(test_util::contains(test_util::error_of([&] { gpu->optimizer_step({1e-3f, 2}, &with_rrc); }), "CudaOptions::rrc"));
}

TEST_CASE("cuda backend: two runs give the same bits (losses, norms, parameters)") {
    const GPT2Config c = small_config();
    const int B = 3, T = 37;
    const auto batches = random_batches(4, B, T, c.vocab_size, 31);
    std::vector<CudaOptions> variants = {options("bf16"), options("fp32"), options("bf16", 2, 1)};
    if (cuda_backend_has_cudnn()) variants.push_back(options("bf16", 1, 0, "cudnn"));
    for (const CudaOptions& o : variants) {
        CAPTURE(o.precision); CAPTURE(o.recompute); CAPTURE(o.gelu_fusion); CAPTURE(o.attention);
        GPT2Config cc = c;
        if (o.attention == "cudnn") {
            cc.channels = 128;
            cc.num_heads = 2;
        } else if (o.precision == "bf16" && o.recompute == 1) {
            cc = tensor_core_config();
        }
        const Floats params = random_params(cc, 4, o.precision == "bf16");
        Floats losses[2], norms[2], finals[2];
        for (int run = 0; run < 2; ++run) {
            auto backend = make_cuda_backend(cc, B, T, OptimizerConfig{}, o);
            losses[run] = train(*backend, params, batches, 5, 2, &norms[run], &finals[run]);
        }
        CHECK(same_bits(losses[0], losses[1]));
        CHECK(same_bits(norms[0], norms[1]));
        CHECK(same_bits(finals[0], finals[1]));
    }
}

// The verdict (optim/step_gate.h) is computed on the device from the device's loss and norm: the same as
// the CPU backend's for every reason, and a skipped update leaves the weights as they were.
TEST_CASE("cuda backend: skip decisions on the device equal the CPU backend's; a skipped update changes nothing") {
    const GPT2Config c = small_config();
    const int B = 2, T = 11;
    Floats params = random_params(c, 9, false);
    Floats broken = params;
    broken[ParamLayout(c).offsets[QKVW] + 5] = NAN;
    const auto batch = random_batches(1, B, T, c.vocab_size, 5)[0];
    auto cpu = make_cpu_backend(c, B, T, OptimizerConfig{});
    auto gpu = make_cuda_backend(c, B, T, OptimizerConfig{}, options("fp32"));
    const SpikeLimit tight{true, 0.0, 1e-3, 1.0}, loose{true, 0.0, 1.0, 1e9};  // every value spikes; none does
    struct Case {
        const char* what;
        const Floats* start;
        StepPlan plan;
        StepVerdict want;
    };
    const std::vector<Case> cases = {
        {"taken, clipped", &params, {1e-3f, 1, 0.01f}, StepVerdict::taken},
        {"taken under limits", &params, {1e-3f, 1, 1.0f, false, loose, loose}, StepVerdict::taken},
        {"poisoned loss", &params, {1e-3f, 1, 1.0f, true}, StepVerdict::nonfinite},
        {"a NaN weight", &broken, {1e-3f, 1, 1.0f}, StepVerdict::nonfinite},
        {"loss spike", &params, {1e-3f, 1, 1.0f, false, tight, loose}, StepVerdict::loss_spike},
        {"norm spike", &params, {1e-3f, 1, 1.0f, false, loose, tight}, StepVerdict::norm_spike},
    };
    for (const Case& k : cases) {
        CAPTURE(k.what);
        StepReport reports[2];
        Floats after[2];
        Backend* backends[2] = {cpu.get(), gpu.get()};
        for (int i = 0; i < 2; ++i) {
            backends[i]->set_parameters(k.start->data());
            backends[i]->zero_grad();
            backends[i]->forward_backward(batch.inputs.data(), batch.targets.data(), 1.0f);
            backends[i]->optimizer_step(k.plan);
            reports[i] = backends[i]->step_report();
            after[i].resize(params.size());
            backends[i]->get_parameters(after[i].data());
            CHECK(reports[i].verdict == k.want);
            CHECK(same_bits(after[i], *k.start) == (k.want != StepVerdict::taken));
        }
        if (k.want == StepVerdict::nonfinite) continue;
        CHECK(std::fabs(reports[1].loss - reports[0].loss) < 1e-5 * reports[0].loss);
        CHECK(std::fabs(reports[1].norm - reports[0].norm) < 1e-5 * reports[0].norm);
    }
}

#ifdef COLDSTART_EMULATED
// With deferred streams (queued work runs only when the host waits, as a GPU may run it late), a step of two
// micro-batches and the update is launched without one host wait that runs device work, and step_report()
// is the step's one wait. Three micro-batches reuse a pinned staging buffer within the step: the host waits
// for that buffer's earlier copies (two micro-batches back), and the bits equal the run without deferral.
TEST_CASE("cuda backend: a training step waits for the device once, in step_report(); deferred streams give the same bits") {
    const GPT2Config c = small_config();
    const int B = 2, T = 11, steps = 2;
    const Floats params = random_params(c, 10, true);
    const auto batches = random_batches(6, B, T, c.vocab_size, 12);
    for (int accum : {2, 3}) {
        CAPTURE(accum);
        Floats losses[2], finals[2];
        for (int deferred = 0; deferred < 2; ++deferred) {
            auto gpu = make_cuda_backend(c, B, T, OptimizerConfig{}, options("bf16"));
            gpu->set_parameters(params.data());
            emu::set_deferred_streams(deferred == 1);
            for (int s = 0; s < steps; ++s) {
                const unsigned long waits = emu::host_waits_that_ran_work();
                gpu->zero_grad();
                for (int m = 0; m < accum; ++m) {
                    const Batch& b = batches[size_t(s * accum + m)];
                    gpu->forward_backward(b.inputs.data(), b.targets.data(), 1.0f / float(accum));
                }
                gpu->optimizer_step({1e-3f, s + 1, 1.0f});
                if (deferred && accum == 2) CHECK(emu::host_waits_that_ran_work() == waits);
                losses[deferred].push_back(float(gpu->step_report().loss));
                if (deferred) CHECK(emu::host_waits_that_ran_work() > waits);
            }
            emu::set_deferred_streams(false);
            finals[deferred].resize(params.size());
            gpu->get_parameters(finals[deferred].data());
        }
        CHECK(same_bits(losses[1], losses[0]));
        CHECK(same_bits(finals[1], finals[0]));
    }
}
#endif

TEST_CASE("cuda backend: sampling probabilities match the CPU backend's, for windows shorter and longer than T") {
    const GPT2Config c = small_config();
    const Floats params = random_params(c, 6, false);
    const int T = 16;
    auto cpu = make_cpu_backend(c, 2, T, OptimizerConfig{});
    auto gpu = make_cuda_backend(c, 2, T, OptimizerConfig{}, options("fp32"));
    cpu->set_parameters(params.data());
    gpu->set_parameters(params.data());
    Rng rng(3);
    const std::vector<int> tokens = random_ints(rng, 40, c.vocab_size);
    for (int n : {1, 5, 16, 40}) {
        CAPTURE(n);
        std::vector<float> p_cpu, p_gpu;
        cpu->next_token_probs(tokens.data(), n, p_cpu);
        gpu->next_token_probs(tokens.data(), n, p_gpu);
        REQUIRE(p_gpu.size() == size_t(c.vocab_size));
        CHECK(rel(p_gpu, p_cpu) < 1e-5);
        double sum = 0;
        for (float x : p_gpu) sum += x;
        CHECK(std::fabs(sum - 1.0) < 1e-5);
    }
}

TEST_CASE("cuda backend: evaluate() changes nothing, parameters round-trip, memory plan is printed") {
    const GPT2Config c = small_config();
    const Floats params = random_params(c, 8, false);
    auto gpu = make_cuda_backend(c, 2, 11, OptimizerConfig{}, options("bf16", 2));
    gpu->set_parameters(params.data());
    Floats back(params.size());
    gpu->get_parameters(back.data());
    CHECK(same_bits(back, params));  // fp32 master weights, not their bf16 copy
    const auto batch = random_batches(1, 2, 11, c.vocab_size, 1)[0];
    const float a = gpu->evaluate(batch.inputs.data(), batch.targets.data());
    const float b = gpu->evaluate(batch.inputs.data(), batch.targets.data());
    CHECK(a == b);
    gpu->get_parameters(back.data());
    CHECK(same_bits(back, params));
    CHECK(test_util::contains(gpu->memory_plan(), "activations"));
    CHECK(test_util::contains(gpu->memory_plan(), "gradients"));
    // bad tokens are refused on the host with the position, as by the CPU model
    std::vector<int> bad = batch.inputs;
    bad[5] = c.vocab_size;
    CHECK(test_util::contains(test_util::error_of([&] { gpu->evaluate(bad.data(), batch.targets.data()); }), "position 5"));
}

TEST_CASE("trainer binary on the GPU: --device auto picks CUDA, trains, logs MFU, checkpoints resume on the CPU") {
    test_util::TempDir dir;
    const std::string flags = " -e d2 -b 4 -t 32 -x 6 -l 1e-3 -v 3 -m 2 -s 6 -g 8 -n 3" + test_util::shakespeare_flags();
    const auto run = test_util::run_command(cuda_trainer() + " --device auto -o " + (dir / "gpu") + flags);
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    CHECK(test_util::contains(run.output, "cuda memory plan"));
    CHECK((test_util::contains(run.output, "bf16 MFU") || test_util::contains(run.output, "MFU n/a (unknown GPU)")));
    const auto log = test_util::read_jsonl(dir / "gpu/log.jsonl");
    CHECK(test_util::records_of(log, "run")[0]["device"] == "cuda");
    const auto train = test_util::records_of(log, "train");
    REQUIRE(train.size() == 6);
    for (const auto& r : train) CHECK(std::isfinite(r["loss"].get<double>()));
    CHECK(test_util::records_of(log, "sample").size() == 1);
    // fp32 on the GPU and the CPU binary: the same run, losses close
    const auto gpu32 = test_util::run_command(cuda_trainer() + " --device cuda --precision fp32 -o " + (dir / "g32") + flags);
    const auto cpu32 = test_util::run_command("./train_gpt2_cpu -o " + (dir / "c32") + flags);
    REQUIRE_MESSAGE(gpu32.exit_code == 0, gpu32.output);
    REQUIRE_MESSAGE(cpu32.exit_code == 0, cpu32.output);
    const auto g = test_util::records_of(test_util::read_jsonl(dir / "g32/log.jsonl"), "train");
    const auto c = test_util::records_of(test_util::read_jsonl(dir / "c32/log.jsonl"), "train");
    REQUIRE(g.size() == c.size());
    for (size_t i = 0; i < g.size(); ++i)
        CHECK_MESSAGE(std::fabs(g[i]["loss"].get<double>() - c[i]["loss"].get<double>()) < 1e-3 * c[i]["loss"].get<double>(),
                      "step " << i + 1 << ": GPU fp32 " << g[i]["loss"] << " vs CPU " << c[i]["loss"]);
    // The GPU's last checkpoint (step 6) resumes on the CPU, two steps further: the optimizer state file is
    // the same format. (-y 1 with the same -x would say that the run has finished.)
    const auto resumed = test_util::run_command("./train_gpt2_cpu -y 1 -o " + (dir / "g32") + flags + " -x 8");
    CHECK_MESSAGE(resumed.exit_code == 0, resumed.output);
    CHECK(test_util::contains(resumed.output, "resumed from " + dir / "g32/model_00000006.bin (step 6)"));
}

// The README's promise for the emulated device (and a GPU): the CUDA trainer and the CPU trainer, on the
// same tiny run, log the same losses. fp32 on both. 1e-3 relative, as the trainer test above: the Lion family
// steps by signs, and an element whose b1 m + (1 - b1) g is rounding noise can take its sign the other way on
// one side, moving by a whole step (LionA, whose scale counts the non-zero signs of the whole tensor, measured
// 1.1e-4 on the emulated device; AdamW 0, LionAR 3e-6).
TEST_CASE("trainer binary: a tiny run on the GPU and on the CPU log the same losses, AdamW, LionA and LionAR") {
    test_util::TempDir dir;
    for (const char* optimizer : {"adamw", "liona", "lionar"}) {
        CAPTURE(optimizer);
        const std::string flags = std::string(" -e d2 -b 2 -t 32 -x 6 -v 3 -m 2 -s 0 -l 1e-3 -c 0.1 --optimizer ") + optimizer +
                                  test_util::shakespeare_flags();
        const std::string gpu_dir = dir / (std::string("gpu_") + optimizer), cpu_dir = dir / (std::string("cpu_") + optimizer);
        const auto gpu = test_util::run_command(cuda_trainer() + " --device cuda --precision fp32 -o " + gpu_dir + flags);
        const auto cpu = test_util::run_command("./train_gpt2_cpu -o " + cpu_dir + flags);
        REQUIRE_MESSAGE(gpu.exit_code == 0, gpu.output);
        REQUIRE_MESSAGE(cpu.exit_code == 0, cpu.output);
        std::vector<double> g, c;
        for (const auto& r : test_util::read_jsonl(gpu_dir + "/log.jsonl"))
            if (r["type"] == "train" || r["type"] == "val") g.push_back(r["loss"].get<double>());
        for (const auto& r : test_util::read_jsonl(cpu_dir + "/log.jsonl"))
            if (r["type"] == "train" || r["type"] == "val") c.push_back(r["loss"].get<double>());
        REQUIRE(g.size() == c.size());
        REQUIRE(g.size() == 9);  // 6 steps; validations at the start and at steps 3 and 6
        double worst = 0;
        for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(g[i] - c[i]) / c[i]);
        MESSAGE(std::string(optimizer) << ": losses " << c.front() << " -> " << c.back() << ", worst relative difference " << worst);
        CHECK(worst < 1e-3);
    }
}
