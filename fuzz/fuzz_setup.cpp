// fuzz/fuzz_setup.cpp: a run's whole setup as both trainers do it before the first step, from a
// fuzzed command line: flags -> model source (descriptor, model file or the newest checkpoint
// under -y 1) -> the one config validation -> parameters -> data and the run's shape (-d, -x)
// -> tokenizer -> on resume the state file, the data position and the step check.
// The fixtures (shards, a model file, a checkpoint at step 2, a tokenizer) are written once into
// a scratch directory that the harness works in; arguments that leave it ('/' first, "..") are
// skipped, so the fuzzer never reads or writes elsewhere. Seeds: fuzz/corpus/setup.
#include <sys/stat.h>
#include <vector>
#define FUZZ_ARGV_ONLY
#include "fuzz_flags.cpp"
#include "../checkpoint.h"
#include "../tokenizer.h"
#include "../train_common.h"

static void write_shard(const char* path, int n, int vocab) {
    std::vector<int32_t> h(256, 0);
    h[0] = SHARD_MAGIC, h[1] = SHARD_VERSION, h[2] = n;
    std::vector<uint16_t> tokens(n);
    for (int i = 0; i < n; i++) tokens[i] = (uint16_t)((i * 7 + 3) % vocab);
    FILE* f = fopen(path, "wb");
    fwrite(h.data(), 4, 256, f);
    fwrite(tokens.data(), 2, n, f);
    fclose(f);
}

// The fixtures of the scratch directory; the fixed flags every input starts from.
static void make_fixtures() {
    std::string dir = fuzz_scratch_path("setup");
    make_dirs_or_fail((dir + "/ckpt").c_str());
    if (chdir(dir.c_str()) != 0) abort();
    write_shard("train_000000.bin", 400, 64);
    write_shard("train_000001.bin", 300, 64);
    write_shard("val_000000.bin", 200, 64);
    GPT2Config c = {16, 64, 128, 1, 2, 8, {NORM_NONE, ACT_LRELU_LAYER, 0.1f}};
    std::vector<float> params(count_params(c, true), 0.01f);
    write_model_file("model.bin", c, params.data());
    write_model_file(checkpoint_path("ckpt", "model", 2, ".bin").c_str(), c, params.data());
    std::vector<float> m(params.size(), 0.001f), v(params.size(), 0.0001f);
    TrainState s = {2, 2, 0, {0, 4, 0, {{1, 2}}}, {{3, 4}}, {0, 0.0f, 0, 0}};
    write_state_file(checkpoint_path("ckpt", "state", 2, ".bin").c_str(), s, count_params(c, false), 1, m.data(), v.data());
    write_done_marker("ckpt", 2);
    FILE* f = fopen("gpt2_tokenizer.bin", "wb");
    int32_t h[256] = {TOKENIZER_MAGIC, 2, 64, 63};
    fwrite(h, 4, 256, f);
    for (int i = 0; i < 64; i++) { unsigned char tok[2] = {1, (unsigned char)('0' + i)}; fwrite(tok, 1, 2, f); }
    fclose(f);
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz_quiet_stdout();
    make_fixtures();
    return 0;
}

// The setup of train_gpt2.cpp's main() up to the first step, without the output directory.
static void setup(const TrainConfig& cfg) {
    ModelSource src = model_source(cfg);
    GPT2Config c = src.config;
    int stored_slopes = 0;
    FILE* f = NULL;
    if (!src.path.empty()) {
        f = open_model_file(src.path.c_str(), &c, &stored_slopes);
    }
    int file_act = c.variant.act;
    apply_variant_flags(cfg, &c.variant);
    validate_config_or_fail(c, "model");
    size_t n = count_params(c, true);
    int slopes = num_slopes_for(c.variant.act, c.num_layers);
    float* params = (float*)calloc_or_fail(n, sizeof(float), "parameters");
    std::vector<float*> owned = {params};
    DataLoader train{}, val{};
    try {
        if (f) {
            read_model_params(f, src.path.c_str(), c, stored_slopes, file_act, params);
            close_file(f);
        }
        RunPlan plan = open_data(cfg, c, &train, &val);
        fuzz_require(plan.grad_accum >= 1 && plan.grad_accum <= MAX_GRAD_ACCUM && plan.steps >= 1 && plan.steps <= MAX_STEPS);
        Tokenizer tok;
        tokenizer_init(&tok, find_tokenizer(cfg.train_pattern).c_str());
        if (src.resume_step >= 0) {
            std::string path = checkpoint_path(cfg.output_dir, "state", src.resume_step, ".bin");
            float* m = (float*)calloc_or_fail(n, sizeof(float), "AdamW state");
            owned.push_back(m);
            float* v = (float*)calloc_or_fail(n, sizeof(float), "AdamW state");
            owned.push_back(v);
            TrainState state = {};
            read_state_file(path.c_str(), src.resume_step, &state, n - slopes, slopes, m, v);
            dataloader_restore(&train, state.loader);
            check_resume_step(plan, state.step, path.c_str());
            dataloader_next_batch(&train);
        }
    } catch (const FailError&) {
        dataloader_free(&train);
        dataloader_free(&val);
        for (float* p : owned) free(p);
        throw;
    }
    dataloader_free(&train);
    dataloader_free(&val);
    for (float* p : owned) free(p);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<std::string> args;
    if (!fuzz_argv(data, size, &args)) return 0;
    for (auto& a : args)
        if ((!a.empty() && a[0] == '/') || a.find("..") != std::string::npos) return 0;  // stay in the scratch dir
    std::vector<std::string> all = {"train_gpt2", "-i", "train_*.bin", "-j", "val_*.bin", "-e", "model.bin", "-v", "0"};
    all.insert(all.end(), args.begin() + 1, args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(&a[0]);
    fuzz_run([&] {
        TrainConfig cfg;
        parse_flags((int)argv.size(), argv.data(), &cfg);
        setup(cfg);
    });
    return 0;
}
