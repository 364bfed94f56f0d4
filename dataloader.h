// dataloader.h: reads llm.c token shards (magic 20240520, uint16 tokens) into (B, T) batches.
// A shard of N tokens holds (N-1)/T sequences; sequence i is tokens [i*T, i*T + T] (T+1 tokens:
// inputs are the first T, targets the last T). Without shuffling a batch is B consecutive
// sequences, i.e. B*T+1 contiguous tokens as in llm.c; with shuffling the sequence order of each
// shard is a fresh seeded permutation every epoch. Every file is validated up front (magic,
// version, size, enough tokens for one batch, ids < vocab) so bad data fails before training.
// Data parallelism: with R ranks, a global batch is R*B consecutive slots of the sequence order
// and rank r reads slots [r*B, r*B + B) of it, so R ranks of B read exactly what one process
// with R*B reads, in the same order; every rank's loader state is that one process's, so a
// checkpoint resumes on any number of ranks.
#pragma once

#include <glob.h>
#include <algorithm>
#include <string>
#include <vector>
#include "common.h"
#include "rng.h"

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1

struct DataLoaderState {
    int shard;        // index into the sorted file list
    int64_t position; // index of the next batch's first slot in the shard's sequence order
    int epoch;
    Rng shard_rng;    // the shuffling RNG as it was before this shard's order was drawn
};

struct DataLoader {
    int B, T;                          // this rank's batch: B sequences of T tokens
    int rank, ranks;                   // this rank reads slice `rank` of `ranks` of each global batch
    int global_B;                      // sequences per global batch: B * ranks
    bool shuffle;
    std::vector<std::string> files;
    std::vector<int64_t> file_tokens;  // tokens in each file
    DataLoaderState state;
    Rng rng;                           // the shuffling RNG, live
    std::vector<uint32_t> order;       // sequence order of the current shard
    FILE* fp;                          // the current shard, open
    int open_shard;                    // which shard fp holds, -1 for none
    uint16_t* buffer;                  // (T+1) tokens of one sequence
    int* inputs;                       // (B, T)
    int* targets;                      // (B, T)
};

inline int64_t shard_sequences(const DataLoader* d, int shard) { return (d->file_tokens[shard] - 1) / d->T; }
inline int64_t shard_batches(const DataLoader* d, int shard) { return shard_sequences(d, shard) / d->global_B; }

inline int64_t dataloader_batches_per_epoch(const DataLoader* d) {
    int64_t n = 0;
    for (size_t i = 0; i < d->files.size(); i++) n += shard_batches(d, (int)i);
    return n;
}

// Checks one shard completely; returns its token count. `flag` names the flag that chose it.
inline int64_t validate_shard_or_fail(const char* path, int B, int T, int vocab_size, const char* flag) {
    FILE* f = fopen_or_fail(path, "rb", "run 'make data' or point the flag at llm.c token shards");
    long size = file_size_or_fail(f, path);
    if (size < (long)(256 * sizeof(int32_t))) fail("token file '%s' (%s) is truncated: %ld bytes, less than its header", path, flag, size);
    int32_t h[256];
    fread_or_fail(h, sizeof(int32_t), 256, f, path);
    if (h[0] != SHARD_MAGIC) fail("'%s' (%s) is not a token shard (magic %d, expected %d)", path, flag, h[0], SHARD_MAGIC);
    if (h[1] != SHARD_VERSION) fail("token shard '%s' has version %d; expected %d (uint16 tokens)", path, h[1], SHARD_VERSION);
    int64_t n = h[2];
    if (n < 0 || size != (long)(256 * sizeof(int32_t) + 2 * n))
        fail("token shard '%s' has %ld bytes, but its header says %lld tokens (truncated?)", path, size, (long long)n);
    if (n < (int64_t)B * T + 1)
        fail("token shard '%s' has %lld tokens, fewer than one batch needs (B*T+1 = %lld): use a smaller -b or -t",
             path, (long long)n, (long long)B * T + 1);
    std::vector<uint16_t> chunk((size_t)std::min<int64_t>(n, 1 << 20));  // no 2 MB buffer for a small shard
    for (int64_t done = 0; done < n;) {
        size_t want = (size_t)std::min<int64_t>((int64_t)chunk.size(), n - done);
        fread_or_fail(chunk.data(), sizeof(uint16_t), want, f, path);
        for (size_t i = 0; i < want; i++) {
            if (chunk[i] >= vocab_size)
                fail("token shard '%s' holds token id %d at position %lld, outside the model's vocabulary of %d",
                     path, chunk[i], (long long)(done + i), vocab_size);
        }
        done += want;
    }
    close_file(f);
    return n;
}

inline void dataloader_reset_order(DataLoader* d) {
    int64_t n = shard_sequences(d, d->state.shard);
    d->order.resize(n);
    d->state.shard_rng = d->rng;
    if (d->shuffle) rng_permutation(&d->rng, d->order.data(), n);
    else for (int64_t i = 0; i < n; i++) d->order[i] = (uint32_t)i;
}

// rank, ranks: which slice of each global batch of B*ranks sequences this process reads.
inline void dataloader_init(DataLoader* d, const char* pattern, int B, int T, int vocab_size, bool shuffle,
                            uint64_t seed, const char* flag, int rank = 0, int ranks = 1) {
    d->B = B;
    d->T = T;
    d->rank = rank;
    d->ranks = ranks;
    d->global_B = B * ranks;
    d->shuffle = shuffle;
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc != 0 || g.gl_pathc == 0) {
        if (rc == 0) globfree(&g);
        fail("no token files match %s '%s' (run 'make data', or point %s at llm.c .bin shards%s)", flag, pattern, flag,
             strcmp(flag, "-j") == 0 ? ", or pass -v 0 to train without validation" : "");
    }
    for (size_t i = 0; i < g.gl_pathc; i++) d->files.push_back(g.gl_pathv[i]);  // glob sorts
    globfree(&g);
    for (auto& path : d->files) d->file_tokens.push_back(validate_shard_or_fail(path.c_str(), d->global_B, T, vocab_size, flag));
    d->state.shard = 0;
    d->state.position = 0;
    d->state.epoch = 0;
    rng_seed(&d->rng, seed);
    d->fp = NULL;
    d->open_shard = -1;
    d->buffer = (uint16_t*)malloc_or_fail((T + 1) * sizeof(uint16_t), "data loader");
    d->inputs = (int*)malloc_or_fail((size_t)B * T * sizeof(int), "data loader");
    d->targets = (int*)malloc_or_fail((size_t)B * T * sizeof(int), "data loader");
    dataloader_reset_order(d);
}

// Loads this rank's (B, T) slice of the next global batch into d->inputs and d->targets, moving
// to the next shard (and the next epoch after the last shard) when the current one has no full
// global batch left.
inline void dataloader_next_batch(DataLoader* d) {
    if (d->state.position + d->global_B > (int64_t)d->order.size()) {
        d->state.shard++;
        if (d->state.shard == (int)d->files.size()) {
            d->state.shard = 0;
            d->state.epoch++;
        }
        d->state.position = 0;
        dataloader_reset_order(d);
    }
    const char* path = d->files[d->state.shard].c_str();
    if (d->open_shard != d->state.shard) {
        if (d->fp) close_file(d->fp);
        d->fp = fopen_or_fail(path, "rb", "the file disappeared during training");
        d->open_shard = d->state.shard;
    }
    for (int b = 0; b < d->B; b++) {
        int64_t seq = d->order[d->state.position + (int64_t)d->rank * d->B + b];
        fseek_or_fail(d->fp, (long)(256 * sizeof(int32_t) + seq * d->T * sizeof(uint16_t)), path);
        fread_or_fail(d->buffer, sizeof(uint16_t), d->T + 1, d->fp, path);
        for (int t = 0; t < d->T; t++) {
            d->inputs[b * d->T + t] = d->buffer[t];
            d->targets[b * d->T + t] = d->buffer[t + 1];
        }
    }
    d->state.position += d->global_B;
}

// Back to the first batch of the first shard (validation runs restart here every time).
inline void dataloader_reset(DataLoader* d) {
    d->state.shard = 0;
    d->state.position = 0;
    dataloader_reset_order(d);
}

// Restores a saved position (checkpoint resume). Redrawing the shard's order from the RNG state
// saved before it was drawn gives the same order and leaves the RNG exactly where it was.
inline void dataloader_restore(DataLoader* d, const DataLoaderState& saved) {
    if (saved.shard < 0 || saved.shard >= (int)d->files.size() || saved.position < 0)
        fail("checkpoint's data position (shard %d) does not fit the %zu files of -i", saved.shard, d->files.size());
    d->state = saved;
    d->rng = saved.shard_rng;
    dataloader_reset_order(d);
    if (saved.position > (int64_t)d->order.size())
        fail("checkpoint's data position %lld is past the end of shard %d: -i, -b or -t differ from the run being resumed",
             (long long)saved.position, saved.shard);
}

inline void dataloader_free(DataLoader* d) {
    if (d->fp) close_file(d->fp);
    free(d->buffer);
    free(d->inputs);
    free(d->targets);
}
