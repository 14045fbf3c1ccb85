// The optimizers (optim/): AdamW and AdamW without momentum bias correction against PyTorch, Lion against
// its published rule, the invariants of LionA (each tensor's update l2 norm) and LionAR (each row's norm
// and angle) on constructed inputs, the RRC correction, inverse bias correction, the state in
// checkpoints, determinism, and each recipe training a small model.
//
// Tolerances: the oracles compute in float32 in another order; after 20 steps the relative difference is
// a few float32 roundings (~1e-7). Angles and norms are measured in double from the float32 weights, so
// their bounds (1e-6 for norms, 1e-5 for angles of ~1e-2 rad) are float32 rounding of the weights.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "config/recipes.h"
#include "optim/lion_math.h"
#include "optim/optimizer.h"
#include "test/test_util.h"

using namespace coldstart;
using test_util::angle_between;
using test_util::dot;
using test_util::relative_error;

namespace {

struct Problem {
    GPT2Config config = test_util::small_model_config();
    std::vector<TensorSlice> tensors = parameter_tensors(config);
    std::vector<float> params;
    Problem(uint64_t seed) : params(test_util::random_model_params(config, seed)) {}
};

std::vector<float> random_vector(size_t n, Rng& rng, float scale = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = scale * rng.normal();
    return v;
}



// Per controlled row of every controlled tensor: f(tensor, row, pointer before, pointer after, cols).
template <typename F>
void for_controlled_rows(const Problem& p, const OptimizerConfig& c, const std::vector<float>& before,
                         const std::vector<float>& after, F&& f) {
    const auto roles = tensor_roles(c, p.tensors);
    for (size_t k = 0; k < p.tensors.size(); ++k) {
        if (!roles[k].controlled) continue;
        const TensorSlice& t = p.tensors[k];
        const size_t cols = t.numel / size_t(t.rows);
        for (int r = 0; r < t.rows; ++r)
            f(t, r, before.data() + t.offset + size_t(r) * cols, after.data() + t.offset + size_t(r) * cols, cols);
    }
}

// LionAR with the angle per step = lr and the strict normalisation, so that every step's angle is exact
// and known (the defaults, the equilibrium angle and the smoothed norm, have their own test).
OptimizerConfig exact_lionar() {
    OptimizerConfig c = test_util::test_optimizer("lionar");
    c.target_angle = TargetAngle::lr;
    c.angle_norm = AngleNorm::strict;
    return c;
}

const TensorSlice& first_of(const Problem& p, ParamTensor kind) {
    return *std::find_if(p.tensors.begin(), p.tensors.end(), [&](const TensorSlice& t) { return t.kind == kind; });
}

std::vector<float> state_buffer(const Optimizer& opt, const std::string& name) {
    const auto layout = opt.state_layout();
    for (size_t i = 0; i < layout.size(); ++i)
        if (layout[i].name == name) {
            std::vector<float> v(layout[i].count);
            opt.read_state(i, v.data());
            return v;
        }
    FAIL("no state buffer " << name);
    return {};
}

}  // namespace

TEST_CASE("optimizers: AdamW and AdamW without bias correction equal PyTorch, Lion its published rule, over 20 steps") {
    Problem p(7);
    const size_t n = p.params.size();
    const int steps = 20;
    Rng rng(21);
    std::vector<std::vector<float>> grads;
    std::vector<float> scales, lrs;
    for (int s = 0; s < steps; ++s) {
        grads.push_back(random_vector(n, rng, 0.1f + 0.05f * float(s % 3)));
        scales.push_back(0.5f + 0.5f * rng.uniform());  // as gradient clipping scales them
        lrs.push_back(1e-3f * (1.0f + 0.1f * float(s)));
    }
    struct Case {
        const char* rule;
        OptimizerConfig config;
    };
    OptimizerConfig adamw;
    adamw.weight_decay = 0.1f;
    OptimizerConfig nobc = adamw;
    nobc.bias_correction = false;
    const std::vector<Case> cases = {{"adamw", adamw}, {"adamw-nobc", nobc}, {"lion", test_util::test_optimizer("lion")}};
    for (const Case& c : cases) {
        const std::string rule = c.rule;
        CAPTURE(rule);
        const auto roles = tensor_roles(c.config, p.tensors);
        std::vector<float> mask(n, 0.0f);
        for (size_t k = 0; k < p.tensors.size(); ++k)
            for (size_t i = 0; i < p.tensors[k].numel; ++i) mask[p.tensors[k].offset + i] = roles[k].decay ? 1.0f : 0.0f;
        std::vector<float> in;
        in.insert(in.end(), p.params.begin(), p.params.end());
        in.insert(in.end(), mask.begin(), mask.end());
        for (int s = 0; s < steps; ++s) {
            in.insert(in.end(), grads[s].begin(), grads[s].end());
            in.push_back(scales[s]);
            in.push_back(lrs[s]);
        }
        test_util::TempDir dir;
        const int32_t header[2] = {int32_t(n), steps};
        std::vector<char> bytes(sizeof(header) + in.size() * sizeof(float));
        std::memcpy(bytes.data(), header, sizeof(header));
        std::memcpy(bytes.data() + sizeof(header), in.data(), in.size() * sizeof(float));
        test_util::write_bytes(dir / "in.bin", bytes.data(), bytes.size());
        const auto run = test_util::run_command(test_util::python() + " test/optimizer_oracle.py " + dir / "in.bin " +
                                                dir / "out.bin" + format(" --rule %s --beta1 %.9g --beta2 %.9g --eps %.9g --wd %.9g", c.rule,
                                                                         c.config.beta1, c.config.beta2, c.config.eps, c.config.weight_decay));
        REQUIRE_MESSAGE(run.exit_code == 0, "the optimizer oracle failed (needs python3-torch: make deps):\n" << run.output);
        const std::vector<char> out = test_util::read_bytes(dir / "out.bin");
        REQUIRE(out.size() == size_t(steps) * n * sizeof(float));
        const float* expected = reinterpret_cast<const float*>(out.data());

        auto opt = make_cpu_optimizer(c.config, p.tensors);
        std::vector<float> w = p.params;
        double worst = 0;
        for (int s = 0; s < steps; ++s) {
            opt->step(w.data(), grads[s].data(), {lrs[s], scales[s], s + 1});
            worst = std::max(worst, relative_error(w.data(), expected + size_t(s) * n, n));
        }
        MESSAGE(rule << " vs oracle, worst relative error over 20 steps: " << worst);
        CHECK(worst < 1e-6);
        // The updates are far above that bound: the comparison can fail.
        CHECK(relative_error(w.data(), p.params.data(), n) > 1e-3);
    }
}

TEST_CASE("lionar: every controlled row keeps its norm and turns by exactly the target angle per step; gains and biases take Lion steps") {
    Problem p(11);
    OptimizerConfig c = exact_lionar();
    auto opt = make_cpu_optimizer(c, p.tensors);
    const std::vector<float> initial = p.params;
    std::vector<float> w = p.params;
    Rng rng(5);
    double worst_norm = 0, worst_angle = 0;
    for (int s = 0; s < 20; ++s) {
        const float lr = 1e-2f * (1.0f + 0.05f * float(s));
        const std::vector<float> g = random_vector(w.size(), rng), before = w;
        opt->step(w.data(), g.data(), {lr, 1.0f, s + 1});
        for_controlled_rows(p, c, before, w, [&](const TensorSlice&, int, const float* a, const float* b, size_t cols) {
            const size_t offset = size_t(a - before.data());
            const double n0 = std::sqrt(dot(initial.data() + offset, initial.data() + offset, cols));
            worst_norm = std::max(worst_norm, std::abs(std::sqrt(dot(b, b, cols)) / n0 - 1.0));
            const double angle = angle_between(a, b, cols);
            worst_angle = std::max(worst_angle, std::abs(angle / lr - 1.0));
        });
        // Tensors that are not controlled (biases, gains, wte, wpe) take Lion steps of size lr per element.
        const TensorSlice& bias = first_of(p, QKVB);
        for (size_t i = 0; i < bias.numel; ++i)
            CHECK(std::abs(double(w[bias.offset + i]) - before[bias.offset + i]) == doctest::Approx(lr).epsilon(1e-4));
    }
    MESSAGE("lionar: worst row norm drift " << worst_norm << ", angle error " << worst_angle);
    CHECK(worst_norm < 1e-6);
    CHECK(worst_angle < 1e-5);
}

TEST_CASE("lionar: the radial part of the update is removed before it is applied") {
    // A gradient along the weights makes Lion's direction sign(w) mostly radial. Were any radial part
    // applied, the step (scaled by the norm of the whole direction) would turn the row by far less than the
    // angle; removed, the row turns by exactly the angle. Rows whose weights are +-c have a purely radial
    // sign(w): nothing is left to apply, and they do not move.
    Problem p(31);
    OptimizerConfig c = exact_lionar();
    const TensorSlice& qkvw = first_of(p, QKVW);
    const size_t cols = size_t(qkvw.cols);
    std::vector<float> w = p.params;
    for (size_t i = 0; i < cols; ++i) w[qkvw.offset + i] = (i % 3 == 0 ? -0.5f : 0.5f);  // row 0: +-c
    std::vector<float> g(w.size());
    for (size_t i = 0; i < w.size(); ++i) g[i] = -w[i];
    auto opt = make_cpu_optimizer(c, p.tensors);
    const std::vector<float> before = w;
    opt->step(w.data(), g.data(), {1e-2f, 1.0f, 1});
    for (size_t i = 0; i < cols; ++i) CHECK(w[qkvw.offset + i] == before[qkvw.offset + i]);
    double radial_share = 0;
    for_controlled_rows(p, c, before, w, [&](const TensorSlice& t, int r, const float* a, const float* b, size_t n) {
        if (t.offset == qkvw.offset && r == 0) return;
        CHECK(angle_between(a, b, n) == doctest::Approx(1e-2).epsilon(1e-5));
        std::vector<float> u(n);
        for (size_t i = 0; i < n; ++i) u[i] = a[i] > 0 ? 1.0f : -1.0f;  // sign(w): the raw direction
        radial_share = std::max(radial_share, std::abs(dot(u.data(), a, n)) / std::sqrt(dot(u.data(), u.data(), n) * dot(a, a, n)));
    });
    CHECK(radial_share > 0.7);  // the raw directions were mostly radial: the test would see a radial step
}

TEST_CASE("lionar: per-tensor control, centring, smoothed normalisation") {
    Rng rng(8);
    SUBCASE("per tensor: the tensor keeps its norm and turns by the angle") {
        Problem p(12);
        OptimizerConfig c = exact_lionar();
        c.control = ControlScope::tensor;
        auto opt = make_cpu_optimizer(c, p.tensors);
        std::vector<float> w = p.params;
        const auto roles = tensor_roles(c, p.tensors);
        for (int s = 0; s < 10; ++s) {
            const std::vector<float> g = random_vector(w.size(), rng), before = w;
            opt->step(w.data(), g.data(), {2e-2f, 1.0f, s + 1});
            for (size_t k = 0; k < p.tensors.size(); ++k) {
                if (!roles[k].controlled) continue;
                const TensorSlice& t = p.tensors[k];
                const float* a = p.params.data() + t.offset;
                CHECK(std::sqrt(dot(w.data() + t.offset, w.data() + t.offset, t.numel) / dot(a, a, t.numel)) ==
                      doctest::Approx(1.0).epsilon(1e-6));
                CHECK(angle_between(before.data() + t.offset, w.data() + t.offset, t.numel) == doctest::Approx(2e-2).epsilon(1e-5));
            }
        }
    }
    SUBCASE("centring: controlled rows start and stay centred") {
        Problem p(13);
        OptimizerConfig c = exact_lionar();
        c.center = true;
        auto opt = make_cpu_optimizer(c, p.tensors);
        std::vector<float> w = p.params;
        for (int s = 0; s < 10; ++s) {
            const std::vector<float> g = random_vector(w.size(), rng);
            opt->step(w.data(), g.data(), {1e-2f, 1.0f, s + 1});
        }
        auto worst_row_mean = [&](const std::vector<float>& weights) {  // max over rows of |mean| / rms
            double worst = 0;
            for_controlled_rows(p, c, weights, weights, [&](const TensorSlice&, int, const float* row, const float*, size_t cols) {
                double sum = 0;
                for (size_t i = 0; i < cols; ++i) sum += row[i];
                worst = std::max(worst, std::abs(sum / double(cols)) / std::sqrt(dot(row, row, cols) / double(cols)));
            });
            return worst;
        };
        MESSAGE("centred rows: worst |mean| / rms " << worst_row_mean(w));
        CHECK(worst_row_mean(w) < 1e-6);
        CHECK(worst_row_mean(p.params) > 1e-2);  // random rows are not centred: the check above can fail
    }
    SUBCASE("smoothed: the first step turns by the angle, later ones near it; norms stay") {
        Problem p(14);
        OptimizerConfig c = exact_lionar();
        c.angle_norm = AngleNorm::smoothed;
        auto opt = make_cpu_optimizer(c, p.tensors);
        std::vector<float> w = p.params;
        for (int s = 0; s < 10; ++s) {
            const std::vector<float> g = random_vector(w.size(), rng), before = w;
            opt->step(w.data(), g.data(), {1e-2f, 1.0f, s + 1});
            for_controlled_rows(p, c, before, w, [&](const TensorSlice&, int, const float* a, const float* b, size_t cols) {
                const double angle = angle_between(a, b, cols);
                if (s == 0) CHECK(angle == doctest::Approx(1e-2).epsilon(1e-5));  // the bias-corrected EMA is |u| itself
                CHECK(angle > 0.3e-2);
                CHECK(angle < 3e-2);
                CHECK(std::sqrt(dot(b, b, cols) / dot(a, a, cols)) == doctest::Approx(1.0).epsilon(1e-6));
            });
        }
    }
}

TEST_CASE("lionar, the wrapper's learning rates: controlled rows turn by Lion's equilibrium angle for (lr, wd), other tensors take Lion steps of lr") {
    // The defaults: --target-angle equilibrium and the smoothed normalisation, as the authors' wrapper.
    const OptimizerConfig defaults = test_util::test_optimizer("lionar");
    CHECK(defaults.target_angle == TargetAngle::equilibrium);
    CHECK(defaults.angle_norm == AngleNorm::smoothed);
    CHECK_FALSE(defaults.control_embeddings);
    const double wd = 0.5, b1 = defaults.beta1, b2 = defaults.beta2;
    // sqrt(pi/2) * sqrt(2 lr wd) * sqrt((1-b1)^2 + b1^2 (1-b2)/(1+b2)), written out here independently
    auto equilibrium = [&](double lr) {
        return std::sqrt(M_PI / 2) * std::sqrt(2 * lr * wd) * std::sqrt((1 - b1) * (1 - b1) + b1 * b1 * (1 - b2) / (1 + b2));
    };
    for (const AngleNorm norm : {AngleNorm::strict, AngleNorm::smoothed}) {
        CAPTURE(int(norm));
        Problem p(15);
        OptimizerConfig c = defaults;
        c.weight_decay = float(wd);
        c.angle_norm = norm;
        auto opt = make_cpu_optimizer(c, p.tensors);
        std::vector<float> w = p.params;
        Rng rng(8);
        double worst = 0, smallest = 1e9, largest = 0;
        for (int s = 0; s < 12; ++s) {
            const float lr = 1e-3f * (1.0f + 0.2f * float(s));  // a schedule: the angle follows it
            const std::vector<float> g = random_vector(w.size(), rng), before = w;
            opt->step(w.data(), g.data(), {lr, 1.0f, s + 1});
            for_controlled_rows(p, c, before, w, [&](const TensorSlice&, int, const float* a, const float* b, size_t cols) {
                const double ratio = angle_between(a, b, cols) / equilibrium(lr);
                // Strict: every step exactly; smoothed: the first step exactly (the bias-corrected EMA is |u|^2), later ones near it.
                if (norm == AngleNorm::strict || s == 0) worst = std::max(worst, std::abs(ratio - 1.0));
                smallest = std::min(smallest, ratio);
                largest = std::max(largest, ratio);
            });
            const TensorSlice& bias = first_of(p, QKVB);  // not controlled: a Lion step of lr, not of the angle
            for (size_t i = 0; i < bias.numel; ++i)
                CHECK(std::abs(double(w[bias.offset + i]) - before[bias.offset + i]) == doctest::Approx(lr).epsilon(1e-4));
        }
        MESSAGE("angle / equilibrium angle: worst exact-step error " << worst << ", range [" << smallest << ", " << largest << "]");
        CHECK(worst < 1e-5);
        CHECK(smallest > 0.5);
        CHECK(largest < 2.0);
        CHECK(equilibrium(1e-3) < 0.5e-2);  // far below the learning rate's 1e-3 ... 3e-3 as an angle: the two readings differ
    }
}

TEST_CASE("liona: each tensor's update has the l2 norm lr * sqrt(elements) exactly, whatever its zero signs, while its angles vary") {
    Problem p(21);
    const OptimizerConfig c = test_util::test_optimizer("liona");
    const auto roles = tensor_roles(c, p.tensors);
    for (const TensorRole& r : roles) CHECK_FALSE(r.controlled);  // no angular control
    auto a = make_cpu_optimizer(c, p.tensors), lion = make_cpu_optimizer(test_util::test_optimizer("lion"), p.tensors);
    std::vector<float> w = p.params, wl = p.params;
    Rng rng(12);
    double worst = 0, lion_short = 1;
    std::vector<double> smallest_angle(p.tensors.size(), 1e9), largest_angle(p.tensors.size(), 0);
    for (int s = 0; s < 10; ++s) {
        const float lr = 1e-3f * (1.0f + 0.3f * float(s));
        std::vector<float> g = random_vector(w.size(), rng, 0.1f + float(s));
        // A third of each tensor gets no gradient (as the rows of tokens a batch does not hold): its sign is 0.
        for (size_t i = 0; i < g.size(); i += 3) g[i] = 0.0f;
        const std::vector<float> before = w, before_lion = wl;
        a->step(w.data(), g.data(), {lr, 1.0f, s + 1});
        lion->step(wl.data(), g.data(), {lr, 1.0f, s + 1});
        for (size_t k = 0; k < p.tensors.size(); ++k) {
            const TensorSlice& t = p.tensors[k];
            const float decay = roles[k].decay ? 1.0f - lr * c.weight_decay : 1.0f;
            auto step_norm = [&](const std::vector<float>& w0, const std::vector<float>& w1) {  // |W_{t+1} - W_t (1 - lr wd)|
                double sq = 0;
                for (size_t i = 0; i < t.numel; ++i) {
                    const double d = double(w1[t.offset + i]) - double(w0[t.offset + i] * decay);
                    sq += d * d;
                }
                return std::sqrt(sq);
            };
            const double rule = double(lr) * std::sqrt(double(t.numel));
            worst = std::max(worst, std::abs(step_norm(before, w) / rule - 1.0));
            lion_short = std::min(lion_short, step_norm(before_lion, wl) / rule);
            const double angle = angle_between(before.data() + t.offset, w.data() + t.offset, t.numel);
            smallest_angle[k] = std::min(smallest_angle[k], angle);
            largest_angle[k] = std::max(largest_angle[k], angle);
        }
    }
    MESSAGE("liona: worst relative error of the update norm " << worst << "; Lion's is as short as " << lion_short << " of it");
    CHECK(worst < 1e-4);
    CHECK(lion_short < 0.9);  // Lion, with the same inputs, misses the rule by the zero signs: the check can fail
    // The angles are not controlled: a step of the rule's norm turns W by about that norm over |W|, which
    // follows the schedule and the weights; nothing holds it.
    for (size_t k = 0; k < p.tensors.size(); ++k)
        if (p.tensors[k].kind == QKVW) CHECK(largest_angle[k] > 1.5 * smallest_angle[k]);
}

TEST_CASE("lionar: row gains: W = gain * direction, the direction's rows keep their norm and turn by the angle, gains take Lion steps") {
    Problem p(16);
    OptimizerConfig c = exact_lionar();
    c.row_gains = true;
    auto opt = make_cpu_optimizer(c, p.tensors);
    std::vector<float> w = p.params;
    Rng rng(9);
    std::vector<float> directions_before, gains_before;
    for (int s = 0; s < 8; ++s) {
        const std::vector<float> g = random_vector(w.size(), rng);
        opt->step(w.data(), g.data(), {1e-2f, 1.0f, s + 1});
        const std::vector<float> directions = state_buffer(*opt, "lion.directions"), gains = state_buffer(*opt, "lion.gains");
        // W = gain * direction, row by row, in the order the controlled tensors are laid out.
        const auto roles = tensor_roles(c, p.tensors);
        size_t d = 0, row = 0;
        for (size_t k = 0; k < p.tensors.size(); ++k) {
            if (!roles[k].controlled) continue;
            const TensorSlice& t = p.tensors[k];
            const size_t cols = t.numel / size_t(t.rows);
            for (int r = 0; r < t.rows; ++r, ++row) {
                for (size_t i = 0; i < cols; ++i) CHECK(w[t.offset + size_t(r) * cols + i] == gains[row] * directions[d + size_t(r) * cols + i]);
                const float* v = directions.data() + d + size_t(r) * cols;
                const float* v0 = p.params.data() + t.offset + size_t(r) * cols;  // the initial direction is W
                CHECK(std::sqrt(dot(v, v, cols) / dot(v0, v0, cols)) == doctest::Approx(1.0).epsilon(1e-6));
                if (s > 0) {
                    CHECK(angle_between(directions_before.data() + d + size_t(r) * cols, v, cols) == doctest::Approx(1e-2).epsilon(1e-5));
                    CHECK(std::abs(gains[row] - gains_before[row]) == doctest::Approx(1e-2).epsilon(1e-4));
                }
            }
            d += t.numel;
        }
        directions_before = directions;
        gains_before = gains;
    }
    CHECK(std::abs(gains_before[0] - 1.0f) > 1e-3);  // the gains moved
}

TEST_CASE("lionar's RRC correction: the step scale stays in [k_min, 1]; 1 for pure noise, k_min when every gradient agrees") {
    Problem p(17);
    const auto roles = tensor_roles(exact_lionar(), p.tensors);
    // The scale of every controlled tensor after each of `steps` steps with gradients signal + noise * N(0,1).
    auto scales = [&](OptimizerConfig c, float noise, int steps) {
        auto opt = make_cpu_optimizer(c, p.tensors);
        std::vector<float> w = p.params;
        Rng rng(3);
        const std::vector<float> signal = random_vector(w.size(), rng);
        std::vector<std::vector<double>> out;
        for (int s = 0; s < steps; ++s) {
            std::vector<float> g = random_vector(w.size(), rng, noise);
            for (size_t i = 0; i < g.size(); ++i) g[i] += noise < 1.0f ? signal[i] : 0.0f;
            std::vector<TensorStepSums> sums(p.tensors.size());
            const std::vector<float> before = w;
            opt->step(w.data(), g.data(), {1e-2f, 1.0f, s + 1}, {sums.data(), nullptr});
            std::vector<double> k_of_step;
            for (size_t k = 0; k < p.tensors.size(); ++k) {
                if (!roles[k].controlled) continue;
                k_of_step.push_back(sums[k].snr_scale);
                // The rows turn by lr * k (strict normalisation).
                const TensorSlice& t = p.tensors[k];
                const size_t cols = t.numel / size_t(t.rows);
                CHECK(angle_between(before.data() + t.offset, w.data() + t.offset, cols) ==
                      doctest::Approx(1e-2 * sums[k].snr_scale).epsilon(1e-5));
            }
            out.push_back(k_of_step);
        }
        return out;
    };
    OptimizerConfig alignment = exact_lionar();
    alignment.rrc_correction = RrcCorrection::alignment;
    OptimizerConfig ratio = alignment;
    ratio.rrc_correction = RrcCorrection::norm_ratio;
    OptimizerConfig ratio_ii = ratio;
    ratio_ii.inverse_bias_correction = InverseBiasCorrection::snr;
    for (const OptimizerConfig& c : {alignment, ratio, ratio_ii}) {
        CAPTURE(int(c.rrc_correction));
        CAPTURE(int(c.inverse_bias_correction));
        // Plain norm ratios read early noise as signal (the zero-initialised momentum): give them the
        // momentum's time constant, 1 / (1 - b) = 100 steps, to settle.
        const bool biased = c.rrc_correction == RrcCorrection::norm_ratio && c.inverse_bias_correction == InverseBiasCorrection::none;
        const int settle = biased ? 300 : 30;
        const auto noise = scales(c, 1.0f, settle), equal = scales(c, 0.0f, 10), mixed = scales(c, 0.3f, settle);
        for (const auto& run : {noise, equal, mixed})
            for (const auto& step : run)
                for (double k : step) {
                    CHECK(k >= c.k_min);
                    CHECK(k <= 1.0);
                }
        for (double k : noise.back()) CHECK(k > 0.98);
        for (double k : equal.back()) CHECK(k == doctest::Approx(c.k_min).epsilon(1e-6));
        for (size_t i = 0; i < mixed.back().size(); ++i) {  // between the two, lower with more signal
            CHECK(mixed.back()[i] < noise.back()[i]);
            CHECK(mixed.back()[i] > equal.back()[i]);
        }
    }
    // Reading (ii) removes the zero-initialised momentum's bias from the norm ratio: early pure-noise steps
    // are not mistaken for signal.
    CHECK(scales(ratio, 1.0f, 2)[1][0] < 0.8);
    CHECK(scales(ratio_ii, 1.0f, 2)[1][0] > 0.9);
}

TEST_CASE("inverse bias correction (i) scales the first steps by 1 - b^t") {
    Problem p(18);
    Rng rng(4);
    std::vector<std::vector<float>> grads;
    for (int s = 0; s < 10; ++s) grads.push_back(random_vector(p.params.size(), rng));
    for (const std::string name : {"lion", "liona", "lionar"}) {
        CAPTURE(name);
        OptimizerConfig plain = name == "lionar" ? exact_lionar() : test_util::test_optimizer(name);
        plain.weight_decay = 0.0f;
        OptimizerConfig ramped = plain;
        ramped.inverse_bias_correction = InverseBiasCorrection::step;
        auto a = make_cpu_optimizer(plain, p.tensors), b = make_cpu_optimizer(ramped, p.tensors);
        std::vector<float> wa = p.params, wb = p.params, da(p.params.size()), db(p.params.size());
        const TensorSlice& bias = first_of(p, FCB);  // a plain tensor in both
        const TensorSlice& qkvw = first_of(p, QKVW);
        for (int s = 0; s < 10; ++s) {
            const std::vector<float> before_b = wb;
            a->step(wa.data(), grads[s].data(), {1e-2f, 1.0f, s + 1}, {nullptr, da.data()});
            b->step(wb.data(), grads[s].data(), {1e-2f, 1.0f, s + 1}, {nullptr, db.data()});
            const double ramp = 1.0 - std::pow(0.99, s + 1);
            const double ratio = std::sqrt(dot(db.data() + bias.offset, db.data() + bias.offset, bias.numel) /
                                           dot(da.data() + bias.offset, da.data() + bias.offset, bias.numel));
            CHECK(ratio == doctest::Approx(ramp).epsilon(2e-3));  // float32 rounding of w against steps of 1e-4
            if (name == "lionar")
                CHECK(angle_between(before_b.data() + qkvw.offset, wb.data() + qkvw.offset, size_t(qkvw.cols)) ==
                      doctest::Approx(1e-2 * ramp).epsilon(1e-5));
            wa = wb;  // the same weights for the next step: only the step size differs
        }
    }
}

TEST_CASE("optimizer state: named buffers round-trip exactly; a resumed optimizer continues bit for bit; mismatches are named") {
    Problem p(19);
    OptimizerConfig c = test_util::test_optimizer("lionar");
    c.rrc_correction = RrcCorrection::alignment;
    c.row_gains = true;
    c.inverse_bias_correction = InverseBiasCorrection::step;
    auto a = make_cpu_optimizer(c, p.tensors);
    std::vector<float> w = p.params;
    Rng rng(6);
    std::vector<std::vector<float>> grads;
    for (int s = 0; s < 10; ++s) grads.push_back(random_vector(w.size(), rng));
    for (int s = 0; s < 5; ++s) a->step(w.data(), grads[s].data(), {1e-2f, 1.0f, s + 1});
    test_util::TempDir dir;
    {
        File f(dir / "state.bin", "wb");
        save_optimizer_state(*a, f);
        f.close();
    }
    auto b = make_cpu_optimizer(c, p.tensors);
    {
        File f(dir / "state.bin", "rb");
        load_optimizer_state(*b, f);
    }
    std::vector<std::string> names;
    for (const StateBuffer& s : a->state_layout()) names.push_back(s.name);
    CHECK(names == std::vector<std::string>{"lion.m", "lion.norms", "lion.norm_ema", "lion.snr_ema", "lion.gains", "lion.gain_m", "lion.directions"});
    std::vector<float> wb = w;
    for (int s = 5; s < 10; ++s) {
        a->step(w.data(), grads[s].data(), {1e-2f, 1.0f, s + 1});
        b->step(wb.data(), grads[s].data(), {1e-2f, 1.0f, s + 1});
    }
    CHECK(w == wb);

    OptimizerConfig adamw;
    auto other = make_cpu_optimizer(adamw, p.tensors);
    File f(dir / "state.bin", "rb");
    CHECK(test_util::error_of([&] { load_optimizer_state(*other, f); }) ==
          dir / "state.bin" + ": optimizer state buffer 0 is 'lion.m', expected 'adamw.m' (the state of another optimizer or option set?)");
    // A state with fewer buffers than the run's optimizer expects (no row gains) is named as such.
    OptimizerConfig fewer = c;
    fewer.row_gains = false;
    auto without_gains = make_cpu_optimizer(fewer, p.tensors);
    {
        File out(dir / "fewer.bin", "wb");
        save_optimizer_state(*without_gains, out);
        out.close();
    }
    File shorter(dir / "fewer.bin", "rb");
    CHECK(test_util::error_of([&] { load_optimizer_state(*b, shorter); }) ==
          dir / "fewer.bin" + ": the optimizer state ends after 4 buffers; this run's lionar expects 'lion.gains' next (the state of another optimizer or option set?)");
}

TEST_CASE("optimizers: the same bits whatever the number of threads") {
    Problem p(20);
    Rng rng(10);
    std::vector<std::vector<float>> grads;
    for (int s = 0; s < 4; ++s) grads.push_back(random_vector(p.params.size(), rng));
    OptimizerConfig tensor_control = test_util::test_optimizer("lionar");
    tensor_control.control = ControlScope::tensor;
    tensor_control.center = true;
    tensor_control.rrc_correction = RrcCorrection::norm_ratio;
    OptimizerConfig rrc = test_util::test_optimizer("lionar");
    rrc.rrc_correction = RrcCorrection::alignment;
    for (const OptimizerConfig& c : {OptimizerConfig{}, test_util::test_optimizer("lion"), test_util::test_optimizer("liona"),
                                     test_util::test_optimizer("lionar"), rrc, tensor_control}) {
        CAPTURE(c.name);
        auto run = [&](int threads) {
            const int saved = omp_get_max_threads();
            omp_set_num_threads(threads);
            auto opt = make_cpu_optimizer(c, p.tensors);
            std::vector<float> w = p.params;
            std::vector<TensorStepSums> sums(p.tensors.size());
            for (int s = 0; s < 4; ++s) opt->step(w.data(), grads[s].data(), {1e-2f, 0.9f, s + 1}, {sums.data(), nullptr});
            omp_set_num_threads(saved);
            std::vector<double> flat;
            for (const auto& t : sums) flat.insert(flat.end(), {t.w_sq, t.d_sq, t.w_dot_d, t.g_sq, t.row_angle_sq, t.snr_scale});
            return std::make_pair(w, flat);
        };
        const auto one = run(1), three = run(3);
        CHECK(one.first == three.first);
        CHECK(one.second == three.second);
    }
}

TEST_CASE("recipes: every recipe trains the small shakespeare model without diverging") {
    // Learning rates near each optimizer's best for this tiny model (Lion's learning rate for the lion family).
    const std::vector<std::pair<std::string, std::string>> recipes = {
        {"paper-adamw", "3e-3"},  {"paper-adamw-nobc", "3e-3"}, {"paper-lion", "1e-3"}, {"paper-liona", "1e-3"},
        {"paper-lionar", "1e-2"}, {"paper-lionar-rrc", "1e-2"}, {"paper-lionar-best", "1e-2"}};
    std::string names;
    for (const auto& r : recipes) names += (names.empty() ? "" : ", ") + r.first;
    CHECK(names == recipe_names());  // every recipe is tried
    test_util::TempDir dir;
    for (const auto& [recipe, lr] : recipes) {
        CAPTURE(recipe);
        const auto run = test_util::run_command(test_util::trainer() + test_util::shakespeare_flags() + " -e d1 -b 4 -t 32 -x 30 -v 30 -m 2 -s 0 --threads 2 --recipe " +
                                                recipe + " -l " + lr + " -o " + dir / recipe);
        REQUIRE_MESSAGE(run.exit_code == 0, run.output);
        const auto val = test_util::records_of(test_util::read_jsonl(dir / recipe + "/log.jsonl"), "val");
        REQUIRE(val.size() == 2);
        const double first = val[0]["loss"].get<double>(), last = val[1]["loss"].get<double>();
        MESSAGE(recipe << " (lr " << lr << "): val loss " << first << " -> " << last << " after 30 steps");
        CHECK(std::isfinite(last));
        CHECK(last < first - 0.5);
    }
}
