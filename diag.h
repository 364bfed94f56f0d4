// diag.h: per-layer training diagnostics (--diag-every N -> diag.tsv), shared by both trainers and
// their tests. They show the mechanism doc/entropic-overload.md explains. For layer l, over the
// training forward passes of one step:
//   resid_rms  sqrt(mean x^2) of the residual stream x entering layer l           (B, T, C)
//   score_std  standard deviation of the scaled attention scores s = q.k / sqrt(hs) over the
//              causal entries (j <= t) of every head and row                       (B, NH, T, T)
//   score_max  the largest of those scores
//   ffn_rms    sqrt(mean h^2) of the FFN pre-activations h                        (B, T, 4C)
//   ffn_neg    share of h < 0 (what GELU's negative lobe or a leaky slope lets through)
// Trainers add into DIAG_SUMS doubles per layer during the forward; diag_finalize divides by the
// counts, which follow from the shapes. Cost: see doc/entropic-overload.md ("What it costs").
#pragma once

#include <cmath>
#include <string>
#include "common.h"
#include "logger.h"
#include "multiproc.h"
#include <vector>

// The sums per layer, in this order; score_max is a running max (start: -inf).
enum { DIAG_RESID_SQ, DIAG_SCORE_SUM, DIAG_SCORE_SQ, DIAG_SCORE_MAX, DIAG_FFN_SQ, DIAG_FFN_NEG, DIAG_SUMS };
enum { DIAG_COL_RESID_RMS, DIAG_COL_SCORE_STD, DIAG_COL_SCORE_MAX, DIAG_COL_FFN_RMS, DIAG_COL_FFN_NEG, DIAG_COLS };
#define DIAG_HEADER "step\tlayer\tresid_rms\tscore_std\tscore_max\tffn_rms\tffn_neg\n"

inline void diag_reset(double* sums, int L) {
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < DIAG_SUMS; k++) sums[l * DIAG_SUMS + k] = 0.0;
        sums[l * DIAG_SUMS + DIAG_SCORE_MAX] = -INFINITY;
    }
}

// Data-parallel runs: the sums of every rank (max for DIAG_SCORE_MAX), and the passes of all
// ranks, so that diag_finalize's columns are over all ranks' rows. A no-op in one process.
inline void diag_reduce(double* sums, int L, long* passes) {
    std::vector<double> maxes(L);
    for (int l = 0; l < L; l++) maxes[l] = sums[l * DIAG_SUMS + DIAG_SCORE_MAX];
    mp_sum(sums, L * DIAG_SUMS);
    mp_max(maxes.data(), L);
    for (int l = 0; l < L; l++) sums[l * DIAG_SUMS + DIAG_SCORE_MAX] = maxes[l];
    mp_sum(passes, 1);
}

// sums (L, DIAG_SUMS) over `passes` forward passes of (B, T) -> cols (L, DIAG_COLS).
inline void diag_finalize(const double* sums, int L, int B, int T, int C, int NH, long passes, float* cols) {
    double n_resid = (double)passes * B * T * C;
    double n_score = (double)passes * B * NH * ((double)T * (T + 1) / 2);  // causal entries
    double n_ffn = 4.0 * n_resid;
    for (int l = 0; l < L; l++) {
        const double* s = sums + l * DIAG_SUMS;
        float* o = cols + l * DIAG_COLS;
        double mean = s[DIAG_SCORE_SUM] / n_score;
        double var = s[DIAG_SCORE_SQ] / n_score - mean * mean;  // sums in double: no cancellation at these sizes
        o[DIAG_COL_RESID_RMS] = (float)sqrt(s[DIAG_RESID_SQ] / n_resid);
        o[DIAG_COL_SCORE_STD] = (float)sqrt(var > 0.0 ? var : 0.0);
        o[DIAG_COL_SCORE_MAX] = (float)s[DIAG_SCORE_MAX];
        o[DIAG_COL_FFN_RMS] = (float)sqrt(s[DIAG_FFN_SQ] / n_ffn);
        o[DIAG_COL_FFN_NEG] = (float)(s[DIAG_FFN_NEG] / n_ffn);
    }
}

// diag.tsv under the run's output dir; NULL when diagnostics are off or there is no dir.
inline FILE* diag_log_open(const std::string& dir, int diag_every, long resume_step) {
    if (dir.empty() || diag_every <= 0) return NULL;
    return open_log(dir, "diag.tsv", DIAG_HEADER, resume_step, false);
}

inline void diag_log(FILE* f, int step, int L, const float* cols) {
    if (f == NULL) return;
    for (int l = 0; l < L; l++) {
        const float* o = cols + l * DIAG_COLS;
        fprintf(f, "%d\t%d\t%.6g\t%.6g\t%.6g\t%.6g\t%.6f\n", step, l, o[0], o[1], o[2], o[3], o[4]);
    }
    if (fflush(f) != 0) fail("cannot write diag.tsv: %s", strerror(errno));
}

inline void diag_log_close(FILE* f) {
    if (f) fclose(f);
}

// One console line per diagnostic step: the three numbers the explainer reads first.
inline void diag_print(int L, const float* cols) {
    const char* names[] = {"resid_rms", "score_std", "ffn_neg"};
    const int which[] = {DIAG_COL_RESID_RMS, DIAG_COL_SCORE_STD, DIAG_COL_FFN_NEG};
    printf("  diag/layer");
    for (int k = 0; k < 3; k++) {
        printf(" %s", names[k]);
        for (int l = 0; l < L; l++) printf(" %.3g", cols[l * DIAG_COLS + which[k]]);
        printf(k < 2 ? " |" : "\n");
    }
}
