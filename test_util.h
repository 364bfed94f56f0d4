// test_util.h: the check counter and array comparisons shared by test_gpt2.cpp and test_gpt2.cu.
// Each check prints one "ok"/"FAIL" line; main() prints "N passed, M failed" from the counts.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include "diag.h"

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

// The diagnostics (L, DIAG_COLS) against the reference's, one check per column: the RMS, std and
// max within tol_rel x max(1e-3, |ref|), the negative share within tol_neg (absolute).
inline void check_diag_cols(const char* tag, const float* ours, const float* ref, int L, float tol_rel, float tol_neg) {
    const char* names[DIAG_COLS] = {"resid_rms", "score_std", "score_max", "ffn_rms", "ffn_neg"};
    for (int k = 0; k < DIAG_COLS; k++) {
        float worst = 0.0f, tol = 1.0f, ratio = -1.0f;  // the layer furthest from its tolerance
        int at = 0;
        for (int l = 0; l < L; l++) {
            float o = ours[l * DIAG_COLS + k], r = ref[l * DIAG_COLS + k];
            float t = k == DIAG_COL_FFN_NEG ? tol_neg : tol_rel * fmaxf(1e-3f, fabsf(r));
            float d = fabsf(o - r), q = std::isnan(d) ? INFINITY : d / t;
            if (q > ratio) { ratio = q; worst = d; tol = t; at = l; }
        }
        check(ratio <= 1.0f, "%s: diag %-9s max diff %.2e (tol %.1e) at layer %d: %.6g vs %.6g", tag, names[k], worst, tol,
              at, ours[at * DIAG_COLS + k], ref[at * DIAG_COLS + k]);
    }
}
