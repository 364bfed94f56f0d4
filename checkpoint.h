// checkpoint.h: the training state beside a checkpoint's model file, and finding checkpoints.
// A checkpoint of step k (k optimizer steps done) is DIR/model_%08d.bin, DIR/state_%08d.bin and
// the empty marker DIR/DONE_%08d, written in that order, each file through a temporary name,
// so a kill mid-write never leaves a half checkpoint that -y 1 would pick up.
//
// The state file: a 256 x int32 header, then AdamW's m and v for all parameters (slopes last).
// Header slots: 0 magic, 1 version, 2 steps done, 3 parameters (without slopes), 4 slopes,
// 5 AdamW step count, 6 data shard, 7 position in the shard, 8 epoch, 9 skipped updates,
// 10..13 the shuffling RNG, 14..17 the sampling RNG (2 x uint64 each), 18..21 the optional
// loss-scaler record (see LossScalerRecord), the rest 0. Files written before the record
// existed hold 0 in 18..21, which reads as "no scaler": they resume as before.
#pragma once

#include <dirent.h>
#include <cmath>
#include <string>
#include "common.h"
#include "dataloader.h"
#include "model_file.h"
#include "rng.h"

#define STATE_MAGIC 20240527
#define STATE_VERSION 1

// The dynamic loss scaler of the CUDA trainer's FP16 build (llmc/guard.cuh's ScalerState), so
// that a resumed run goes on with the same scale. Slots 18..21: present (0 or 1), the scale as
// fp32 bits, clean steps, overflows. Every other trainer and build writes it absent (all 0) and
// ignores it when reading.
struct LossScalerRecord {
    int present;      // 1: the fields below hold the scaler's state
    float scale;      // the loss scale S
    int clean_steps;  // steps since the last overflow or growth
    int overflows;    // skipped overflow steps, in total
};

struct TrainState {
    int step;                // optimizer steps completed
    int adam_t;              // AdamW's bias-correction step count (skipped updates do not count)
    int skipped;             // updates dropped by --on-nan skip so far
    DataLoaderState loader;  // where the training data continues
    Rng sample_rng;          // the sampling RNG
    LossScalerRecord scaler; // fp16 loss scaling (present only from the CUDA FP16 build)
};

inline std::string checkpoint_path(const std::string& dir, const char* kind, int step, const char* ext) {
    char buf[64];
    snprintf(buf, sizeof(buf), "/%s_%08d%s", kind, step, ext);
    return dir + buf;
}

static inline void put_u64(int32_t* h, uint64_t v) { memcpy(h, &v, 8); }
static inline uint64_t get_u64(const int32_t* h) { uint64_t v; memcpy(&v, h, 8); return v; }

// m and v: AdamW moments for all n parameters (slopes included).
inline void write_state_file(const char* path, const TrainState& s, size_t num_params, int num_slopes,
                             const float* m, const float* v) {
    int32_t h[HEADER_INTS] = {0};
    h[0] = STATE_MAGIC;
    h[1] = STATE_VERSION;
    h[2] = s.step;
    h[3] = (int32_t)num_params;
    h[4] = num_slopes;
    h[5] = s.adam_t;
    h[6] = s.loader.shard;
    h[7] = (int32_t)s.loader.position;
    h[8] = s.loader.epoch;
    h[9] = s.skipped;
    put_u64(h + 10, s.loader.shard_rng.s[0]);
    put_u64(h + 12, s.loader.shard_rng.s[1]);
    put_u64(h + 14, s.sample_rng.s[0]);
    put_u64(h + 16, s.sample_rng.s[1]);
    if (s.scaler.present) {
        h[18] = 1;
        h[19] = float_bits(s.scaler.scale);
        h[20] = s.scaler.clean_steps;
        h[21] = s.scaler.overflows;
    }
    std::string tmp;
    FILE* f = begin_atomic_write(path, &tmp);
    fwrite_or_fail(h, sizeof(int32_t), HEADER_INTS, f, tmp.c_str());
    fwrite_or_fail(m, sizeof(float), num_params + num_slopes, f, tmp.c_str());
    fwrite_or_fail(v, sizeof(float), num_params + num_slopes, f, tmp.c_str());
    finish_atomic_write(f, tmp, path);
}

// Checks the header's fields against the checkpoint's marker (marker_step: the step in the
// DONE_ name) and each other, so a corrupted field ends with an error naming the file instead
// of a resume that overwrites earlier checkpoints, trains nothing or overflows a counter.
inline void check_state_header(const char* path, const int32_t* h, int marker_step) {
    const char* fix = "delete its DONE_ marker to resume from an earlier checkpoint";
    if (h[2] != marker_step)
        fail("state file '%s' records step %d, but its DONE_ marker says %d (%s)", path, h[2], marker_step, fix);
    if (h[5] < 0 || h[5] > h[2] || h[9] < 0 || h[9] > h[2] || (int64_t)h[5] + h[9] > h[2])
        fail("state file '%s' has AdamW step %d and %d skipped updates, impossible after %d steps (%s)", path, h[5], h[9],
             h[2], fix);
    if (h[6] < 0 || h[7] < 0 || h[8] < 0)
        fail("state file '%s' has a negative data position (shard %d, position %d, epoch %d) (%s)", path, h[6], h[7], h[8], fix);
    if (h[18] != 0 && h[18] != 1) fail("state file '%s' has a loss-scaler flag of %d, expected 0 or 1", path, h[18]);
    float scale = bits_float(h[19]);
    if (h[18] == 1 && (!std::isfinite(scale) || scale <= 0.0f || h[20] < 0 || h[21] < 0))
        fail("state file '%s' has an impossible loss-scaler record (scale %g, clean steps %d, overflows %d) (%s)", path,
             scale, h[20], h[21], fix);
}

// AdamW's moments as written: finite, and the second moment (a mean of squares) not negative.
inline void check_state_moments(const char* path, const float* m, const float* v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!std::isfinite(m[i]) || !std::isfinite(v[i]) || v[i] < 0.0f)
            fail("state file '%s' holds an impossible AdamW moment at index %zu (m %g, v %g): the file is corrupt "
                 "(delete its DONE_ marker to resume from an earlier checkpoint)", path, i, m[i], v[i]);
    }
}

inline void read_state_file(const char* path, int marker_step, TrainState* s, size_t num_params, int num_slopes,
                            float* m, float* v) {
    FILE* f = fopen_or_fail(path, "rb", "the checkpoint is incomplete; delete its DONE_ marker to resume from an earlier one");
    long size = file_size_or_fail(f, path);
    long expected = (long)HEADER_BYTES + 2L * sizeof(float) * (long)(num_params + num_slopes);
    if (size < (long)HEADER_BYTES) fail("state file '%s' is truncated", path);
    int32_t h[HEADER_INTS];
    fread_or_fail(h, sizeof(int32_t), HEADER_INTS, f, path);
    if (h[0] != STATE_MAGIC) fail("'%s' is not a training state file (magic %d, expected %d)", path, h[0], STATE_MAGIC);
    if (h[1] != STATE_VERSION) fail("state file '%s' has version %d, expected %d", path, h[1], STATE_VERSION);
    if (h[3] < 0 || (size_t)h[3] != num_params || h[4] != num_slopes)
        fail("state file '%s' is for a model of %d parameters and %d slopes, not %zu and %d (different --act or model?)",
             path, h[3], h[4], num_params, num_slopes);
    if (size != expected) fail("state file '%s' has %ld bytes, expected %ld (truncated)", path, size, expected);
    check_state_header(path, h, marker_step);
    s->step = h[2];
    s->adam_t = h[5];
    s->loader.shard = h[6];
    s->loader.position = h[7];
    s->loader.epoch = h[8];
    s->skipped = h[9];
    s->loader.shard_rng.s[0] = get_u64(h + 10);
    s->loader.shard_rng.s[1] = get_u64(h + 12);
    s->sample_rng.s[0] = get_u64(h + 14);
    s->sample_rng.s[1] = get_u64(h + 16);
    s->scaler.present = h[18];
    s->scaler.scale = h[18] ? bits_float(h[19]) : 0.0f;
    s->scaler.clean_steps = h[18] ? h[20] : 0;
    s->scaler.overflows = h[18] ? h[21] : 0;
    fread_or_fail(m, sizeof(float), num_params + num_slopes, f, path);
    fread_or_fail(v, sizeof(float), num_params + num_slopes, f, path);
    close_file(f);
    check_state_moments(path, m, v, num_params + num_slopes);
}

inline void write_done_marker(const std::string& dir, int step) {
    std::string path = checkpoint_path(dir, "DONE", step, "");
    FILE* f = fopen(path.c_str(), "w");
    if (f == NULL || fclose(f) != 0) fail("cannot write '%s': %s", path.c_str(), strerror(errno));
}

// The step a marker's name records: exactly "DONE_" and 8 digits (as checkpoint_path writes
// it), else -1.
inline int marker_step(const char* name) {
    if (strncmp(name, "DONE_", 5) != 0 || strlen(name) != 13) return -1;
    for (int i = 5; i < 13; i++)
        if (!isdigit((unsigned char)name[i])) return -1;
    return atoi(name + 5);
}

inline bool is_regular_file(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The step of the newest complete checkpoint in dir, or -1: a well-formed DONE_ marker beside
// its model and state files. A stray marker (malformed name, or files missing) is passed
// over with a note on stdout, so -y 1 falls back to the newest checkpoint that is complete.
inline int find_latest_checkpoint(const std::string& dir) {
    DIR* d = opendir(dir.c_str());
    if (d == NULL) return -1;
    int best = -1;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "DONE_", 5) != 0) continue;
        int step = marker_step(e->d_name);
        bool complete = step >= 0 && is_regular_file(checkpoint_path(dir, "model", step, ".bin")) &&
                        is_regular_file(checkpoint_path(dir, "state", step, ".bin"));
        if (!complete) {
            printf("note: ignoring '%s/%s': not a complete checkpoint's marker (malformed name, or model/state file missing)\n",
                   dir.c_str(), e->d_name);
            continue;
        }
        if (step > best) best = step;
    }
    closedir(d);
    return best;
}
