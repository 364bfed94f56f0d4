// train_common.h: the host-side logic of main() that the CPU trainer (train_gpt2.cpp) and the
// CUDA trainer (train_gpt2.cu) share, so that both read the same flags the same way and print
// and log the same lines: the run's setup (which model, the data and the run's shape, the
// tokenizer, the output directory, the configuration lines) and the loop's pieces (gradient
// clipping's factor, the NaN guard's report, the step's console line, the entropy summary).
// What touches the model's memory (building it, the optimizer state, the step itself, the
// checkpoint) stays in each trainer.
#pragma once

#include <cmath>
#include <string>
#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "dataloader.h"
#include "flags.h"
#include "logger.h"
#include "multiproc.h"
#include "schedulers.h"

// ----------------------------------------------------------------------------
// The run's setup

// Where the model comes from: the newest complete checkpoint in -o (-y 1), a model file, or a
// descriptor (-e) to initialise at random with --norm/--act applied. Fails with one line when
// -y 1 finds no checkpoint or the descriptor's shapes do not fit together.
struct ModelSource {
    int resume_step;    // the checkpoint's step, or -1 for a fresh run
    std::string path;   // the model file to load; empty: build `config` at random
    GPT2Config config;  // the descriptor's model (when path is empty)
};

inline ModelSource model_source(const TrainConfig& cfg) {
    ModelSource src = {-1, "", GPT2Config()};
    if (cfg.resume) {
        src.resume_step = find_latest_checkpoint(cfg.output_dir);
        if (src.resume_step < 0) fail("-y 1: no complete checkpoint (DONE_ marker) in '%s' to resume from", cfg.output_dir.c_str());
        src.path = checkpoint_path(cfg.output_dir, "model", src.resume_step, ".bin");
    } else if (parse_descriptor(cfg.model.c_str(), &src.config)) {
        apply_variant_flags(cfg, &src.config.variant);
        validate_config_or_fail(src.config, cfg.model.c_str());
    } else {
        if (cfg.model.empty()) fail("-e wants a model file or descriptor, got ''");  // empty path means "random"
        src.path = cfg.model;
    }
    return src;
}

#define MAX_GRAD_ACCUM 65536   // micro-batches per optimizer step (-d / (B*T))
#define MAX_STEPS (1L << 30)   // optimizer steps (as -x allows): the loop counts them in an int

// The run's shape: how many micro-batches of B x T tokens make an optimizer step, and how many
// steps make the run. With R ranks (multiproc.h) a micro-batch is R x B x T tokens, B per rank.
struct RunPlan {
    long total_batch;  // tokens per optimizer step (-d; -1: B*T)
    int grad_accum;    // micro-batches per optimizer step
    long steps;        // optimizer steps (-x; -1: one epoch of the training data)
    bool validating;   // -v > 0: the validation loader is open
};

// Checks -t and -d against the model, opens the training data (and the validation data when
// validating; each file is checked up front) and settles the number of steps. Fails with one
// line on the first thing that does not fit.
inline RunPlan open_data(const TrainConfig& cfg, const GPT2Config& mc, DataLoader* train, DataLoader* val) {
    int B = cfg.B, T = cfg.T;
    if (T > mc.max_seq_len) fail("-t %d is longer than the model's maximum sequence length %d", T, mc.max_seq_len);
    RunPlan plan;
    long tokens_per_micro = (long)B * T * mp_size();
    plan.total_batch = cfg.total_batch == -1 ? tokens_per_micro : cfg.total_batch;
    if (plan.total_batch % tokens_per_micro != 0)
        fail("-d %ld is not a multiple of B*T%s = %ld", plan.total_batch, mp_size() > 1 ? "*ranks" : "", tokens_per_micro);
    long accum = plan.total_batch / tokens_per_micro;  // 64-bit, bounded before it becomes an int
    if (accum > MAX_GRAD_ACCUM)
        fail("-d %ld asks for %ld micro-batches of B*T%s = %ld tokens per step, more than %d: use a smaller -d or a larger -b/-t",
             plan.total_batch, accum, mp_size() > 1 ? "*ranks" : "", tokens_per_micro, MAX_GRAD_ACCUM);
    plan.grad_accum = (int)accum;
    dataloader_init(train, cfg.train_pattern.c_str(), B, T, mc.vocab_size, cfg.shuffle != 0, (uint64_t)cfg.seed, "-i",
                    mp_rank(), mp_size());
    plan.validating = cfg.val_every > 0;
    if (plan.validating)
        dataloader_init(val, cfg.val_pattern.c_str(), B, T, mc.vocab_size, false, 0, "-j", mp_rank(), mp_size());
    plan.steps = cfg.max_steps;
    if (plan.steps == -1) {
        if (cfg.overfit_single_batch) fail("-a 1 needs a step count -x");
        plan.steps = dataloader_batches_per_epoch(train) / plan.grad_accum;
        if (plan.steps == 0) fail("the training data holds fewer tokens than one optimizer step (-d %ld)", plan.total_batch);
        if (plan.steps > MAX_STEPS) fail("one epoch is %ld optimizer steps, more than %ld: pass -x", plan.steps, MAX_STEPS);
    }
    mp_check_same(dataloader_batches_per_epoch(train), "the training data's batches per epoch (-i)");
    if (plan.validating) mp_check_same(dataloader_batches_per_epoch(val), "the validation data's batches (-j)");
    return plan;
}

// After a resume: the checkpoint's step must not lie past the run's end (a run asked to end
// before it would otherwise exit 0 having done nothing).
inline void check_resume_step(const RunPlan& plan, int checkpoint_step, const char* state_path) {
    if (checkpoint_step > plan.steps)
        fail("-x %ld is below the step %d of the checkpoint being resumed ('%s'): pass -x %d or more", plan.steps,
             checkpoint_step, state_path, checkpoint_step);
}

// The tokenizer beside the training data, else in the working directory.
inline std::string find_tokenizer(const std::string& train_pattern) {
    size_t slash = train_pattern.rfind('/');
    std::string beside = (slash == std::string::npos ? std::string(".") : train_pattern.substr(0, slash)) + "/gpt2_tokenizer.bin";
    return path_exists(beside.c_str()) ? beside : std::string("gpt2_tokenizer.bin");
}

// Where this process writes its logs: -o on rank 0; nowhere ("") on the other ranks, whose
// logs would repeat rank 0's (multiproc.h).
inline std::string log_dir(const TrainConfig& cfg) { return mp_is_root() ? cfg.output_dir : std::string(); }

// Creates -o and opens the logs in it, on rank 0 (log_dir): resume_step < 0 is a fresh run,
// which refuses a directory that already holds a run; else the logs lose their rows after
// resume_step. Without -o, and on the other ranks, the logger writes nothing.
inline void open_output(Logger* logger, const TrainConfig& cfg, int resume_step, bool has_slopes) {
    std::string dir = log_dir(cfg);
    if (!dir.empty()) {
        make_dirs_or_fail(dir.c_str());
        if (resume_step < 0) check_fresh_output_dir(dir);
    }
    logger_init(logger, dir, resume_step, has_slopes);
}

// The console's three lines on the run: the model, the data and the step's shape, the optimizer.
inline void print_run_config(const TrainConfig& cfg, const GPT2Config& mc, size_t num_params, const DataLoader* train,
                             const RunPlan& plan) {
    printf("model: L=%d NH=%d C=%d maxT=%d V=%d (Vp %d), %zu parameters, norm %s, act %s\n", mc.num_layers,
           mc.num_heads, mc.channels, mc.max_seq_len, mc.vocab_size, mc.padded_vocab_size, num_params,
           norm_name(mc.variant.norm), act_name(mc.variant.act, mc.variant.slope).c_str());
    printf("train: %zu file(s), %lld batches per epoch; B=%d T=%d, %d micro-batch(es) per step, %ld steps\n",
           train->files.size(), (long long)dataloader_batches_per_epoch(train), cfg.B, cfg.T, plan.grad_accum, plan.steps);
    printf("optimizer: AdamW lr %g (%s, warm-up %d, final x%g), betas %g %g, eps %g, wd %g, clip %g; on-nan %s\n",
           cfg.lr, schedule_name(cfg.schedule), cfg.warmup, cfg.final_frac, cfg.beta1, cfg.beta2, cfg.eps,
           cfg.weight_decay, cfg.grad_clip, on_nan_name(cfg.on_nan));
}

// -a 1: every step trains on the very first batch of the training data, also after a resume
// (the loader's saved position does not matter then).
inline void load_overfit_batch(DataLoader* train) {
    dataloader_reset(train);
    dataloader_next_batch(train);
}

// ----------------------------------------------------------------------------
// The training loop's reports

// The clipping factor of torch.nn.utils.clip_grad_norm_: clip / (norm + 1e-6) when below 1.
inline float clip_scale(float norm, float clip) {
    if (clip <= 0.0f) return 1.0f;
    float coef = clip / (norm + 1e-6f);
    return coef < 1.0f ? coef : 1.0f;
}

// The console's line for a finished step: its 1-based number, loss, learning rate, gradient
// norm, time and throughput (tokens: per step); then the count of updates --on-nan skip
// dropped, if any, and `extra` (the CUDA FP16 build's loss scale).
inline void print_step_line(int step, long steps, float loss, float lr, float norm, double seconds, long tokens,
                            int skipped, const std::string& extra) {
    std::string tail = skipped ? " | skipped " + std::to_string(skipped) : "";
    printf("step %5d/%ld | loss %.6f | lr %.2e | norm %.4f | %.1f ms | %.0f tok/s%s%s\n", step + 1, steps, loss, lr, norm,
           seconds * 1000, tokens / seconds, tail.c_str(), extra.c_str());
}

// One console line: the mean entropy of each layer's heads, beside the largest possible
// per-head mean ln(T!)/T. entropy: (L, NH).
inline void print_entropy_summary(int L, int NH, const float* entropy, int T) {
    double max_entropy = 0.0;
    for (int t = 1; t <= T; t++) max_entropy += log((double)t);
    max_entropy /= T;
    printf("  entropy/layer (nats, max %.3f):", max_entropy);
    for (int l = 0; l < L; l++) {
        double mean = 0.0;
        for (int h = 0; h < NH; h++) mean += entropy[l * NH + h];
        printf(" %.3f", mean / NH);
    }
    printf("\n");
}

// The first place that went non-finite, in forward order, for the --on-nan report.
// att, ffn: (L) per-layer counts of non-finite attention scores and FFN activations.
inline std::string first_nonfinite(int L, const long* att, const long* ffn, float loss, float norm) {
    char buf[128];
    for (int l = 0; l < L; l++) {
        if (att[l] > 0) {
            snprintf(buf, sizeof(buf), "layer %d attention scores (%ld values)", l, att[l]);
            return buf;
        }
        if (ffn[l] > 0) {
            snprintf(buf, sizeof(buf), "layer %d FFN activations (%ld values)", l, ffn[l]);
            return buf;
        }
    }
    if (!std::isfinite(loss)) return "the loss (logits or residual stream)";
    if (!std::isfinite(norm)) return "the gradient norm (backward pass)";
    return "nothing";
}

// The NaN guard's report of a non-finite step: the per-layer counts and the step's main.log
// line, flushed; then under --on-nan stop the error line (the first place that went
// non-finite, the last good checkpoint), the logs closed, and true: main() exits with
// EXIT_NONFINITE. Under skip and log, a console line on what became of the update, and false.
// att, ffn: (L) per-layer counts of non-finite attention scores and FFN activations.
inline bool report_nonfinite(Logger* logger, const TrainConfig& cfg, int step, int L, const long* att, const long* ffn,
                             float loss, float lr, float norm, int last_checkpoint) {
    logger_nonfinite(logger, step, L, att, ffn);
    logger_train(logger, step, loss, lr, norm);
    logger_flush(logger);
    std::string where = first_nonfinite(L, att, ffn, loss, norm);
    if (cfg.on_nan == ON_NAN_STOP) {
        std::string keep = last_checkpoint >= 0 ? checkpoint_path(cfg.output_dir, "model", last_checkpoint, ".bin") : "none";
        fprintf(stderr, "error: non-finite value at step %d, first in %s (loss %f, grad norm %f); "
                "stopped with --on-nan stop, last good checkpoint: %s\n", step, where.c_str(), loss, norm, keep.c_str());
        logger_close(logger);
        return true;
    }
    printf("step %d: non-finite, first in %s: %s\n", step, where.c_str(),
           cfg.on_nan == ON_NAN_SKIP ? "update skipped" : "update applied (--on-nan log)");
    return false;
}
