/*
test_fp16.cpp: the paper's fp16 regime in the CPU trainer (--fp16-autocast 1; fp16.h and
doc/fp16-and-nans.md) against references written by tests/fp16_case.py:
  - round_fp16 against numpy.float16 on ~26,000 values (ties, subnormals, the overflow edge);
  - a hand-made model whose q.k^T exceeds 65504 for some token pairs and whose FFN product does
    for one token: with rounding, NaN softmax rows at exactly the (layer, b, head, t) places an
    independent numpy float16 forward finds, and the same counts of non-finite scores and FFN
    activations; without rounding (fp32) none;
  - the paper's metrics on that model (NaN probabilities per head: T per NaN row; entropy with
    NaN rows as 0);
  - LossScaler against GradScaler's update rule over 9,000 steps (scale, growth tracker, skips).

Usage: ./test_fp16 DIR   (DIR: what `python3 tests/fp16_case.py DIR` wrote). Last line:
"test_fp16: N passed, M failed".
*/
#define TESTING
#include "train_gpt2.cpp"
#include "test_util.h"

static std::vector<char> read_all(const std::string& path) {
    FILE* f = fopen_or_fail(path.c_str(), "rb", "run: /usr/bin/python3 tests/fp16_case.py DIR");
    long n = file_size_or_fail(f, path.c_str());
    std::vector<char> buf(n);
    fread_or_fail(buf.data(), 1, n, f, path.c_str());
    fclose(f);
    return buf;
}

void test_rounding(const std::string& dir) {
    std::vector<char> buf = read_all(dir + "/fp16_values.bin");
    int n;
    memcpy(&n, buf.data(), 4);
    const float* x = (const float*)(buf.data() + 4);
    const float* want = x + n;
    int bad = 0, first = -1;
    for (int i = 0; i < n; i++) {
        float got = round_fp16(x[i]);
        if (memcmp(&got, &want[i], 4) != 0 && !(std::isnan(got) && std::isnan(want[i]))) {
            if (bad++ == 0) first = i;
        }
    }
    check(bad == 0, "round_fp16 equals numpy.float16 on %d values (%d differ%s)", n, bad,
          first >= 0 ? ", see the first below" : "");
    if (first >= 0) printf("        x = %.9g: ours %.9g, numpy %.9g\n", x[first], round_fp16(x[first]), want[first]);
}

// Runs the hand-made model's forward with or without rounding and compares NaN rows and counts
// with the numpy reference block (counts (2L int32), then the mask (L, B, NH, T) uint8).
void test_case_forward(GPT2* model, const int* tokens, const int* targets, const char* ref, int B, int T, bool fp16) {
    const GPT2Config& c = model->config;
    int L = c.num_layers, NH = c.num_heads;
    const int32_t* counts = (const int32_t*)ref;
    const uint8_t* mask = (const uint8_t*)(ref + 8 * L);
    model->fp16 = fp16;
    model->measure = true;
    model->want_entropy = true;
    gpt2_measurements_reset(model);
    gpt2_forward(model, tokens, targets, B, T);
    const char* name = fp16 ? "fp16" : "fp32";
    int mismatched = 0, nan_rows = 0, first = -1;
    std::vector<long> want_nan((size_t)L * NH, 0);
    for (int l = 0; l < L; l++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    const float* p = model->acts.att + ((((size_t)l * B + b) * NH + h) * T + t) * T;
                    bool is_nan = false;
                    for (int j = 0; j <= t; j++) is_nan |= std::isnan(p[j]);
                    int idx = ((l * B + b) * NH + h) * T + t;
                    if (is_nan != (mask[idx] != 0) && mismatched++ == 0) first = idx;
                    nan_rows += is_nan;
                    if (mask[idx]) want_nan[(size_t)l * NH + h] += T;
                }
    check(mismatched == 0, "%s: NaN softmax rows at the numpy float16 places (%d rows NaN, %d places differ%s)", name,
          nan_rows, mismatched, first >= 0 ? "" : "");
    if (first >= 0) printf("        first: layer %d b %d head %d t %d\n", first / (B * NH * T), first / (NH * T) % B, first / T % NH, first % T);
    for (int l = 0; l < L; l++) {
        check(model->nonfinite_att[l] == counts[l] && model->nonfinite_ffn[l] == counts[L + l],
              "%s layer %d: %ld non-finite scores, %ld FFN activations (numpy: %d, %d)", name, l,
              model->nonfinite_att[l], model->nonfinite_ffn[l], counts[l], counts[L + l]);
    }
    std::vector<float> ent_nansum((size_t)L * NH), nan_entries((size_t)L * NH), ent((size_t)L * NH);
    gpt2_paper_metrics(model, ent_nansum.data(), nan_entries.data());
    gpt2_entropies(model, ent.data());
    bool nan_ok = true, ent_ok = true;
    for (int i = 0; i < L * NH; i++) {
        nan_ok &= nan_entries[i] == (float)want_nan[i];
        ent_ok &= std::isfinite(ent_nansum[i]) && (want_nan[i] > 0 ? std::isnan(ent[i]) : ent_nansum[i] == ent[i]);
    }
    check(nan_ok, "%s: the paper's NaN count per head is T = %d per NaN row (layer 0 head 0: %g)", name, T, nan_entries[0]);
    check(ent_ok, "%s: the paper's entropy is finite, equal to ours where no row is NaN (ours is NaN elsewhere)", name);
}

void test_case(const std::string& dir) {
    GPT2 model;
    std::string path = dir + "/fp16_case_model.bin";
    gpt2_build_from_file(&model, path.c_str(), NULL);
    std::vector<char> tok = read_all(dir + "/fp16_case_tokens.bin");
    std::vector<char> ref = read_all(dir + "/fp16_case_expected.bin");
    const int32_t* dims = (const int32_t*)ref.data();
    int B = dims[0], T = dims[1], L = dims[2], NH = dims[3];
    if (L != model.config.num_layers || NH != model.config.num_heads) fail("%s does not match the model", path.c_str());
    size_t block = 8 * (size_t)L + (size_t)L * B * NH * T;
    if (ref.size() != 16 + 2 * block || tok.size() != 8 * (size_t)B * T)
        fail("%s/fp16_case_*.bin do not match each other: run /usr/bin/python3 tests/fp16_case.py %s", dir.c_str(), dir.c_str());
    const int* tokens = (const int*)tok.data();
    gpt2_allocate_activations(&model, B, T);
    test_case_forward(&model, tokens, tokens + B * T, ref.data() + 16, B, T, true);
    test_case_forward(&model, tokens, tokens + B * T, ref.data() + 16 + block, B, T, false);
    gpt2_free(&model);
}

void test_scaler(const std::string& dir) {
    std::string path = dir + "/scaler_ref.txt";
    FILE* f = fopen_or_fail(path.c_str(), "r", "run: /usr/bin/python3 tests/fp16_case.py DIR");
    LossScaler s;
    int steps = 0, bad = 0, grew = 0, finite, tracker, skipped;
    double scale;
    while (fscanf(f, "%d %lf %d %d", &finite, &scale, &tracker, &skipped) == 4) {
        float before = s.scale;
        bool applied = loss_scaler_update(&s, finite != 0);
        if (s.scale > before) grew++;
        if (applied != (finite != 0) || (double)s.scale != scale || s.good_steps != tracker || s.skipped != skipped) {
            if (bad++ == 0)
                printf("        step %d: ours scale %g tracker %d skipped %d, GradScaler %g %d %d\n", steps, s.scale,
                       s.good_steps, s.skipped, scale, tracker, skipped);
        }
        steps++;
    }
    fclose(f);
    check(steps > 0 && bad == 0, "LossScaler follows GradScaler's rule over %d steps (%d grow, %d skip; %d differ)",
          steps, grew, s.skipped, bad);
}

int main(int argc, char** argv) {
    std::string dir = argc > 1 ? argv[1] : "out/fp16case";
    test_rounding(dir);
    test_case(dir);
    test_scaler(dir);
    return test_summary("test_fp16");
}
