#include "config/recipes.h"

#include <vector>

#include "common/error.h"

namespace coldstart {

namespace {

struct Recipe {
    const char* name;
    const char* what;
    nlohmann::json options;
};

// The paper's setup (METHODS.md section 1): decoupled weight decay 0.1, a trapezoid schedule (linear warmup,
// constant, linear cooldown to 0 over the last half). Warmup 5% is the paper's AdamW baseline; the study
// tools sweep it (-u) for every recipe.
nlohmann::json paper_schedule(const char* warmup) {
    return {{"schedule", "trapezoid"}, {"warmup", warmup}, {"cooldown-frac", 0.5}, {"final-lr-frac", 0.0}, {"weight-decay", 0.1}};
}

nlohmann::json with(nlohmann::json base, const nlohmann::json& more) {
    base.update(more);
    return base;
}

const std::vector<Recipe>& recipes() {
    static const std::vector<Recipe> table = {
        {"paper-adamw", "AdamW, betas 0.9/0.95 (the baseline)",
         with(paper_schedule("5%"), {{"optimizer", "adamw"}, {"beta1", 0.9}, {"beta2", 0.95}, {"bias-correction", 1}})},
        {"paper-adamw-nobc", "AdamW without momentum bias correction",
         with(paper_schedule("5%"), {{"optimizer", "adamw"}, {"beta1", 0.9}, {"beta2", 0.95}, {"bias-correction", 0}})},
        {"paper-lion", "Lion, betas 0.9/0.99",
         with(paper_schedule("5%"), {{"optimizer", "lion"}, {"beta1", 0.9}, {"beta2", 0.99}, {"nesterov", 0},
                                     {"inverse-bias-correction", "none"}})},
        {"paper-liona", "LionA: Lion with the angle of each row controlled (betas 0.9/0.99)",
         with(paper_schedule("5%"), {{"optimizer", "liona"}, {"beta1", 0.9}, {"beta2", 0.99}, {"nesterov", 0},
                                     {"inverse-bias-correction", "none"}, {"control", "rows"}, {"angle-norm", "strict"},
                                     {"target-angle", "lr"}})},
        {"paper-liona-hm", "LionA with LionAR's momentum changes (b 0.98, Nesterov, inverse bias correction)",
         with(paper_schedule("0"), {{"optimizer", "liona"}, {"beta1", -1}, {"beta2", 0.98}, {"nesterov", 1},
                                    {"inverse-bias-correction", "step"}, {"control", "rows"}, {"angle-norm", "strict"},
                                    {"target-angle", "lr"}})},
        {"paper-lionar-plain", "LionAR with Lion's ordinary momentum (betas 0.9/0.99)",
         with(paper_schedule("5%"), {{"optimizer", "lionar"}, {"beta1", 0.9}, {"beta2", 0.99}, {"nesterov", 0},
                                     {"inverse-bias-correction", "none"}, {"control", "rows"}, {"angle-norm", "strict"},
                                     {"target-angle", "lr"}, {"snr-estimator", "alignment"}})},
        {"paper-lionar", "LionAR, b 0.98, Nesterov, inverse bias correction (i), no warmup: the paper's best",
         with(paper_schedule("0"), {{"optimizer", "lionar"}, {"beta1", -1}, {"beta2", 0.98}, {"nesterov", 1},
                                    {"inverse-bias-correction", "step"}, {"control", "rows"}, {"angle-norm", "strict"},
                                    {"target-angle", "lr"}, {"snr-estimator", "alignment"}})},
    };
    return table;
}

}  // namespace

const nlohmann::json* find_recipe(const std::string& name) {
    for (const Recipe& r : recipes())
        if (name == r.name) return &r.options;
    return nullptr;
}

std::string recipe_names() {
    std::string s;
    for (const Recipe& r : recipes()) s += std::string(s.empty() ? "" : ", ") + r.name;
    return s;
}

std::string recipes_help() {
    std::string s = "Recipes (--recipe NAME; options given besides the recipe win; none sets the learning rate):\n";
    for (const Recipe& r : recipes()) s += format("  %-20s %s\n  %-20s %s\n", r.name, r.what, "", r.options.dump().c_str());
    return s;
}

}  // namespace coldstart
