// test_util.h: what the trainers' tests share (test_gpt2.cpp, test_gpt2.cu, test_fp16.cpp): the
// check counter, array comparisons, and finding and reading the PyTorch reference's debug states.
// Each check prints one "ok"/"FAIL" line; main() ends with test_summary's "N passed, M failed".
#pragma once

#include <dirent.h>
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>
#include "common.h"
#include "config.h"
#include "debug_state.h"
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

// The last line of a test program, "<program>: N passed, M failed" (what `make test` adds up),
// and main()'s exit status: 0 only if every check passed.
inline int test_summary(const char* program) {
    printf("%s: %d passed, %d failed\n", program, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

// max |a[i]| over n values.
inline float max_abs(const float* a, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i]));
    return m;
}

// A bias gradient summed on the GPU, sums (cols), against the double column sums of the rows it
// came from, rows (N, cols): the worst column's error as a multiple of fp32's summation bound over
// N rows, (N + 16) 2^-24 sum |x| (+ 1e-30 for all-zero columns; NaN counts as infinitely far). A
// dropped, repeated or misplaced row or tile is off by a whole term.
inline double colsum_error_ratio(const float* sums, const float* rows, int N, size_t cols) {
    double worst = 0.0;
    for (size_t c = 0; c < cols; c++) {
        double sum = 0.0, mag = 0.0;
        for (int r = 0; r < N; r++) {
            sum += rows[(size_t)r * cols + c];
            mag += fabs(rows[(size_t)r * cols + c]);
        }
        const double e = fabs(sums[c] - sum) / ((N + 16) * ldexp(1.0, -24) * mag + 1e-30);
        worst = fmax(worst, std::isnan(e) ? INFINITY : e);
    }
    return worst;
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

// ----------------------------------------------------------------------------
// The PyTorch reference's files (`train_gpt2.py --write-debug-states DIR`): for each variant
// `tag` (variant_tag, e.g. "none_relu"), the model DIR/<tag>.bin and its debug state
// DIR/<tag>_debug_state.bin.

#define REF_STATE_SUFFIX "_debug_state.bin"

inline std::string ref_model_path(const std::string& dir, const std::string& tag) { return dir + "/" + tag + ".bin"; }

// Every variant with a debug state in dir, sorted; a check that there are at least `at_least`.
inline std::vector<std::string> find_variants(const std::string& dir, size_t at_least) {
    std::vector<std::string> tags;
    DIR* d = opendir(dir.c_str());
    if (d == NULL) fail("no reference directory '%s' (run 'make refs')", dir.c_str());
    struct dirent* e;
    const std::string suffix = REF_STATE_SUFFIX;
    while ((e = readdir(d)) != NULL) {
        std::string name = e->d_name;
        if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
            tags.push_back(name.substr(0, name.size() - suffix.size()));
    }
    closedir(d);
    std::sort(tags.begin(), tags.end());
    check(tags.size() >= at_least, "found %zu variant debug states in %s", tags.size(), dir.c_str());
    return tags;
}

// For a model just built from ref_model_path(dir, tag) (config c, num_params parameters with the
// slopes): checks that the file records variant `tag`, then reads that variant's debug state.
inline void read_variant_state(const std::string& dir, const std::string& tag, const GPT2Config& c, size_t num_params,
                               DebugState* ref) {
    check(variant_tag(c.variant) == tag, "%s: the model file records its variant (%s)", tag.c_str(),
          variant_tag(c.variant).c_str());
    read_debug_state((dir + "/" + tag + REF_STATE_SUFFIX).c_str(), c, num_params, ref);
}

// Whether the debug state holds the diagnostics of its first forward (a failed check when not:
// a state written before them).
inline bool ref_has_diag(const std::string& tag, const DebugState& ref) {
    if (ref.diag.empty())
        check(false, "%s: the debug state has no diagnostics (written before them: run 'make refs')", tag.c_str());
    return !ref.diag.empty();
}
