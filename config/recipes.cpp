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

// LionAR as the authors' rotational wrapper (REQ) sets it up: per row, the smoothed normalisation, the
// angle per step = Lion's equilibrium angle for (lr, wd); the embeddings are left to Lion (README).
nlohmann::json lionar_wrapper(const char* warmup) {
    return with(paper_schedule(warmup), {{"optimizer", "lionar"}, {"control", "rows"}, {"control-embeddings", 0},
                                         {"angle-norm", "smoothed"}, {"target-angle", "equilibrium"}});
}

// Names that meant something else before the Lion family took the paper's names (issue 15), with what
// to use now: a clear error instead of a silent change of meaning.
struct Retired {
    const char* name;
    const char* now;
};
const std::vector<Retired>& retired() {
    static const std::vector<Retired> table = {
        {"paper-liona-hm", "its optimizer (Lion under angular control) is now lionar: --recipe paper-lionar-best --rrc-correction none"},
        {"paper-lionar-plain", "LionAR with the RRC correction and ordinary momentum is now --recipe paper-lionar-rrc"},
        {"snr-estimator", "the RRC correction is now an option of lionar: --rrc-correction alignment|norm-ratio (none: off)"},
    };
    return table;
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
        {"paper-liona", "LionA: Lion with each tensor's update l2 norm held at lr * sqrt(elements), no angular control",
         with(paper_schedule("5%"), {{"optimizer", "liona"}, {"beta1", 0.9}, {"beta2", 0.99}, {"nesterov", 0},
                                     {"inverse-bias-correction", "none"}})},
        {"paper-lionar", "LionAR: the rotational Lion (per row, the wrapper's smoothed norm and equilibrium angle), betas 0.9/0.99",
         with(lionar_wrapper("5%"), {{"beta1", 0.9}, {"beta2", 0.99}, {"nesterov", 0}, {"inverse-bias-correction", "none"},
                                     {"rrc-correction", "none"}})},
        {"paper-lionar-rrc", "LionAR with the RRC correction (alignment estimate of the signal fraction), betas 0.9/0.99",
         with(lionar_wrapper("5%"), {{"beta1", 0.9}, {"beta2", 0.99}, {"nesterov", 0}, {"inverse-bias-correction", "none"},
                                     {"rrc-correction", "alignment"}})},
        {"paper-lionar-best", "LionAR, b 0.98, Nesterov, inverse bias correction (i), RRC correction, no warmup: the paper's best",
         with(lionar_wrapper("0"), {{"beta1", -1}, {"beta2", 0.98}, {"nesterov", 1}, {"inverse-bias-correction", "step"},
                                    {"rrc-correction", "alignment"}})},
    };
    return table;
}

}  // namespace

const nlohmann::json* find_recipe(const std::string& name) {
    for (const Recipe& r : recipes())
        if (name == r.name) return &r.options;
    return nullptr;
}

const char* retired_name(const std::string& name) {
    for (const Retired& r : retired())
        if (name == r.name) return r.now;
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
