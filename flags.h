// flags.h: the command line shared by train_gpt2 (CPU) and train_gpt2cu (CUDA). llm.c's short
// flags keep llm.c's meaning; the long options select the variant and the optimizer details.
// Every value is parsed strictly: a bad one ends the program with one line on stderr.
#pragma once

#include <string>
#include "config.h"
#include "schedulers.h"

enum OnNan { ON_NAN_STOP = 0, ON_NAN_SKIP = 1, ON_NAN_LOG = 2 };

struct TrainConfig {
    std::string train_pattern = "data/pycode_train_*.bin";  // -i
    std::string val_pattern = "data/pycode_val_*.bin";      // -j
    std::string model = "d12";                              // -e: model file or descriptor
    std::string output_dir = "";                            // -o
    int B = 4;                  // -b micro-batch size
    int T = 128;                // -t sequence length
    long total_batch = -1;      // -d tokens per optimizer step (-1: B*T)
    long max_steps = -1;        // -x (-1: one epoch)
    float lr = 3e-4f;           // -l
    int warmup = 0;             // -u
    float final_frac = 1.0f;    // -q
    int schedule = SCHEDULE_COSINE;  // -k
    float weight_decay = 0.0f;  // -c
    int val_every = 20;         // -v (0: never)
    int val_max_steps = 20;     // -m (-1: whole validation set)
    int checkpoint_every = 0;   // -n (0: only at the end, when -o is set)
    int resume = 0;             // -y
    int overfit_single_batch = 0;  // -a
    int sample_every = 20;      // -s (0: never)
    int gen_tokens = 64;        // -g
    const char* norm = NULL;    // --norm: NULL keeps the model file's
    const char* act = NULL;     // --act: NULL keeps the model file's
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float grad_clip = 1.0f;     // 0: no clipping
    int entropy_every = 100;    // 0: off
    int diag_every = 0;         // --diag-every: per-layer diagnostics (diag.h) every N steps; 0: off
    int on_nan = ON_NAN_STOP;
    long seed = 1337;
    int shuffle = 0;
    int fp16_autocast = -1;     // --fp16-autocast (fp16.h): -1 = the build's own (1 only in the CUDA FP16 build)
    int matmul_autotune = 0;    // --matmul-autotune (CUDA, llmc/matmul.cuh): time cuBLASLt's candidates, keep the fastest
};

inline void print_usage(const char* prog) {
    TrainConfig d;
    printf("Usage: %s [options]\n", prog);
    printf("Trains GPT-2 with switchable normalization and FFN activation (normfree-gpt2).\n\n");
    printf("  -i <pattern>  train token shards (glob)                 default %s\n", d.train_pattern.c_str());
    printf("  -j <pattern>  validation token shards (glob)            default %s\n", d.val_pattern.c_str());
    printf("  -e <model>    model file (.bin) or descriptor: d6 d12 d24 d36 d48, or\n");
    printf("                L<layers>H<heads>C<channels>[T<maxT>][V<vocab>] (default maxT 1024, V 50257)\n");
    printf("                                                          default %s\n", d.model.c_str());
    printf("  -o <dir>      output dir for logs and checkpoints (none: no logs)\n");
    printf("  -b <int>      micro-batch size B                        default %d\n", d.B);
    printf("  -t <int>      sequence length T (<= the model's maxT)   default %d\n", d.T);
    printf("  -d <int>      tokens per optimizer step, a multiple of B*T (gradient accumulation); -1 = B*T\n");
    printf("  -x <int>      optimizer steps; -1 = one epoch            default %ld\n", d.max_steps);
    printf("  -l <float>    peak learning rate                        default %g\n", d.lr);
    printf("  -u <int>      linear warm-up steps                      default %d\n", d.warmup);
    printf("  -q <float>    final learning rate as a fraction of -l   default %g\n", d.final_frac);
    printf("  -k <sched>    schedule: cosine | linear | constant      default %s\n", schedule_name(d.schedule));
    printf("  -c <float>    AdamW weight decay (matrices and embeddings only) default %g\n", d.weight_decay);
    printf("  -v <int>      validate every N steps (0 = never)        default %d\n", d.val_every);
    printf("  -m <int>      validation batches (-1 = all)             default %d\n", d.val_max_steps);
    printf("  -n <int>      checkpoint every N steps (0 = at the end only; needs -o) default %d\n", d.checkpoint_every);
    printf("  -y <0|1>      resume from the latest checkpoint in -o   default %d\n", d.resume);
    printf("  -a <0|1>      overfit the first batch only              default %d\n", d.overfit_single_batch);
    printf("  -s <int>      sample every N steps (0 = never)          default %d\n", d.sample_every);
    printf("  -g <int>      tokens to generate per sample             default %d\n", d.gen_tokens);
    printf("  --norm <n>    ln | none | none-all                      default: the model file's (ln for llm.c files)\n");
    printf("  --act <a>     gelu | gelu-tanh | relu | lrelu:S | lrelu-layer[:S0] | lrelu-global[:S0] | identity\n");
    printf("                (S0 default %g)                          default: the model file's (gelu-tanh for llm.c files)\n", DEFAULT_LEARNABLE_SLOPE);
    printf("  --beta1 <f>   AdamW beta1                               default %g\n", d.beta1);
    printf("  --beta2 <f>   AdamW beta2                               default %g\n", d.beta2);
    printf("  --eps <f>     AdamW epsilon                             default %g\n", d.eps);
    printf("  --grad-clip <f>  clip the global gradient norm (0 = off) default %g\n", d.grad_clip);
    printf("  --entropy-every <int>  log per-head attention entropy every N steps (0 = off) default %d\n", d.entropy_every);
    printf("  --diag-every <int>  log per-layer diagnostics (diag.tsv) every N steps (0 = off) default %d\n", d.diag_every);
    printf("  --on-nan <m>  stop | skip | log on a non-finite loss, gradient norm or activation; default stop\n");
    printf("                (stop exits with code %d, keeping the last good checkpoint)\n", EXIT_NONFINITE);
    printf("  --fp16-autocast <0|1>  the paper's fp16 regime: scores and layer outputs rounded to fp16 as\n");
    printf("                PyTorch fp16 autocast rounds them (inf above 65504), GradScaler loss scaling;\n");
    printf("                CPU trainer: default 0; CUDA: only the FP16 build, always on there\n");
    printf("  --matmul-autotune <0|1>  CUDA: time up to 8 cuBLASLt algorithms per matrix product on its first\n");
    printf("                call and keep the fastest (faster; the last bits then vary from run to run)\n");
    printf("                CPU trainer: accepted, no effect                default %d\n", d.matmul_autotune);
    printf("  --seed <int>  seed for initialisation, shuffling and sampling default %ld\n", d.seed);
    printf("  --shuffle <0|1>  shuffle training sequences every epoch  default %d\n", d.shuffle);
    printf("  -h, --help    this text\n");
}

// Parses argv into cfg; prints help and exits 0 for -h; fails on anything it does not know.
inline void parse_flags(int argc, char** argv, TrainConfig* cfg) {
    for (int i = 1; i < argc; i++) {
        const char* flag = argv[i];
        if (strcmp(flag, "-h") == 0 || strcmp(flag, "--help") == 0) {
            print_usage(argv[0]);
            exit(0);
        }
        if (flag[0] != '-') fail("unexpected argument '%s' (flags come as '-x value'; see -h)", flag);
        if (i + 1 >= argc) fail("flag %s needs a value (see -h)", flag);
        const char* val = argv[++i];
        long n;
        float x;
        auto need_int = [&](long lo, long hi) -> long {
            if (!parse_int(val, &n) || n < lo || n > hi) fail("flag %s wants an integer in [%ld, %ld], got '%s'", flag, lo, hi, val);
            return n;
        };
        auto need_float = [&](float lo, float hi) -> float {
            if (!parse_float(val, &x) || x < lo || x > hi) fail("flag %s wants a number in [%g, %g], got '%s'", flag, lo, hi, val);
            return x;
        };
        const long BIG = 1L << 40;
        if (strcmp(flag, "-i") == 0) { if (!*val) fail("flag -i wants a file pattern, got ''"); cfg->train_pattern = val; }
        else if (strcmp(flag, "-j") == 0) { if (!*val) fail("flag -j wants a file pattern, got ''"); cfg->val_pattern = val; }
        else if (strcmp(flag, "-e") == 0) { if (!*val) fail("flag -e wants a model file or descriptor, got ''"); cfg->model = val; }
        else if (strcmp(flag, "-o") == 0) { if (!*val) fail("flag -o wants a directory, got ''"); cfg->output_dir = val; }
        else if (strcmp(flag, "-b") == 0) cfg->B = (int)need_int(1, 1 << 20);
        else if (strcmp(flag, "-t") == 0) cfg->T = (int)need_int(1, 1 << 20);
        else if (strcmp(flag, "-d") == 0) { cfg->total_batch = need_int(-1, BIG); if (n == 0) fail("flag -d must be positive or -1"); }
        else if (strcmp(flag, "-x") == 0) { cfg->max_steps = need_int(-1, 1L << 30); if (n == 0) fail("flag -x must be positive or -1"); }
        else if (strcmp(flag, "-l") == 0) cfg->lr = need_float(0.0f, 1e30f);
        else if (strcmp(flag, "-u") == 0) cfg->warmup = (int)need_int(0, 1L << 30);
        else if (strcmp(flag, "-q") == 0) cfg->final_frac = need_float(0.0f, 1.0f);
        else if (strcmp(flag, "-k") == 0) { if (!parse_schedule(val, &cfg->schedule)) fail("flag -k wants cosine, linear or constant, got '%s'", val); }
        else if (strcmp(flag, "-c") == 0) cfg->weight_decay = need_float(0.0f, 1e6f);
        else if (strcmp(flag, "-v") == 0) cfg->val_every = (int)need_int(0, 1L << 30);
        else if (strcmp(flag, "-m") == 0) { cfg->val_max_steps = (int)need_int(-1, 1L << 30); if (n == 0) fail("flag -m must be positive or -1"); }
        else if (strcmp(flag, "-n") == 0) cfg->checkpoint_every = (int)need_int(0, 1L << 30);
        else if (strcmp(flag, "-y") == 0) cfg->resume = (int)need_int(0, 1);
        else if (strcmp(flag, "-a") == 0) cfg->overfit_single_batch = (int)need_int(0, 1);
        else if (strcmp(flag, "-s") == 0) cfg->sample_every = (int)need_int(0, 1L << 30);
        else if (strcmp(flag, "-g") == 0) cfg->gen_tokens = (int)need_int(1, 1 << 20);
        else if (strcmp(flag, "--norm") == 0) { int v; if (!parse_norm(val, &v)) fail("--norm wants ln, none or none-all, got '%s'", val); cfg->norm = val; }
        else if (strcmp(flag, "--act") == 0) {
            int a; float s;
            if (!parse_act(val, &a, &s))
                fail("--act wants gelu, gelu-tanh, relu, lrelu:S, lrelu-layer[:S0], lrelu-global[:S0] or identity, got '%s'", val);
            cfg->act = val;
        }
        else if (strcmp(flag, "--beta1") == 0) { cfg->beta1 = need_float(0.0f, 1.0f); if (x >= 1.0f) fail("--beta1 must be below 1"); }
        else if (strcmp(flag, "--beta2") == 0) { cfg->beta2 = need_float(0.0f, 1.0f); if (x >= 1.0f) fail("--beta2 must be below 1"); }
        else if (strcmp(flag, "--eps") == 0) {
            // eps 0 divides 0 by 0 for parameters whose gradient is always 0 (padded vocabulary rows)
            cfg->eps = need_float(0.0f, 1.0f);
            if (x < 1e-30f) fail("--eps must be at least 1e-30 (0 makes never-updated parameters NaN), got '%s'", val);
        }
        else if (strcmp(flag, "--grad-clip") == 0) cfg->grad_clip = need_float(0.0f, 1e30f);
        else if (strcmp(flag, "--entropy-every") == 0) cfg->entropy_every = (int)need_int(0, 1L << 30);
        else if (strcmp(flag, "--diag-every") == 0) cfg->diag_every = (int)need_int(0, 1L << 30);
        else if (strcmp(flag, "--on-nan") == 0) {
            if (strcmp(val, "stop") == 0) cfg->on_nan = ON_NAN_STOP;
            else if (strcmp(val, "skip") == 0) cfg->on_nan = ON_NAN_SKIP;
            else if (strcmp(val, "log") == 0) cfg->on_nan = ON_NAN_LOG;
            else fail("--on-nan wants stop, skip or log, got '%s'", val);
        }
        else if (strcmp(flag, "--fp16-autocast") == 0) cfg->fp16_autocast = (int)need_int(0, 1);
        else if (strcmp(flag, "--matmul-autotune") == 0) cfg->matmul_autotune = (int)need_int(0, 1);
        else if (strcmp(flag, "--seed") == 0) cfg->seed = need_int(0, 1L << 62);
        else if (strcmp(flag, "--shuffle") == 0) cfg->shuffle = (int)need_int(0, 1);
        else fail("unknown flag '%s' (see -h)", flag);
    }
    if (cfg->resume && cfg->output_dir.empty()) fail("-y 1 needs -o DIR to find the checkpoint");
    if (cfg->checkpoint_every > 0 && cfg->output_dir.empty()) fail("-n needs -o DIR to write checkpoints into");
}

// Applies --norm/--act over the variant a model file (or descriptor) records.
inline void apply_variant_flags(const TrainConfig& cfg, Variant* v) {
    if (cfg.norm) parse_norm(cfg.norm, &v->norm);
    if (cfg.act) parse_act(cfg.act, &v->act, &v->slope);
}

inline const char* on_nan_name(int m) { return m == ON_NAN_STOP ? "stop" : m == ON_NAN_SKIP ? "skip" : "log"; }
