// debug_state.h: reads the PyTorch reference's debug state (magic 20240327, version 3;
// doc/reference.md, "File formats"), which test_gpt2.cpp and test_gpt2.cu both check their trainer against.
// Extension in header slot 14 (zero in llm.c): DIAG_COLS (5) when the diagnostics of the first
// forward, (L, DIAG_COLS) floats in diag.tsv's column order (diag.h), follow the step norms.
#pragma once

#include <vector>
#include "common.h"
#include "config.h"
#include "diag.h"
#include "model_file.h"

#define DEBUG_STATE_MAGIC 20240327
#define DEBUG_STATE_VERSION 3

struct DebugState {
    int B, T, num_steps;
    float lr, beta1, beta2, eps, weight_decay, grad_clip;  // of the AdamW steps
    std::vector<int> x, y;
    std::vector<float> logits;    // (B, T, V)
    float loss;
    std::vector<float> grads;     // every parameter, the model file's order (slopes last)
    std::vector<float> entropy;   // (L, NH)
    std::vector<float> step_losses, step_norms;
    std::vector<float> diag;      // (L, DIAG_COLS), empty in a state written before the diagnostics
};

// num_params: the model's parameters with slopes (count_params(c, true)).
inline void read_debug_state(const char* path, const GPT2Config& c, size_t num_params, DebugState* s) {
    FILE* f = fopen_or_fail(path, "rb", "run 'make refs' to write the reference states");
    long size = file_size_or_fail(f, path);
    if (size < (long)HEADER_BYTES) fail("debug state '%s' is truncated: %ld bytes (run 'make refs')", path, size);
    int32_t h[HEADER_INTS];
    fread_or_fail(h, sizeof(int32_t), HEADER_INTS, f, path);
    if (h[0] != DEBUG_STATE_MAGIC || h[1] != DEBUG_STATE_VERSION)
        fail("'%s' is not a version-3 debug state (magic %d, version %d)", path, h[0], h[1]);
    s->B = h[2];
    s->T = h[3];
    s->num_steps = h[4];
    s->lr = bits_float(h[8]);
    s->beta1 = bits_float(h[9]);
    s->beta2 = bits_float(h[10]);
    s->eps = bits_float(h[11]);
    s->weight_decay = bits_float(h[12]);
    s->grad_clip = bits_float(h[13]);
    if (h[14] != 0 && h[14] != DIAG_COLS)
        fail("debug state '%s' has %d diagnostic columns, this program knows %d: run 'make refs'", path, h[14], DIAG_COLS);
    if (s->B < 1 || s->T < 1 || s->T > c.max_seq_len || s->num_steps < 1 || s->num_steps > 1000)
        fail("debug state '%s' has impossible sizes (B %d, T %d, steps %d)", path, s->B, s->T, s->num_steps);
    size_t BT = (size_t)s->B * s->T;
    // the length the header and the model describe, checked before anything is allocated for it
    double want = (double)HEADER_BYTES + 4.0 * (2.0 * BT + (double)BT * c.vocab_size + 1.0 + (double)num_params +
                                               (double)c.num_layers * c.num_heads + 2.0 * s->num_steps +
                                               (h[14] ? (double)c.num_layers * DIAG_COLS : 0.0));
    if (want != (double)size)
        fail("debug state '%s' has %ld bytes, but its header and the model describe %.0f (run 'make refs')", path, size, want);
    s->x.resize(BT);
    s->y.resize(BT);
    s->logits.resize(BT * c.vocab_size);
    s->grads.resize(num_params);
    s->entropy.resize((size_t)c.num_layers * c.num_heads);
    s->step_losses.resize(s->num_steps);
    s->step_norms.resize(s->num_steps);
    s->diag.resize(h[14] ? (size_t)c.num_layers * DIAG_COLS : 0);
    fread_or_fail(s->x.data(), sizeof(int), BT, f, path);
    fread_or_fail(s->y.data(), sizeof(int), BT, f, path);
    fread_or_fail(s->logits.data(), sizeof(float), s->logits.size(), f, path);
    fread_or_fail(&s->loss, sizeof(float), 1, f, path);
    fread_or_fail(s->grads.data(), sizeof(float), s->grads.size(), f, path);
    fread_or_fail(s->entropy.data(), sizeof(float), s->entropy.size(), f, path);
    fread_or_fail(s->step_losses.data(), sizeof(float), s->num_steps, f, path);
    fread_or_fail(s->step_norms.data(), sizeof(float), s->num_steps, f, path);
    fread_or_fail(s->diag.data(), sizeof(float), s->diag.size(), f, path);
    close_file(f);
}
