/*
test_gpt2.cu: checks the CUDA trainer (train_gpt2.cu) against the PyTorch reference and tests
the parts that have no PyTorch twin.

For every variant's debug state written by `train_gpt2.py --write-debug-states DIR` it compares
the logits, the loss, the per-head attention entropies, every parameter gradient (learnable
slopes included), and the losses and gradient norms of 10 AdamW steps taken through the
trainer's own step path (device-side NaN guard, clipping, AdamW). Then: the attention kernels
(forward, entropy, backward) against a double-precision reference at the real shapes (T up to
128, several 32-row tiles, head sizes 8, 64 and 80), the fused entropy on hard rows (scores near
4e3, uniform and one-hot rows), the activation derivatives at 0, the NaN guard's verdicts,
checkpoint -> resume bit-identity through the checkpoint files, run-to-run determinism, and
(FP16) the loss scaler's overflow handling, and the paper's fp16 regime on a hand-made model
whose scores overflow fp16 (NaN rows where numpy float16 finds them; none in FP32 and BF16).

Usage: ./test_gpt2cu [DIR [FP16DIR]]   (default out/ref, out/fp16case: tests/fp16_case.py writes it). Exit status 0 only if every check passed; the
last line is "test_gpt2cu: N passed, M failed".
       ./test_gpt2cu --states [--steps N] [--simt] DIR...   only the checks against the debug states in each DIR (the
long-T states of `make refs-long`: T = 256 and 1024, head sizes 64 and 128; each variant's line
names the attention path it ran); ./test_gpt2cu --units [--only GROUP] [FP16DIR]: every test but
the debug states' (or one group of them, e.g. --only matmul; a wrong name lists them); --steps N: only the first N of the 10 AdamW steps (N >= 1); --simt: on the SIMT path, to compare.
*/
#define TESTING
#include "train_gpt2.cu"
#include "debug_state.h"
#include "test_util.h"
#include "fp16.h"

// The score the kernels form (entropy.cuh att_score), on the host: FP16 rounds it as fp16
// autocast does, the other builds scale in fp32.
inline double host_att_score(double dot, int hs, double scale) {
#if defined(ENABLE_FP16)
    return fp16_score((float)dot, hs);
#else
    return dot * scale;
#endif
}

// ----------------------------------------------------------------------------
// Tolerances, by precision. The differences are ours against PyTorch fp32 on the CPU.
//
// FP32: the two programs sum in different orders (cuBLASLt's tiling, the online softmax, the
// fused classifier), so agreement is to rounding, not bit-exact. These are the CPU trainer's
// bounds (test_gpt2.cpp) with the logits and gradients loosened 2x for the reordering; the
// issue's bars (entropy 1e-5, step losses 1e-4) are kept as they are.
//
// BF16 / FP16: activations and the working weights are rounded to 8 (bf16) or 11 (fp16)
// significant bits after every layer, so values carry relative errors of ~0.4% (bf16) that
// compound over the layers, and the reference model (12x llm.c's init, to make the variants
// distinguishable) is strongly non-linear. Measured in the CPU emulation of these kernels (bf16,
// the 16 tiny variants): logits <= 1.6% of max|logit|, loss <= 2.2e-3, entropies <= 2.2e-3 nats,
// step losses <= 6.4e-3, step norms <= 1.9% relative. The bounds below are 2-5x those. A single
// gradient element can be off by ~17% of its tensor's largest (a ReLU input near 0 flips its
// kink, sums over 64 positions cancel), so gradients are judged by their relative L2 error
// ||ours - ref|| / ||ref|| per tensor instead of the max element: measured <= 8.3% for the
// tensors and <= 17% for the learnable slopes (one sum over every FFN activation of the batch,
// with heavy cancellation); bounds 20% and 35%. What the bounds still catch: a missing or
// doubled gradient term, a wrong sign, a lost residual branch or a wrong activation family
// (errors of 50-200% of the tensor's norm); they do not catch a 10% error, and gelu vs
// gelu-tanh (1e-7 apart here) is told apart only by the FP32 build, which is the exact test. UNVERIFIED on a GPU: cuBLASLt rounds like the emulation (fp32
// accumulation, one rounding of the output) but in another order; recalibrate from the printed
// values on the first GPU run.
#if defined(ENABLE_FP32)
const float TOL_LOGITS = 1e-5f;      // x max(1, max|logit|)
const float TOL_LOSS = 1e-5f;        // absolute
const float TOL_ENTROPY = 1e-5f;     // absolute, nats
const float TOL_GRAD_ABS = 2e-6f;    // |ours - ref| <= ABS + REL * max|ref of tensor|
const float TOL_GRAD_REL = 2e-4f;
const float TOL_GRAD_L2 = 0.0f;      // (not used in FP32)
const float TOL_SLOPE_L2 = 0.0f;
const float TOL_STEP_LOSS = 1e-4f;   // absolute, losses over the 10 AdamW steps
const float TOL_STEP_NORM = 1e-3f;   // relative, gradient norms over the 10 steps
const float TOL_ATT = 1e-4f;         // attention kernels vs double: x max|ref|
const float TOL_DIAG_REL = 1e-5f;    // diagnostics (diag.h): test_gpt2.cpp's bounds
const float TOL_DIAG_NEG = 2.5e-4f;
#else
const float TOL_LOGITS = 4e-2f;
const float TOL_LOSS = 1e-2f;
const float TOL_ENTROPY = 1e-2f;
const float TOL_GRAD_ABS = 0.0f;     // (not used: relative L2 below)
const float TOL_GRAD_REL = 0.0f;
const float TOL_GRAD_L2 = 0.2f;      // ||ours - ref|| / ||ref|| per tensor
const float TOL_SLOPE_L2 = 0.35f;    // the same for the learnable slopes
const float TOL_STEP_LOSS = 2e-2f;
const float TOL_STEP_NORM = 5e-2f;
const float TOL_ATT = 2e-2f;
const float TOL_DIAG_REL = 2e-2f;    // diagnostics: RMS, std, max of rounded activations (~0.4% each, compounded)
const float TOL_DIAG_NEG = 1e-2f;    // negative share: values within the rounding error of 0 can flip sign
#endif


// ||a - b|| / ||b|| (NaN: infinity).
float rel_l2(const float* a, const float* b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    double r = sqrt(num) / fmax(sqrt(den), 1e-30);
    return std::isnan(r) ? INFINITY : (float)r;
}

template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
    std::vector<T> h(n);
    cudaCheck(cudaStreamSynchronize(g_stream));
    cudaCheck(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

std::vector<float> floatx_to_host(const floatX* d, size_t n) {
    std::vector<floatX> h = to_host(d, n);
    std::vector<float> f(n);
    for (size_t i = 0; i < n; i++) f[i] = to_float(h[i]);
    return f;
}

// ----------------------------------------------------------------------------
// Against the PyTorch reference


// One training step through the trainer's own path (micro-batches of the same batch), synced.
StepHeader train_step(GPT2* model, const int* x, const int* y, int B, int T, int micro_batches, const StepOptions& opt,
                      bool entropy) {
    gpt2_step_begin(model);
    for (int k = 0; k < micro_batches; k++) {
        gpt2_set_batch(model, x + (size_t)k * B * T, y + (size_t)k * B * T, B, T);
        gpt2_forward(model, true, entropy, 1.0f / micro_batches, &model->d_header->loss_sum);
        gpt2_backward(model, 1.0f / micro_batches);
    }
    gpt2_step_end(model, opt, 0);
    cudaCheck(cudaEventSynchronize(model->step_end[0]));
    return *result_header(model, 0);
}

// The diagnostics of the forward just run (llmc/diag.cuh) against the reference's.
void check_diag(const std::string& tag, const GPT2& model, const DebugState& ref, int B, int T) {
    if (!ref_has_diag(tag, ref)) return;
    const GPT2Config& c = model.config;
    int L = c.num_layers;
    std::vector<double> slots = to_host(model.d_diag, (size_t)L * DIAG_SUMS), sums((size_t)L * DIAG_SUMS);
    diag_sums_from_device(slots.data(), L, sums.data());
    std::vector<float> cols((size_t)L * DIAG_COLS);
    diag_finalize(sums.data(), L, B, T, c.channels, c.num_heads, 1, cols.data());
    check_diag_cols(tag.c_str(), cols.data(), ref.diag.data(), L, TOL_DIAG_REL, TOL_DIAG_NEG);
}

// How many of a debug state's AdamW steps test_variant takes (--steps N: fewer, for the long-T
// states in the slow CPU emulator); -1: all of them.
static int g_max_steps = -1;

void test_variant(const std::string& dir, const std::string& tag) {
    printf("variant %s (%s)\n", tag.c_str(), dir.c_str());
    GPT2 model;
    gpt2_build_from_file(&model, ref_model_path(dir, tag).c_str(), NULL);
    DebugState ref;
    read_variant_state(dir, tag, model.config, model.num_params, &ref);
    const GPT2Config& c = model.config;
    int B = ref.B, T = ref.T, V = c.vocab_size, Vp = c.padded_vocab_size, L = c.num_layers, NH = c.num_heads;
    if (USE_LOSS_SCALER) gpt2_set_scaler(&model, ScalerState{1.0f, 0, 0, 0});  // compare unscaled values
    gpt2_allocate_activations(&model, B, T);
    printf("  B=%d T=%d C=%d NH=%d: attention forward %s, backward %s\n", B, T, c.channels, NH,
           attention_path_name(attention_forward_path(T, c.channels, NH, true)),
           attention_path_name(attention_backward_path(T, c.channels, NH, true)));

    // forward: logits, loss, entropies, diagnostics, no non-finite values
    gpt2_step_begin(&model);
    gpt2_set_batch(&model, ref.x.data(), ref.y.data(), B, T);
    model.want_diag = true;
    gpt2_forward(&model, true, true, -1.0f, &model.d_header->loss_sum);
    model.want_diag = false;
    std::vector<float> all = floatx_to_host(model.acts.logits, (size_t)B * T * Vp);
    std::vector<float> logits((size_t)B * T * V);
    for (int bt = 0; bt < B * T; bt++) memcpy(&logits[(size_t)bt * V], &all[(size_t)bt * Vp], V * sizeof(float));
    size_t at;
    float d = max_abs_diff(logits.data(), ref.logits.data(), logits.size(), &at);
    float tol = TOL_LOGITS * fmaxf(1.0f, max_abs(ref.logits.data(), ref.logits.size()));
    check(d <= tol, "%s: logits max diff %.2e (tol %.1e), relative L2 %.1e", tag.c_str(), d, tol,
          rel_l2(logits.data(), ref.logits.data(), logits.size()));
    double loss_sum = to_host(&model.d_header->loss_sum, 1)[0];
    float loss = (float)loss_sum;
    d = fabsf(loss - ref.loss);
    check(d <= TOL_LOSS, "%s: loss %.6f vs %.6f, diff %.2e (tol %.0e)", tag.c_str(), loss, ref.loss, d, TOL_LOSS);
    std::vector<double> esum = to_host(model.d_entropy_sum, (size_t)L * NH);
    std::vector<float> entropy((size_t)L * NH);
    for (int i = 0; i < L * NH; i++) entropy[i] = (float)(esum[i] / (B * T));
    d = max_abs_diff(entropy.data(), ref.entropy.data(), entropy.size(), &at);
    check(d <= TOL_ENTROPY, "%s: per-head entropies max diff %.2e (tol %.0e), layer %zu head %zu: %.6f vs %.6f",
          tag.c_str(), d, TOL_ENTROPY, at / NH, at % NH, entropy[at], ref.entropy[at]);
    check_diag(tag, model, ref, B, T);
    std::vector<unsigned long long> att_bad = to_host(model.d_att_bad, L), ffn_bad = to_host(model.d_ffn_bad, L);
    unsigned long long bad = 0;
    for (int l = 0; l < L; l++) bad += att_bad[l] + ffn_bad[l];
    check(bad == 0, "%s: no non-finite scores or activations counted (%llu)", tag.c_str(), bad);

    // backward: every tensor's gradient (the classifier's gradient pass runs in the backward)
    gpt2_zero_grad(&model);
    gpt2_backward(&model, 1.0f);
    std::vector<float> grads = to_host(model.d_grads, model.num_params);
    size_t offset = 0;
    for (int k = 0; k < NUM_ALL_TENSORS; k++) {
        size_t n = model.param_sizes[k];
        if (n == 0) continue;
        const float* ours = grads.data() + offset;
        const float* theirs = ref.grads.data() + offset;
        float scale = max_abs(theirs, n);
        d = max_abs_diff(ours, theirs, n, &at);
        float l2 = rel_l2(ours, theirs, n);
        if (sizeof(floatX) == 4) {
            float gtol = TOL_GRAD_ABS + TOL_GRAD_REL * scale;
            check(d <= gtol, "%s: grad %-8s max diff %.2e (tol %.1e, max |grad| %.2e), relative L2 %.1e", tag.c_str(),
                  param_tensor_name(k), d, gtol, scale, l2);
        } else {
            float ltol = k == SLOPE_TENSOR ? TOL_SLOPE_L2 : TOL_GRAD_L2;
            check(l2 <= ltol, "%s: grad %-8s relative L2 error %.2e (tol %.2f); max diff %.2e, max |grad| %.2e",
                  tag.c_str(), param_tensor_name(k), l2, ltol, d, scale);
        }
        offset += n;
    }
    if (act_is_learnable(c.variant.act)) {
        float gs = grads[model.num_params - model.num_slopes];
        check(fabsf(gs) > 1e-6f, "%s: slope gradient is non-zero (%.3e)", tag.c_str(), gs);
    }

    // 10 AdamW steps on the same batch, through the trainer's step path
    gpt2_zero_grad(&model);
    float worst_loss = 0.0f, worst_norm = 0.0f;
    int worst_step = 0;
    bool all_applied = true;
    const int num_steps = g_max_steps >= 0 && g_max_steps < ref.num_steps ? g_max_steps : ref.num_steps;
    for (int step = 0; step < num_steps; step++) {
        StepOptions opt = {ref.lr, ref.beta1, ref.beta2, ref.eps, ref.weight_decay, ref.grad_clip, step + 1, 1, false};
        StepHeader h = train_step(&model, ref.x.data(), ref.y.data(), B, T, 1, opt, false);
        float dl = fabsf(h.loss - ref.step_losses[step]);
        float dn = fabsf(h.norm - ref.step_norms[step]) / fmaxf(ref.step_norms[step], 1e-12f);
        if (!(dl <= worst_loss)) { worst_loss = dl; worst_step = step; }
        if (!(dn <= worst_norm)) worst_norm = dn;
        all_applied &= h.apply == 1 && h.finite == 1;
    }
    check(all_applied, "%s: every step finite and applied", tag.c_str());
    check(worst_loss <= TOL_STEP_LOSS, "%s: %d AdamW steps, loss max diff %.2e at step %d (tol %.0e); final loss %.6f",
          tag.c_str(), num_steps, worst_loss, worst_step, TOL_STEP_LOSS, ref.step_losses[num_steps - 1]);
    check(worst_norm <= TOL_STEP_NORM, "%s: %d AdamW steps, grad norm max relative diff %.2e (tol %.0e)", tag.c_str(),
          num_steps, worst_norm, TOL_STEP_NORM);
    gpt2_free(&model);
}

// ----------------------------------------------------------------------------
// Attention kernels against a double-precision reference

struct AttRef {
    std::vector<double> out, dqkv, entropy;  // (B,T,C), (B,T,3C), (NH) mean over b and t
    // (B,T,3C): the gradients' condition sums, sum_j |ds_tj| |k_j| / sqrt(hs) for dq,
    // sum_t |ds_tj| |q_t| / sqrt(hs) for dk and sum_t p_tj |dO_t| for dv (per element): rounding ds
    // and p to floatX moves each gradient element by up to ~u times its sum
    std::vector<double> cond;
};

// Causal attention forward and backward in double from the (already floatX-rounded) inputs.
AttRef attention_reference(const std::vector<float>& qkv, const std::vector<float>& dout, int B, int T, int C, int NH) {
    int hs = C / NH;
    size_t C3 = 3 * (size_t)C;
    double scale = 1.0 / sqrt((double)hs);
    AttRef r;
    r.out.assign((size_t)B * T * C, 0.0);
    r.dqkv.assign((size_t)B * T * C3, 0.0);
    r.cond.assign((size_t)B * T * C3, 0.0);
    r.entropy.assign(NH, 0.0);
    std::vector<double> p(T), dp(T);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float* q = &qkv[((size_t)b * T + t) * C3 + h * hs];
                double m = -INFINITY, l = 0.0;
                for (int j = 0; j <= t; j++) {
                    const float* k = &qkv[((size_t)b * T + j) * C3 + C + h * hs];
                    double dot = 0.0;
                    for (int d = 0; d < hs; d++) dot += (double)q[d] * k[d];
                    p[j] = host_att_score(dot, hs, scale);
                    m = fmax(m, p[j]);
                }
                for (int j = 0; j <= t; j++) { p[j] = exp(p[j] - m); l += p[j]; }
                double H = 0.0;
                for (int j = 0; j <= t; j++) { p[j] /= l; if (p[j] > 0) H -= p[j] * log(p[j]); }
                r.entropy[h] += H / (B * T);
                double* o = &r.out[((size_t)b * T + t) * C + h * hs];
                const float* dO = &dout[((size_t)b * T + t) * C + h * hs];
                double D = 0.0;
                for (int j = 0; j <= t; j++) {
                    const float* v = &qkv[((size_t)b * T + j) * C3 + 2 * C + h * hs];
                    double dot = 0.0;
                    for (int d = 0; d < hs; d++) { o[d] += p[j] * v[d]; dot += (double)dO[d] * v[d]; }
                    dp[j] = dot;
                    D += p[j] * dot;
                }
                double* dq = &r.dqkv[((size_t)b * T + t) * C3 + h * hs];
                double* cq = &r.cond[((size_t)b * T + t) * C3 + h * hs];
                for (int j = 0; j <= t; j++) {
                    double ds = p[j] * (dp[j] - D) * scale;
                    const float* k = &qkv[((size_t)b * T + j) * C3 + C + h * hs];
                    double* dk = &r.dqkv[((size_t)b * T + j) * C3 + C + h * hs];
                    double* dv = &r.dqkv[((size_t)b * T + j) * C3 + 2 * C + h * hs];
                    double* ck = &r.cond[((size_t)b * T + j) * C3 + C + h * hs];
                    double* cv = &r.cond[((size_t)b * T + j) * C3 + 2 * C + h * hs];
                    for (int d = 0; d < hs; d++) {
                        dq[d] += ds * k[d];
                        dk[d] += ds * q[d];
                        dv[d] += p[j] * dO[d];
                        cq[d] += fabs(ds * k[d]);
                        ck[d] += fabs(ds * q[d]);
                        cv[d] += p[j] * fabs(dO[d]);
                    }
                }
            }
        }
    }
    return r;
}

// Rounds host values to floatX and back, so that both sides see the same inputs.
// floatX's unit roundoff (the largest relative error of one rounding to it): 2^-24 (fp32),
// 2^-11 (fp16), 2^-8 (bf16).
constexpr double floatx_unit_roundoff() {
#if defined(ENABLE_FP32)
    return 0x1p-24;
#elif defined(ENABLE_FP16)
    return 0x1p-11;
#else
    return 0x1p-8;
#endif
}

void round_to_floatx(std::vector<float>& v) {
    for (auto& x : v) x = to_float(from_float<floatX>(x));
}

std::vector<floatX> to_floatx(const std::vector<float>& v) {
    std::vector<floatX> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = from_float<floatX>(v[i]);
    return r;
}

template <typename T>
T* upload(const std::vector<T>& v) {
    T* d = device_alloc<T>(v.size(), "test");
    cudaCheck(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

struct AttGpu {
    std::vector<float> out, dqkv;
    std::vector<float> dqkvb;  // (3C) the qkv bias gradient attention_backward_any sums
    std::vector<double> entropy;  // (NH) mean over b and t
    std::vector<double> paper;    // (2, NH): the NaN-ignoring entropy's mean over b and t, the NaN rows
    unsigned long long bad;
};

// Runs the trainer's attention forward (with entropy, the paper's metrics and the non-finite
// counter) and backward, on the path llmc/attention.cuh's attention_path picks.
AttGpu attention_gpu(const std::vector<float>& qkv, const std::vector<float>& dout, int B, int T, int C, int NH) {
    size_t n_qkv = (size_t)B * T * 3 * C, n_out = (size_t)B * T * C;
    int qtiles = att_num_qtiles(T);
    floatX* d_qkv = upload(to_floatx(qkv));
    floatX* d_dout = upload(to_floatx(dout));
    floatX* d_out = device_alloc<floatX>(n_out, "test");
    floatX* d_dqkv = device_alloc<floatX>(n_qkv, "test");
    float* d_lse = device_alloc<float>((size_t)B * NH * T, "test");
    float* d_D = device_alloc<float>((size_t)B * NH * T, "test");
    float* d_part = device_alloc<float>((size_t)B * NH * qtiles, "test");
    float* d_paper_part = device_alloc<float>(2 * (size_t)B * NH * qtiles, "test");
    double* d_ent = device_alloc<double>(NH, "test");
    double* d_paper = device_alloc<double>(2 * NH, "test");
    unsigned long long* d_bad = device_alloc<unsigned long long>(1, "test");
    float* d_bias = device_alloc<float>(3 * (size_t)C, "test");
    float* d_scratch = device_alloc<float>(attention_backward_scratch_floats(B, T, C), "test");
    cudaCheck(cudaMemset(d_bias, 0, 3 * (size_t)C * sizeof(float)));
    cudaCheck(cudaMemset(d_ent, 0, NH * sizeof(double)));
    cudaCheck(cudaMemset(d_paper, 0, 2 * NH * sizeof(double)));
    cudaCheck(cudaMemset(d_bad, 0, sizeof(unsigned long long)));
    attention_forward_any(d_out, d_lse, d_part, d_bad, d_qkv, B, T, C, NH, d_paper_part);
    entropy_reduce(d_ent, d_part, 1, B, NH, T);
    paper_reduce(d_paper, d_paper_part, 1, B, NH, T);
    attention_backward_any(d_dqkv, d_bias, d_D, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, d_scratch);
    AttGpu r;
    r.dqkvb = to_host(d_bias, 3 * (size_t)C);
    r.out = floatx_to_host(d_out, n_out);
    r.dqkv = floatx_to_host(d_dqkv, n_qkv);
    r.entropy = to_host(d_ent, NH);
    for (auto& e : r.entropy) e /= (double)B * T;
    r.paper = to_host(d_paper, 2 * NH);
    for (int h = 0; h < NH; h++) r.paper[h] /= (double)B * T;
    r.bad = to_host(d_bad, 1)[0];
    void* ptrs[] = {d_qkv, d_dout, d_out, d_dqkv, d_lse, d_D, d_part, d_paper_part, d_ent, d_paper, d_bad, d_bias, d_scratch};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
    return r;
}

float max_abs_diff_d(const std::vector<float>& a, const std::vector<double>& b) {
    float worst = 0.0f;
    for (size_t i = 0; i < a.size(); i++) {
        float d = (float)fabs((double)a[i] - b[i]);
        if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
    }
    return worst;
}

float max_abs_d(const std::vector<double>& a) {
    double m = 0.0;
    for (double x : a) m = fmax(m, fabs(x));
    return (float)m;
}

// The dispatch rule (llmc/attention.cuh's attention_path) at the shapes it separates.
void test_attention_dispatch() {
    printf("attention dispatch\n");
    struct Case { int T, C, NH; bool aligned; AttentionPath want; };
    const bool tc = sizeof(floatX) == 2;  // bf16/fp16: the tensor-core paths; fp32: SIMT everywhere
    const AttentionPath whole = tc ? ATT_PATH_WHOLE_ROW : ATT_PATH_SIMT, tiled = tc ? ATT_PATH_TILED : ATT_PATH_SIMT;
    const Case cases[] = {
        {128, 768, 12, true, whole},          // GPT-2 124M at the paper's T
        {64, 768, 12, true, whole},
        {129, 768, 12, true, tiled},          // one row past the whole-row kernels
        {1024, 768, 12, true, tiled},         // llm.c's T
        {128, 768, 6, true, tiled},           // head size 128 at any T
        {1024, 1536, 12, true, tiled},
        {1024, 960, 12, true, ATT_PATH_SIMT},  // head size 80: no tensor-core path
        {128, 768, 12, false, ATT_PATH_SIMT},  // rows not 16-byte aligned
        {1024, 768, 6, false, ATT_PATH_SIMT},
    };
    for (const Case& k : cases) {
        AttentionPath got = attention_path(k.T, k.C, k.NH, k.aligned);
        check(got == k.want, "T=%d C=%d NH=%d%s: %s (want %s)", k.T, k.C, k.NH, k.aligned ? "" : " unaligned",
              attention_path_name(got), attention_path_name(k.want));
    }
    g_attention_force_simt = true;
    check(attention_path(1024, 768, 12, true) == ATT_PATH_SIMT, "g_attention_force_simt forces SIMT");
    g_attention_force_simt = false;
    // the forward: the mma kernel wherever a tensor-core path applies; g_attention_fwd_mma = false gives them back
    for (const Case& k : cases) {
        const AttentionPath want = k.want == ATT_PATH_SIMT ? ATT_PATH_SIMT : ATT_PATH_MMA;
        AttentionPath got = attention_forward_path(k.T, k.C, k.NH, k.aligned);
        g_attention_fwd_mma = false;
        AttentionPath off = attention_forward_path(k.T, k.C, k.NH, k.aligned);
        g_attention_fwd_mma = true;
        check(got == want && off == k.want, "forward, T=%d C=%d NH=%d%s: %s (want %s), without mma %s", k.T, k.C, k.NH,
              k.aligned ? "" : " unaligned", attention_path_name(got), attention_path_name(want), attention_path_name(off));
    }
}

// The attention tests' four paths (path_id: 0 the path's own backward, 1 the whole-row 8-warp
// backward, 2 SIMT, 3 the mma backward; the globals set as the loops below set them), named for
// the check lines.
std::string attention_test_path_name(int path_id, int T, int C, int NH) {
    const AttentionPath kind = attention_path(T, C, NH, true);
    return std::string(attention_forward_path(T, C, NH, true) == ATT_PATH_MMA ? "mma forward, " : "") +
           (path_id == 3 ? "mma backward" : kind == ATT_PATH_SIMT ? "SIMT" : kind == ATT_PATH_TILED ? "tiled tensor cores"
            : path_id == 1 ? "tensor cores, 8-warp backward" : "tensor cores, 4-warp backward");
}

void test_attention_shapes() {
    printf("attention kernels vs double precision\n");
    // (B, T, C, NH): GPT-2's head size 64 over 4 query tiles, and with a ragged T; head size 80;
    // the tiny head size of the reference model; head size 256 (more than 48 KB of shared memory);
    // past the whole-row kernels (the tiled ones in bf16/fp16): head size 64 at a ragged T = 200
    // (4 key tiles, the last partial), head size 128 at T = 256
    const int shapes[][4] = {{2, 128, 128, 2}, {2, 100, 128, 2}, {1, 100, 160, 2}, {3, 40, 24, 3}, {1, 70, 256, 1},
                             {2, 200, 128, 2}, {1, 256, 256, 2}};
    Rng rng;
    rng_seed(&rng, 11);
    const bool default_bwd_wmma8 = g_attention_bwd_wmma8, default_bwd_mma = g_attention_bwd_mma;
    for (auto& s : shapes) {
        int B = s[0], T = s[1], C = s[2], NH = s[3];
        std::vector<float> qkv((size_t)B * T * 3 * C), dout((size_t)B * T * C);
        for (auto& x : qkv) x = rng_normal(&rng);
        for (auto& x : dout) x = rng_normal(&rng);
        // the last sequence gets 4x larger queries: peaked rows beside flat ones
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++) qkv[(((size_t)(B - 1) * T) + t) * 3 * C + i] *= 4.0f;
        round_to_floatx(qkv);
        round_to_floatx(dout);
        AttRef ref = attention_reference(qkv, dout, B, T, C, NH);
        // the tensor-core path where one applies (attention_path: whole-row with the 4-warp
        // backward, then the 8-warp one; or tiled), the SIMT path always, and (path 3) the
        // tensor-core forward with the trainer's register-resident (mma) backward
        for (int path_id = 0; path_id < 4; path_id++) {
            g_attention_force_simt = path_id == 2;
            g_attention_bwd_wmma8 = path_id == 1;
            g_attention_bwd_mma = path_id == 3;
            const AttentionPath kind = attention_path(T, C, NH, true);
            const bool wmma = kind != ATT_PATH_SIMT;  // tensor cores: products in another order
            if (path_id != 2 && kind == ATT_PATH_SIMT) continue;
            if (path_id == 1 && kind != ATT_PATH_WHOLE_ROW) continue;
            const std::string path_s = attention_test_path_name(path_id, T, C, NH);
            const char* path = path_s.c_str();
            AttGpu gpu = attention_gpu(qkv, dout, B, T, C, NH);
            float d_out = max_abs_diff_d(gpu.out, ref.out), s_out = max_abs_d(ref.out);
            float d_grad = max_abs_diff_d(gpu.dqkv, ref.dqkv), s_grad = max_abs_d(ref.dqkv);
            std::vector<float> ent(gpu.entropy.begin(), gpu.entropy.end());
            float d_ent = max_abs_diff_d(ent, ref.entropy);
            check(d_out <= TOL_ATT * s_out, "%s, B=%d T=%d C=%d NH=%d: output max diff %.2e (tol %.1e)", path, B, T, C, NH,
                  d_out, TOL_ATT * s_out);
            check(d_grad <= TOL_ATT * s_grad, "%s, B=%d T=%d C=%d NH=%d: dq, dk, dv max diff %.2e (tol %.1e)", path, B, T, C,
                  NH, d_grad, TOL_ATT * s_grad);
            // fp32 arithmetic on the same (rounded) inputs in every precision; the tensor cores'
            // products accumulate in another order, hence 2e-5 there
            float ent_tol = wmma ? 2e-5f : 1e-5f;
            check(d_ent <= ent_tol, "%s, B=%d T=%d C=%d NH=%d: per-head entropy max diff %.2e (tol %.0e)", path, B, T, C, NH,
                  d_ent, ent_tol);
            check(gpu.bad == 0, "%s, B=%d T=%d C=%d NH=%d: no non-finite scores counted (%llu)", path, B, T, C, NH, gpu.bad);
            // the paper's metrics: no NaN rows here, so the NaN-ignoring entropy is the entropy
            double d_paper = 0.0, nan_rows = 0.0;
            for (int h = 0; h < NH; h++) {
                d_paper = fmax(d_paper, fabs(gpu.paper[h] - gpu.entropy[h]));
                nan_rows += gpu.paper[NH + h];
            }
            check(d_paper <= 1e-6 && nan_rows == 0.0,
                  "%s, B=%d T=%d C=%d NH=%d: the paper's partials: entropy as the plain one (diff %.1e), %g NaN rows", path, B, T, C,
                  NH, d_paper, nan_rows);
            const double bias_err = colsum_error_ratio(gpu.dqkvb.data(), gpu.dqkv.data(), B * T, gpu.dqkvb.size());
            check(bias_err <= 1.0,
                  "%s, B=%d T=%d C=%d NH=%d: the qkv bias gradient is dq, dk, dv's column sums (worst error %.3f x its fp32 bound)",
                  path, B, T, C, NH, bias_err);
        }
        g_attention_force_simt = false;
        g_attention_bwd_wmma8 = default_bwd_wmma8;
        g_attention_bwd_mma = default_bwd_mma;
    }
}

// ----------------------------------------------------------------------------
// The tensor-core forwards alone: the mma kernel the trainer runs (llmc/attention_mma.cuh) and
// the tiled and whole-row ones it replaced (still the labs' versions 3-6), on the same inputs

struct AttFwd {
    std::vector<float> out, lse, part, paper_part;  // (B,T,C), (B,NH,T), (B,NH,qtiles), (2,B,NH,qtiles)
    unsigned long long bad;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b);

AttFwd attention_forward_path_run(AttentionPath path, const std::vector<float>& qkv, int B, int T, int C, int NH) {
    const int qtiles = att_num_qtiles(T);
    floatX* d_qkv = upload(to_floatx(qkv));
    floatX* d_out = device_alloc<floatX>((size_t)B * T * C, "test");
    float* d_lse = device_alloc<float>((size_t)B * NH * T, "test");
    float* d_part = device_alloc<float>((size_t)B * NH * qtiles, "test");
    float* d_paper = device_alloc<float>(2 * (size_t)B * NH * qtiles, "test");
    unsigned long long* d_bad = device_alloc<unsigned long long>(1, "test");
    cudaCheck(cudaMemset(d_bad, 0, sizeof(unsigned long long)));
    if (path == ATT_PATH_MMA) attention_forward_mma(d_out, d_lse, d_part, d_bad, d_qkv, B, T, C, NH, d_paper);
    else if (path == ATT_PATH_TILED) attention_forward_tiled(d_out, d_lse, d_part, d_bad, d_qkv, B, T, C, NH, d_paper);
    else attention_forward(d_out, d_lse, d_part, d_bad, d_qkv, B, T, C, NH, d_paper);  // whole-row where attention_use_wmma
    AttFwd r;
    r.out = floatx_to_host(d_out, (size_t)B * T * C);
    r.lse = to_host(d_lse, (size_t)B * NH * T);
    r.part = to_host(d_part, (size_t)B * NH * qtiles);
    r.paper_part = to_host(d_paper, 2 * (size_t)B * NH * qtiles);
    r.bad = to_host(d_bad, 1)[0];
    void* ptrs[] = {d_qkv, d_out, d_lse, d_part, d_paper, d_bad};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
    return r;
}

// lse = m + ln sum e^(s - m) per (b, h, t) in double, the scores as the kernels form them.
std::vector<double> lse_reference(const std::vector<float>& qkv, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * (size_t)C;
    std::vector<double> lse((size_t)B * NH * T), s(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double m = -INFINITY, l = 0.0;
                for (int j = 0; j <= t; j++) {
                    double dot = 0.0;
                    for (int d = 0; d < hs; d++)
                        dot += (double)qkv[((size_t)b * T + t) * C3 + h * hs + d] * qkv[((size_t)b * T + j) * C3 + C + h * hs + d];
                    s[j] = host_att_score(dot, hs, 1.0 / sqrt((double)hs));
                    m = fmax(m, s[j]);
                }
                for (int j = 0; j <= t; j++) l += exp(s[j] - m);
                lse[((size_t)b * NH + h) * T + t] = m + log(l);
            }
    return lse;
}

// Each forward against double (out, lse, per-head entropy, the paper's partials), the mma
// forward twice (bit-identical: no atomics in its sums), and the non-finite count with one
// infinite key (T - j scores). Shapes: T = 17 (one ragged tile), 100 and 128 (whole-row too),
// 200 (4 key tiles, the last partial), head size 128 at T = 130 and 256.
void test_attention_forwards() {
#if !defined(ENABLE_FP32)
    printf("attention forwards alone (mma, tiled, whole-row) vs double precision\n");
    const int shapes[][4] = {{1, 17, 128, 2}, {2, 100, 128, 2}, {2, 128, 128, 2}, {2, 200, 128, 2}, {1, 130, 256, 2}, {1, 256, 256, 2}};
    Rng rng;
    rng_seed(&rng, 13);
    for (auto& sh : shapes) {
        const int B = sh[0], T = sh[1], C = sh[2], NH = sh[3], qtiles = att_num_qtiles(T);
        std::vector<float> qkv((size_t)B * T * 3 * C), dout((size_t)B * T * C, 0.0f);
        for (auto& x : qkv) x = rng_normal(&rng);
        for (int t = 0; t < T; t++)  // the last sequence gets 4x larger queries: peaked rows
            for (int i = 0; i < C; i++) qkv[(((size_t)(B - 1) * T) + t) * 3 * C + i] *= 4.0f;
        round_to_floatx(qkv);
        const AttRef ref = attention_reference(qkv, dout, B, T, C, NH);
        const std::vector<double> ref_lse = lse_reference(qkv, B, T, C, NH);
        std::vector<AttentionPath> paths = {ATT_PATH_MMA, ATT_PATH_TILED};
        if (attention_use_wmma((void*)16, (void*)16, T, C, NH)) paths.push_back(ATT_PATH_WHOLE_ROW);
        AttFwd mma;
        for (AttentionPath path : paths) {
            const AttFwd r = attention_forward_path_run(path, qkv, B, T, C, NH);
            if (path == ATT_PATH_MMA) mma = r;
            std::vector<double> ent(NH, 0.0), nansum(NH, 0.0);
            double nan_rows = 0.0, d_lse = 0.0;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < NH; h++)
                    for (int i = 0; i < qtiles; i++) {
                        const size_t k = ((size_t)b * NH + h) * qtiles + i;
                        ent[h] += r.part[k] / ((double)B * T);
                        nansum[h] += r.paper_part[k] / ((double)B * T);
                        nan_rows += r.paper_part[(size_t)B * NH * qtiles + k];
                    }
            for (size_t i = 0; i < ref_lse.size(); i++)
                d_lse = fmax(d_lse, std::isnan(r.lse[i]) ? INFINITY : fabs(r.lse[i] - ref_lse[i]) / fmax(1.0, fabs(ref_lse[i])));
            double d_ent = 0.0, d_paper = 0.0;
            for (int h = 0; h < NH; h++) {
                d_ent = fmax(d_ent, std::isnan(ent[h]) ? INFINITY : fabs(ent[h] - ref.entropy[h]));
                d_paper = fmax(d_paper, fabs(nansum[h] - ent[h]));
            }
            const float d_out = max_abs_diff_d(r.out, ref.out), s_out = max_abs_d(ref.out);
            // lse: fp32 sums of <= 256 terms, relative ~1e-6; entropy as test_attention_shapes
            check(d_out <= TOL_ATT * s_out && d_lse <= 1e-5 && d_ent <= 2e-5 && d_paper <= 1e-6 && nan_rows == 0.0 && r.bad == 0,
                  "%s forward, B=%d T=%d C=%d NH=%d: out max diff %.2e (tol %.1e), lse rel diff %.1e (tol 1e-5), entropy diff "
                  "%.1e (tol 2e-5), paper's entropy %.0e from it, %g NaN rows, %llu non-finite",
                  attention_path_name(path), B, T, C, NH, d_out, TOL_ATT * s_out, d_lse, d_ent, d_paper, nan_rows, r.bad);
        }
        const AttFwd again = attention_forward_path_run(ATT_PATH_MMA, qkv, B, T, C, NH);
        check(same_bits(again.out, mma.out) && same_bits(again.lse, mma.lse) && same_bits(again.part, mma.part) &&
                  same_bits(again.paper_part, mma.paper_part),
              "mma forward, T=%d C=%d NH=%d: a second run is bit-identical (out, lse, partials)", T, C, NH);
    }
    for (int hs : {64, 128}) {  // one infinite key component in head 0 at j = T / 3
        const int T = 200, NH = 2, C = NH * hs, j = T / 3;
        std::vector<float> qkv((size_t)T * 3 * C);
        for (auto& x : qkv) x = rng_normal(&rng);
        round_to_floatx(qkv);
        qkv[(size_t)j * 3 * C + C] = INFINITY;
        const AttFwd r = attention_forward_path_run(ATT_PATH_MMA, qkv, 1, T, C, NH);
        check(r.bad == (unsigned long long)(T - j), "mma forward, head size %d, T=%d: %llu non-finite scores counted (want %d)", hs, T,
              r.bad, T - j);
    }
#endif
}

// Hard rows: the fused entropy must match -sum p ln p in double. The inputs are small integers
// (exact in bf16 and fp16), so the scores the kernel computes in fp32 are exact products times
// the fp32 scale, and the host can rebuild them bit for bit.
void test_entropy_rows() {
    printf("fused attention entropy on hard rows\n");
    const int B = 4, T = 64, C = 8, NH = 1;
    std::vector<float> qkv((size_t)B * T * 3 * C, 0.0f), dout((size_t)B * T * C, 0.0f);
    Rng rng;
    rng_seed(&rng, 7);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float* row = &qkv[(size_t)(b * T + t) * 3 * C];
            float *q = row, *k = row + C, *v = row + 2 * C;
            for (int i = 0; i < C; i++) v[i] = (float)((int)rng_below(&rng, 9) - 4);
            if (b == 0) {  // scores near 4e3 that differ by O(1): cancellation
                for (int i = 0; i < C - 1; i++) { q[i] = 40.0f; k[i] = 40.0f; }
                q[C - 1] = 1.0f;
                k[C - 1] = (float)((int)rng_below(&rng, 7) - 3);
            } else if (b == 1) {  // near-uniform: scores 0 or 1/sqrt(8)
                q[0] = 1.0f;
                k[0] = (float)rng_below(&rng, 2);
            } else if (b == 2) {  // one-hot (or uniform over every 7th key): scores +-724
                for (int i = 0; i < C; i++) { q[i] = 16.0f; k[i] = (t % 7 == 0) ? 16.0f : -16.0f; }
            } else {  // random small integers
                for (int i = 0; i < C; i++) { q[i] = (float)((int)rng_below(&rng, 9) - 4); k[i] = (float)((int)rng_below(&rng, 9) - 4); }
            }
        }
    }
    AttGpu gpu = attention_gpu(qkv, dout, B, T, C, NH);
    const float scale = 1.0f / sqrtf((float)C);
    double ref_sum = 0.0, ref0 = 0.0;
    bool bounded = true;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            std::vector<double> s(t + 1);
            double m = -INFINITY, l = 0.0, h = 0.0;
            for (int j = 0; j <= t; j++) {
                float dot = 0.0f;  // exact: integer products and sums below 2^24
                for (int i = 0; i < C; i++) dot += qkv[(size_t)(b * T + t) * 3 * C + i] * qkv[(size_t)(b * T + j) * 3 * C + C + i];
                s[j] = USE_LOSS_SCALER ? host_att_score(dot, C, scale) : (double)(dot * scale);
                m = fmax(m, s[j]);
            }
            for (int j = 0; j <= t; j++) l += exp(s[j] - m);
            for (int j = 0; j <= t; j++) { double p = exp(s[j] - m) / l; if (p > 0) h -= p * log(p); }
            if (h < -1e-12 || h > log(t + 1.0) + 1e-9) bounded = false;
            ref_sum += h;
            if (b == 0) ref0 += h;
        }
    }
    double diff = fabs(gpu.entropy[0] - ref_sum / (B * T));
    check(diff <= 1e-5, "mean entropy of hard rows matches double precision: diff %.2e", diff);
    check(bounded, "reference row entropies lie in [0, ln(t+1)]");
    check(gpu.bad == 0, "no non-finite scores on finite inputs");
    AttGpu gpu0 = attention_gpu(std::vector<float>(qkv.begin(), qkv.begin() + (size_t)T * 3 * C),
                                std::vector<float>(dout.begin(), dout.begin() + (size_t)T * C), 1, T, C, NH);
    double diff0 = fabs(gpu0.entropy[0] - ref0 / T);
    check(diff0 <= 1e-5, "scores near 4e3 (cancellation): diff %.2e", diff0);
}

// The tensor-core attention (bf16/fp16, head size 64) on hard rows, forward and backward with a
// nonzero dout: large scores (hundreds to ~1e4, as in the last layers of an LN-free model whose
// attention has collapsed) in rows that are near-one-hot, one-hot, or tied between two keys. In
// such rows the true ds = p (dp - D) is tiny while q and k are large, so an error in ds that does
// not shrink with ds (e.g. a D that is not the p-weighted mean of the dp it is subtracted from)
// reaches dq and dk multiplied by |k| and |q|. Each gradient element is therefore judged against
// its own condition sum (AttRef::cond: rounding p and ds to floatX moves it by ~u times that),
// with a floor of u * 2^-10 times the sequence's magnitude scale for fp32 rounding, instead of
// against the tensor's largest element. q and k are small integers (exact in bf16 and fp16, and
// so are the fp32 scores); v and dout are normal. Sequences (T = 128, then the first 100 rows,
// on the whole-row kernels; T = 256 and the first 200 rows on the tiled ones):
//   b = 0  every query and key 32 + integers in [-4, 4]: a shared component, scores ~8.5e3, each
//          row dominated by one key (mean entropy ~0.005 nats)
//   b = 1  queries 8 + ..., key j at level c_j (distinct in [-30, 30]) + ...: one-hot rows,
//          the runner-up key ~60 below in score
//   b = 2  as b = 0 at 16, keys duplicated in pairs: rows whose top two keys tie at ~2e3
// The SIMT path's numbers are printed for comparison (not checked: in bf16/fp16 builds it forms
// D from the rounded output, the conditioning this test exposes; design note in entropy.cuh).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b);

// The worst error / bound of each part of dqkv (dq, dk, dv) over sequence b, with the largest
// error and |ref| per part. Bound per element: u times its condition sum and its own size
// (AttRef::cond), plus a floor of u * 2^-10 times the sequence's magnitude scale for the
// part (|dp| <= W = max_t sum |dO_t|; |dq| <= |k| W |v| / sqrt(hs) per unit of ds mass).
struct HardRowErrors {
    double worst[3], err[3], mag[3];
};

HardRowErrors hard_row_errors(const std::vector<float>& dqkv, const AttRef& ref, const std::vector<float>& qkv,
                              const std::vector<float>& dout, int b, int T, int C, double u, double scale) {
    const size_t C3 = 3 * (size_t)C;
    double mq = 0.0, mk = 0.0, mv = 0.0, mdo = 0.0, wdo = 0.0;
    for (int t = 0; t < T; t++) {
        const float* row = &qkv[((size_t)b * T + t) * C3];
        const float* g = &dout[((size_t)b * T + t) * C];
        double sum = 0.0;
        for (int d = 0; d < C; d++) {
            mq = fmax(mq, fabs(row[d]));
            mk = fmax(mk, fabs(row[C + d]));
            mv = fmax(mv, fabs(row[2 * C + d]));
            mdo = fmax(mdo, fabs(g[d]));
            sum += fabs(g[d]);
        }
        wdo = fmax(wdo, sum);
    }
    const double floor_scale[3] = {scale * mk * wdo * mv, scale * mq * wdo * mv, mdo};  // dq, dk, dv
    HardRowErrors r = {{0.0, 0.0, 0.0}, {0.0, 0.0, 0.0}, {0.0, 0.0, 0.0}};
    for (int t = 0; t < T; t++) {
        for (size_t i = 0; i < C3; i++) {
            const size_t idx = ((size_t)b * T + t) * C3 + i;
            const int part = (int)(i / C);
            const double e = fabs((double)dqkv[idx] - ref.dqkv[idx]);
            const double bound = u * (ref.cond[idx] + fabs(ref.dqkv[idx])) + u / 1024.0 * floor_scale[part];
            const double ratio = std::isnan(e) ? INFINITY : e / bound;
            r.worst[part] = fmax(r.worst[part], ratio);
            r.err[part] = fmax(r.err[part], e);
            r.mag[part] = fmax(r.mag[part], fabs(ref.dqkv[idx]));
        }
    }
    return r;
}

void test_attention_hard_rows() {
    printf("attention on hard rows (large scores; near-one-hot, one-hot and tied rows)\n");
#if defined(ENABLE_FP32)
    printf("  (no tensor-core path in the fp32 build)\n");
#else
    const int B = 3, Tfull = 256, C = 64, NH = 1, hs = 64;
    const size_t C3 = 3 * (size_t)C;
    const double u = floatx_unit_roundoff();
    const double scale = 1.0 / sqrt((double)hs);
#if defined(ENABLE_FP16)
    // FP16 is the paper's regime: q.k is rounded to fp16, and b = 0's level 32 (q.k ~ 65536, of
    // which 32^2 * 64 alone is above 65504) would overflow by design; 26 keeps q.k <= 57,600
    const float level0 = 26.0f;
    const char* kinds[B] = {"near-one-hot (scores ~5.4e3)", "one-hot (scores ~2e3)", "tied pairs (scores ~2e3)"};
#else
    const float level0 = 32.0f;
    const char* kinds[B] = {"near-one-hot (scores ~8.5e3)", "one-hot (scores ~2e3)", "tied pairs (scores ~2e3)"};
#endif
    std::vector<float> qkv((size_t)B * Tfull * C3), dout((size_t)B * Tfull * C);
    Rng rng;
    rng_seed(&rng, 23);
    auto small_int = [&]() { return (float)((int)rng_below(&rng, 9) - 4); };
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < Tfull; t++) {
            float* q = &qkv[((size_t)b * Tfull + t) * C3];
            float *k = q + C, *v = q + 2 * C;
            for (int d = 0; d < C; d++) {
                if (b == 0) {
                    q[d] = level0 + small_int();
                    k[d] = level0 + small_int();
                } else if (b == 1) {
                    q[d] = 8.0f + small_int();
                    k[d] = (float)((37 * t) % 61 - 30) + small_int();
                } else {
                    q[d] = 16.0f + small_int();
                    k[d] = t % 2 ? k[d - C3] : 16.0f + small_int();  // odd keys repeat the even one before
                }
                v[d] = rng_normal(&rng);
            }
        }
    }
    for (auto& x : dout) x = rng_normal(&rng);
    round_to_floatx(qkv);
    round_to_floatx(dout);
    const bool default_bwd_wmma8 = g_attention_bwd_wmma8, default_bwd_mma = g_attention_bwd_mma;
    for (int T : {128, 100, 256, 200}) {
        std::vector<float> q_T, d_T;  // the first T rows of each sequence
        for (int b = 0; b < B; b++) {
            q_T.insert(q_T.end(), qkv.begin() + (size_t)b * Tfull * C3, qkv.begin() + ((size_t)b * Tfull + T) * C3);
            d_T.insert(d_T.end(), dout.begin() + (size_t)b * Tfull * C, dout.begin() + ((size_t)b * Tfull + T) * C);
        }
        AttRef ref = attention_reference(q_T, d_T, B, T, C, NH);
        std::vector<float> dqkv_4warp;
        // paths as in test_attention_shapes; 3: the register-resident (mma) backward, which must
        // also give the same bits when run twice (no float atomics)
        for (int path_id = 0; path_id < 4; path_id++) {
            g_attention_force_simt = path_id == 2;
            g_attention_bwd_wmma8 = path_id == 1;
            g_attention_bwd_mma = path_id == 3;
            const AttentionPath kind = attention_path(T, C, NH, true);
            if (path_id != 2 && kind == ATT_PATH_SIMT) continue;
            if (path_id == 1 && kind != ATT_PATH_WHOLE_ROW) continue;
            const std::string path_s = attention_test_path_name(path_id, T, C, NH);
            const char* path = path_s.c_str();
            AttGpu gpu = attention_gpu(q_T, d_T, B, T, C, NH);
            if (path_id == 0) dqkv_4warp = gpu.dqkv;
            if (path_id == 1)
                check(same_bits(gpu.dqkv, dqkv_4warp), "hard rows, T=%d: the 8-warp and 4-warp backwards agree bit for bit", T);
            if (path_id == 3)
                check(same_bits(gpu.dqkv, attention_gpu(q_T, d_T, B, T, C, NH).dqkv), "hard rows, T=%d: the mma backward run twice gives the same bits", T);
            float d_out = max_abs_diff_d(gpu.out, ref.out), s_out = max_abs_d(ref.out);
            double d_ent = fabs(gpu.entropy[0] - ref.entropy[0]);
            if (path_id != 2)
                check(d_out <= TOL_ATT * s_out && d_ent <= 2e-5 && gpu.bad == 0 && gpu.paper[1] == 0.0 &&
                          fabs(gpu.paper[0] - gpu.entropy[0]) <= 1e-6,
                      "%s, hard rows, T=%d: output max diff %.2e (tol %.1e), entropy diff %.2e (tol 2e-5), %llu non-finite, "
                      "paper's entropy as the plain one, %g NaN rows",
                      path, T, d_out, TOL_ATT * s_out, d_ent, gpu.bad, gpu.paper[1]);
            for (int b = 0; b < B; b++) {
                HardRowErrors r = hard_row_errors(gpu.dqkv, ref, q_T, d_T, b, T, C, u, scale);
                const double *worst = r.worst, *err = r.err, *mag = r.mag;
                const bool ok = worst[0] <= 2.0 && worst[1] <= 2.0 && worst[2] <= 2.0;
                const char* fmt = "%s, T=%d, %s: worst error / bound dq %.2f, dk %.2f, dv %.2f (tol 2); max err dq %.1e, dk %.1e, "
                                  "dv %.1e (max |ref| %.1e, %.1e, %.1e)";
                if (path_id != 2) {
                    check(ok, fmt, path, T, kinds[b], worst[0], worst[1], worst[2], err[0], err[1], err[2], mag[0], mag[1], mag[2]);
                } else {
                    printf("  info ");
                    printf(fmt, path, T, kinds[b], worst[0], worst[1], worst[2], err[0], err[1], err[2], mag[0], mag[1], mag[2]);
                    printf("\n");
                }
            }
        }
        g_attention_force_simt = false;
        g_attention_bwd_wmma8 = default_bwd_wmma8;
        g_attention_bwd_mma = default_bwd_mma;
    }
#endif
}

// FP16, the paper's regime: a score whose q.k overflows fp16 is inf and its softmax row NaN. On
// each path (whole-row at T = 128, tiled at T = 200, and SIMT) the non-finite count must be the
// number of causal scores the host's fp16 rounding overflows, the paper's NaN rows the rows that
// hold one, and the NaN-ignoring entropy finite. Every third query is large (q = 34, k in 31..34:
// q.k >= 67,456 > 65,504), the others small (q.k <= 52,224); integers, so the fp32 dot is exact.
void test_attention_fp16_overflow() {
#if defined(ENABLE_FP16)
    printf("attention in the paper's fp16 regime: overflowing scores\n");
    const int B = 1, C = 64, NH = 1, hs = 64;
    const size_t C3 = 3 * (size_t)C;
    for (int T : {128, 200}) {
        std::vector<float> qkv((size_t)B * T * C3), dout((size_t)B * T * C, 0.0f);
        Rng rng;
        rng_seed(&rng, 31);
        for (int t = 0; t < T; t++) {
            float* q = &qkv[(size_t)t * C3];
            for (int d = 0; d < C; d++) {
                q[d] = t % 3 == 0 ? 34.0f : (float)(20 + (int)rng_below(&rng, 5));
                q[C + d] = (float)(31 + (int)rng_below(&rng, 4));
                q[2 * C + d] = rng_normal(&rng);
            }
        }
        unsigned long long want_bad = 0;
        double want_rows = 0.0;
        for (int t = 0; t < T; t++) {
            bool nan_row = false;
            for (int j = 0; j <= t; j++) {
                double dot = 0.0;
                for (int d = 0; d < C; d++) dot += (double)qkv[(size_t)t * C3 + d] * qkv[(size_t)j * C3 + C + d];
                if (!std::isfinite(host_att_score(dot, hs, 0.0))) want_bad++, nan_row = true;
            }
            want_rows += nan_row;
        }
        for (int path_id : {0, 2}) {
            g_attention_force_simt = path_id == 2;
            const char* path = attention_path_name(attention_forward_path(T, C, NH, true));
            AttGpu gpu = attention_gpu(qkv, dout, B, T, C, NH);
            check(gpu.bad == want_bad && gpu.paper[1] == want_rows && std::isfinite(gpu.paper[0]) && want_rows > 0,
                  "%s, T=%d: %llu non-finite scores (want %llu), %g NaN rows (want %g), NaN-ignoring entropy %.4f finite", path,
                  T, gpu.bad, want_bad, gpu.paper[1], want_rows, gpu.paper[0]);
        }
        g_attention_force_simt = false;
    }
#endif
}

// ----------------------------------------------------------------------------
// Activations: derivatives at 0, the slope gradient, the non-finite count

// Column sums (bias and LayerNorm gradients) on a tall matrix: more chunk partials than the
// second pass has rows of threads, and a width that is no multiple of 32; against double.
// N x C: C = 198 takes the one-column-per-thread path (not a multiple of the 16-byte pack in
// any precision), C = 264 the packed one with a partial block of columns; both sum ~40-80 chunks.
void test_column_sums(int N, int C) {
    Rng rng;
    rng_seed(&rng, 5);
    std::vector<float> a((size_t)N * C), x((size_t)N * C), mean(N), rstd(N);
    for (auto& v : a) v = rng_normal(&rng);
    for (auto& v : x) v = rng_normal(&rng);
    for (int r = 0; r < N; r++) {
        mean[r] = 0.1f * rng_normal(&rng);
        rstd[r] = 1.0f + 0.5f * rng_uniform(&rng);
    }
    std::vector<floatX> ax = to_floatx(a), xx = to_floatx(x);
    floatX* d_a = upload(ax);
    floatX* d_x = upload(xx);
    float* d_mean = upload(mean);
    float* d_rstd = upload(rstd);
    std::vector<float> init(C, 1.0f);  // the sums are added to what is there
    float* d_sum = upload(init);
    float* d_xhat = upload(init);
    float* d_scratch = device_alloc<float>(colsum_scratch_floats(N, C), "test");
    colsum_accumulate(d_sum, d_xhat, d_a, d_x, d_mean, d_rstd, N, C, d_scratch);
    std::vector<float> sum = to_host(d_sum, C), xhat = to_host(d_xhat, C);
    double worst_sum = 0.0, worst_xhat = 0.0, scale = 0.0;
    for (int c = 0; c < C; c++) {
        double s0 = 1.0, s1 = 1.0;
        for (int r = 0; r < N; r++) {
            double v = to_float(ax[(size_t)r * C + c]);
            s0 += v;
            s1 += v * (to_float(xx[(size_t)r * C + c]) - mean[r]) * rstd[r];
        }
        worst_sum = fmax(worst_sum, fabs(sum[c] - s0));
        worst_xhat = fmax(worst_xhat, fabs(xhat[c] - s1));
        scale = fmax(scale, fmax(fabs(s0), fabs(s1)));
    }
    // fp32 sums of 5000 terms of size ~1: a few 1e-4 at most; a lost or doubled chunk is ~10
    check(worst_sum < 1e-3 && worst_xhat < 2e-3, "column sums N=%d C=%d, %d chunks: sums within %.1e, sums with xhat within %.1e (largest %.0f)",
          N, C, colsum_chunks(N), worst_sum, worst_xhat, scale);
    cudaCheck(cudaStreamSynchronize(g_stream));
    for (void* p : {(void*)d_a, (void*)d_x, (void*)d_mean, (void*)d_rstd, (void*)d_sum, (void*)d_xhat, (void*)d_scratch})
        cudaCheck(cudaFree(p));
}

// The LayerNorm backward with every output (llmc/layernorm.cuh): dinp accumulated onto what is
// there, dweight, dbias and the column sums of the new dinp (a projection's bias gradient), all
// added onto 1s, against double precision from the same floatX inputs. C = 768 with N = 3000
// runs the fused kernel (GPT-2's rows; the last chunk partial), C = 64 the fused kernel with
// idle lanes, C = 198 the two-kernel path (no whole 16-byte packs).
void test_layernorm_backward(int N, int C) {
    Rng rng;
    rng_seed(&rng, 11);
    std::vector<float> dout((size_t)N * C), x((size_t)N * C), dinp((size_t)N * C), w(C), mean(N), rstd(N);
    for (auto& v : dout) v = rng_normal(&rng);
    for (auto& v : x) v = 1.0f + 2.0f * rng_normal(&rng);
    for (auto& v : dinp) v = rng_normal(&rng);
    for (auto& v : w) v = 1.0f + 0.3f * rng_normal(&rng);
    round_to_floatx(dout);
    round_to_floatx(x);
    round_to_floatx(dinp);
    round_to_floatx(w);
    for (int r = 0; r < N; r++) {  // the row's true statistics, as the forward saves them
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += x[(size_t)r * C + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[(size_t)r * C + c] - m) * (x[(size_t)r * C + c] - m);
        mean[r] = (float)m;
        rstd[r] = (float)(1.0 / sqrt(v / C + 1e-5));
    }
    floatX* d_dout = upload(to_floatx(dout));
    floatX* d_x = upload(to_floatx(x));
    floatX* d_dinp = upload(to_floatx(dinp));
    floatX* d_w = upload(to_floatx(w));
    float* d_mean = upload(mean);
    float* d_rstd = upload(rstd);
    std::vector<float> ones(C, 1.0f);
    float* d_dw = upload(ones);
    float* d_db = upload(ones);
    float* d_bias = upload(ones);
    float* d_scratch = device_alloc<float>(layernorm_scratch_floats(N, C), "test");
    layernorm_backward(d_dinp, d_dw, d_db, d_bias, d_dout, d_x, d_w, d_mean, d_rstd, N, C, true, d_scratch);
    std::vector<float> got = floatx_to_host(d_dinp, (size_t)N * C);
    std::vector<float> dw = to_host(d_dw, C), db = to_host(d_db, C), bias = to_host(d_bias, C);
    std::vector<double> rdw(C, 1.0), rdb(C, 1.0), rbias(C, 1.0);
    double worst_dinp = 0.0;
    for (int r = 0; r < N; r++) {
        const float* dy = &dout[(size_t)r * C];
        const float* xr = &x[(size_t)r * C];
        double a = 0.0, b = 0.0;
        for (int c = 0; c < C; c++) {
            double xhat = (xr[c] - mean[r]) * (double)rstd[r];
            a += w[c] * (double)dy[c];
            b += w[c] * (double)dy[c] * xhat;
            rdb[c] += dy[c];
            rdw[c] += dy[c] * xhat;
        }
        a /= C;
        b /= C;
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)r * C + c;
            double xhat = (xr[c] - mean[r]) * (double)rstd[r];
            double want = dinp[i] + (w[c] * (double)dy[c] - a - xhat * b) * rstd[r];
            worst_dinp = fmax(worst_dinp, fabs(got[i] - want) / fmax(1.0, fabs(want)));
            rbias[c] += got[i];  // the sums of dinp as stored: the kernel's own rounding is not the sum's error
        }
    }
    double worst_dw = 0.0, worst_db = 0.0, worst_bias = 0.0;
    for (int c = 0; c < C; c++) {
        worst_dw = fmax(worst_dw, fabs(dw[c] - rdw[c]));
        worst_db = fmax(worst_db, fabs(db[c] - rdb[c]));
        worst_bias = fmax(worst_bias, fabs(bias[c] - rbias[c]));
    }
    // dinp: one rounding to floatX of values ~1-3; the sums: fp32 over N terms ~1 (a lost row ~1)
    const double tol_dinp = sizeof(floatX) == 4 ? 1e-5 : 6e-3;
    check(worst_dinp <= tol_dinp && worst_dw < 2e-3 && worst_db < 2e-3 && worst_bias < 2e-3,
          "LayerNorm backward N=%d C=%d: dinp within %.1e (tol %.0e), dweight %.1e, dbias %.1e, dinp column sums %.1e",
          N, C, worst_dinp, tol_dinp, worst_dw, worst_db, worst_bias);
    cudaCheck(cudaStreamSynchronize(g_stream));
    for (void* p : {(void*)d_dout, (void*)d_x, (void*)d_dinp, (void*)d_w, (void*)d_mean, (void*)d_rstd, (void*)d_dw, (void*)d_db,
                    (void*)d_bias, (void*)d_scratch})
        cudaCheck(cudaFree(p));
}

// The activation backward with the fc bias gradient folded in (activation_backward_bias) against
// the two calls it replaces (activation_backward, then matmul_backward_bias on the stored dfch):
// dfch and the bias gradient bit for bit, the bias gradient also against double sums of the
// stored dfch, and a learnable slope's gradient against double. cols 264: 16-byte packs with a
// partial block of columns; cols 99: one column per thread.
void test_activation_bias(int rows, int cols, int act) {
    Rng rng;
    rng_seed(&rng, 13);
    size_t n = (size_t)rows * cols;
    std::vector<float> h(n), g(n);
    for (auto& v : h) v = 2.0f * rng_normal(&rng);
    for (auto& v : g) v = rng_normal(&rng);
    for (size_t i = 0; i < n; i += 37) h[i] = 0.0f;  // the kinks
    std::vector<floatX> hx = to_floatx(h), gx = to_floatx(g);
    floatX* d_h = upload(hx);
    floatX* d_a = upload(gx);  // in place, as the trainer
    floatX* d_b = upload(gx);
    std::vector<float> ones(cols, 1.0f);
    float* d_bias_a = upload(ones);
    float* d_bias_b = upload(ones);
    float* d_slope = upload(std::vector<float>{0.1f});
    float* d_sg_a = upload(std::vector<float>{0.0f});
    float* d_sg_b = upload(std::vector<float>{0.0f});
    float* d_colsum = device_alloc<float>(colsum_scratch_floats(rows, cols), "test");
    double* d_scratch = device_alloc<double>(activation_scratch_doubles(rows, cols), "test");
    bool learn = act_is_learnable(act);
    activation_backward(d_a, d_h, d_a, n, act, 0.1f, learn ? d_slope : NULL, learn ? d_sg_a : NULL, d_scratch);
    matmul_backward_bias(d_bias_a, d_a, rows, cols, d_colsum);
    activation_backward_bias(d_b, d_bias_b, d_h, d_b, rows, cols, act, 0.1f, learn ? d_slope : NULL, learn ? d_sg_b : NULL,
                             d_colsum, d_scratch);
    std::vector<floatX> da = to_host(d_a, n), db = to_host(d_b, n);
    std::vector<float> ba = to_host(d_bias_a, cols), bb = to_host(d_bias_b, cols);
    float sg = to_host(d_sg_b, 1)[0];
    std::vector<double> want(cols, 1.0);
    double want_sg = 0.0;
    for (size_t i = 0; i < n; i++) {
        want[i % cols] += to_float(db[i]);
        double x = to_float(hx[i]);
        if (x < 0.0) want_sg += x * to_float(gx[i]);
    }
    double worst = 0.0;
    for (int c = 0; c < cols; c++) worst = fmax(worst, fabs(bb[c] - want[c]));
    bool same_d = memcmp(da.data(), db.data(), n * sizeof(floatX)) == 0;
    bool same_b = memcmp(ba.data(), bb.data(), cols * sizeof(float)) == 0;
    bool sg_ok = !learn || fabs(sg - want_sg) <= 1e-4 * fmax(1.0, fabs(want_sg));
    check(same_d && same_b && worst < 1e-3 && sg_ok,
          "activation backward + fc bias, %s, %d x %d: dfch %s, bias gradient %s as the two calls, within %.1e of double; "
          "slope gradient %s", act_name(act, 0.1f).c_str(), rows, cols, same_d ? "bit-identical" : "DIFFERS",
          same_b ? "bit-identical" : "DIFFERS", worst, learn ? (sg_ok ? "ok" : "WRONG") : "-");
    cudaCheck(cudaStreamSynchronize(g_stream));
    for (void* p : {(void*)d_h, (void*)d_a, (void*)d_b, (void*)d_bias_a, (void*)d_bias_b, (void*)d_slope, (void*)d_sg_a,
                    (void*)d_sg_b, (void*)d_colsum, (void*)d_scratch})
        cudaCheck(cudaFree(p));
}

// --matmul-autotune (llmc/matmul.cuh): the two products that read their own output (the forward
// with the residual as C = D, the weight gradient's +=) under autotuning, where every candidate
// runs on the live operands before the chosen one does: their results against double precision
// (bound: twice the output's rounding plus fp32 accumulation over the row's |terms|), so an
// output not restored after the timing (the residual or the old gradient added again) fails.
// Autotuning is restored to off, and the chosen algorithms forgotten, when it ends.
void test_matmul_autotune() {
    const int N = 96, C = 64, OC = 80;
    Rng rng;
    rng_seed(&rng, 21);
    std::vector<float> inp((size_t)N * C), w((size_t)OC * C), bias(OC), res((size_t)N * OC), dW((size_t)OC * C);
    for (auto& v : inp) v = 0.1f * rng_normal(&rng);
    for (auto& v : w) v = 0.1f * rng_normal(&rng);
    for (auto& v : bias) v = 0.1f * rng_normal(&rng);
    for (auto& v : res) v = 1.0f + rng_uniform(&rng);  // large against the products: a double add shows
    for (auto& v : dW) v = 1.0f;
    round_to_floatx(inp);
    round_to_floatx(w);
    round_to_floatx(bias);
    round_to_floatx(res);
    floatX* d_inp = upload(to_floatx(inp));
    floatX* d_w = upload(to_floatx(w));
    floatX* d_bias = upload(to_floatx(bias));
    floatX* d_out = upload(to_floatx(res));  // out aliases the residual, as in the trainer
    float* d_dW = upload(dW);
    std::map<MatmulKey, cublasLtMatmulHeuristicResult_t> kept;
    kept.swap(g_matmul_algos);
    const MatmulTuneStats before = g_matmul_tune;
    g_matmul_autotune = true;
    matmul_forward(d_out, d_inp, d_w, d_bias, N, C, OC, d_out);
    matmul_backward_weight(d_dW, d_out, d_inp, N, C, OC);  // dW (OC, C) += out^T inp
    g_matmul_autotune = false;
    g_matmul_algos.swap(kept);
    const int timed = g_matmul_tune.problems - before.problems;
    std::vector<float> out = floatx_to_host(d_out, (size_t)N * OC), got_dW = to_host(d_dW, (size_t)OC * C);
    const double u = floatx_unit_roundoff();
    double worst_out = 0.0, worst_dW = 0.0;  // error / bound
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double want = bias[o] + res[(size_t)n * OC + o], mag = fabs(bias[o]) + fabs(res[(size_t)n * OC + o]);
            for (int c = 0; c < C; c++) {
                double t = (double)inp[(size_t)n * C + c] * w[(size_t)o * C + c];
                want += t;
                mag += fabs(t);
            }
            // twice the output's rounding (cuBLASLt may round before its epilogue adds C): a
            // residual added twice is ~1e6x this, so the margin costs the check nothing
            double bound = 2 * u * fabs(want) + 64 * 0x1p-24 * mag + 1e-30;
            worst_out = fmax(worst_out, fabs(out[(size_t)n * OC + o] - want) / bound);
        }
    for (int o = 0; o < OC; o++)  // against the out the device wrote (rounded), as the trainer's backward sees it
        for (int c = 0; c < C; c++) {
            double want = 1.0, mag = 1.0;
            for (int n = 0; n < N; n++) {
                double t = (double)out[(size_t)n * OC + o] * inp[(size_t)n * C + c];
                want += t;
                mag += fabs(t);
            }
            worst_dW = fmax(worst_dW, fabs(got_dW[(size_t)o * C + c] - want) / (64 * 0x1p-24 * mag + 1e-30));
        }
    check(worst_out <= 1.0 && worst_dW <= 1.0,
          "matmul autotune (%d products timed): forward with the residual as output %.3gx its bound, weight gradient += "
          "%.3gx its bound",
          timed, worst_out, worst_dW);
    cudaCheck(cudaStreamSynchronize(g_stream));
    for (void* p : {(void*)d_inp, (void*)d_w, (void*)d_bias, (void*)d_out, (void*)d_dW}) cudaCheck(cudaFree(p));
}

// The fused classifier at GPT-2's vocabulary (V = 50257 in rows of Vp = 50304: every batch of
// packs per thread, the scalar tail and the padding; the row staged in shared memory, as it fits
// in every precision) against double precision: the loss and
// every dlogit of a few rows, one with a single dominant logit and one whose target is the last
// real column. The inputs are rounded to floatX first, so only the kernel's arithmetic (and
// the output's rounding) is measured.
void test_classifier_rows() {
    printf("classifier at V = 50257\n");
    const int N = 4, V = 50257, Vp = 50304;
    Rng rng;
    rng_seed(&rng, 9);
    std::vector<float> logits((size_t)N * Vp, 0.0f);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < V; i++) logits[(size_t)r * Vp + i] = 3.0f * rng_normal(&rng);
    logits[(size_t)1 * Vp + 777] = 40.0f;  // row 1: one logit dominates
    std::vector<int> targets = {5, 777, V - 1, 31000};
    round_to_floatx(logits);
    floatX* d_logits = upload(to_floatx(logits));
    int* d_targets = upload(targets);
    float* d_losses = device_alloc<float>(N, "test");
    const float dloss = 1.0f / N;
    classifier_forward(d_logits, d_losses, d_targets, N, V, Vp, true, dloss, NULL);
    std::vector<float> losses = to_host(d_losses, N), grads = floatx_to_host(d_logits, (size_t)N * Vp);
    double worst_loss = 0.0, worst_grad = 0.0, worst_pad = 0.0;
    for (int r = 0; r < N; r++) {
        const float* x = &logits[(size_t)r * Vp];
        double m = -1e30, sum = 0.0;
        for (int i = 0; i < V; i++) m = fmax(m, (double)x[i]);
        for (int i = 0; i < V; i++) sum += exp((double)x[i] - m);
        double lse = m + log(sum);
        worst_loss = fmax(worst_loss, fabs(losses[r] - (lse - x[targets[r]])));
        for (int i = 0; i < Vp; i++) {
            double g = i < V ? (exp((double)x[i] - lse) - (i == targets[r] ? 1.0 : 0.0)) * dloss : 0.0;
            double d = fabs(grads[(size_t)r * Vp + i] - g);
            if (i < V) worst_grad = fmax(worst_grad, d);
            else worst_pad = fmax(worst_pad, d);
        }
    }
    // dlogits are at most dloss = 0.25 in size: their rounding to floatX is the bf16/fp16 bound
    const double tol_loss = sizeof(floatX) == 4 ? 2e-5 : 1e-4, tol_grad = sizeof(floatX) == 4 ? 1e-7 : 1e-3;
    check(worst_loss <= tol_loss, "classifier, %d rows of V = %d: losses within %.1e (tol %.0e)", N, V, worst_loss, tol_loss);
    check(worst_grad <= tol_grad, "classifier, %d rows of V = %d: dlogits within %.1e (tol %.0e)", N, V, worst_grad, tol_grad);
    check(worst_pad == 0.0, "classifier: the padded columns' gradients are exactly 0");
    cudaCheck(cudaStreamSynchronize(g_stream));
    for (void* p : {(void*)d_logits, (void*)d_targets, (void*)d_losses}) cudaCheck(cudaFree(p));
}

void test_activation_kinks() {
    printf("activation derivatives at 0\n");
    std::vector<float> x = {0.0f, -2.0f, 3.0f}, ones = {1.0f, 1.0f, 1.0f};
    floatX* d_x = upload(to_floatx(x));
    floatX* d_g = upload(to_floatx(ones));
    floatX* d_out = device_alloc<floatX>(3, "test");
    float* d_slope = upload(std::vector<float>{0.1f});
    float* d_slope_grad = upload(std::vector<float>{0.0f});
    double* d_scratch = device_alloc<double>(activation_scratch_doubles(), "test");
    activation_backward(d_out, d_x, d_g, 3, ACT_RELU, 0.0f, NULL, NULL, d_scratch);
    std::vector<float> dr = floatx_to_host(d_out, 3);
    activation_backward(d_out, d_x, d_g, 3, ACT_LRELU_LAYER, 0.0f, d_slope, d_slope_grad, d_scratch);
    std::vector<float> dl = floatx_to_host(d_out, 3);
    float ds = to_host(d_slope_grad, 1)[0];
    check(dr[0] == 0.0f && dr[1] == 0.0f && dr[2] == 1.0f, "relu'(0) = 0, relu'(-2) = 0, relu'(3) = 1");
    check(dl[0] == 1.0f && fabsf(dl[1] - 0.1f) < 1e-3f && dl[2] == 1.0f, "lrelu'(0) = 1, lrelu'(-2) = s");
    check(ds == -2.0f, "dL/ds sums x * dout over x < 0: %g", ds);
    // forward: one infinite input gives one non-finite output, counted once
    std::vector<float> xi = {1.0f, INFINITY, -1.0f, 0.5f};
    floatX* d_xi = upload(to_floatx(xi));
    floatX* d_fi = device_alloc<floatX>(4, "test");
    unsigned long long* d_bad = upload(std::vector<unsigned long long>{0});
    activation_forward(d_fi, d_xi, 4, ACT_GELU, 0.0f, NULL, d_bad);
    check(to_host(d_bad, 1)[0] == 1, "the forward counts the one non-finite activation (%llu)", to_host(d_bad, 1)[0]);
    void* ptrs[] = {d_x, d_g, d_out, d_slope, d_slope_grad, d_scratch, d_xi, d_fi, d_bad};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
}

// ----------------------------------------------------------------------------
// The training step: NaN guard verdicts, determinism, checkpoint -> resume

// A small LN-free model with a learnable per-layer slope (state in every corner).
void build_small(GPT2* model, uint64_t seed) {
    GPT2Config c;
    parse_descriptor("L2H2C64T32V128", &c);
    c.variant = {NORM_NONE, ACT_LRELU_LAYER, 0.1f};
    gpt2_build_from_random(model, c, seed);
    if (USE_LOSS_SCALER) gpt2_set_scaler(model, ScalerState{256.0f, 0, 0, 0});
}

struct Batches {
    int B, T, micro;
    std::vector<int> x, y;  // (steps, micro, B, T)
};

Batches make_batches(int steps, int micro, int B, int T, int V, uint64_t seed) {
    Batches b = {B, T, micro, {}, {}};
    Rng rng;
    rng_seed(&rng, seed);
    size_t n = (size_t)steps * micro * B * T;
    b.x.resize(n);
    b.y.resize(n);
    for (size_t i = 0; i < n; i++) { b.x[i] = (int)rng_below(&rng, V); b.y[i] = (int)((b.x[i] + 1) % V); }
    return b;
}

StepOptions small_options(int step, int adam_t) {
    LRSchedule sched = {SCHEDULE_COSINE, 3e-3f, 2, 0.1f, 6};
    return StepOptions{lr_at(sched, step), 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, adam_t, 2, false};
}

// Runs steps [from, to) of the batches; returns the headers.
std::vector<StepHeader> run_steps(GPT2* model, const Batches& b, int from, int to) {
    std::vector<StepHeader> hs;
    size_t per_step = (size_t)b.micro * b.B * b.T;
    for (int s = from; s < to; s++)
        hs.push_back(train_step(model, &b.x[s * per_step], &b.y[s * per_step], b.B, b.T, b.micro, small_options(s, s + 1), s % 2 == 0));
    return hs;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void test_resume(const std::string& scratch) {
    printf("checkpoint -> resume, determinism\n");
    Batches batches = make_batches(6, 2, 4, 32, 128, 21);
    GPT2 a;
    build_small(&a, 5);
    gpt2_allocate_activations(&a, 4, 32);
    std::vector<StepHeader> h0 = run_steps(&a, batches, 0, 3);
    // the checkpoint of step 3, through the trainer's file formats (the FP16 build's loss scaler
    // in the state file's header, as save_checkpoint writes it)
    ScalerState scaler = gpt2_scaler(&a);
    LossScalerRecord record = {0, 0.0f, 0, 0};
    if (USE_LOSS_SCALER) record = LossScalerRecord{1, scaler.scale, scaler.clean_steps, scaler.overflows};
    TrainState st = {3, 3, 0, {0, 0, 0, {{0, 0}}}, {{0, 0}}, record};
    std::string model_path = scratch + "/resume_model.bin", state_path = scratch + "/resume_state.bin";
    gpt2_download_params(&a);
    std::vector<float> m = to_host(a.d_m, a.num_params), v = to_host(a.d_v, a.num_params);
    write_model_file(model_path.c_str(), a.config, a.params_memory);
    write_state_file(state_path.c_str(), st, a.num_params - a.num_slopes, a.num_slopes, m.data(), v.data());
    std::vector<StepHeader> ha = run_steps(&a, batches, 3, 6);
    std::vector<float> pa = to_host(a.d_master, a.num_params), ma = to_host(a.d_m, a.num_params), va = to_host(a.d_v, a.num_params);

    GPT2 r;
    gpt2_build_from_file(&r, model_path.c_str(), NULL);
    TrainState rs;
    std::vector<float> rm(r.num_params), rv(r.num_params);
    read_state_file(state_path.c_str(), 3, &rs, r.num_params - r.num_slopes, r.num_slopes, rm.data(), rv.data());
    cudaCheck(cudaMemcpy(r.d_m, rm.data(), rm.size() * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(r.d_v, rv.data(), rv.size() * sizeof(float), cudaMemcpyHostToDevice));
    if (rs.scaler.present) gpt2_set_scaler(&r, ScalerState{rs.scaler.scale, rs.scaler.clean_steps, rs.scaler.overflows, 0});
    ScalerState rsc = gpt2_scaler(&r);
    gpt2_allocate_activations(&r, 4, 32);
    std::vector<StepHeader> hr = run_steps(&r, batches, 3, 6);
    std::vector<float> pr = to_host(r.d_master, r.num_params), mr = to_host(r.d_m, r.num_params), vr = to_host(r.d_v, r.num_params);
    check(rs.adam_t == 3 && r.num_slopes == 2, "the state file restores AdamW's step count and the slopes");
    if (USE_LOSS_SCALER)
        check(rs.scaler.present == 1 && rsc.scale == scaler.scale && rsc.clean_steps == scaler.clean_steps &&
              rsc.overflows == scaler.overflows && scaler.clean_steps > 0,
              "the state file restores the loss scaler (scale %g, %d clean steps, %d overflows)", rsc.scale,
              rsc.clean_steps, rsc.overflows);
    else
        check(rs.scaler.present == 0, "without loss scaling the state file records no scaler");
    check(same_bits(pa, pr), "resumed parameters after 3 more steps are bit-identical");
    check(same_bits(ma, mr) && same_bits(va, vr), "resumed AdamW moments are bit-identical");
    bool same_logs = true;
    for (int i = 0; i < 3; i++) same_logs &= ha[i].loss == hr[i].loss && ha[i].norm == hr[i].norm;
    check(same_logs, "resumed losses and gradient norms are bit-identical");
    check(ha[2].loss < h0[0].loss, "the small model learns: loss %.4f -> %.4f over 6 steps", h0[0].loss, ha[2].loss);

    // run-to-run: the same six steps from the same start give the same bits
    GPT2 c;
    build_small(&c, 5);
    gpt2_allocate_activations(&c, 4, 32);
    run_steps(&c, batches, 0, 6);
    std::vector<float> pc = to_host(c.d_master, c.num_params);
    check(same_bits(pa, pc), "two identical runs give bit-identical parameters");
    gpt2_free(&a);
    gpt2_free(&r);
    gpt2_free(&c);
}

void test_nan_guard() {
    printf("NaN guard on the device\n");
    Batches batches = make_batches(1, 2, 4, 32, 128, 3);
    GPT2 m;
    build_small(&m, 9);
    gpt2_allocate_activations(&m, 4, 32);
    StepHeader h = run_steps(&m, batches, 0, 1)[0];
    check(h.finite == 1 && h.apply == 1 && std::isfinite(h.loss), "a normal step is finite and applied");
    // poison the embedding of the first token: its attention scores in layer 0 become NaN
    gpt2_download_params(&m);
    m.params_memory[(size_t)batches.x[0] * m.config.channels] = NAN;
    gpt2_upload_params(&m);
    std::vector<float> before = to_host(m.d_master, m.num_params);
    StepOptions opt = small_options(1, 2);
    float scale0 = USE_LOSS_SCALER ? gpt2_scaler(&m).scale : 1.0f;
    h = train_step(&m, &batches.x[0], &batches.y[0], batches.B, batches.T, batches.micro, opt, true);
    unsigned long long att0 = result_att_bad(&m, 0)[0];
    if (USE_LOSS_SCALER)  // GradScaler backs off on any non-finite step (llmc/guard.cuh)
        check(gpt2_scaler(&m).scale == 0.5f * scale0, "fp16: the skipped step halves the loss scale (%g -> %g)", scale0,
              gpt2_scaler(&m).scale);
    std::vector<float> after = to_host(m.d_master, m.num_params);
    std::vector<float> grads = to_host(m.d_grads, m.num_params);
    check(h.finite == 0 && h.apply == 0, "a poisoned step is not finite and not applied (stop/skip)");
    check(att0 > 0, "layer 0 counts its non-finite attention scores (%llu)", att0);
    check(same_bits(before, after), "the parameters are untouched by the skipped update");
    check(max_abs(grads.data(), grads.size()) == 0.0f, "the gradients are zeroed for the next step");
    opt.log_anyway = true;
    h = train_step(&m, &batches.x[0], &batches.y[0], batches.B, batches.T, batches.micro, opt, false);
    check(h.finite == 0 && h.apply == 1, "under --on-nan log the update is applied anyway");
    gpt2_free(&m);
}

void test_loss_scaler() {
    if (!USE_LOSS_SCALER) return;
    printf("fp16 dynamic loss scaling\n");
    Batches batches = make_batches(2, 2, 4, 32, 128, 4);
    GPT2 m;
    build_small(&m, 13);
    gpt2_allocate_activations(&m, 4, 32);
    gpt2_set_scaler(&m, ScalerState{1e9f, 0, 0, 0});  // the scaled gradients overflow fp16
    std::vector<float> before = to_host(m.d_master, m.num_params);
    StepHeader h = run_steps(&m, batches, 0, 1)[0];
    ScalerState s = gpt2_scaler(&m);
    std::vector<float> after = to_host(m.d_master, m.num_params);
    check(h.overflow == 1 && h.apply == 0 && h.finite == 1, "an overflowing step is skipped, and is no NaN-guard event");
    check(s.scale == 5e8f && s.overflows == 1, "the scale halves (%g) and the overflow is counted (%d)", s.scale, s.overflows);
    check(same_bits(before, after), "the parameters are untouched");
    gpt2_set_scaler(&m, ScalerState{256.0f, 0, 0, 0});
    h = run_steps(&m, batches, 1, 2)[0];
    check(h.overflow == 0 && h.apply == 1, "at a sane scale the step is applied");
    gpt2_free(&m);
}

// The paper's fp16 regime (doc/fp16-and-nans.md) on tests/fp16_case.py's hand-made model, whose
// q.k^T exceeds 65504 for some token pairs and whose FFN product does for one token. FP16: the
// softmax rows numpy float16 finds NaN have a NaN log-sum-exp here, and the counts of non-finite
// scores and FFN activations per layer are numpy's; FP32 and BF16 keep the scores (and, for BF16,
// the products' range) wide enough to find none, as numpy's fp32 forward.
static std::vector<char> read_bytes(const std::string& path) {
    FILE* f = fopen_or_fail(path.c_str(), "rb", "run: /usr/bin/python3 tests/fp16_case.py out/fp16case");
    long n = file_size_or_fail(f, path.c_str());
    std::vector<char> buf(n);
    fread_or_fail(buf.data(), 1, n, f, path.c_str());
    fclose(f);
    return buf;
}

void test_fp16_case(const std::string& dir) {
    printf("fp16 regime: a hand-made model whose scores overflow fp16 (%s)\n", dir.c_str());
    std::vector<char> tok = read_bytes(dir + "/fp16_case_tokens.bin"), ref = read_bytes(dir + "/fp16_case_expected.bin");
    const int32_t* dims = (const int32_t*)ref.data();
    int B = dims[0], T = dims[1], L = dims[2], NH = dims[3];
    size_t block = 8 * (size_t)L + (size_t)L * B * NH * T;
    if (ref.size() != 16 + 2 * block || tok.size() != 8 * (size_t)B * T)
        fail("%s/fp16_case_*.bin do not match each other: run /usr/bin/python3 tests/fp16_case.py %s", dir.c_str(), dir.c_str());
    GPT2 model;
    gpt2_build_from_file(&model, (dir + "/fp16_case_model.bin").c_str(), NULL);
    if (model.config.num_layers != L || model.config.num_heads != NH) fail("%s: the model does not match", dir.c_str());
    gpt2_allocate_activations(&model, B, T);
    gpt2_step_begin(&model);
    const int* tokens = (const int*)tok.data();
    gpt2_set_batch(&model, tokens, tokens + B * T, B, T);
    gpt2_forward(&model, true, true, -1.0f, &model.d_header->loss_sum);
    const char* want = ref.data() + 16 + (USE_LOSS_SCALER ? 0 : block);  // FP16: the rounded forward
    const int32_t* counts = (const int32_t*)want;
    const uint8_t* mask = (const uint8_t*)(want + 8 * L);
    std::vector<float> lse = to_host(model.acts.att_lse, (size_t)L * B * NH * T);
    int differ = 0, nan_rows = 0;
    for (size_t i = 0; i < lse.size(); i++) {
        nan_rows += std::isnan(lse[i]);
        differ += std::isnan(lse[i]) != (mask[i] != 0);
    }
    check(differ == 0, "%s: NaN softmax rows (%d) at numpy's places (%d differ)", PRECISION_NAME, nan_rows, differ);
    std::vector<unsigned long long> att_bad = to_host(model.d_att_bad, L), ffn_bad = to_host(model.d_ffn_bad, L);
    for (int l = 0; l < L; l++)
        check(att_bad[l] == (unsigned long long)counts[l] && ffn_bad[l] == (unsigned long long)counts[L + l],
              "%s layer %d: %llu non-finite scores, %llu FFN activations (numpy: %d, %d)", PRECISION_NAME, l, att_bad[l],
              ffn_bad[l], counts[l], counts[L + l]);
    // the paper's metrics (paper.tsv): NaN rows per (layer, head) and a finite NaN-ignoring entropy
    std::vector<double> paper = to_host(model.d_paper_sum, 2 * (size_t)L * NH);
    bool rows_ok = true, finite_ok = true;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++) {
            double want = 0.0;
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++) want += mask[((l * B + b) * NH + h) * T + t];
            rows_ok &= paper[(size_t)L * NH + l * NH + h] == want;
            finite_ok &= std::isfinite(paper[l * NH + h]);
        }
    check(rows_ok && finite_ok, "%s: the paper's metrics: NaN rows per head as numpy's (layer 0 head 0: %g), entropy with "
          "NaN rows as 0 finite", PRECISION_NAME, paper[(size_t)L * NH]);
    gpt2_free(&model);
}

// ----------------------------------------------------------------------------

int main(int argc, char** argv) {
    std::string dir = argc > 1 ? argv[1] : "out/ref";
    std::string fp16_dir = argc > 2 ? argv[2] : "out/fp16case";
    std::string scratch = "out/test_scratch_cu";
    setvbuf(stdout, NULL, _IOLBF, 0);
    make_dirs_or_fail(scratch.c_str());
    cuda_setup();
    printf("test_gpt2cu: %s, precision %s\n", g_device_prop.name, PRECISION_NAME);
    if (dir == "--states") {  // only the debug states of the given directories
        int first = 2;
        if (argc > first + 1 && strcmp(argv[first], "--steps") == 0) {
            g_max_steps = atoi(argv[first + 1]);
            if (g_max_steps < 1) fail("--steps needs a count >= 1 (got '%s')", argv[first + 1]);
            first += 2;
        }
        if (argc > first && strcmp(argv[first], "--simt") == 0) {  // the same checks on the SIMT path, to compare
            g_attention_force_simt = true;
            first += 1;
        }
        check(argc > first, "--states names at least one directory");
        for (int i = first; i < argc; i++) {
            for (auto& tag : find_variants(argv[i], 1)) test_variant(argv[i], tag);
        }
        return test_summary("test_gpt2cu");
    }
    // --units [--only GROUP] [FP16DIR]: the unit tests (all, or one group: a quick look in the emulator)
    std::string only;
    if (dir == "--units" && argc > 2 && strcmp(argv[2], "--only") == 0) {
        if (argc < 4) fail("--only needs a group name (e.g. --only matmul)");
        only = argv[3];
        fp16_dir = argc > 4 ? argv[4] : "out/fp16case";
    }
    if (dir != "--units") {
        for (auto& tag : find_variants(dir, 1)) test_variant(dir, tag);
    }
    int groups_run = 0;
    auto group = [&](const char* name) {
        bool run = only.empty() || only == name;
        groups_run += run;
        return run;
    };
    if (group("attention")) {
        test_attention_dispatch();
        test_attention_shapes();
        test_attention_forwards();
        test_entropy_rows();
        test_attention_hard_rows();
        test_attention_fp16_overflow();
    }
    if (group("activation")) test_activation_kinks();
    if (group("classifier")) test_classifier_rows();
    if (group("colsum")) {
        printf("column sums (bias and LayerNorm gradients)\n");
        test_column_sums(5000, 198);
        test_column_sums(3000, 264);
    }
    if (group("layernorm")) {
        printf("LayerNorm backward (input, weight, bias and dinp column sums)\n");
        test_layernorm_backward(3000, 768);
        test_layernorm_backward(300, 64);
        test_layernorm_backward(500, 198);
    }
    if (group("activation_bias")) {
        printf("activation backward with the fc bias gradient\n");
        test_activation_bias(700, 264, ACT_GELU);
        test_activation_bias(700, 264, ACT_LRELU_LAYER);
        test_activation_bias(300, 99, ACT_RELU);
        test_activation_bias(300, 99, ACT_LRELU_LAYER);
    }
    if (group("matmul")) test_matmul_autotune();
    if (group("guard")) test_nan_guard();
    if (group("resume")) test_resume(scratch);
    if (group("scaler")) test_loss_scaler();
    if (group("fp16")) test_fp16_case(fp16_dir);
    if (groups_run == 0)
        fail("--only %s: no such group (attention activation classifier colsum layernorm activation_bias matmul guard "
             "resume scaler fp16)", only.c_str());
    return test_summary("test_gpt2cu");
}
