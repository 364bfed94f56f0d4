/*
dev/cuda/step_profile.cu: where one training step of the CUDA trainer spends its time. It builds
a model from scratch (the trainer's own code: train_gpt2.cu with TESTING), feeds it random
tokens, and runs full optimizer steps (forward with the entropy of every head, backward, gradient
norm and NaN guard, AdamW). First the plain step time (CUDA events around N steps), then one
step (queued behind another, as in training) split by the trainer's prof_mark() calls
(llmc/profile.cuh) into a table by kind of work, summed over the layers, with each row's share
of the step.

Read each row against its floor: a matrix product's FLOPs over the card's matmul rate, any other
row's bytes (each input read once, each output written once) over the memory bandwidth.

Build: make -f cuda.mk dev/cuda/step_profile.out [PRECISION=BF16|FP32|FP16]
Run:   ./dev/cuda/step_profile.out [-e d12] [-b 128] [-t 128] [--norm ln] [--act gelu]
                                   [--entropy 1] [-x 10 (timed steps)] [--matmul-autotune 0]
Needs a GPU.
*/
#define TESTING
#include "../../train_gpt2.cu"

static void usage_fail(const char* what) {
    fail("%s (usage: step_profile.out [-e d12] [-b 128] [-t 128] [--norm ln|none|none-all] [--act NAME] "
         "[--entropy 0|1] [-x STEPS] [--matmul-autotune 0|1])", what);
}

int main(int argc, char** argv) {
    const char* desc = "d12";
    long B = 128, T = 128, steps = 10, entropy = 1, autotune = 0;
    Variant variant = {NORM_LN, ACT_GELU, 0.0f};
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) usage_fail("every flag wants a value");
        std::string f = argv[i];
        const char* v = argv[i + 1];
        bool ok = true;
        if (f == "-e") desc = v;
        else if (f == "-b") ok = parse_int(v, &B) && B >= 1;
        else if (f == "-t") ok = parse_int(v, &T) && T >= 1;
        else if (f == "-x") ok = parse_int(v, &steps) && steps >= 1;
        else if (f == "--entropy") ok = parse_int(v, &entropy) && (entropy == 0 || entropy == 1);
        else if (f == "--norm") ok = parse_norm(v, &variant.norm);
        else if (f == "--act") ok = parse_act(v, &variant.act, &variant.slope);
        else if (f == "--matmul-autotune") ok = parse_int(v, &autotune) && (autotune == 0 || autotune == 1);
        else usage_fail(("unknown flag " + f).c_str());
        if (!ok) fail("bad value '%s' for %s", v, f.c_str());
    }
    GPT2Config cfg;
    if (!parse_descriptor(desc, &cfg)) fail("-e wants a model descriptor (d12, L4H4C128, ...), got '%s'", desc);
    cfg.variant = variant;
    validate_config_or_fail(cfg, desc);
    if (T > cfg.max_seq_len) fail("-t %ld is longer than the model's maximum sequence length %d", T, cfg.max_seq_len);

    cuda_setup();
    g_matmul_autotune = autotune == 1;  // as train_gpt2cu's flag: the first (warm-up) step times the candidates
    GPT2 model;
    gpt2_build_from_random(&model, cfg, 1337);
    int N = (int)(B * T);
    std::vector<int> inputs(N), targets(N);
    Rng rng;
    rng_seed(&rng, 42);
    for (int i = 0; i < N; i++) {
        inputs[i] = (int)rng_below(&rng, cfg.vocab_size);
        targets[i] = (int)rng_below(&rng, cfg.vocab_size);
    }
    int adam_t = 0;
    auto train_step = [&]() {
        gpt2_step_begin(&model);
        gpt2_set_batch(&model, inputs.data(), targets.data(), (int)B, (int)T);
        gpt2_forward(&model, true, entropy != 0, 1.0f, &model.d_header->loss_sum);
        gpt2_backward(&model, 1.0f);
        adam_t++;
        StepOptions opt = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.1f, 1.0f, adam_t, 1, false};
        gpt2_step_end(&model, opt, adam_t % 2);
    };

    printf("step_profile: %s, B=%ld T=%ld, norm %s, act %s, entropy %s, %s, %s\n", desc, B, T, norm_name(variant.norm),
           act_name(variant.act, variant.slope).c_str(), entropy ? "every step" : "off", PRECISION_NAME,
           g_device_prop.name);
    for (int i = 0; i < 3; i++) train_step();  // warm-up: cuBLASLt heuristics, first-touch

    // t0 is queued behind the warm-up with no wait, so the first timed step's host work overlaps
    // the GPU's as in the trainer (after a wait, the GPU would idle through that host work)
    cudaEvent_t t0, t1;
    cudaCheck(cudaEventCreate(&t0));
    cudaCheck(cudaEventCreate(&t1));
    cudaCheck(cudaEventRecord(t0, g_stream));
    for (long i = 0; i < steps; i++) train_step();
    cudaCheck(cudaEventRecord(t1, g_stream));
    cudaCheck(cudaEventSynchronize(t1));
    float plain_ms = 0.0f;
    cudaCheck(cudaEventElapsedTime(&plain_ms, t0, t1));
    plain_ms /= steps;

    // The profiled step follows an unprofiled one with no wait between them, as every step of the
    // trainer's loop follows the previous one: the host prepares the batch (the id check, the
    // encoder's buckets) while the GPU still runs the step before. Profiling right after
    // prof_end's wait instead charged that host time, with the GPU idle, to "step begin" (1.05 ms
    // of the H200's 751614f profile, a gap the plain steps do not have).
    StepProfile prof;
    std::vector<ProfileRow> rows;
    for (int pass = 0; pass < 2; pass++) {  // the first pass creates the events
        train_step();
        prof_begin(&prof);
        train_step();
        prof_end(&prof, &rows);
    }
    double total = 0.0;
    for (auto& r : rows) total += r.ms;

    printf("plain step: %.3f ms, %.0f tok/s (mean of %ld steps); peak device memory %.1f MiB\n", plain_ms,
           N / (plain_ms / 1000.0), steps, g_device_peak_bytes / 1048576.0);
    printf("profiled step: %.3f ms (the events' own gaps included)\n\n", total);
    printf("%-34s %10s %7s %7s\n", "work", "ms", "share", "pieces");
    for (auto& r : rows) printf("%-34s %10.3f %6.1f%% %7d\n", r.name.c_str(), r.ms, 100.0 * r.ms / total, r.pieces);
    double matmul = 0.0;
    for (auto& r : rows) if (r.name.rfind("matmul", 0) == 0) matmul += r.ms;
    printf("%-34s %10.3f %6.1f%%\n", "(all matrix products)", matmul, 100.0 * matmul / total);
    printf("%-34s %10.3f %6.1f%%\n", "(everything else)", total - matmul, 100.0 * (total - matmul) / total);
    printf("summary: ms_per_step=%.3f tok_per_s=%.1f profiled_ms=%.3f matmul_ms=%.3f other_ms=%.3f\n", plain_ms,
           N / (plain_ms / 1000.0), total, matmul, total - matmul);

    prof_free(&prof);
    cudaCheck(cudaEventDestroy(t0));
    cudaCheck(cudaEventDestroy(t1));
    gpt2_free(&model);
    return 0;
}
