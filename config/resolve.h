// Options whose final value depends on other options or on the run: the optimizer's defaults, Nesterov
// momentum, the warmup as steps. Resolved once, after parsing, so that config.json records what ran.
#pragma once

#include <cstdint>
#include <string>

#include "config/config.h"
#include "dist/process_group.h"
#include "optim/optimizer.h"

namespace coldstart {

// "700" (steps) or "5%" / "2.5%" (a percentage of the run's steps, at most 100).
bool is_warmup_text(const std::string& text);
// The warmup in steps for a run of `steps` steps.
int warmup_steps(const std::string& text, int64_t steps);

// Replaces beta1/beta2 = -1 by the optimizer's defaults and applies --nesterov (beta1 = beta2^2). Throws
// with the flags' names when they contradict each other.
void resolve_optimizer_defaults(Config& cfg);
// The optimizer's settings from resolved options.
OptimizerConfig optimizer_config(const Config& cfg);
// How the run's processes are counted and meet: -pn -pr, and -pi -pf -ps (the meeting folder defaults to -o).
ProcessOptions process_options(const Config& cfg);

}  // namespace coldstart
