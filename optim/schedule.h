// Learning-rate schedules. All start with llm.c's linear warmup, lr * (step + 1) / warmup, then:
//   constant   lr
//   cosine     from lr down to final_frac * lr along a half cosine (llm.c's default)
//   linear     from lr down to final_frac * lr in a straight line
//   trapezoid  (alias wsd) constant, then a linear cooldown to final_frac * lr over the last
//              cooldown_frac of training: the schedule of the warmup paper (cooldown over the last half)
#pragma once

#include <string>

namespace coldstart {

struct Schedule {
    std::string kind = "cosine";
    float lr = 3e-4f;
    int warmup_steps = 0;
    float final_frac = 1.0f;
    float cooldown_frac = 0.2f;
    int total_steps = 1;

    float at(int step) const;  // step is 0-based: the lr used for update number step+1
};

bool is_schedule_kind(const std::string& kind);
extern const char* const kScheduleKinds;  // "cosine|linear|constant|trapezoid|wsd"

}  // namespace coldstart
