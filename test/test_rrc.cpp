// Direct RRC control (--rrc-target, optim/rrc.h) on the CPU backend: each controlled layer's step has the
// target RRC, measured independently (test_util::explicit_rrc: products in double on the step's own inputs);
// every other tensor takes the optimizer's own step; the target follows the schedule. Its resume is in
// test_resume.cpp, its flags in test_flags.cpp, the GPU's in test/gpu/test_rrc.cu.
//
// Tolerance of the target: the backend takes the layer's RRC in fp32 products (the Gram form, summed in double)
// and stores W_t + kappa dW in fp32; both move the measured RRC by about 1e-6 relative (measured below 1e-5):
// 1e-4.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/gpt2_cpu.h"
#include "common/random.h"
#include "optim/grad_norm.h"
#include "optim/rrc.h"
#include "optim/update_metrics.h"
#include "test/test_util.h"

using namespace coldstart;

namespace {

constexpr double kTargetTolerance = 1e-4;

struct Case {
    std::string what;
    OptimizerConfig config;
};

std::vector<Case> control_cases() {
    std::vector<Case> out = {{"liona", test_util::test_optimizer("liona")}, {"lionar per row, smoothed", test_util::test_optimizer("lionar")}};
    OptimizerConfig c = test_util::test_optimizer("lionar");
    c.control = ControlScope::tensor;
    c.angle_norm = AngleNorm::strict;
    c.control_embeddings = true;  // the lm head under control too
    out.push_back({"lionar per tensor, strict, embeddings controlled", c});
    for (Case& k : out) k.config.rrc_target = 0.05f;  // on; each step's target is the context's
    return out;
}

}  // namespace

TEST_CASE("direct RRC control: each controlled layer's step has the target RRC; every other tensor takes the optimizer's step") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const int B = 2, T = 9;
    Rng rng(41);
    std::vector<int> tokens(size_t(B) * T * 4);
    for (int& x : tokens) x = int(rng.below(uint64_t(c.vocab_size)));
    for (const Case& k : control_cases()) {
        CAPTURE(k.what);
        OptimizerConfig plain_config = k.config;
        plain_config.rrc_target = 0;
        auto controlled = make_cpu_backend(c, B, T, k.config);
        auto plain = make_cpu_backend(c, B, T, plain_config);
        const std::vector<float> start = test_util::random_model_params(c, 9);
        controlled->set_parameters(start.data());
        plain->set_parameters(start.data());
        const std::vector<bool> under_control = rrc_controlled(k.config, tensors);
        std::vector<float> before(start.size()), after(start.size()), plain_after(start.size());
        double worst = 0;
        int checked = 0;
        for (int t = 1; t <= 3; ++t) {
            const int* inputs = tokens.data() + (t - 1) * B * T;
            const StepContext ctx{1e-2f, 1.0f, t, 0.02f * float(t)};  // a target that changes from step to step
            controlled->get_parameters(before.data());
            for (Backend* b : {controlled.get(), plain.get()}) {
                b->zero_grad();
                b->forward_backward(inputs, inputs + 1, 1.0f);
                StepPlan plan{ctx.lr, t, 1.0f};  // clipped at norm 1
                plan.rrc_target = ctx.rrc_target;
                b->optimizer_step(plan);
            }
            controlled->get_parameters(after.data());
            plain->get_parameters(plain_after.data());
            Gpt2Cpu twin(c, B, T);  // the step's inputs X
            twin.params() = before;
            twin.forward(inputs, inputs + 1, B, T);
            for (size_t i = 0; i < tensors.size(); ++i) {
                const TensorSlice& s = tensors[i];
                CAPTURE(s.name);
                if (under_control[i]) {
                    const double rrc = test_util::explicit_rrc(twin, s, before.data() + s.offset, after.data() + s.offset);
                    const double err = std::fabs(rrc / ctx.rrc_target - 1);
                    CHECK_MESSAGE(err < kTargetTolerance, "step " << t << ": RRC " << rrc << " against the target " << ctx.rrc_target);
                    worst = std::max(worst, err);
                    ++checked;
                } else if (t == 1) {  // later steps see other gradients: the controlled layers moved otherwise
                    CHECK(std::equal(after.begin() + long(s.offset), after.begin() + long(s.offset + s.numel),
                                     plain_after.begin() + long(s.offset)));
                }
            }
        }
        const size_t expected = k.config.is_l2_controlled() || k.config.control_embeddings ? 4 * size_t(c.num_layers) + 1 : 4 * size_t(c.num_layers);
        CHECK(size_t(checked) == 3 * expected);
        MESSAGE(k.what << ": " << checked << " controlled steps, worst relative distance to the target " << worst);
    }
}

TEST_CASE("direct RRC control: the target follows the schedule and the inverse bias correction's ramp; which tensors it controls") {
    OptimizerConfig c = test_util::test_optimizer("lionar");
    CHECK(rrc_target_at(c, 1e-3, 2e-3, 1) == 0.0);  // off
    c.rrc_target = 0.04f;
    CHECK(rrc_target_at(c, 2e-3, 2e-3, 5) == doctest::Approx(0.04));
    CHECK(rrc_target_at(c, 1e-3, 2e-3, 5) == doctest::Approx(0.02));  // half the peak learning rate: half the target
    c.inverse_bias_correction = InverseBiasCorrection::step;
    CHECK(rrc_target_at(c, 2e-3, 2e-3, 3) == doctest::Approx(0.04 * (1 - std::pow(0.99, 3))));
    CHECK(rrc_step_scale(0.01, 4.0, 1.0) == doctest::Approx(0.005));  // the step's own RRC is 2: kappa = 0.01 / 2
    CHECK(rrc_step_scale(0.01, 0.0, 1.0) == 1.0);                      // an empty step is left as it is
    CHECK(rrc_step_scale(0.01, 1.0, 0.0) == 1.0);                      // no output: the RRC is undefined

    const std::vector<TensorSlice> tensors = parameter_tensors(test_util::small_model_config());
    auto kinds = [&](const OptimizerConfig& o) {
        std::string names;
        const std::vector<bool> on = rrc_controlled(o, tensors);
        for (size_t k = 0; k < tensors.size(); ++k)
            if (on[k] && tensors[k].layer <= 0) names += std::string(kParamTensorNames[tensors[k].kind]) + " ";
        return names;
    };
    CHECK(kinds(c) == "qkvw attprojw fcw fcprojw ");
    c.control_embeddings = true;
    CHECK(kinds(c) == "wte qkvw attprojw fcw fcprojw ");  // wpe is controlled by angle but is no linear layer
    OptimizerConfig a = test_util::test_optimizer("liona");
    a.rrc_target = 0.04f;
    CHECK(kinds(a) == "wte qkvw attprojw fcw fcprojw ");
}
