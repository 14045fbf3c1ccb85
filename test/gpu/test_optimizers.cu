// The Lion family on the GPU against its CPU reference (optim/lion.cpp), option by option: plain Lion,
// LionA (the l2 rule, with and without the momentum changes), LionAR per row and per tensor, strict and
// smoothed, with centring, row gains, both target angles, the RRC correction with both estimators and
// both inverse bias corrections; the measured-step sums reduced on
// the device (AdamW's too) against the CPU's; the state interchanged with the CPU optimizer.
//
// Tolerances: both sides compute in fp32 with double sums, the GPU's in another order (block trees), and
// FMA contraction may differ in the last bit; a sign that rounds the other way (|b1 m + (1-b1) g| near 0)
// moves one element by a step. Parameters after 6 steps: 1e-5 relative; sums: 1e-4 (the adamw test's).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "optim/cuda/cuda_optimizer.cuh"
#include "optim/lion.h"
#include "test/gpu/gpu_test_util.cuh"

using namespace coldstart;
using namespace gpu_test;

namespace {

struct Case {
    std::string what;
    OptimizerConfig config;
};

std::vector<Case> cases() {
    auto lion = [](const char* name) { return test_util::test_optimizer(name); };
    std::vector<Case> out = {{"lion", lion("lion")}, {"liona", lion("liona")}};
    OptimizerConfig c = lion("liona");
    c.beta2 = 0.98f;
    c.beta1 = 0.98f * 0.98f;  // Nesterov
    c.inverse_bias_correction = InverseBiasCorrection::step;
    out.push_back({"liona, b 0.98, Nesterov, inverse bias correction (i)", c});
    out.push_back({"lionar per row: the defaults (smoothed, equilibrium angle)", lion("lionar")});
    c = lion("lionar");
    c.angle_norm = AngleNorm::strict;
    c.target_angle = TargetAngle::lr;
    out.push_back({"lionar per row, strict, angle = lr", c});
    c = lion("lionar");
    c.center = true;
    c.row_gains = true;
    out.push_back({"lionar per row, centred, row gains", c});
    c = lion("lionar");
    c.control = ControlScope::tensor;
    c.center = true;
    c.control_embeddings = true;
    c.angle_norm = AngleNorm::strict;
    out.push_back({"lionar per tensor, strict, centred, embeddings controlled", c});
    c = lion("lionar");
    c.rrc_correction = RrcCorrection::alignment;
    out.push_back({"lionar, RRC correction by alignment", c});
    c = lion("lionar");
    c.rrc_correction = RrcCorrection::norm_ratio;
    c.inverse_bias_correction = InverseBiasCorrection::snr;
    c.row_gains = true;
    out.push_back({"lionar, RRC correction by norm ratio, inverse bias correction (ii), row gains", c});
    c = lion("lionar");
    c.control = ControlScope::tensor;
    c.rrc_correction = RrcCorrection::alignment;
    out.push_back({"lionar per tensor, smoothed, RRC correction", c});
    c = lion("lionar");
    c.beta2 = 0.98f;
    c.beta1 = 0.98f * 0.98f;  // Nesterov
    c.inverse_bias_correction = InverseBiasCorrection::step;
    c.rrc_correction = RrcCorrection::alignment;
    out.push_back({"lionar as paper-lionar-best: b 0.98, Nesterov, inverse bias correction (i), RRC correction", c});
    return out;
}

Floats flat_sums(const TensorStepSums& s) {
    return {float(s.w_sq), float(s.d_sq), float(s.w_dot_d), float(s.g_sq), float(s.g_dot_mprev), float(s.mprev_sq),
            float(s.m_sq), float(s.row_angle_sq), float(s.rows), float(s.snr_scale)};
}

}  // namespace

TEST_CASE("cuda Lion family: every option's steps, measured sums and state equal the CPU reference's; a skipped step changes nothing") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const size_t P = ParamLayout(c).total;
    for (const Case& k : cases()) {
        CAPTURE(k.what);
        Rng rng(17);
        Floats params = random_floats<float>(rng, P, -0.2f, 0.2f);
        Buffer<float> d_params(P), d_grads(P);
        d_params.upload(params);
        LionCpu cpu(k.config, tensors);
        auto gpu = cuda::make_cuda_optimizer(k.config, tensors, 0);
        auto step_both = [&](const StepContext& ctx, const StepOutputs& cpu_out, const StepOutputs& gpu_out) {
            const Floats grads = random_floats<float>(rng, P);
            d_grads.upload(grads);
            const cuda::DeviceStepGate gate{ctx.grad_scale, 0};  // the CUDA optimizers read the clip scale there
            REQUIRE(cudaMemcpy(gpu->gate_device(), &gate, sizeof(gate), cudaMemcpyHostToDevice) == cudaSuccess);
            gpu->step(d_params, d_grads, ctx, gpu_out);
            cpu.step(params.data(), grads.data(), ctx, cpu_out);
        };
        // A step the device's gate skips leaves the weights and every state buffer as they were, at the first
        // step too (no centring, no held norms recorded).
        auto snapshot = [&] {
            Floats all = d_params.download();
            for (size_t b = 0; b < gpu->state_layout().size(); ++b) {
                Floats x(gpu->state_layout()[b].count);
                gpu->read_state(b, x.data());
                all.insert(all.end(), x.begin(), x.end());
            }
            return all;
        };
        auto skipped_step = [&](int t) {
            const Floats before = snapshot();
            d_grads.upload(random_floats<float>(rng, P));
            const cuda::DeviceStepGate gate{0.5f, 1};
            REQUIRE(cudaMemcpy(gpu->gate_device(), &gate, sizeof(gate), cudaMemcpyHostToDevice) == cudaSuccess);
            gpu->step(d_params, d_grads, {1e-2f, 0.5f, t}, {});
            CHECK_MESSAGE(same_bits(snapshot(), before), "a skipped step at t = " << t << " changed the weights or the state");
        };
        skipped_step(1);
        // The first step measured too: the centring of the first step belongs to its update.
        std::vector<TensorStepSums> cpu_sums(tensors.size()), gpu_sums(tensors.size());
        Floats cpu_update(P), gpu_update(P);
        step_both({1e-2f, 0.8f, 1}, {cpu_sums.data(), cpu_update.data()}, {gpu_sums.data(), gpu_update.data()});
        for (int t = 2; t <= 6; ++t) step_both({1e-2f * (1.0f + 0.1f * float(t)), 0.7f + 0.05f * float(t), t}, {}, {});
        skipped_step(7);
        const Floats gpu_params = d_params.download();
        MESSAGE(k.what << ": relative error after 6 steps " << rel(gpu_params, params));
        CHECK(rel(gpu_params, params) < 1e-5);
        CHECK(rel(gpu_update, cpu_update) < 1e-4);
        for (size_t i = 0; i < tensors.size(); ++i)
            CHECK_MESSAGE(rel(flat_sums(gpu_sums[i]), flat_sums(cpu_sums[i])) < 1e-4, tensors[i].name << ": first-step sums differ");
        // A later measured step.
        step_both({1e-2f, 1.0f, 7}, {cpu_sums.data(), nullptr}, {gpu_sums.data(), nullptr});
        for (size_t i = 0; i < tensors.size(); ++i)
            CHECK_MESSAGE(rel(flat_sums(gpu_sums[i]), flat_sums(cpu_sums[i])) < 1e-4, tensors[i].name << ": step-7 sums differ");
        // The state buffers: the same names and sizes, equal values, and a GPU state loads into the CPU.
        const auto layout = cpu.state_layout(), gpu_layout = gpu->state_layout();
        REQUIRE(layout.size() == gpu_layout.size());
        for (size_t b = 0; b < layout.size(); ++b) {
            CAPTURE(layout[b].name);
            CHECK(gpu_layout[b].name == layout[b].name);
            REQUIRE(gpu_layout[b].count == layout[b].count);
            Floats x(layout[b].count), y(layout[b].count);
            cpu.read_state(b, x.data());
            gpu->read_state(b, y.data());
            CHECK(rel(y, x) < 1e-5);
        }
        test_util::TempDir dir;
        {
            File f(dir / "gpu.state", "wb");
            save_optimizer_state(*gpu, f);
            f.close();
        }
        LionCpu loaded(k.config, tensors);
        File f(dir / "gpu.state", "rb");
        CHECK(load_optimizer_state(loaded, f) == f.size());
    }
}

TEST_CASE("cuda optimizers: an unknown optimizer is refused by name") {
    OptimizerConfig c;
    c.name = "sgd";
    CHECK_THROWS_WITH_AS(cuda::make_cuda_optimizer(c, parameter_tensors(test_util::small_model_config()), 0),
                         "--optimizer: unknown optimizer 'sgd' (available: adamw, lion, liona, lionar)", Error);
}
