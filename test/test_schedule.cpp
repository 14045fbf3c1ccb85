// Learning-rate schedules, the gradient norm and the step gate (clipping, skipping).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "optim/grad_norm.h"
#include "optim/outlier.h"
#include "optim/schedule.h"
#include "optim/step_gate.h"

using namespace coldstart;

TEST_CASE("schedule: warmup, then each shape reaches its end points") {
    Schedule s{"cosine", 1.0f, 10, 0.1f, 0.5f, 110};
    CHECK(s.at(0) == doctest::Approx(0.1));
    CHECK(s.at(9) == doctest::Approx(1.0));
    CHECK(s.at(10) == doctest::Approx(1.0));
    CHECK(s.at(60) == doctest::Approx(0.55));   // halfway down the cosine: (1 + 0.1) / 2
    CHECK(s.at(110) == doctest::Approx(0.1));
    s.kind = "linear";
    CHECK(s.at(60) == doctest::Approx(0.55));
    CHECK(s.at(35) == doctest::Approx(1.0 - 0.9 * 0.25));
    s.kind = "constant";
    CHECK(s.at(5) == doctest::Approx(0.6));
    CHECK(s.at(100) == doctest::Approx(1.0));
}

TEST_CASE("schedule: the paper's trapezoid holds, then cools down linearly over the last fraction") {
    const Schedule s{"trapezoid", 2.0f, 5, 0.0f, 0.5f, 100};
    CHECK(s.at(4) == doctest::Approx(2.0));
    CHECK(s.at(49) == doctest::Approx(2.0));
    CHECK(s.at(50) == doctest::Approx(2.0 * (1 - 1.0 / 50)));
    CHECK(s.at(74) == doctest::Approx(2.0 * 0.5));
    CHECK(s.at(99) == doctest::Approx(0.0));    // the last update uses the final learning rate
    std::vector<float> lrs;
    for (int i = 50; i < 100; ++i) lrs.push_back(s.at(i));
    for (size_t i = 1; i < lrs.size(); ++i) CHECK(lrs[i] < lrs[i - 1]);
    const Schedule wsd{"wsd", 2.0f, 5, 0.0f, 0.5f, 100};
    CHECK(wsd.at(74) == s.at(74));
    CHECK(is_schedule_kind("wsd"));
    CHECK_FALSE(is_schedule_kind("step"));
}

TEST_CASE("grad norm: sum of squares matches double precision and ignores the thread count") {
    std::vector<float> x(200003);
    double expected = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        x[i] = std::sin(float(i)) * 3.0f;
        expected += double(x[i]) * x[i];
    }
    CHECK(sum_of_squares(x.data(), x.size()) == doctest::Approx(expected).epsilon(1e-12));
    CHECK(clip_scale(4.0f, 1.0f) == 0.25f);
    CHECK(clip_scale(0.5f, 1.0f) == 1.0f);
    CHECK(clip_scale(4.0f, 0.0f) == 1.0f);
}

TEST_CASE("step gate: the verdict from the step's loss and norm, the detectors' spike limits") {
    const StepPlan plain{1e-3f, 1, 1.0f};
    CHECK(step_verdict(plain, 3.0, 0.5f) == StepVerdict::taken);
    CHECK(step_verdict(plain, NAN, 0.5f) == StepVerdict::nonfinite);
    CHECK(step_verdict(plain, 3.0, INFINITY) == StepVerdict::nonfinite);
    StepPlan poisoned = plain;
    poisoned.poison_loss = true;
    CHECK(step_verdict(poisoned, 3.0, 0.5f) == StepVerdict::nonfinite);
    CHECK(verdict_reason(StepVerdict::taken) == nullptr);
    CHECK(std::string(verdict_reason(StepVerdict::nonfinite)) == "non-finite loss or gradient norm");

    OutlierDetector d;
    for (size_t i = 0; i + 1 < OutlierDetector::kWindow; ++i) d.add(i % 2 ? 3.0 : 1.0);
    CHECK_FALSE(d.limit(2.5).active);  // the window is not full yet
    d.add(3.0);
    const SpikeLimit limit = d.limit(2.5);  // mean 2, std 1
    REQUIRE(limit.active);
    CHECK(limit.mean == 2.0);
    CHECK(limit.std == 1.0);
    CHECK(spikes(limit, 4.6));
    CHECK_FALSE(spikes(limit, 4.4));
    CHECK_FALSE(d.limit(0).active);  // -sl 0: off
    StepPlan guarded = plain;
    guarded.loss = limit;
    guarded.norm = limit;
    CHECK(step_verdict(guarded, 4.6, 0.5f) == StepVerdict::loss_spike);
    CHECK(step_verdict(guarded, 3.0, 4.6f) == StepVerdict::norm_spike);
    CHECK(step_verdict(guarded, NAN, 4.6f) == StepVerdict::nonfinite);
}
