// The RRC on the GPU and direct RRC control (optim/rrc.h, optim/cuda/rrc.cuh, the CUDA backend's rrc_pass):
// the reductions against their CPU references at awkward sizes; one measured step of the CUDA backend against
// the CPU backend for every optimizer family, with -r 0/1/2 and -ge 0/1 (which change where the inputs X come
// from: kept, or recomputed); bf16 against the CPU model's explicit products; direct control hitting its target
// with the CPU's values; the trainer end to end with --metrics-rrc 1, on one process and on two.
//
// Tolerances.
// - Reductions: double sums of the same fp32 (or T) values in another order: 1e-12 relative; the differences, T
//   roundings and the control's fused multiply-add are the same operations as the CPU's: equal bits.
// - fp32 backend against the CPU backend: both take the Gram form or the product in fp32 (sums in double), in
//   other orders, on activations that agree to ~1e-6: 1e-5, as the model's gradients.
// - bf16 against the CPU model's products in double, with the GPU's own update (a bf16 step's update differs from
//   the CPU's by sign flips of near-zero gradients, which is the optimizer's business, not the RRC's). The weights
//   are bf16 values, so W is exact on both sides; dW enters rounded once to bf16 (unit round-off 2^-8 per element,
//   random, which a norm over many elements averages far down); the products accumulate in fp32 and the sums in
//   double. What is left is X: the bf16 forward's activations, which differ from the CPU model's by the forward's
//   roundings, at most 1e-2 relative for L = 2 (the model test's bound at the logits, the last of them). Both norms
//   of the ratio are over the same X, so a common error cancels: 1e-2 bounds what remains (measured: 7e-4).
// - Direct control: the measured RRC of a controlled step equals the target up to the fp32 rounding of the
//   stored weights (1e-4, as on the CPU); in bf16 the measurement re-rounds dW to bf16, which moves it by ~1e-3: 1e-2.
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
#include "optim/cuda/rrc.cuh"
#include "optim/grad_norm.h"
#include "optim/rrc.h"
#include "optim/update_metrics.h"
#include "test/gpu/gpu_test_util.cuh"

using namespace coldstart;
using namespace gpu_test;

namespace {

struct Batch {
    std::vector<int> inputs, targets;
};
Batch random_batch(int B, int T, int V, uint64_t seed) {
    Rng rng(seed);
    return {random_ints(rng, size_t(B) * T, V), random_ints(rng, size_t(B) * T, V)};
}

// Model parameters exactly representable in bf16 where the GPU runs in bf16, so that both sides see the same weights.
Floats model_params(const GPT2Config& c, uint64_t seed, bool bf16_values) {
    Floats p = test_util::random_model_params(c, seed);
    if (bf16_values)
        for (float& x : p) x = round_to<bf16>(x);
    return p;
}

CudaOptions rrc_options(const std::string& precision, int recompute, int gelu_fusion) {
    CudaOptions o{precision, "flash", recompute, gelu_fusion};
    o.rrc = true;
    return o;
}

// One step of backend from params on batch: measured (with the RRC) when m is given.
void step(Backend& b, const Batch& batch, const StepContext& ctx, StepMeasurement* m) {
    b.zero_grad();
    b.forward_backward(batch.inputs.data(), batch.targets.data(), 1.0f);
    StepPlan plan{ctx.lr, ctx.t, 1.0f};  // clipped at norm 1
    plan.rrc_target = ctx.rrc_target;
    b.optimizer_step(plan, m);
}

double ratio(const RrcSums& s) { return std::sqrt(s.change_sq / s.output_sq); }

// An optimizer and the way the forward pass keeps or recomputes the layers' inputs.
struct Variant {
    const char* optimizer;
    int recompute, gelu_fusion;
};

StepMeasurement with_rrc() {
    StepMeasurement m;
    m.with_rrc = true;
    return m;
}

}  // namespace

TEST_CASE("cuda RRC reductions: Gram-form block sums, row sums, segments, differences and the control's scaling against the CPU") {
    Rng rng(5);
    const int N = 111, out = 72;  // awkward: rows not a multiple of a block's 8 warps, columns not of 32
    const size_t n = 70001;
    const Floats a = random_floats<float>(rng, n), b = random_floats<float>(rng, n);
    Buffer<float> d_a(n), d_b(n);
    d_a.upload(a);
    d_b.upload(b);
    const Floats y32 = random_floats<float>(rng, size_t(N) * out), bias32 = random_floats<float>(rng, size_t(out));
    const Floats y16 = random_floats<bf16>(rng, size_t(N) * out), bias16 = random_floats<bf16>(rng, size_t(out));
    Buffer<float> d_y32(y32.size()), d_bias32(bias32.size());
    Buffer<bf16> d_y16(y16.size()), d_bias16(bias16.size());
    d_y32.upload(y32);
    d_bias32.upload(bias32);
    d_y16.upload(y16);
    d_bias16.upload(bias16);
    // Six results; the last segment is left unfilled: it adds up to 0.
    cuda::RrcSumsDevice sums({unsigned(cuda::kFrobeniusParts), unsigned(N), unsigned(N), unsigned(N), unsigned(N), 5u}, 0);
    for (int run = 0; run < 2; ++run) {
        cuda::frobenius_parts(sums.segment(0), d_a, d_b, n, 0);
        cuda::row_square_sums(sums.segment(1), d_y32.get(), d_bias32.get(), N, out, 0);
        cuda::row_square_sums(sums.segment(2), d_y32.get(), static_cast<const float*>(nullptr), N, out, 0);
        cuda::row_square_sums(sums.segment(3), d_y16.get(), d_bias16.get(), N, out, 0);
        cuda::row_square_sums(sums.segment(4), d_y16.get(), static_cast<const bf16*>(nullptr), N, out, 0);
        sums.reduce(0);
    }
    std::vector<double> got(sums.results());
    REQUIRE(cudaMemcpy(got.data(), sums.sums(), got.size() * sizeof(double), cudaMemcpyDeviceToHost) == cudaSuccess);
    const std::vector<double> want = {dot_product(a.data(), b.data(), n),
                                      sum_of_squares_without_bias(y32.data(), bias32.data(), size_t(N), out),
                                      sum_of_squares_without_bias(y32.data(), nullptr, size_t(N), out),
                                      sum_of_squares_without_bias(y16.data(), bias16.data(), size_t(N), out),
                                      sum_of_squares_without_bias(y16.data(), nullptr, size_t(N), out), 0.0};
    for (size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        CHECK(std::fabs(got[i] - want[i]) <= 1e-12 * std::fabs(want[i]));
    }

    // dW rounded to T, and w = before + kappa (w - before) with kappa from the layer's sums on the device.
    const size_t m = 1001;
    const Floats before = random_floats<float>(rng, m), after = random_floats<float>(rng, m, -1.1f, 1.1f);
    Buffer<float> d_before(m), d_after(m), d_delta32(m);
    Buffer<bf16> d_delta16(m);
    d_before.upload(before);
    d_after.upload(after);
    cuda::difference(d_delta32.get(), d_after, d_before, m, 0);
    cuda::difference(d_delta16.get(), d_after, d_before, m, 0);
    Floats delta32(m), delta16(m);
    for (size_t i = 0; i < m; ++i) {
        delta32[i] = after[i] - before[i];
        delta16[i] = round_to<bf16>(delta32[i]);
    }
    CHECK(same_bits(d_delta32.download(), delta32));
    CHECK(same_bits(d_delta16.download(), delta16));
    const double layer_sums[2] = {0.37, 1.9};  // ||dW X||^2, ||W X||^2
    Buffer<double> d_sums(2);
    REQUIRE(cudaMemcpy(d_sums.get(), layer_sums, sizeof(layer_sums), cudaMemcpyHostToDevice) == cudaSuccess);
    cuda::scale_step(d_after, d_before, m, d_sums, 0.03, 0);
    Floats scaled = after;
    scale_step(scaled.data(), before.data(), m, float(rrc_step_scale(0.03, layer_sums[0], layer_sums[1])));
    CHECK(same_bits(d_after.download(), scaled));
}

// fp32: every optimizer family, each at one of the ways the forward keeps or recomputes X: -r 0 (all kept), -r 1
// (the GELU output recomputed), -r 2 (the layernorm outputs too), -ge 1 (the GELU from cuBLASLt's epilogue,
// recomputed by our kernel; kept with -r 0, which the bf16 case below takes).
TEST_CASE("cuda backend: a measured step's RRC equals the CPU backend's, every optimizer family, -r 0/1/2, -ge 0/1 (fp32)") {
    const GPT2Config c = test_util::small_model_config();
    const int B = 3, T = 13;
    const Floats params = model_params(c, 12, false);
    const Batch batch = random_batch(B, T, c.vocab_size, 4);
    for (const Variant& v : {Variant{"adamw", 0, 0}, Variant{"lion", 1, 0}, Variant{"liona", 2, 1}, Variant{"lionar", 1, 1}}) {
        const std::string what = format("%s -r %d -ge %d", v.optimizer, v.recompute, v.gelu_fusion);
        CAPTURE(what);
        const OptimizerConfig opt = test_util::test_optimizer(v.optimizer);
        auto cpu = make_cpu_backend(c, B, T, opt);
        auto gpu = make_cuda_backend(c, B, T, opt, rrc_options("fp32", v.recompute, v.gelu_fusion));
        StepMeasurement m_cpu = with_rrc(), m_gpu = with_rrc();
        for (Backend* b : {static_cast<Backend*>(cpu.get()), static_cast<Backend*>(gpu.get())}) {
            b->set_parameters(params.data());
            step(*b, batch, {1e-2f, 1.0f, 1}, b == cpu.get() ? &m_cpu : &m_gpu);
        }
        REQUIRE(m_gpu.rrc.size() == 4 * size_t(c.num_layers) + 1);
        REQUIRE(m_gpu.rrc.size() == m_cpu.rrc.size());
        double worst = 0;
        for (size_t j = 0; j < m_cpu.rrc.size(); ++j) {
            const RrcSums &g = m_gpu.rrc[j], &r = m_cpu.rrc[j];
            CAPTURE(parameter_tensors(c)[r.tensor].name);
            REQUIRE(g.tensor == r.tensor);
            const double err = std::max({std::fabs(g.change_sq / r.change_sq - 1), std::fabs(g.output_sq / r.output_sq - 1),
                                         std::fabs(ratio(g) / ratio(r) - 1)});
            CHECK(err < 1e-5);
            worst = std::max(worst, err);
        }
        MESSAGE(what << ": worst relative difference from the CPU backend " << worst);
    }
}

TEST_CASE("cuda backend: a measured step's RRC in bf16 against the CPU model's explicit products, every optimizer family, -r 0/1/2, -ge 0/1") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const int B = 3, T = 13;
    const Floats params = model_params(c, 13, true);
    const Batch batch = random_batch(B, T, c.vocab_size, 6);
    Gpt2Cpu twin(c, B, T);  // the step's inputs X, in fp32
    twin.params() = params;
    twin.forward(batch.inputs.data(), batch.targets.data(), B, T);
    for (const Variant& v : {Variant{"adamw", 1, 0}, Variant{"lion", 0, 0}, Variant{"lionar", 2, 1}, Variant{"liona", 0, 1}}) {
        const std::string what = format("bf16 %s -r %d -ge %d", v.optimizer, v.recompute, v.gelu_fusion);
        CAPTURE(what);
        auto gpu = make_cuda_backend(c, B, T, test_util::test_optimizer(v.optimizer), rrc_options("bf16", v.recompute, v.gelu_fusion));
        gpu->set_parameters(params.data());
        StepMeasurement m = with_rrc();
        step(*gpu, batch, {1e-2f, 1.0f, 1}, &m);
        Floats after(params.size());
        gpu->get_parameters(after.data());
        double worst = 0;
        for (const RrcSums& s : m.rrc) {
            const TensorSlice& t = tensors[s.tensor];
            CAPTURE(t.name);
            const double want = test_util::explicit_rrc(twin, t, params.data() + t.offset, after.data() + t.offset);
            const double err = std::fabs(ratio(s) / want - 1);
            CHECK(err < 1e-2);
            worst = std::max(worst, err);
        }
        MESSAGE(what << ": worst relative difference " << worst);
    }
}

// The weights are compared after the first step, on the controlled layers: from the second step on, a Lion step
// can take another sign where b1 m + (1 - b1) g is rounding noise on both sides (the key bias, whose exact gradient
// is 0, does from the first), which moves an element by a whole step and is the optimizer's business, not the
// control's (test_model.cu's trainer tests say the same of the losses).
TEST_CASE("cuda backend: direct RRC control hits its target and gives the CPU backend's steps (liona, lionar)") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const int B = 2, T = 11;
    for (const char* name : {"liona", "lionar"}) {
        OptimizerConfig opt = test_util::test_optimizer(name);
        opt.rrc_target = 0.05f;
        const std::vector<bool> controlled = rrc_controlled(opt, tensors);
        for (const char* precision : {"fp32", "bf16"}) {
            if (std::string(name) == "liona" && std::string(precision) == "bf16") continue;  // bf16 once: the same path
            const std::string what = std::string(name) + " " + precision;
            CAPTURE(what);
            const bool bf16 = std::string(precision) == "bf16";
            const Floats params = model_params(c, 21, bf16);
            auto gpu = make_cuda_backend(c, B, T, opt, rrc_options(precision, 1, 0));
            gpu->set_parameters(params.data());
            double worst = 0;
            for (int t = 1; t <= 2; ++t) {
                const Batch batch = random_batch(B, T, c.vocab_size, uint64_t(30 + t));
                const StepContext ctx{1e-2f, 1.0f, t, 0.03f * float(t)};
                StepMeasurement m = with_rrc();
                step(*gpu, batch, ctx, &m);
                for (const RrcSums& s : m.rrc) {
                    if (!controlled[s.tensor]) continue;
                    CAPTURE(tensors[s.tensor].name);
                    const double err = std::fabs(ratio(s) / ctx.rrc_target - 1);
                    CHECK(err < (bf16 ? 1e-2 : 1e-4));
                    worst = std::max(worst, err);
                }
                if (t > 1 || bf16) continue;
                auto cpu = make_cpu_backend(c, B, T, opt);
                cpu->set_parameters(params.data());
                step(*cpu, batch, ctx, nullptr);
                Floats w_cpu(params.size()), w_gpu(params.size());
                cpu->get_parameters(w_cpu.data());
                gpu->get_parameters(w_gpu.data());
                double differs = 0;
                for (size_t k = 0; k < tensors.size(); ++k) {
                    if (!controlled[k]) continue;
                    const TensorSlice& s = tensors[k];
                    const auto at = [&](const Floats& w) { return Floats(w.begin() + long(s.offset), w.begin() + long(s.offset + s.numel)); };
                    CAPTURE(s.name);
                    CHECK(rel(at(w_gpu), at(w_cpu)) < 1e-5);
                    differs = std::max(differs, rel(at(w_gpu), at(w_cpu)));
                }
                MESSAGE(what << ": the controlled layers after a step, worst relative difference from the CPU backend " << differs);
            }
            MESSAGE(what << ": measured RRC of the controlled layers, worst relative distance to the target " << worst);
        }
    }
}

namespace {

// The rrc fields of a trainer log's metrics records, in order, with their tensors' names.
std::vector<std::pair<std::string, double>> rrc_fields(const std::string& log) {
    std::vector<std::pair<std::string, double>> out;
    for (const auto& rec : test_util::records_of(test_util::read_jsonl(log), "metrics"))
        for (const auto& [name, values] : rec["tensors"].items())
            if (values.contains("rrc")) out.push_back({name, values["rrc"].get<double>()});
    return out;
}

}  // namespace

// The trainer writes the GPU's RRC; in fp32 it is compared with the CPU trainer's at 1e-4: two steps of direct
// control (lionar, whose run logs the uncontrolled lm head's RRC too), of AdamW on two processes (NCCL, the emulated
// device's ranks are processes) and of direct control on two processes with ZeRO-1 (liona, whose shards cut
// controlled tensors: each rank scales its rows). The same in bf16 (where each rank's weights before the step are its
// shard's master weights) is checked against the target, as the backend test does (1e-2). A byte-level d1 on
// tinyshakespeare's first bytes: a measured step emulates a block per weight row, which GPT-2's 50304-row embedding
// would make minutes long.
TEST_CASE("trainer binary on the GPU: --metrics-rrc 1 and --rrc-target log the CPU trainer's RRC, on one process and on two (-z 0, -z 1)") {
    test_util::TempDir dir;
    const std::string text = test_util::read_text(test_util::data_path("tinyshakespeare/input.txt")).substr(0, 16384);
    test_util::write_shard(dir / "bytes.bin", std::vector<uint16_t>(text.begin(), text.end()));
    const std::string common = " -i " + dir / "bytes.bin" + " -e d1 --vocab-size 256 -b 2 -t 16 -x 2 -l 1e-3 -c 0.1 -v 0 -s 0 "
                                                             "--threads 1 --metrics-every 1 --metrics-rrc 1";
    // Which logged layers direct control holds at the target (the lr is constant): none, lionar's four matrices
    // per layer, or every linear layer of liona (the tied lm head wte too).
    enum class Controlled { none, matrices, all };
    struct Run {
        std::string name, launcher, flags, precision;
        Controlled controlled;
    };
    const std::string zero = " -z 1 -d 64 --optimizer liona --rrc-target 0.02";
    const std::vector<Run> runs = {{"control", "", " --optimizer lionar --rrc-target 0.02", "fp32", Controlled::matrices},
                                   {"two", "tools/launch_local.sh 2 ", " -z 0 -d 64", "fp32", Controlled::none},
                                   {"zero", "tools/launch_local.sh 2 ", zero, "fp32", Controlled::all},
                                   {"zero bf16", "tools/launch_local.sh 2 ", zero, "bf16", Controlled::all}};
    for (size_t i = 0; i < runs.size(); ++i) {
        const Run& run = runs[i];
        CAPTURE(run.name);
        const bool fp32 = run.precision == "fp32";
        const std::string gpu_dir = dir / format("gpu%zu", i), cpu_dir = dir / format("cpu%zu", i);
        const auto gpu = test_util::run_command(run.launcher + cuda_trainer() + " --device cuda --precision " + run.precision + common +
                                                run.flags + " -o " + gpu_dir);
        REQUIRE_MESSAGE(gpu.exit_code == 0, gpu.output);
        CHECK(test_util::contains(gpu.output, "largest rrc"));
        const auto g = rrc_fields(gpu_dir + "/log.jsonl");
        REQUIRE(g.size() == 2 * 5);  // 2 steps, d1's qkvw, attprojw, fcw, fcprojw and wte
        for (const auto& field : g)
            if (run.controlled == Controlled::all || (run.controlled == Controlled::matrices && field.first != "wte"))
                CHECK_MESSAGE(std::fabs(field.second / 0.02 - 1) < (fp32 ? 1e-4 : 1e-2), field.first << ": " << field.second);
        if (!fp32) continue;
        const auto cpu = test_util::run_command(run.launcher + "./train_gpt2_cpu" + common + run.flags + " -o " + cpu_dir);
        REQUIRE_MESSAGE(cpu.exit_code == 0, cpu.output);
        const auto r = rrc_fields(cpu_dir + "/log.jsonl");
        REQUIRE(g.size() == r.size());
        double worst = 0;
        for (size_t j = 0; j < g.size(); ++j) {
            CAPTURE(g[j].first);
            REQUIRE(g[j].first == r[j].first);
            worst = std::max(worst, std::fabs(g[j].second / r[j].second - 1));
        }
        CHECK(worst < 1e-4);
        MESSAGE(run.name << ": worst relative difference of the logged RRC from the CPU trainer's " << worst);
    }
}
