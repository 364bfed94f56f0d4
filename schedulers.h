// schedulers.h: learning-rate schedules (-k cosine|linear|constant, -u warm-up, -q final fraction).
// Warm-up is linear from lr/u to lr over the first u steps; then the rate decays from lr to
// q*lr over the remaining steps. "-u 0 -q 1.0" (or -k constant) keeps it constant.
#pragma once

#include <cmath>
#include <cstring>

enum Schedule { SCHEDULE_COSINE = 0, SCHEDULE_LINEAR = 1, SCHEDULE_CONSTANT = 2 };

inline bool parse_schedule(const char* s, int* out) {
    if (strcmp(s, "cosine") == 0) { *out = SCHEDULE_COSINE; return true; }
    if (strcmp(s, "linear") == 0) { *out = SCHEDULE_LINEAR; return true; }
    if (strcmp(s, "constant") == 0) { *out = SCHEDULE_CONSTANT; return true; }
    return false;
}

inline const char* schedule_name(int s) {
    return s == SCHEDULE_COSINE ? "cosine" : s == SCHEDULE_LINEAR ? "linear" : "constant";
}

struct LRSchedule {
    int type;
    float lr;             // peak learning rate (-l)
    int warmup_steps;     // -u
    float final_frac;     // -q: the rate at the end is final_frac * lr
    int total_steps;      // the run's number of optimizer steps
};

// Learning rate for the 0-based step `step`.
inline float lr_at(const LRSchedule& s, int step) {
    if (step < s.warmup_steps) return s.lr * (float)(step + 1) / (float)s.warmup_steps;
    if (s.type == SCHEDULE_CONSTANT) return s.lr;
    int decay_steps = s.total_steps - s.warmup_steps;
    float progress = decay_steps > 0 ? (float)(step - s.warmup_steps) / (float)decay_steps : 1.0f;
    if (progress > 1.0f) progress = 1.0f;
    float min_lr = s.lr * s.final_frac;
    if (s.type == SCHEDULE_LINEAR) return s.lr - progress * (s.lr - min_lr);
    return min_lr + 0.5f * (1.0f + cosf((float)M_PI * progress)) * (s.lr - min_lr);
}
