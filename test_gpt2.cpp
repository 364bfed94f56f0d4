/*
test_gpt2.cpp: checks the fp32 CPU trainer (train_gpt2.cpp) against the PyTorch reference.

For every variant's debug state written by `train_gpt2.py --write-debug-states DIR` it compares
the logits, the loss, the per-head attention entropies, every parameter gradient (learnable
slopes included), and the losses and gradient norms of 10 AdamW steps. It also tests the parts
that have no PyTorch twin: the fused entropy on hard rows, the blocked matrix product, the
schedulers, the data loader, the model file round trip and the flag parsers.

Usage: ./test_gpt2 [DIR]   (default out/ref). Exit status 0 only if every check passed; the
last line is "test_gpt2: N passed, M failed".
*/
#define TESTING
#include "train_gpt2.cpp"
#include "debug_state.h"
#include "test_util.h"

#include <algorithm>

// fp32 tolerances against PyTorch (fp32 on the CPU). The two programs sum in different orders,
// so agreement is to rounding, not bit-exact; these bounds are ~10x the differences measured on
// the tiny reference model, and far below any real bug (a wrong sign or a missing term moves
// values by 1e-2 or more).
const float TOL_LOGITS = 1e-5f;      // absolute, logits of O(1)
const float TOL_LOSS = 1e-5f;        // absolute, the first forward's loss
const float TOL_ENTROPY = 1e-5f;     // absolute, nats (the bar)
const float TOL_GRAD_ABS = 1e-6f;    // gradients: |ours - ref| <= ABS + REL * max|ref of tensor|
const float TOL_GRAD_REL = 1e-4f;
const float TOL_STEP_LOSS = 1e-4f;   // absolute, losses over 10 AdamW steps (the bar)
const float TOL_DIAG_REL = 1e-5f;    // diagnostics (diag.h): x max(1e-3, |ref|) for the RMS, std and max
const float TOL_DIAG_NEG = 2.5e-4f;  // absolute, share of negative FFN pre-activations: two of the
                                     // 8192 values of a layer may sit within rounding of 0
const float TOL_STEP_NORM = 1e-3f;   // relative, gradient norms over the 10 steps: looser, because
                                     // a ReLU input within rounding of 0 can flip its kink after a
                                     // few updates (measured: 1.8e-4 for ln_relu, <1e-6 elsewhere)

// ----------------------------------------------------------------------------
// Against the PyTorch reference


// The diagnostics of the forward just run (diag.h) against the reference's.
void check_diag(const std::string& tag, const GPT2& model, const DebugState& ref, int B, int T) {
    if (!ref_has_diag(tag, ref)) return;
    const GPT2Config& c = model.config;
    std::vector<float> cols((size_t)c.num_layers * DIAG_COLS);
    diag_finalize(model.diag_sums.data(), c.num_layers, B, T, c.channels, c.num_heads, model.diag_passes, cols.data());
    check_diag_cols(tag.c_str(), cols.data(), ref.diag.data(), c.num_layers, TOL_DIAG_REL, TOL_DIAG_NEG);
}

void test_variant(const std::string& dir, const std::string& tag) {
    printf("variant %s\n", tag.c_str());
    GPT2 model;
    gpt2_build_from_file(&model, ref_model_path(dir, tag).c_str(), NULL);
    DebugState ref;
    read_variant_state(dir, tag, model.config, model.num_params, &ref);
    const GPT2Config& c = model.config;
    int B = ref.B, T = ref.T, V = c.vocab_size, Vp = c.padded_vocab_size, L = c.num_layers, NH = c.num_heads;

    // forward: logits, loss, entropies
    model.measure = true;
    model.want_entropy = true;
    model.want_diag = true;
    gpt2_measurements_reset(&model);
    gpt2_forward(&model, ref.x.data(), ref.y.data(), B, T);
    std::vector<float> logits((size_t)B * T * V);
    for (int bt = 0; bt < B * T; bt++)
        memcpy(&logits[(size_t)bt * V], model.acts.logits + (size_t)bt * Vp, V * sizeof(float));
    size_t at;
    float d = max_abs_diff(logits.data(), ref.logits.data(), logits.size(), &at);
    check(d <= TOL_LOGITS, "%s: logits max diff %.2e (tol %.0e)", tag.c_str(), d, TOL_LOGITS);
    d = fabsf(model.mean_loss - ref.loss);
    check(d <= TOL_LOSS, "%s: loss %.6f vs %.6f, diff %.2e (tol %.0e)", tag.c_str(), model.mean_loss, ref.loss, d, TOL_LOSS);
    std::vector<float> entropy((size_t)L * NH);
    gpt2_entropies(&model, entropy.data());
    d = max_abs_diff(entropy.data(), ref.entropy.data(), entropy.size(), &at);
    check(d <= TOL_ENTROPY, "%s: per-head entropies max diff %.2e (tol %.0e), layer %zu head %zu: %.6f vs %.6f",
          tag.c_str(), d, TOL_ENTROPY, at / NH, at % NH, entropy[at], ref.entropy[at]);

    check_diag(tag, model, ref, B, T);
    model.want_diag = false;

    // backward: every tensor's gradient
    gpt2_zero_grad(&model);
    gpt2_backward(&model, 1.0f);
    size_t offset = 0;
    for (int k = 0; k < NUM_ALL_TENSORS; k++) {
        size_t n = model.param_sizes[k];
        if (n == 0) continue;
        const float* ours = model.grads_memory + offset;
        const float* theirs = ref.grads.data() + offset;
        float scale = max_abs(theirs, n);
        float tol = TOL_GRAD_ABS + TOL_GRAD_REL * scale;
        d = max_abs_diff(ours, theirs, n, &at);
        check(d <= tol, "%s: grad %-8s max diff %.2e (tol %.1e, max |grad| %.2e)", tag.c_str(), param_tensor_name(k), d, tol, scale);
        offset += n;
    }
    bool learnable = act_is_learnable(c.variant.act);
    if (learnable) check(fabsf(model.grads.slopes[0]) > 1e-6f, "%s: slope gradient is non-zero (%.3e)", tag.c_str(), model.grads.slopes[0]);

    // 10 AdamW steps on the same batch
    float worst_loss = 0.0f, worst_norm = 0.0f;
    int worst_step = 0;
    for (int step = 0; step < ref.num_steps; step++) {
        gpt2_forward(&model, ref.x.data(), ref.y.data(), B, T);
        gpt2_zero_grad(&model);
        gpt2_backward(&model, 1.0f);
        float norm = gpt2_grad_norm(&model);
        float dl = fabsf(model.mean_loss - ref.step_losses[step]);
        float dn = fabsf(norm - ref.step_norms[step]) / fmaxf(ref.step_norms[step], 1e-12f);
        if (!(dl <= worst_loss)) { worst_loss = dl; worst_step = step; }
        if (!(dn <= worst_norm)) worst_norm = dn;
        gpt2_update(&model, ref.lr, ref.beta1, ref.beta2, ref.eps, ref.weight_decay, step + 1, clip_scale(norm, ref.grad_clip));
    }
    check(worst_loss <= TOL_STEP_LOSS, "%s: %d AdamW steps, loss max diff %.2e at step %d (tol %.0e); final loss %.6f",
          tag.c_str(), ref.num_steps, worst_loss, worst_step, TOL_STEP_LOSS, ref.step_losses[ref.num_steps - 1]);
    check(worst_norm <= TOL_STEP_NORM, "%s: %d AdamW steps, grad norm max relative diff %.2e (tol %.0e)", tag.c_str(),
          ref.num_steps, worst_norm, TOL_STEP_NORM);
    check(ref.step_losses[ref.num_steps - 1] < ref.step_losses[0], "%s: the reference loss falls over the steps (%.4f -> %.4f)",
          tag.c_str(), ref.step_losses[0], ref.step_losses[ref.num_steps - 1]);
    gpt2_free(&model);
}

// ----------------------------------------------------------------------------
// Fused entropy on hard rows: the centred sums must agree with -sum p ln p computed in double.

void test_entropy_rows() {
    printf("fused attention entropy\n");
    const int T = 64, C = 8, NH = 1, B = 4;
    // four sequences: huge scores (cancellation), near-uniform, one-hot, random
    std::vector<float> qkv((size_t)B * T * 3 * C), out((size_t)B * T * C), preatt((size_t)B * T * T), att((size_t)B * T * T);
    Rng rng;
    rng_seed(&rng, 7);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float* row = &qkv[(size_t)(b * T + t) * 3 * C];
            for (int i = 0; i < 3 * C; i++) row[i] = rng_normal(&rng);
            if (b == 0) { for (int i = 0; i < C; i++) { row[i] = 300.0f + row[i]; row[C + i] = 300.0f + 0.01f * row[C + i]; } }
            if (b == 1) { for (int i = 0; i < C; i++) row[C + i] = 1e-4f * row[C + i]; }
            if (b == 2) { for (int i = 0; i < C; i++) { row[i] = 100.0f; row[C + i] = (t % 7 == 0) ? 100.0f : -100.0f; } }
        }
    }
    double sums[1] = {0.0};
    long bad = attention_forward(out.data(), preatt.data(), att.data(), sums, qkv.data(), B, T, C, NH);
    check(bad == 0, "no non-finite scores on finite inputs");
    double worst = 0.0;
    bool bounded = true;
    double ref_sum = 0.0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float* s = &preatt[((size_t)b * T + t) * T];
            double m = -INFINITY, l = 0.0, h = 0.0;
            for (int j = 0; j <= t; j++) m = fmax(m, (double)s[j]);
            for (int j = 0; j <= t; j++) l += exp(s[j] - m);
            for (int j = 0; j <= t; j++) {
                double p = exp(s[j] - m) / l;
                if (p > 0) h -= p * log(p);
            }
            ref_sum += h;
            if (h < -1e-12 || h > log(t + 1.0) + 1e-9) bounded = false;
        }
    }
    worst = fabs(sums[0] - ref_sum) / (B * T);
    check(worst <= 1e-5, "mean entropy of hard rows matches double precision: diff %.2e", worst);
    check(bounded, "row entropies lie in [0, ln(t+1)]");
    // the summed entropy with huge scores alone must stay accurate (cancellation check)
    double sum0[1] = {0.0};
    attention_forward(out.data(), preatt.data(), att.data(), sum0, qkv.data(), 1, T, C, NH);
    double ref0 = 0.0;
    for (int t = 0; t < T; t++) {
        const float* s = &preatt[(size_t)t * T];
        double m = -INFINITY, l = 0.0, h = 0.0;
        for (int j = 0; j <= t; j++) m = fmax(m, (double)s[j]);
        for (int j = 0; j <= t; j++) l += exp(s[j] - m);
        for (int j = 0; j <= t; j++) { double p = exp(s[j] - m) / l; if (p > 0) h -= p * log(p); }
        ref0 += h;
    }
    check(fabs(sum0[0] - ref0) / T <= 1e-5, "scores near 1e4 (cancellation): diff %.2e", fabs(sum0[0] - ref0) / T);
}

// ----------------------------------------------------------------------------
// Schedulers

void test_schedulers() {
    printf("schedulers\n");
    LRSchedule cos = {SCHEDULE_COSINE, 1.0f, 10, 0.1f, 110};
    check(fabsf(lr_at(cos, 0) - 0.1f) < 1e-7f, "warm-up starts at lr/u");
    check(fabsf(lr_at(cos, 9) - 1.0f) < 1e-7f, "warm-up reaches lr at step u-1");
    check(fabsf(lr_at(cos, 10) - 1.0f) < 1e-7f, "cosine starts at lr");
    check(fabsf(lr_at(cos, 60) - 0.55f) < 1e-6f, "cosine halfway is (lr + min)/2: %.6f", lr_at(cos, 60));
    check(fabsf(lr_at(cos, 110) - 0.1f) < 1e-6f, "cosine ends at q*lr");
    LRSchedule lin = {SCHEDULE_LINEAR, 2.0f, 0, 0.0f, 100};
    check(fabsf(lr_at(lin, 0) - 2.0f) < 1e-7f && fabsf(lr_at(lin, 25) - 1.5f) < 1e-6f && fabsf(lr_at(lin, 100)) < 1e-6f,
          "linear: 2.0 -> 1.5 at a quarter -> 0 at the end");
    LRSchedule con = {SCHEDULE_CONSTANT, 3e-4f, 5, 0.0f, 100};
    check(fabsf(lr_at(con, 2) - 1.8e-4f) < 1e-9f && lr_at(con, 5) == 3e-4f && lr_at(con, 99) == 3e-4f,
          "constant after warm-up");
    LRSchedule flat = {SCHEDULE_COSINE, 5e-4f, 0, 1.0f, 50};
    check(lr_at(flat, 0) == 5e-4f && lr_at(flat, 49) == 5e-4f, "-u 0 -q 1.0 is constant");
}

// ----------------------------------------------------------------------------
// Data loader

void write_shard(const char* path, const std::vector<uint16_t>& tokens) {
    int32_t h[256] = {0};
    h[0] = SHARD_MAGIC;
    h[1] = SHARD_VERSION;
    h[2] = (int32_t)tokens.size();
    FILE* f = fopen_or_fail(path, "wb", "test scratch");
    fwrite_or_fail(h, sizeof(int32_t), 256, f, path);
    fwrite_or_fail(tokens.data(), sizeof(uint16_t), tokens.size(), f, path);
    fclose(f);
}

void test_dataloader(const std::string& scratch) {
    printf("data loader\n");
    // shard 0: tokens 0..40, shard 1: 100..120; T = 4, B = 2
    std::vector<uint16_t> a, b;
    for (int i = 0; i <= 40; i++) a.push_back((uint16_t)i);
    for (int i = 100; i <= 120; i++) b.push_back((uint16_t)i);
    std::string p0 = scratch + "/dl_train_000000.bin", p1 = scratch + "/dl_train_000001.bin";
    write_shard(p0.c_str(), a);
    write_shard(p1.c_str(), b);
    std::string pattern = scratch + "/dl_train_*.bin";
    DataLoader d;
    dataloader_init(&d, pattern.c_str(), 2, 4, 200, false, 1, "-i");
    check(d.files.size() == 2 && d.file_tokens[0] == 41 && d.file_tokens[1] == 21, "finds and sizes both shards");
    // shard 0 has (41-1)/4 = 10 sequences = 5 batches; shard 1 has 5 sequences = 2 batches
    check(dataloader_batches_per_epoch(&d) == 7, "batches per epoch: %lld", (long long)dataloader_batches_per_epoch(&d));
    dataloader_next_batch(&d);
    bool first_ok = true;
    for (int i = 0; i < 8; i++) first_ok &= d.inputs[i] == i && d.targets[i] == i + 1;
    check(first_ok, "first batch is B*T+1 contiguous tokens, targets shifted by one");
    for (int i = 0; i < 4; i++) dataloader_next_batch(&d);
    check(d.inputs[7] == 39 && d.targets[7] == 40, "last batch of shard 0 ends at its last token");
    dataloader_next_batch(&d);
    check(d.state.shard == 1 && d.inputs[0] == 100, "then moves to shard 1");
    dataloader_next_batch(&d);
    dataloader_next_batch(&d);
    check(d.state.shard == 0 && d.state.epoch == 1 && d.inputs[0] == 0, "and wraps to the next epoch");
    dataloader_free(&d);

    // shuffled: a permutation of the same sequences, reproducible, and restorable
    DataLoader s1, s2;
    dataloader_init(&s1, pattern.c_str(), 2, 4, 200, true, 99, "-i");
    dataloader_init(&s2, pattern.c_str(), 2, 4, 200, true, 99, "-i");
    std::vector<int> seen;
    bool same = true;
    for (int k = 0; k < 5; k++) {
        dataloader_next_batch(&s1);
        dataloader_next_batch(&s2);
        for (int i = 0; i < 8; i++) same &= s1.inputs[i] == s2.inputs[i];
        for (int bb = 0; bb < 2; bb++) seen.push_back(s1.inputs[bb * 4]);
    }
    std::sort(seen.begin(), seen.end());
    bool perm = seen.size() == 10;
    for (int i = 0; i < 10 && perm; i++) perm = seen[i] == 4 * i;
    check(same, "shuffling with the same seed gives the same batches");
    check(perm, "one shuffled epoch of a shard visits each sequence once");
    // save mid-shard, continue both the original and a restored copy
    DataLoader s3;
    dataloader_init(&s3, pattern.c_str(), 2, 4, 200, true, 99, "-i");
    dataloader_next_batch(&s1);
    DataLoaderState saved = s1.state;
    dataloader_restore(&s3, saved);
    bool resumed = true;
    for (int k = 0; k < 9; k++) {
        dataloader_next_batch(&s1);
        dataloader_next_batch(&s3);
        for (int i = 0; i < 8; i++) resumed &= s1.inputs[i] == s3.inputs[i];
    }
    check(resumed, "a restored loader continues with the same batches, across shards and epochs");
    dataloader_free(&s1);
    dataloader_free(&s2);
    dataloader_free(&s3);
}

// ----------------------------------------------------------------------------
// Model file, descriptors, flags

void test_model_file(const std::string& scratch) {
    printf("model file and parsers\n");
    GPT2Config c;
    check(parse_descriptor("L3H2C16T32V300", &c) && c.num_layers == 3 && c.num_heads == 2 && c.channels == 16 &&
          c.max_seq_len == 32 && c.vocab_size == 300 && c.padded_vocab_size == 384, "descriptor L3H2C16T32V300");
    check(parse_descriptor("d12", &c) && c.num_layers == 12 && c.channels == 768 && c.num_heads == 12 &&
          c.padded_vocab_size == 50304, "descriptor d12 is GPT-2 124M's shape");
    check(!parse_descriptor("model.bin", &c), "a file name is not a descriptor");
    c = {};
    parse_descriptor("L2H2C8T16V50", &c);
    c.variant = {NORM_NONE, ACT_LRELU_LAYER, 0.25f};
    GPT2 m;
    gpt2_build_from_random(&m, c, 3);
    check(m.num_slopes == 2 && m.params.slopes[0] == 0.25f && m.params.slopes[1] == 0.25f, "learnable slopes start at S0");
    m.params.slopes[1] = -0.5f;
    std::string path = scratch + "/roundtrip.bin";
    write_model_file(path.c_str(), m.config, m.params_memory);
    GPT2 r;
    gpt2_build_from_file(&r, path.c_str(), NULL);
    check(r.config.variant.norm == NORM_NONE && r.config.variant.act == ACT_LRELU_LAYER && r.config.variant.slope == 0.25f,
          "the variant survives the round trip");
    check(r.num_params == m.num_params && memcmp(r.params_memory, m.params_memory, m.num_params * sizeof(float)) == 0,
          "parameters and slopes survive bit for bit");
    // --act overriding a file: a different activation starts its slopes at S0
    TrainConfig flags;
    flags.act = "lrelu-global:0.05";
    GPT2 o;
    gpt2_build_from_file(&o, path.c_str(), &flags);
    check(o.num_slopes == 1 && o.params.slopes[0] == 0.05f, "--act lrelu-global:0.05 over a per-layer file: one slope at 0.05");
    // an llm.c file records no variant (header slots 8..12 zero) and loads as ln + gelu-tanh
    GPT2 plain_model;
    GPT2Config pc = c;
    pc.variant = {NORM_LN, ACT_GELU_TANH, 0.0f};
    gpt2_build_from_random(&plain_model, pc, 4);
    std::string llmc_path = scratch + "/llmc_style.bin";
    write_model_file(llmc_path.c_str(), plain_model.config, plain_model.params_memory);
    FILE* f = fopen_or_fail(llmc_path.c_str(), "r+b", "test scratch");
    int32_t zeros[5] = {0, 0, 0, 0, 0};
    fseek_or_fail(f, 8 * sizeof(int32_t), llmc_path.c_str());
    fwrite_or_fail(zeros, sizeof(int32_t), 5, f, llmc_path.c_str());
    fclose(f);
    GPT2 l;
    gpt2_build_from_file(&l, llmc_path.c_str(), NULL);
    check(l.config.variant.norm == NORM_LN && l.config.variant.act == ACT_GELU_TANH &&
          memcmp(l.params_memory, plain_model.params_memory, l.num_params * sizeof(float)) == 0,
          "an llm.c model file (no variant record) loads as ln + gelu-tanh");
    gpt2_free(&plain_model);
    gpt2_free(&l);
    gpt2_free(&m);
    gpt2_free(&r);
    gpt2_free(&o);

    int act, norm;
    float slope;
    check(parse_act("lrelu:0.2", &act, &slope) && act == ACT_LRELU && slope == 0.2f, "--act lrelu:0.2");
    check(parse_act("lrelu-layer", &act, &slope) && act == ACT_LRELU_LAYER && slope == 0.01f, "--act lrelu-layer defaults to 0.01");
    check(parse_act("lrelu-global:0.3", &act, &slope) && act == ACT_LRELU_GLOBAL && slope == 0.3f, "--act lrelu-global:0.3");
    check(!parse_act("lrelu", &act, &slope) && !parse_act("relu:0.1", &act, &slope) && !parse_act("lrelu:x", &act, &slope) &&
          !parse_act("swish", &act, &slope), "rejects lrelu without slope, relu with one, bad numbers, unknown names");
    check(parse_norm("none-all", &norm) && norm == NORM_NONE_ALL && !parse_norm("rms", &norm), "--norm none-all; rejects rms");
    long iv;
    float fv;
    check(parse_int("-1", &iv) && iv == -1 && parse_float("1.5e-3", &fv) && fv == 1.5e-3f && parse_float(".5", &fv) &&
          !parse_int(" 1", &iv) && !parse_int("+5", &iv) && !parse_int("0x10", &iv) && !parse_int("1 ", &iv) &&
          !parse_float("0x1p-3", &fv) && !parse_float(" 1", &fv) && !parse_float("+1", &fv) && !parse_float("inf", &fv) &&
          !parse_float("nan", &fv) && !parse_float("1e", &fv) && !parse_float("", &fv),
          "numbers are plain decimal: ' 1', '+5', '0x10', '0x1p-3', inf, nan refused");
    Variant v = {NORM_NONE, ACT_LRELU, 0.1f};
    check(variant_tag(v) == "none_lrelu0.1", "variant tag of none + lrelu:0.1: %s", variant_tag(v).c_str());
}

// ----------------------------------------------------------------------------
// The training-state file, with and without the loss-scaler record (header slots 18..21)

void test_state_file(const std::string& scratch) {
    printf("state file\n");
    TrainState s = {7, 6, 1, {1, 5, 2, {{11, 12}}}, {{13, 14}}, {1, 1024.0f, 37, 4}};
    float m[3] = {0.5f, -1.0f, 2.0f}, v[3] = {0.25f, 1.0f, 4.0f}, rm[3], rv[3];
    std::string path = scratch + "/state_roundtrip.bin";
    write_state_file(path.c_str(), s, 2, 1, m, v);
    TrainState r = {};
    read_state_file(path.c_str(), 7, &r, 2, 1, rm, rv);
    check(r.step == 7 && r.adam_t == 6 && r.skipped == 1 && r.loader.shard == 1 && r.loader.position == 5 &&
          r.loader.epoch == 2 && r.loader.shard_rng.s[1] == 12 && r.sample_rng.s[0] == 13 &&
          memcmp(rm, m, sizeof(m)) == 0 && memcmp(rv, v, sizeof(v)) == 0, "the training state survives the round trip");
    check(r.scaler.present == 1 && r.scaler.scale == 1024.0f && r.scaler.clean_steps == 37 && r.scaler.overflows == 4,
          "the loss-scaler record survives the round trip");
    // absent, as the CPU trainer writes it: slots 18..21 stay 0, as in files from before the record
    s.scaler = LossScalerRecord{0, 0.0f, 0, 0};
    write_state_file(path.c_str(), s, 2, 1, m, v);
    int32_t h[HEADER_INTS];
    FILE* f = fopen_or_fail(path.c_str(), "rb", "test scratch");
    fread_or_fail(h, sizeof(int32_t), HEADER_INTS, f, path.c_str());
    fclose(f);
    read_state_file(path.c_str(), 7, &r, 2, 1, rm, rv);
    check(h[18] == 0 && h[19] == 0 && h[20] == 0 && h[21] == 0 && r.scaler.present == 0 && r.step == 7,
          "no scaler: header slots 18..21 are 0 and read back as absent");
}

// ----------------------------------------------------------------------------
// The ReLU derivative at exactly 0 is 0 (as PyTorch); leaky ReLU's is 1.
void test_activation_kinks() {
    printf("activation derivatives at 0\n");
    float x[3] = {0.0f, -2.0f, 3.0f}, dout[3] = {1.0f, 1.0f, 1.0f};
    float dr[3] = {0, 0, 0}, dl[3] = {0, 0, 0};
    activation_backward(dr, x, dout, 3, ACT_RELU, 0.0f);
    double ds = activation_backward(dl, x, dout, 3, ACT_LRELU_LAYER, 0.1f);
    check(dr[0] == 0.0f && dr[1] == 0.0f && dr[2] == 1.0f, "relu'(0) = 0, relu'(-2) = 0, relu'(3) = 1");
    check(dl[0] == 1.0f && fabsf(dl[1] - 0.1f) < 1e-7f && dl[2] == 1.0f, "lrelu'(0) = 1, lrelu'(-2) = s");
    check(fabs(ds - (-2.0)) < 1e-12, "dL/ds sums x * dout over x < 0: %g", ds);
}

// ----------------------------------------------------------------------------
// gemm_acc (every matrix product of the model) against a double-precision triple loop, on
// shapes that leave partial tiles in every dimension (GEMM_MR 4, GEMM_NR 64, GEMM_KC 128) and
// with every transpose, adding into a C that already holds values.
void test_gemm() {
    printf("gemm_acc on partial tiles\n");
    const int shapes[][3] = {{1, 1, 1}, {7, 65, 129}, {258, 3, 200}, {5, 130, 300}, {64, 64, 128}};
    Rng rng;
    rng_seed(&rng, 7);
    for (auto& s : shapes) {
        int M = s[0], N = s[1], K = s[2];
        for (int t = 0; t < 4; t++) {
            bool at = t & 1, bt = t & 2;
            std::vector<float> A((size_t)M * K), B((size_t)K * N), C((size_t)M * N);
            for (auto& v : A) v = rng_uniform(&rng) - 0.5f;
            for (auto& v : B) v = rng_uniform(&rng) - 0.5f;
            for (auto& v : C) v = rng_uniform(&rng) - 0.5f;
            std::vector<double> want(C.begin(), C.end());
            int lda = at ? M : K, ldb = bt ? K : N;  // op(A) (M,K), op(B) (K,N)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++)
                    for (int k = 0; k < K; k++)
                        want[(size_t)m * N + n] += (double)(at ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k]) *
                                                   (bt ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n]);
            gemm_acc(at, bt, M, N, K, A.data(), lda, B.data(), ldb, C.data(), N);
            double err = 0.0;
            for (size_t i = 0; i < C.size(); i++) err = fmax(err, fabs(C[i] - want[i]));
            check(err < 1e-5 * K, "gemm %dx%dx%d A%s B%s: max error %.1e", M, N, K, at ? "^T" : "", bt ? "^T" : "", err);
        }
    }
}

int main(int argc, char** argv) {
    std::string dir = argc > 1 ? argv[1] : "out/ref";
    std::string scratch = "out/test_scratch";
    make_dirs_or_fail(scratch.c_str());
    for (auto& tag : find_variants(dir, 16)) test_variant(dir, tag);
    test_entropy_rows();
    test_activation_kinks();
    test_gemm();
    test_schedulers();
    test_dataloader(scratch);
    test_model_file(scratch);
    test_state_file(scratch);
    return test_summary("test_gpt2");
}
