// The update-size metrics (optim/update_metrics.h): every logged measure against an independent
// computation in double from the weights before and after a step, the gradient, the momentum and the
// layer inputs (RRC against an explicit X dW^T product); the log's numbering against the saved models;
// the gradient noise scale.
//
// Tolerance 1e-5 relative: the backend sums in double over float32 values, as the independent computation
// does, in another order; the independent angles use Kahan's formula in double (precise at any angle).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/gpt2_cpu.h"
#include "common/error.h"
#include "common/random.h"
#include "data/model_file.h"
#include "optim/grad_norm.h"
#include "optim/update_metrics.h"
#include "test/test_util.h"

using namespace coldstart;
using test_util::angle_between;
using test_util::dot;
using nlohmann::json;

namespace {

constexpr double kTolerance = 1e-5;



// The measures that two saved models determine, for one tensor: w_norm, update_norm, rel_update, angle,
// and for matrices the RMS over rows (with a non-zero norm) of the per-row angle.
json weight_measures(const TensorSlice& t, const float* before, const float* after) {
    const size_t n = t.numel;
    std::vector<float> d(n);
    double d_sq = 0;
    for (size_t i = 0; i < n; ++i) d_sq += (double(after[i]) - before[i]) * (double(after[i]) - before[i]);
    const double w_norm = std::sqrt(dot(before, before, n));
    json j = {{"w_norm", w_norm}, {"update_norm", std::sqrt(d_sq)}};
    j["rel_update"] = w_norm > 0 ? json(std::sqrt(d_sq) / w_norm) : json(nullptr);
    j["angle"] = w_norm > 0 ? json(angle_between(before, after, n)) : json(nullptr);
    if (t.is_matrix) {
        const size_t cols = n / size_t(t.rows);
        double sum = 0, rows = 0;
        for (int r = 0; r < t.rows; ++r) {
            const float* a = before + size_t(r) * cols;
            if (dot(a, a, cols) == 0) continue;
            const double angle = angle_between(a, after + size_t(r) * cols, cols);
            sum += angle * angle;
            rows += 1;
        }
        j["angle_rows"] = std::sqrt(sum / rows);
    }
    return j;
}

void check_close(const json& got, const json& want, const std::string& what) {
    CAPTURE(what);
    if (want.is_null()) {
        CHECK(got.is_null());
        return;
    }
    REQUIRE(got.is_number());
    const double g = got.get<double>(), w = want.get<double>();
    CHECK(std::abs(g - w) <= kTolerance * std::abs(w) + 1e-300);
}

}  // namespace

TEST_CASE("metrics: every measure of a step equals an independent computation from the weights, gradient, momentum and inputs") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const int B = 2, T = 9;
    Rng rng(77);
    std::vector<int> tokens(size_t(B) * T * 3);
    for (int& x : tokens) x = int(rng.below(uint64_t(c.vocab_size)));
    const int* inputs[2] = {tokens.data(), tokens.data() + B * T};
    const int* targets[2] = {tokens.data() + 1, tokens.data() + B * T + 1};

    for (const std::string name : {"adamw", "lion", "liona", "lionar", "lionar-rrc"}) {
        CAPTURE(name);
        OptimizerConfig opt = test_util::test_optimizer(name == "lionar-rrc" ? "lionar" : name);
        if (name == "lionar-rrc") opt.rrc_correction = RrcCorrection::alignment;
        const char* momentum = name == "adamw" ? "adamw.m" : "lion.m";
        auto backend = make_cpu_backend(c, B, T, opt);
        backend->set_parameters(test_util::random_model_params(c, 5).data());
        // Step 1 unmeasured, so that step 2 has a previous momentum (grad_mom_cos).
        backend->zero_grad();
        backend->forward_backward(inputs[0], targets[0], 1.0f);
        backend->optimizer_step({1e-2f, 1, 0.5f});

        std::vector<float> before(ParamLayout(c).total), after(before.size());
        backend->get_parameters(before.data());
        const auto layout = backend->optimizer().state_layout();
        std::vector<float> m_prev(layout[0].count), m_now(layout[0].count);
        REQUIRE(layout[0].name == momentum);
        backend->optimizer().read_state(0, m_prev.data());
        // An independent model with the same weights gives the gradient and the layer inputs.
        Gpt2Cpu twin(c, B, T);
        twin.params() = before;
        twin.zero_grad();
        twin.forward(inputs[1], targets[1], B, T);
        twin.backward(1.0f);
        const float norm = float(std::sqrt(sum_of_squares(twin.grads().data(), twin.grads().size())));
        const float scale = clip_scale(norm, 0.5f);
        REQUIRE(scale < 1.0f);  // clipping is active: the measured gradient is the clipped one

        backend->zero_grad();
        backend->forward_backward(inputs[1], targets[1], 1.0f);
        REQUIRE(backend->grad_norm() == norm);
        StepMeasurement m;
        m.with_rrc = true;
        backend->optimizer_step({1e-2f, 2, 0.5f}, &m);
        backend->get_parameters(after.data());
        backend->optimizer().read_state(0, m_now.data());
        const json record = metrics_record(1, 1e-2f, 2, m, tensors, opt, nullptr);
        REQUIRE(record["tensors"].size() == tensors.size());

        const double correction = 1.0 - std::pow(double(opt.momentum_beta()), 2.0);
        double total_d_sq = 0;
        for (const TensorSlice& t : tensors) {
            CAPTURE(t.name);
            const json& got = record["tensors"][t.name];
            const float* w0 = before.data() + t.offset;
            const float* w1 = after.data() + t.offset;
            const json want = weight_measures(t, w0, w1);
            for (const auto& [field, value] : want.items()) check_close(got[field], value, field);
            total_d_sq += std::pow(want["update_norm"].get<double>(), 2);
            std::vector<float> g(t.numel);
            for (size_t i = 0; i < t.numel; ++i) g[i] = twin.grads()[t.offset + i] * scale;
            const double g_norm = std::sqrt(dot(g.data(), g.data(), t.numel));
            const float* mp = m_prev.data() + t.offset;
            const float* mn = m_now.data() + t.offset;
            check_close(got["grad_norm"], g_norm, "grad_norm");
            check_close(got["grad_mom_cos"], dot(g.data(), mp, t.numel) / (g_norm * std::sqrt(dot(mp, mp, t.numel))), "grad_mom_cos");
            check_close(got["mom_grad_ratio"], std::sqrt(dot(mn, mn, t.numel)) / correction / g_norm, "mom_grad_ratio");
            CHECK(got.contains("snr_scale") == (opt.has_rrc_correction() && t.is_matrix && t.kind != WTE && t.kind != WPE));
            if (!is_linear_layer(t.kind)) {
                CHECK_FALSE(got.contains("rrc"));
                continue;
            }
            // RRC: ||X dW^T|| / ||X W^T|| with an explicit product over the tokens of the step.
            check_close(got["rrc"], test_util::explicit_rrc(twin, t, w0, w1), "rrc");
        }
        check_close(record["update_norm"], std::sqrt(total_d_sq), "global update_norm");
    }
}

TEST_CASE("metrics: the record of step s describes the update from the model saved at step s to the one at s+1") {
    test_util::TempDir dir;
    for (const std::string optimizer : {"--recipe paper-adamw", "--recipe paper-lionar-best"}) {
        CAPTURE(optimizer);
        const std::string out = dir / (optimizer.substr(9));
        const auto run = test_util::run_command(test_util::trainer() + test_util::shakespeare_flags() +
                                                " -e d1 -b 4 -t 16 -l 1e-2 -x 3 -n 1 -v 0 -m 1 -s 0 --threads 2 --metrics-every 1 " +
                                                optimizer + " -o " + out);
        REQUIRE_MESSAGE(run.exit_code == 0, run.output);
        CHECK(run.output.find("metrics: |dW| ") != std::string::npos);  // the console summary
        const auto metrics = test_util::records_of(test_util::read_jsonl(out + "/log.jsonl"), "metrics");
        REQUIRE(metrics.size() == 3);
        const GPT2Config c = config_from_descriptor("d1");
        const std::vector<TensorSlice> tensors = parameter_tensors(c);
        for (int s = 1; s <= 2; ++s) {
            CAPTURE(s);
            const json& record = metrics[size_t(s)];
            REQUIRE(record["step"] == s);
            const LoadedModel a = load_model_file(format("%s/model_%08d.bin", out.c_str(), s));
            const LoadedModel b = load_model_file(format("%s/model_%08d.bin", out.c_str(), s + 1));
            for (const TensorSlice& t : tensors) {
                CAPTURE(t.name);
                const json want = weight_measures(t, a.params.data() + t.offset, b.params.data() + t.offset);
                for (const auto& [field, value] : want.items()) check_close(record["tensors"][t.name][field], value, field);
            }
        }
    }
}

TEST_CASE("metrics: the gradient noise scale from the first micro-batch and the whole step; off and without RRC") {
    test_util::TempDir dir;
    const std::string flags = test_util::trainer() + test_util::shakespeare_flags() + " -e d1 -b 4 -t 16 -x 1 -v 0 -m 1 -s 0 --threads 2";
    REQUIRE(test_util::run_command(flags + " -o " + dir / "small").exit_code == 0);
    REQUIRE(test_util::run_command(flags + " -d 256 --metrics-every 1 --metrics-rrc 0 -o " + dir / "big").exit_code == 0);
    const auto small = test_util::read_jsonl(dir / "small/log.jsonl");
    const auto big = test_util::read_jsonl(dir / "big/log.jsonl");
    CHECK(test_util::records_of(small, "metrics").empty());
    const json record = test_util::records_of(big, "metrics").at(0);
    // The first micro-batch of the accumulated step is the batch of the unaccumulated run's first step.
    const double small_norm = test_util::records_of(small, "train").at(0)["grad_norm"].get<double>();
    const double big_norm = test_util::records_of(big, "train").at(0)["grad_norm"].get<double>();
    CHECK(record["grad_sq_small"].get<double>() == doctest::Approx(small_norm * small_norm).epsilon(1e-6));
    CHECK(record["grad_sq_big"].get<double>() == doctest::Approx(big_norm * big_norm).epsilon(1e-6));
    // B_noise = tr(Sigma) / |G|^2 with b = 64 and B = 256 tokens (McCandlish et al. 2018), written out here.
    const double gb = small_norm * small_norm, gB = big_norm * big_norm, b = 64, Bt = 256;
    const double g_sq = (Bt * gB - b * gb) / (Bt - b), trace = (gb - gB) / (1 / b - 1 / Bt);
    CHECK(record["b_noise"].get<double>() == doctest::Approx(trace / g_sq).epsilon(1e-5));
    CHECK(std::isnan(gradient_noise_scale(10.0, 10, 0.5, 100)));  // an estimate |G|^2 <= 0 gives no scale
    for (const auto& [name, values] : record["tensors"].items()) CHECK_FALSE(values.contains("rrc"));
}
