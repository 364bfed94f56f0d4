// model_file.h: llm.c's GPT-2 model file (fp32, version 3), extended with the variant record.
// Layout (doc/reference.md, "File formats"): 256 x int32 header, then the 16 llm.c tensors in order, then
// the learnable slopes. llm.c's own files leave slots 8..12 zero and load as ln + gelu-tanh.
#pragma once

#include <string>
#include "config.h"

#define MODEL_MAGIC 20240326
#define MODEL_VERSION_FP32 3
#define MODEL_VERSION_BF16 5
#define HEADER_INTS 256
#define HEADER_BYTES (HEADER_INTS * sizeof(int32_t))

inline size_t count_params(const GPT2Config& c, bool with_slopes) {
    size_t sizes[NUM_ALL_TENSORS];
    fill_param_sizes(sizes, c);
    size_t n = 0;
    for (int i = 0; i < (with_slopes ? NUM_ALL_TENSORS : NUM_PARAM_TENSORS); i++) n += sizes[i];
    return n;
}

// Opens a model file, checks its header and length, and returns the configuration it records
// and how many slopes it stores. The stream is left at the first parameter.
inline FILE* open_model_file(const char* path, GPT2Config* c, int* stored_slopes) {
    FILE* f = fopen_or_fail(path, "rb", "pass a model file made by train_gpt2.py or llm.c, or a descriptor such as -e d12");
    long size = file_size_or_fail(f, path);
    if (size < (long)HEADER_BYTES) fail("model file '%s' is truncated: %ld bytes, less than its 1024-byte header", path, size);
    int32_t h[HEADER_INTS];
    fread_or_fail(h, sizeof(int32_t), HEADER_INTS, f, path);
    if (h[0] != MODEL_MAGIC) fail("'%s' is not a GPT-2 model file (magic %d, expected %d)", path, h[0], MODEL_MAGIC);
    if (h[1] == MODEL_VERSION_BF16) fail("'%s' is a bf16 model file (version 5); the fp32 trainer needs the fp32 file (version 3)", path);
    if (h[1] != MODEL_VERSION_FP32) fail("model file '%s' has version %d; this program reads version 3 (fp32)", path, h[1]);
    c->max_seq_len = h[2];
    c->vocab_size = h[3];
    c->num_layers = h[4];
    c->num_heads = h[5];
    c->channels = h[6];
    c->padded_vocab_size = h[7];
    *stored_slopes = 0;
    if (h[8] == 0) {
        c->variant = {NORM_LN, ACT_GELU_TANH, 0.0f};  // llm.c's GPT-2
    } else if (h[8] == 1) {
        c->variant = {h[9], h[10], bits_float(h[11])};
        *stored_slopes = h[12];
    } else {
        fail("model file '%s' has an unknown variant record %d in header slot 8", path, h[8]);
    }
    validate_config_or_fail(*c, path);
    if (*stored_slopes != num_slopes_for(c->variant.act, c->num_layers))
        fail("model file '%s' stores %d slopes, but its activation %s has %d", path, *stored_slopes,
             act_name(c->variant.act, c->variant.slope).c_str(), num_slopes_for(c->variant.act, c->num_layers));
    long expected = (long)HEADER_BYTES + (long)sizeof(float) * (long)(count_params(*c, false) + *stored_slopes);
    if (size != expected)
        fail("model file '%s' has %ld bytes, but its header describes %ld (truncated or not a model file)", path, size, expected);
    return f;
}

// Reads the parameters into `params` (count_params(c, true) floats). The file's slopes are kept
// when the activation is the file's own; otherwise learnable slopes start at c.variant.slope.
inline void read_model_params(FILE* f, const char* path, const GPT2Config& c, int stored_slopes, int file_act, float* params) {
    size_t n = count_params(c, false);
    fread_or_fail(params, sizeof(float), n, f, path);
    int want = num_slopes_for(c.variant.act, c.num_layers);
    if (want > 0 && stored_slopes == want && file_act == c.variant.act) {
        fread_or_fail(params + n, sizeof(float), want, f, path);
    } else {
        for (int i = 0; i < want; i++) params[n + i] = c.variant.slope;
    }
    for (size_t i = 0; i < n + want; i++) {
        if (!std::isfinite(params[i])) fail("model file '%s' holds a non-finite parameter (index %zu)", path, i);
    }
}

// Writes a model file crash-safely (temporary name, then rename).
inline void write_model_file(const char* path, const GPT2Config& c, const float* params) {
    int32_t h[HEADER_INTS] = {0};
    h[0] = MODEL_MAGIC;
    h[1] = MODEL_VERSION_FP32;
    h[2] = c.max_seq_len;
    h[3] = c.vocab_size;
    h[4] = c.num_layers;
    h[5] = c.num_heads;
    h[6] = c.channels;
    h[7] = c.padded_vocab_size;
    h[8] = 1;
    h[9] = c.variant.norm;
    h[10] = c.variant.act;
    h[11] = float_bits(c.variant.slope);
    h[12] = num_slopes_for(c.variant.act, c.num_layers);
    std::string tmp;
    FILE* f = begin_atomic_write(path, &tmp);
    fwrite_or_fail(h, sizeof(int32_t), HEADER_INTS, f, tmp.c_str());
    fwrite_or_fail(params, sizeof(float), count_params(c, true), f, tmp.c_str());
    finish_atomic_write(f, tmp, path);
}
