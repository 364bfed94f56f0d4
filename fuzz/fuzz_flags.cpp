// fuzz/fuzz_flags.cpp: the command line (flags.h: parse_flags). The input is argv with NUL
// between the arguments; every value that parse_flags accepts must lie in its documented range.
// Seeds: fuzz/corpus/flags.
#include <string>
#include <vector>
#include "fuzz_util.h"
#include "../flags.h"

// Splits the input at NULs into at most 64 arguments after argv[0]; false for -h (it exits 0).
inline bool fuzz_argv(const uint8_t* data, size_t size, std::vector<std::string>* args) {
    args->assign(1, "train_gpt2");
    std::string all((const char*)data, size);
    size_t start = 0;
    while (start <= all.size() && args->size() <= 64) {
        size_t end = all.find('\0', start);
        if (end == std::string::npos) end = all.size();
        args->push_back(all.substr(start, end - start));
        start = end + 1;
    }
    for (auto& a : *args)
        if (a == "-h" || a == "--help") return false;
    return true;
}

#ifndef FUZZ_ARGV_ONLY
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<std::string> args;
    if (!fuzz_argv(data, size, &args)) return 0;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(&a[0]);
    fuzz_run([&] {
        TrainConfig cfg;
        parse_flags((int)argv.size(), argv.data(), &cfg);
        fuzz_require(cfg.B >= 1 && cfg.T >= 1 && (cfg.total_batch == -1 || cfg.total_batch >= 1));
        fuzz_require(cfg.max_steps == -1 || (cfg.max_steps >= 1 && cfg.max_steps <= (1L << 30)));
        fuzz_require(cfg.eps >= 1e-30f && cfg.beta1 < 1.0f && cfg.beta2 < 1.0f && std::isfinite(cfg.lr));
        fuzz_require(!cfg.model.empty() && !cfg.train_pattern.empty() && !cfg.val_pattern.empty());
        fuzz_require(!cfg.resume || !cfg.output_dir.empty());
        Variant v = {NORM_LN, ACT_GELU, 0.0f};
        apply_variant_flags(cfg, &v);
        fuzz_require(std::isfinite(v.slope));
    });
    return 0;
}
#endif
