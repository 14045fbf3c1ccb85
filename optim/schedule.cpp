#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

namespace coldstart {

const char* const kScheduleKinds = "cosine|linear|constant|trapezoid|wsd";

bool is_schedule_kind(const std::string& k) {
    return k == "cosine" || k == "linear" || k == "constant" || k == "trapezoid" || k == "wsd";
}

float Schedule::at(int step) const {
    if (step < warmup_steps) return lr * float(step + 1) / float(warmup_steps);
    const float min_lr = lr * final_frac;
    if (kind == "constant") return lr;
    if (kind == "trapezoid" || kind == "wsd") {
        const int cooldown_steps = int(std::lround(double(cooldown_frac) * total_steps));
        const int cooldown_start = total_steps - cooldown_steps;
        if (step < cooldown_start || cooldown_steps == 0) return lr;
        // Reaches min_lr at the last step (step = total_steps - 1) of a cooldown.
        const float progress = float(step - cooldown_start + 1) / float(cooldown_steps);
        return lr + (min_lr - lr) * progress;
    }
    const int decay_steps = std::max(1, total_steps - warmup_steps);
    const float ratio = std::min(1.0f, float(step - warmup_steps) / float(decay_steps));
    if (kind == "linear") return lr + (min_lr - lr) * ratio;
    const float coeff = 0.5f * (1.0f + std::cos(float(M_PI) * ratio));  // cosine
    return min_lr + coeff * (lr - min_lr);
}

}  // namespace coldstart
