// test_util.h: the check counter and array comparisons shared by test_gpt2.cpp and test_gpt2.cu.
// Each check prints one "ok"/"FAIL" line; main() prints "N passed, M failed" from the counts.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdio>

static int g_passed = 0, g_failed = 0;

__attribute__((format(printf, 2, 3))) inline void check(bool ok, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    printf("%s ", ok ? "  ok  " : "  FAIL");
    vprintf(fmt, args);
    printf("\n");
    va_end(args);
    if (ok) g_passed++; else g_failed++;
}

// Max |a - b| over n values (NaN counts as infinitely far); *where: its index.
inline float max_abs_diff(const float* a, const float* b, size_t n, size_t* where) {
    float worst = 0.0f;
    *where = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= worst)) { worst = std::isnan(d) ? INFINITY : d; *where = i; }
    }
    return worst;
}
