/*
train_gpt2.cpp: GPT-2 training in plain fp32 C++ (OpenMP) with switchable normalization
(LayerNorm or none) and FFN activation (GELU, ReLU, leaky ReLU with fixed or learnable slope,
identity), the attention entropy of every head measured inside the attention forward pass, and
NaN guards. It is the readable reference of normfree-gpt2: test_gpt2.cpp checks it against the
PyTorch reference (train_gpt2.py), and train_gpt2.cu must match it.

Layout: the layers (forward and backward of each), then the model (parameters, activations,
forward, backward, AdamW), then the training loop in main() at the bottom. Shapes are in the
comments: B batch, T time, C channels, NH heads, hs = C/NH head size, L layers, V vocab,
Vp padded vocab.

Build: `make train_gpt2` (plain C++ loops; the matrix products in a small blocked GEMM,
gemm_acc) or `make train_gpt2 USE_BLAS=1` (gemm_acc calls OpenBLAS's cblas_sgemm). With
`USE_MPI=1`, `mpirun -np N ./train_gpt2` trains data-parallel (multiproc.h, doc/multi-gpu.md).
`#define TESTING` before including this file leaves out main().
*/
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <ctime>
#include <string>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef USE_BLAS
#include <cblas.h>
#endif

#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "dataloader.h"
#include "diag.h"
#include "fp16.h"
#include "flags.h"
#include "logger.h"
#include "model_file.h"
#include "multiproc.h"
#include "rng.h"
#include "schedulers.h"
#include "tokenizer.h"
#include "train_common.h"

// glibc's libmvec has SIMD versions of expf (accurate to a few ulp). Declaring expf as an
// OpenMP "declare simd" function lets loops marked `#pragma omp simd` call 8 or 16 at a time;
// the classifier's softmax over ~50K logits per position runs ~7x faster. The Makefile turns
// this on where libmvec exists; elsewhere the same loops call the scalar expf.
#ifdef USE_LIBMVEC
extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
}
#endif

// ----------------------------------------------------------------------------
// Layers. Backward functions ACCUMULATE (+=) into their gradient outputs: a tensor used twice
// (the residual stream, tied embeddings) gets both contributions, and in the LN-free model the
// "normalized" input is the residual itself, so its gradient lands straight in the residual's.

void encoder_forward(float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C) {
    // out (B,T,C) = wte[token] + wpe[position]
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float* out_bt = out + (size_t)(b * T + t) * C;
            const float* tok = wte + (size_t)inp[b * T + t] * C;
            const float* pos = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) out_bt[i] = tok[i] + pos[i];
        }
    }
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* inp, int B, int T, int C) {
    // serial: different positions may share a token, so parallel writes to dwte would race
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float* dout_bt = dout + (size_t)(b * T + t) * C;
            float* dtok = dwte + (size_t)inp[b * T + t] * C;
            float* dpos = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                dtok[i] += dout_bt[i];
                dpos[i] += dout_bt[i];
            }
        }
    }
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int B, int T, int C) {
    // out (B,T,C); mean, rstd (B,T) are saved for the backward pass
    const float eps = 1e-5f;
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        const float* x = inp + (size_t)bt * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        float var = 0.0f;
        for (int i = 0; i < C; i++) var += (x[i] - m) * (x[i] - m);
        var /= C;
        float s = 1.0f / sqrtf(var + eps);
        float* o = out + (size_t)bt * C;
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * s * weight[i] + bias[i];
        mean[bt] = m;
        rstd[bt] = s;
    }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int B, int T, int C) {
    // serial over positions: dweight and dbias sum over all of them
    for (int bt = 0; bt < B * T; bt++) {
        const float* dy = dout + (size_t)bt * C;
        const float* x = inp + (size_t)bt * C;
        float* dx = dinp + (size_t)bt * C;
        float m = mean[bt], s = rstd[bt];
        // two reductions: mean of dnorm, and mean of dnorm * norm
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = weight[i] * dy[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = weight[i] * dy[i];
            dbias[i] += dy[i];
            dweight[i] += norm * dy[i];
            dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}

// C (M,N) += op(A) (M,K) @ op(B) (K,N), all row-major with leading dimensions lda, ldb, ldc, and
// op(X) = X^T when its flag is set: cblas_sgemm's contract with alpha = beta = 1. Every matrix
// product of the model goes through here.
// The plain loops are a small blocked GEMM that the compiler vectorises: C is cut into tiles of
// GEMM_MR rows x GEMM_NR columns whose running sums live in registers; for each tile column a
// panel of op(B) (GEMM_KC x GEMM_NR) is copied once into a contiguous buffer that stays in
// cache while it serves GEMM_MB rows of C; each step over k then costs GEMM_MR broadcasts of A
// and GEMM_MR x GEMM_NR fused multiply-adds on contiguous floats. Each C entry sums over k in
// order whatever the thread count, so runs are reproducible. 3-10x the simple loops it replaced
// (dev machine, one core: ~80-90 GFLOP/s).
#define GEMM_MR 4      // rows of a register tile
#define GEMM_NR 64     // columns of a register tile (4 AVX-512 or 8 AVX2 vectors)
#define GEMM_KC 128    // depth of a packed panel of op(B): GEMM_KC x GEMM_NR floats = 32 KB
#define GEMM_MB 256    // rows of C per task: a task packs each of its panels once for them
void gemm_acc(bool a_trans, bool b_trans, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
              float* C, int ldc) {
#ifdef USE_BLAS
    cblas_sgemm(CblasRowMajor, a_trans ? CblasTrans : CblasNoTrans, b_trans ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                A, lda, B, ldb, 1.0f, C, ldc);
#else
    int bands = (M + GEMM_MB - 1) / GEMM_MB, blocks = (N + GEMM_NR - 1) / GEMM_NR;
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int band = 0; band < bands; band++) {
        for (int block = 0; block < blocks; block++) {
            int n0 = block * GEMM_NR, nn = std::min(GEMM_NR, N - n0);
            int m_end = std::min(M, (band + 1) * GEMM_MB);
            float panel[GEMM_KC * GEMM_NR];  // op(B)[k0 : k0+kk, n0 : n0+nn], zero-padded to GEMM_NR columns
            for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
                int kk = std::min(GEMM_KC, K - k0);
                for (int k = 0; k < kk; k++)
                    for (int j = 0; j < GEMM_NR; j++)
                        panel[k * GEMM_NR + j] = j >= nn ? 0.0f
                                                 : b_trans ? B[(size_t)(n0 + j) * ldb + k0 + k]
                                                           : B[(size_t)(k0 + k) * ldb + n0 + j];
                for (int m0 = band * GEMM_MB; m0 < m_end; m0 += GEMM_MR) {
                    int mm = std::min(GEMM_MR, M - m0);
                    float acc[GEMM_MR][GEMM_NR];
                    for (int r = 0; r < GEMM_MR; r++)
                        for (int j = 0; j < GEMM_NR; j++) acc[r][j] = r < mm && j < nn ? C[(size_t)(m0 + r) * ldc + n0 + j] : 0.0f;
                    const float* p = panel;
                    for (int k = 0; k < kk; k++, p += GEMM_NR) {
                        for (int r = 0; r < GEMM_MR; r++) {
                            int m = std::min(m0 + r, M - 1);  // a partial tile repeats its last row, never stored
                            float a = a_trans ? A[(size_t)(k0 + k) * lda + m] : A[(size_t)m * lda + k0 + k];
                            for (int j = 0; j < GEMM_NR; j++) acc[r][j] += a * p[j];
                        }
                    }
                    for (int r = 0; r < mm; r++)
                        for (int j = 0; j < nn; j++) C[(size_t)(m0 + r) * ldc + n0 + j] = acc[r][j];
                }
            }
        }
    }
#endif
}

// out (N,OC) = inp (N,C) @ weight^T + bias, with weight (OC,C) as PyTorch's nn.Linear; N = B*T.
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] = bias ? bias[o] : 0.0f;
    gemm_acc(false, true, N, OC, C, inp, C, weight, C, out, OC);
}

// dinp (N,C) += dout @ weight; dweight (OC,C) += dout^T @ inp; dbias (OC) += column sums of dout.
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
    gemm_acc(false, false, N, C, OC, dout, OC, weight, C, dinp, C);
    gemm_acc(true, false, OC, C, N, dout, OC, inp, C, dweight, C);
    if (dbias) {
        #pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float sum = 0.0f;
            for (int n = 0; n < N; n++) sum += dout[(size_t)n * OC + o];
            dbias[o] += sum;
        }
    }
}

// Causal self-attention with the per-head entropy measured in the same pass.
// inp (B,T,3C) holds q,k,v; preatt, att (B,NH,T,T) keep the scaled scores and the softmax;
// out (B,T,C). If entropy_sum is given, entropy_sum[h] += sum over b and t of the row entropy
// H_t = -sum_j p_tj ln p_tj (nats). The softmax keeps m = max s_j, l = sum e^(s_j - m) and one
// more sum u = sum e^(s_j - m) (s_j - m), and then H = ln l - u / l: no log per element, and
// centred on m so that large scores do not cancel (derived in doc/attention-entropy.md).
// Returns the number of non-finite attention scores (the NaN guard's count for this layer).
// fp16 (--fp16-autocast): scores and the probabilities entering P V rounded as fp16 autocast
// rounds them (fp16.h), so a score above 65504 is inf and its softmax row NaN, as on a GPU.
// The paper's metrics, when given (NH each, summed over b): nan_entries[h] += T per NaN row
// (PyTorch's softmax fills the whole row of T with NaN), entropy_nansum[h] += H_t with a NaN row
// counted as 0 (torch.nansum of p ln p, the authors' entropy).
long attention_forward(float* out, float* preatt, float* att, double* entropy_sum, const float* inp,
                       int B, int T, int C, int NH, bool fp16 = false, double* entropy_nansum = NULL,
                       long* nan_entries = NULL) {
    int C3 = 3 * C, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    long nonfinite = 0;
    std::vector<double> head_entropy((size_t)B * NH, 0.0), head_nansum((size_t)B * NH, 0.0);
    std::vector<long> head_nan((size_t)B * NH, 0);
    // parallel over (b, h): each pair owns its rows, so the entropy sums need no atomics
    #pragma omp parallel for collapse(2) reduction(+ : nonfinite)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            double entropy_bh = 0.0, nansum_bh = 0.0;
            long nan_bh = 0;
            for (int t = 0; t < T; t++) {
                const float* q = inp + (size_t)(b * T + t) * C3 + h * hs;
                float* s = preatt + (((size_t)b * NH + h) * T + t) * T;
                float* p = att + (((size_t)b * NH + h) * T + t) * T;
                // scores s_j = q.k_j / sqrt(hs) for j <= t (the causal row)
                float maxval = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    const float* k = inp + (size_t)(b * T + j) * C3 + h * hs + C;
                    float dot = 0.0f;
                    for (int i = 0; i < hs; i++) dot += q[i] * k[i];
                    dot = fp16 ? fp16_score(dot, hs) : dot * scale;
                    s[j] = dot;
                    if (!std::isfinite(dot)) nonfinite++;
                    if (dot > maxval) maxval = dot;
                }
                // softmax with the two running sums l and u
                float l = 0.0f, u = 0.0f;
                for (int j = 0; j <= t; j++) {
                    float centred = s[j] - maxval;
                    float e = expf(centred);
                    p[j] = e;
                    l += e;
                    if (e != 0.0f) u += e * centred;  // a -inf score (fp16 overflow) has p = 0: 0 ln 0 = 0, not 0 * -inf
                }
                float inv_l = 1.0f / l;
                for (int j = 0; j <= t; j++) p[j] *= inv_l;
                for (int j = t + 1; j < T; j++) p[j] = 0.0f;  // masked: keeps the backward simple
                float row_entropy = logf(l) - u * inv_l;
                entropy_bh += row_entropy;
                if (std::isnan(l)) nan_bh += T;
                else nansum_bh += row_entropy;
                // out_t = sum_j p_j v_j
                float* o = out + (size_t)(b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int j = 0; j <= t; j++) {
                    const float* v = inp + (size_t)(b * T + j) * C3 + h * hs + 2 * C;
                    float pj = fp16 ? round_fp16(p[j]) : p[j];  // autocast: P cast to V's fp16
                    for (int i = 0; i < hs; i++) o[i] += pj * v[i];
                }
            }
            head_entropy[(size_t)b * NH + h] = entropy_bh;
            head_nansum[(size_t)b * NH + h] = nansum_bh;
            head_nan[(size_t)b * NH + h] = nan_bh;
        }
    }
    // per head, summed over b in order (bit-reproducible whatever the threads)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t bh = (size_t)b * NH + h;
            if (entropy_sum) entropy_sum[h] += head_entropy[bh];
            if (entropy_nansum) entropy_nansum[h] += head_nansum[bh];
            if (nan_entries) nan_entries[h] += head_nan[bh];
        }
    }
    return nonfinite;
}

// dinp (B,T,3C) += gradient of attention; datt, dpreatt (B,NH,T,T) are scratch (overwritten).
void attention_backward(float* dinp, float* dpreatt, float* datt, const float* dout, const float* inp,
                        const float* att, int B, int T, int C, int NH) {
    int C3 = 3 * C, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    // parallel over (b, h): a head's dq, dk, dv slices belong to it alone
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float* p = att + (((size_t)b * NH + h) * T + t) * T;
                float* dp = datt + (((size_t)b * NH + h) * T + t) * T;
                float* ds = dpreatt + (((size_t)b * NH + h) * T + t) * T;
                const float* dout_t = dout + (size_t)(b * T + t) * C + h * hs;
                // through out_t = sum_j p_j v_j: dp_j = dout_t . v_j, dv_j += p_j dout_t
                for (int j = 0; j <= t; j++) {
                    const float* v = inp + (size_t)(b * T + j) * C3 + h * hs + 2 * C;
                    float* dv = dinp + (size_t)(b * T + j) * C3 + h * hs + 2 * C;
                    float dot = 0.0f;
                    for (int i = 0; i < hs; i++) {
                        dot += v[i] * dout_t[i];
                        dv[i] += p[j] * dout_t[i];
                    }
                    dp[j] = dot;
                }
                // through the softmax: ds_j = p_j (dp_j - sum_k p_k dp_k)
                float pdp = 0.0f;
                for (int j = 0; j <= t; j++) pdp += p[j] * dp[j];
                for (int j = 0; j <= t; j++) ds[j] = p[j] * (dp[j] - pdp);
                // through s_j = q.k_j * scale
                const float* q = inp + (size_t)(b * T + t) * C3 + h * hs;
                float* dq = dinp + (size_t)(b * T + t) * C3 + h * hs;
                for (int j = 0; j <= t; j++) {
                    const float* k = inp + (size_t)(b * T + j) * C3 + h * hs + C;
                    float* dk = dinp + (size_t)(b * T + j) * C3 + h * hs + C;
                    float g = ds[j] * scale;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += k[i] * g;
                        dk[i] += q[i] * g;
                    }
                }
            }
        }
    }
}

#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

// f = act(h) elementwise over N values. Returns the number of non-finite outputs.
long activation_forward(float* out, const float* inp, size_t N, int act, float slope) {
    long nonfinite = 0;
    #pragma omp parallel for reduction(+ : nonfinite)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i], y;
        switch (act) {
            case ACT_GELU: y = 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); break;
            case ACT_GELU_TANH: y = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x))); break;
            case ACT_RELU: y = x < 0.0f ? 0.0f : x; break;  // NaN stays NaN, as torch.relu
            case ACT_LRELU: case ACT_LRELU_LAYER: case ACT_LRELU_GLOBAL: y = x >= 0.0f ? x : slope * x; break;
            default: y = x; break;  // identity
        }
        out[i] = y;
        if (!std::isfinite(y)) nonfinite++;
    }
    return nonfinite;
}

// dinp += act'(h) * dout. For a learnable slope, returns dL/dslope = sum over h < 0 of h * dout
// (else 0), summed in fixed blocks and then in order so that runs are bit-reproducible.
double activation_backward(float* dinp, const float* inp, const float* dout, size_t N, int act, float slope) {
    const size_t BLOCK = 4096;
    size_t nblocks = (N + BLOCK - 1) / BLOCK;
    std::vector<double> slope_grad(act_is_learnable(act) ? nblocks : 0, 0.0);
    #pragma omp parallel for
    for (size_t blk = 0; blk < nblocks; blk++) {
        double ds = 0.0;
        size_t end = std::min(N, (blk + 1) * BLOCK);
        for (size_t i = blk * BLOCK; i < end; i++) {
            float x = inp[i], d;
            switch (act) {
                case ACT_GELU: {
                    float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
                    float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;  // 1/sqrt(2 pi)
                    d = cdf + x * pdf;
                    break;
                }
                case ACT_GELU_TANH: {
                    float cube = 0.044715f * x * x * x;
                    float th = tanhf(GELU_SCALE * (x + cube));
                    float sech2 = 1.0f - th * th;
                    d = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
                    break;
                }
                case ACT_RELU: d = x > 0.0f ? 1.0f : 0.0f; break;  // 0 at exactly 0, as PyTorch
                case ACT_LRELU: case ACT_LRELU_LAYER: case ACT_LRELU_GLOBAL:
                    d = x >= 0.0f ? 1.0f : slope;
                    if (x < 0.0f) ds += (double)x * dout[i];
                    break;
                default: d = 1.0f; break;
            }
            dinp[i] += d * dout[i];
        }
        if (act_is_learnable(act)) slope_grad[blk] = ds;
    }
    double total = 0.0;
    for (double g : slope_grad) total += g;
    return total;
}

void residual_forward(float* out, const float* a, const float* b, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void residual_backward(float* da, float* db, const float* dout, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

// probs (B,T,Vp) = softmax over the first V logits; the padded columns get probability 0.
void softmax_forward(float* probs, const float* logits, int B, int T, int V, int Vp) {
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        const float* x = logits + (size_t)bt * Vp;
        float* p = probs + (size_t)bt * Vp;
        float maxval = -INFINITY;
        // a compare rather than fmaxf, which the compiler leaves as a library call per element;
        // NaN logits are skipped either way
        #pragma omp simd reduction(max : maxval)
        for (int i = 0; i < V; i++) maxval = x[i] > maxval ? x[i] : maxval;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) {
            p[i] = expf(x[i] - maxval);
            sum += p[i];
        }
        float inv_sum = 1.0f / sum;
        #pragma omp simd
        for (int i = 0; i < V; i++) p[i] *= inv_sum;
        for (int i = V; i < Vp; i++) p[i] = 0.0f;
    }
}

// losses (B,T) = -ln probs[target]
void crossentropy_forward(float* losses, const float* probs, const int* targets, int B, int T, int Vp) {
    for (int bt = 0; bt < B * T; bt++) losses[bt] = -logf(probs[(size_t)bt * Vp + targets[bt]]);
}

// dlogits (B,T,Vp) = (probs - onehot(target)) * dloss; 0 in the padded columns. The only
// backward that overwrites rather than accumulates: the logits feed nothing else, and skipping
// the zeroing of this largest buffer saves a pass over B*T*Vp floats.
void crossentropy_softmax_backward(float* dlogits, const float* probs, const int* targets, float dloss,
                                   int B, int T, int V, int Vp) {
    #pragma omp parallel for
    for (int bt = 0; bt < B * T; bt++) {
        float* dl = dlogits + (size_t)bt * Vp;
        const float* p = probs + (size_t)bt * Vp;
        for (int i = 0; i < V; i++) dl[i] = p[i] * dloss;
        dl[targets[bt]] -= dloss;
        for (int i = V; i < Vp; i++) dl[i] = 0.0f;
    }
}

// ----------------------------------------------------------------------------
// Diagnostics (--diag-every, diag.h): read-only passes over tensors the forward keeps anyway
// (each layer's input, its scores preatt, its FFN pre-activations fch), run after the forward of a
// diagnostic step only, so the layers above stay as they are. The work is cut into pieces (a block
// of a tensor, or one head's scores) that go through ONE parallel loop: a parallel region per
// tensor cost more than the sums themselves on a busy machine, as each region's barrier waits for
// every thread. Partial sums are added in piece order, so runs are bit-reproducible.
struct DiagPiece {
    int layer, kind;   // kind DIAG_RESID_SQ or DIAG_FFN_SQ: a block of values; DIAG_SCORE_SUM: one head's (T, T) scores
    const float* x;
    size_t n;          // values in the block, or T
};

struct DiagPartial {
    double a, b;       // squares and negatives, or sum and squares of the scores
    float max;         // largest score
};

void diag_add_blocks(std::vector<DiagPiece>* pieces, int layer, int kind, const float* x, size_t N) {
    const size_t BLOCK = 1 << 14;
    for (size_t i = 0; i < N; i += BLOCK) pieces->push_back({layer, kind, x + i, std::min(BLOCK, N - i)});
}

DiagPartial diag_piece(const DiagPiece& p) {
    DiagPartial r = {0.0, 0.0, -INFINITY};
    if (p.kind != DIAG_SCORE_SUM) {
        long neg = 0;
        for (size_t i = 0; i < p.n; i++) {
            r.a += (double)p.x[i] * p.x[i];
            neg += p.x[i] < 0.0f;
        }
        r.b = (double)neg;
        return r;
    }
    int T = (int)p.n;
    for (int t = 0; t < T; t++) {
        const float* s = p.x + (size_t)t * T;
        for (int j = 0; j <= t; j++) {  // the causal entries only
            r.a += s[j];
            r.b += (double)s[j] * s[j];
            if (s[j] > r.max) r.max = s[j];
        }
    }
    return r;
}

// Adds one forward's diagnostics to sums (L, DIAG_SUMS). encoded (B,T,C) and residual3
// (L,B,T,C) give each layer's input; preatt (L,B,NH,T,T); fch (L,B,T,4C).
void diag_forward(double* sums, const float* encoded, const float* residual3, const float* preatt, const float* fch, int L,
                  int B, int T, int C, int NH) {
    size_t BTC = (size_t)B * T * C;
    std::vector<DiagPiece> pieces;
    for (int l = 0; l < L; l++) {
        diag_add_blocks(&pieces, l, DIAG_RESID_SQ, l == 0 ? encoded : residual3 + (l - 1) * BTC, BTC);
        for (int bh = 0; bh < B * NH; bh++)
            pieces.push_back({l, DIAG_SCORE_SUM, preatt + ((size_t)l * B * NH + bh) * T * T, (size_t)T});
        diag_add_blocks(&pieces, l, DIAG_FFN_SQ, fch + l * 4 * BTC, 4 * BTC);
    }
    std::vector<DiagPartial> part(pieces.size());
    #pragma omp parallel for schedule(dynamic, 4)
    for (size_t i = 0; i < pieces.size(); i++) part[i] = diag_piece(pieces[i]);
    for (size_t i = 0; i < pieces.size(); i++) {
        double* ds = sums + (size_t)pieces[i].layer * DIAG_SUMS;
        switch (pieces[i].kind) {
            case DIAG_RESID_SQ: ds[DIAG_RESID_SQ] += part[i].a; break;
            case DIAG_FFN_SQ: ds[DIAG_FFN_SQ] += part[i].a; ds[DIAG_FFN_NEG] += part[i].b; break;
            default:
                ds[DIAG_SCORE_SUM] += part[i].a;
                ds[DIAG_SCORE_SQ] += part[i].b;
                if (part[i].max > ds[DIAG_SCORE_MAX]) ds[DIAG_SCORE_MAX] = part[i].max;
        }
    }
}

// ----------------------------------------------------------------------------
// The model. The parameters are ParameterTensors<float> (config.h, shared with the CUDA trainer):
// the 16 tensors of llm.c's file plus the learnable slopes, views into one block laid out exactly
// as the model file.

#define NUM_ACTIVATION_TENSORS 23
struct ActivationTensors {
    float* encoded;    // (B, T, C)
    float* ln1;        // (L, B, T, C)   empty when the blocks have no LayerNorm
    float* ln1_mean;   // (L, B, T)
    float* ln1_rstd;   // (L, B, T)
    float* qkv;        // (L, B, T, 3C)
    float* atty;       // (L, B, T, C)
    float* preatt;     // (L, B, NH, T, T)
    float* att;        // (L, B, NH, T, T)
    float* attproj;    // (L, B, T, C)
    float* residual2;  // (L, B, T, C)
    float* ln2;        // (L, B, T, C)   empty when the blocks have no LayerNorm
    float* ln2_mean;   // (L, B, T)
    float* ln2_rstd;   // (L, B, T)
    float* fch;        // (L, B, T, 4C)  FFN pre-activation h
    float* fch_act;    // (L, B, T, 4C)  f = act(h)
    float* fcproj;     // (L, B, T, C)
    float* residual3;  // (L, B, T, C)
    float* lnf;        // (B, T, C)      empty with --norm none-all
    float* lnf_mean;   // (B, T)
    float* lnf_rstd;   // (B, T)
    float* logits;     // (B, T, Vp)
    float* probs;      // (B, T, Vp)
    float* losses;     // (B, T)
};

// for_grads: the gradient buffers need no probs or losses.
void fill_activation_sizes(size_t* s, const GPT2Config& c, int B, int T, bool for_grads = false) {
    size_t C = c.channels, NH = c.num_heads, L = c.num_layers, Vp = c.padded_vocab_size, BT = (size_t)B * T;
    bool block_ln = c.variant.norm == NORM_LN, final_ln = c.variant.norm != NORM_NONE_ALL;
    s[0] = BT * C;
    s[1] = block_ln ? L * BT * C : 0;
    s[2] = block_ln ? L * BT : 0;
    s[3] = block_ln ? L * BT : 0;
    s[4] = L * BT * 3 * C;
    s[5] = L * BT * C;
    s[6] = L * B * NH * T * T;
    s[7] = L * B * NH * T * T;
    s[8] = L * BT * C;
    s[9] = L * BT * C;
    s[10] = block_ln ? L * BT * C : 0;
    s[11] = block_ln ? L * BT : 0;
    s[12] = block_ln ? L * BT : 0;
    s[13] = L * BT * 4 * C;
    s[14] = L * BT * 4 * C;
    s[15] = L * BT * C;
    s[16] = L * BT * C;
    s[17] = final_ln ? BT * C : 0;
    s[18] = final_ln ? BT : 0;
    s[19] = final_ln ? BT : 0;
    s[20] = BT * Vp;
    s[21] = for_grads ? 0 : BT * Vp;
    s[22] = for_grads ? 0 : BT;
}
#define LOGITS_TENSOR 20

float* alloc_activations(ActivationTensors* a, const size_t sizes[NUM_ACTIVATION_TENSORS]) {
    size_t total = 0;
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) total += sizes[i];
    float* memory = (float*)calloc_or_fail(total, sizeof(float), "activations");
    float** ptrs[NUM_ACTIVATION_TENSORS] = {
        &a->encoded, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->atty, &a->preatt, &a->att,
        &a->attproj, &a->residual2, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_act,
        &a->fcproj, &a->residual3, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->logits, &a->probs, &a->losses};
    float* p = memory;
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) {
        *ptrs[i] = p;
        p += sizes[i];
    }
    return memory;
}

struct GPT2 {
    GPT2Config config;
    size_t param_sizes[NUM_ALL_TENSORS];
    size_t num_params;     // all parameters, slopes included (the optimizer's view)
    int num_slopes;
    ParameterTensors<float> params;
    float* params_memory;
    ParameterTensors<float> grads;
    float* grads_memory;
    float* m_memory;       // AdamW first moment
    float* v_memory;       // AdamW second moment
    // activations, allocated on the first forward for (B, T) and reused for anything smaller
    ActivationTensors acts;
    float* acts_memory;
    ActivationTensors grads_acts;
    float* grads_acts_memory;
    int alloc_B, alloc_T;  // the activation buffers' size
    int batch_size, seq_len;  // the last forward's B and T
    const int* inputs;     // the last forward's tokens and targets (the backward reads them)
    const int* targets;
    float mean_loss;       // of the last forward with targets
    // measurements of the training forward passes since measurements_reset()
    bool measure;          // off for validation and sampling
    bool want_entropy;     // per-head entropy costs one log per row: only on logging steps
    std::vector<double> entropy_sum;  // (L, NH): sum of row entropies
    long entropy_rows;                // rows summed per head
    std::vector<long> nonfinite_att;  // (L) non-finite attention scores
    std::vector<long> nonfinite_ffn;  // (L) non-finite FFN activations
    bool want_diag;                   // diagnostics (diag.h): only on --diag-every steps
    std::vector<double> diag_sums;    // (L, DIAG_SUMS)
    long diag_passes;                 // forward passes summed
    // the paper's fp16 regime and metrics (fp16.h, doc/fp16-and-nans.md)
    bool fp16;                             // --fp16-autocast: round where fp16 autocast rounds
    std::vector<double> entropy_nansum;    // (L, NH): row entropies, NaN rows as 0
    std::vector<long> nan_entries;         // (L, NH): NaN attention probabilities (T per NaN row)
};

void gpt2_allocate(GPT2* model, const GPT2Config& c) {
    validate_config_or_fail(c, "model");  // every way of building a model passes here
    model->config = c;
    fill_param_sizes(model->param_sizes, c);
    model->num_slopes = (int)model->param_sizes[SLOPE_TENSOR];
    model->num_params = count_params(c, true);
    model->params_memory = (float*)calloc_or_fail(model->num_params, sizeof(float), "parameters");
    point_parameters(&model->params, model->params_memory, model->param_sizes);
    model->grads_memory = NULL;
    model->m_memory = NULL;
    model->v_memory = NULL;
    model->acts_memory = NULL;
    model->grads_acts_memory = NULL;
    model->alloc_B = model->alloc_T = 0;
    model->batch_size = model->seq_len = 0;
    model->mean_loss = -1.0f;
    model->measure = false;
    model->want_entropy = false;
    model->entropy_sum.assign((size_t)c.num_layers * c.num_heads, 0.0);
    model->entropy_rows = 0;
    model->nonfinite_att.assign(c.num_layers, 0);
    model->nonfinite_ffn.assign(c.num_layers, 0);
    model->want_diag = false;
    model->diag_sums.assign((size_t)c.num_layers * DIAG_SUMS, 0.0);
    model->diag_passes = 0;
    diag_reset(model->diag_sums.data(), c.num_layers);
    model->fp16 = false;
    model->entropy_nansum.assign((size_t)c.num_layers * c.num_heads, 0.0);
    model->nan_entries.assign((size_t)c.num_layers * c.num_heads, 0);
}

// From a model file; --norm/--act (variant_flags) override what it records.
void gpt2_build_from_file(GPT2* model, const char* path, const TrainConfig* flags) {
    GPT2Config c;
    int stored_slopes;
    FILE* f = open_model_file(path, &c, &stored_slopes);
    int file_act = c.variant.act;
    if (flags) apply_variant_flags(*flags, &c.variant);
    gpt2_allocate(model, c);
    read_model_params(f, path, c, stored_slopes, file_act, model->params_memory);
    fclose(f);
}

// From scratch with llm.c's initialisation (config.h: init_params_random): N(0, 0.02) weights,
// residual projections scaled by 1/sqrt(2L), zero biases, unit LayerNorm weights; learnable
// slopes start at S0.
void gpt2_build_from_random(GPT2* model, const GPT2Config& c, uint64_t seed) {
    gpt2_allocate(model, c);
    init_params_random(model->params_memory, model->param_sizes, c, seed);
}

void gpt2_measurements_reset(GPT2* model) {
    std::fill(model->entropy_sum.begin(), model->entropy_sum.end(), 0.0);
    model->entropy_rows = 0;
    std::fill(model->nonfinite_att.begin(), model->nonfinite_att.end(), 0);
    std::fill(model->nonfinite_ffn.begin(), model->nonfinite_ffn.end(), 0);
    diag_reset(model->diag_sums.data(), model->config.num_layers);
    model->diag_passes = 0;
    std::fill(model->entropy_nansum.begin(), model->entropy_nansum.end(), 0.0);
    std::fill(model->nan_entries.begin(), model->nan_entries.end(), 0);
}

// The paper's metrics (L, NH) of the measured passes: the mean entropy with NaN rows as 0, and
// the NaN probabilities of one forward pass (a micro-batch of B sequences), averaged over passes.
void gpt2_paper_metrics(const GPT2* model, float* entropy_nansum, float* nan_entries) {
    const int n = (int)model->entropy_nansum.size(), T = model->seq_len;
    std::vector<double> sums(2 * (size_t)n);  // paper_metrics' layout: entropy sums, then NaN rows
    for (int i = 0; i < n; i++) {
        sums[i] = model->entropy_nansum[i];
        sums[n + i] = (double)model->nan_entries[i] / T;  // T entries per NaN row
    }
    paper_metrics(n, sums.data(), (double)model->entropy_rows, (double)model->batch_size * T, T, entropy_nansum, nan_entries);
}

// Per-head mean entropy (L, NH) of the measured passes.
void gpt2_entropies(const GPT2* model, float* out) {
    for (size_t i = 0; i < model->entropy_sum.size(); i++)
        out[i] = model->entropy_rows > 0 ? (float)(model->entropy_sum[i] / model->entropy_rows) : 0.0f;
}

// The slope of layer l (the one global slope, or the fixed one).
inline float layer_slope(const GPT2* model, int l) {
    int act = model->config.variant.act;
    if (act == ACT_LRELU_LAYER) return model->params.slopes[l];
    if (act == ACT_LRELU_GLOBAL) return model->params.slopes[0];
    return model->config.variant.slope;
}

// Layer l's slices of the per-layer tensors in `a` (the activations, or their gradients in
// grads_acts), laid out by the current batch's B*T, as the forward writes them and the backward
// reads them. Without block LayerNorms the "normalized" inputs ARE the residual stream (aliased,
// not copied): ln1 is the layer's input and ln2 is residual2, so their gradients land straight
// in the residual's.
struct LayerActs {
    float* residual;   // (B, T, C)      the layer's input: encoded, or residual3 of layer l-1
    float* ln1;        // (B, T, C)      = residual without block LayerNorms
    float* ln1_mean;   // (B, T)         NULL without block LayerNorms
    float* ln1_rstd;   // (B, T)         NULL without block LayerNorms
    float* qkv;        // (B, T, 3C)
    float* atty;       // (B, T, C)
    float* preatt;     // (B, NH, T, T)
    float* att;        // (B, NH, T, T)
    float* attproj;    // (B, T, C)
    float* residual2;  // (B, T, C)
    float* ln2;        // (B, T, C)      = residual2 without block LayerNorms
    float* ln2_mean;   // (B, T)         NULL without block LayerNorms
    float* ln2_rstd;   // (B, T)         NULL without block LayerNorms
    float* fch;        // (B, T, 4C)     FFN pre-activation h
    float* fch_act;    // (B, T, 4C)     f = act(h)
    float* fcproj;     // (B, T, C)
    float* residual3;  // (B, T, C)      the layer's output
};

LayerActs layer_acts(const ActivationTensors& a, int l, bool block_ln, int B, int T, int C, int NH) {
    size_t BT = (size_t)B * T, BTC = BT * C, BHTT = (size_t)B * NH * T * T;
    LayerActs la;
    la.residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BTC;
    la.ln1 = block_ln ? a.ln1 + l * BTC : la.residual;
    la.ln1_mean = block_ln ? a.ln1_mean + l * BT : NULL;
    la.ln1_rstd = block_ln ? a.ln1_rstd + l * BT : NULL;
    la.qkv = a.qkv + l * BTC * 3;
    la.atty = a.atty + l * BTC;
    la.preatt = a.preatt + l * BHTT;
    la.att = a.att + l * BHTT;
    la.attproj = a.attproj + l * BTC;
    la.residual2 = a.residual2 + l * BTC;
    la.ln2 = block_ln ? a.ln2 + l * BTC : la.residual2;
    la.ln2_mean = block_ln ? a.ln2_mean + l * BT : NULL;
    la.ln2_rstd = block_ln ? a.ln2_rstd + l * BT : NULL;
    la.fch = a.fch + l * BTC * 4;
    la.fch_act = a.fch_act + l * BTC * 4;
    la.fcproj = a.fcproj + l * BTC;
    la.residual3 = a.residual3 + l * BTC;
    return la;
}

// Activation buffers for batches up to (B, T); smaller forwards (sampling) reuse them.
void gpt2_allocate_activations(GPT2* model, int B, int T) {
    size_t sizes[NUM_ACTIVATION_TENSORS];
    fill_activation_sizes(sizes, model->config, B, T);
    model->acts_memory = alloc_activations(&model->acts, sizes);
    model->alloc_B = B;
    model->alloc_T = T;
}

// inputs, targets (B, T); targets may be NULL (no loss). B and T may be smaller than the
// first call's: the buffers are laid out by the current B*T.
void gpt2_forward(GPT2* model, const int* inputs, const int* targets, int B, int T) {
    const GPT2Config& cfg = model->config;
    int V = cfg.vocab_size, Vp = cfg.padded_vocab_size, L = cfg.num_layers, NH = cfg.num_heads, C = cfg.channels;
    if (T > cfg.max_seq_len) fail("sequence length %d is longer than the model's maximum %d (use a smaller -t)", T, cfg.max_seq_len);
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= V || (targets && (targets[i] < 0 || targets[i] >= V)))
            fail("token id outside the vocabulary of %d at position %d", V, i);
    }
    if (model->acts_memory == NULL) gpt2_allocate_activations(model, B, T);
    if (B > model->alloc_B || T > model->alloc_T)
        fail("internal: forward with B=%d T=%d, larger than the allocated B=%d T=%d", B, T, model->alloc_B, model->alloc_T);
    model->batch_size = B;
    model->seq_len = T;
    model->inputs = inputs;
    model->targets = targets;
    ParameterTensors<float>& p = model->params;
    ActivationTensors& a = model->acts;
    bool block_ln = cfg.variant.norm == NORM_LN;
    size_t BTC = (size_t)B * T * C;
    bool measuring = model->measure;
    bool entropy = measuring && model->want_entropy;
    bool diag = measuring && model->want_diag;
    // --fp16-autocast: every tensor that the authors' GPT-2 holds in fp16 under autocast is rounded
    // (layer outputs, the residual stream they add into; LayerNorm and the loss stay fp32)
    bool fp16 = model->fp16;

    encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);  // (B,T,C)
    for (int l = 0; l < L; l++) {
        LayerActs la = layer_acts(a, l, block_ln, B, T, C, NH);
        // LN-free: no LayerNorms; la.ln1 and la.ln2 are the residual stream itself
        if (block_ln)
            layernorm_forward(la.ln1, la.ln1_mean, la.ln1_rstd, la.residual, p.ln1w + l * C, p.ln1b + l * C, B, T, C);
        matmul_forward(la.qkv, la.ln1, p.qkvw + (size_t)l * 3 * C * C, p.qkvb + l * 3 * C, B * T, C, 3 * C);
        if (fp16) round_fp16_array(la.qkv, BTC * 3);
        long bad_att = attention_forward(la.atty, la.preatt, la.att, entropy ? &model->entropy_sum[(size_t)l * NH] : NULL,
                                         la.qkv, B, T, C, NH, fp16, entropy ? &model->entropy_nansum[(size_t)l * NH] : NULL,
                                         entropy ? &model->nan_entries[(size_t)l * NH] : NULL);
        if (fp16) round_fp16_array(la.atty, BTC);
        matmul_forward(la.attproj, la.atty, p.attprojw + (size_t)l * C * C, p.attprojb + l * C, B * T, C, C);
        if (fp16) round_fp16_array(la.attproj, BTC);
        residual_forward(la.residual2, la.residual, la.attproj, BTC);
        if (fp16) round_fp16_array(la.residual2, BTC);
        if (block_ln)
            layernorm_forward(la.ln2, la.ln2_mean, la.ln2_rstd, la.residual2, p.ln2w + l * C, p.ln2b + l * C, B, T, C);
        matmul_forward(la.fch, la.ln2, p.fcw + (size_t)l * 4 * C * C, p.fcb + l * 4 * C, B * T, C, 4 * C);
        if (fp16) round_fp16_array(la.fch, BTC * 4);
        long bad_ffn = activation_forward(la.fch_act, la.fch, BTC * 4, cfg.variant.act, layer_slope(model, l));
        if (fp16) round_fp16_array(la.fch_act, BTC * 4);
        matmul_forward(la.fcproj, la.fch_act, p.fcprojw + (size_t)l * 4 * C * C, p.fcprojb + l * C, B * T, 4 * C, C);
        if (fp16) round_fp16_array(la.fcproj, BTC);
        residual_forward(la.residual3, la.residual2, la.fcproj, BTC);
        if (fp16) round_fp16_array(la.residual3, BTC);
        if (measuring) {
            model->nonfinite_att[l] += bad_att;
            model->nonfinite_ffn[l] += bad_ffn;
        }
    }
    if (entropy) model->entropy_rows += (long)B * T;
    if (diag) {  // every layer's input, scores and FFN pre-activations are still in memory
        diag_forward(model->diag_sums.data(), a.encoded, a.residual3, a.preatt, a.fch, L, B, T, C, NH);
        model->diag_passes++;
    }
    float* residual = a.residual3 + (L - 1) * BTC;
    float* lnf = residual;
    if (cfg.variant.norm != NORM_NONE_ALL) {
        lnf = a.lnf;
        layernorm_forward(lnf, a.lnf_mean, a.lnf_rstd, residual, p.lnfw, p.lnfb, B, T, C);
    }
    matmul_forward(a.logits, lnf, p.wte, NULL, B * T, C, Vp);  // tied: the LM head is wte
    if (fp16) round_fp16_array(a.logits, (size_t)B * T * Vp);
    softmax_forward(a.probs, a.logits, B, T, V, Vp);
    if (targets) {
        crossentropy_forward(a.losses, a.probs, targets, B, T, Vp);
        double sum = 0.0;
        for (int i = 0; i < B * T; i++) sum += a.losses[i];
        model->mean_loss = (float)(sum / (B * T));
    } else {
        model->mean_loss = -1.0f;
    }
}

void gpt2_zero_grad(GPT2* model) {
    if (model->grads_memory) memset(model->grads_memory, 0, model->num_params * sizeof(float));
}

// Adds the gradient of loss_scale * (mean loss of the last forward) to the parameter gradients.
// Gradient accumulation over k micro-batches uses loss_scale = 1/k.
void gpt2_backward(GPT2* model, float loss_scale) {
    const GPT2Config& cfg = model->config;
    if (model->mean_loss == -1.0f) fail("internal: backward without a forward that had targets");
    int B = model->batch_size, T = model->seq_len;  // the last forward's
    int V = cfg.vocab_size, Vp = cfg.padded_vocab_size, L = cfg.num_layers, NH = cfg.num_heads, C = cfg.channels;
    if (model->grads_memory == NULL) {
        model->grads_memory = (float*)calloc_or_fail(model->num_params, sizeof(float), "gradients");
        point_parameters(&model->grads, model->grads_memory, model->param_sizes);
        size_t sizes[NUM_ACTIVATION_TENSORS];
        fill_activation_sizes(sizes, cfg, model->alloc_B, model->alloc_T, true);
        model->grads_acts_memory = alloc_activations(&model->grads_acts, sizes);
    }
    // the gradient buffers accumulate, so they start at zero; dlogits (last) is overwritten
    size_t to_zero = 0, sizes[NUM_ACTIVATION_TENSORS];
    fill_activation_sizes(sizes, cfg, model->alloc_B, model->alloc_T, true);
    for (int i = 0; i < LOGITS_TENSOR; i++) to_zero += sizes[i];
    memset(model->grads_acts_memory, 0, to_zero * sizeof(float));

    ParameterTensors<float>& p = model->params;
    ParameterTensors<float>& g = model->grads;
    ActivationTensors& a = model->acts;
    ActivationTensors& ga = model->grads_acts;
    bool block_ln = cfg.variant.norm == NORM_LN;
    size_t BTC = (size_t)B * T * C;

    // classifier: d loss_mean / d logits, then the tied LM head
    crossentropy_softmax_backward(ga.logits, a.probs, model->targets, loss_scale / (B * T), B, T, V, Vp);
    float* residual = a.residual3 + (L - 1) * BTC;
    float* dresidual = ga.residual3 + (L - 1) * BTC;
    float* lnf = residual;
    float* dlnf = dresidual;
    if (cfg.variant.norm != NORM_NONE_ALL) {
        lnf = a.lnf;
        dlnf = ga.lnf;
    }
    matmul_backward(dlnf, g.wte, NULL, ga.logits, lnf, p.wte, B * T, C, Vp);
    if (cfg.variant.norm != NORM_NONE_ALL)
        layernorm_backward(dresidual, g.lnfw, g.lnfb, dlnf, residual, p.lnfw, a.lnf_mean, a.lnf_rstd, B, T, C);

    for (int l = L - 1; l >= 0; l--) {
        // layer l's activations and their gradients; the LN-free aliases hold for both, so
        // dla.ln1 is dla.residual and dla.ln2 is dla.residual2 there
        LayerActs la = layer_acts(a, l, block_ln, B, T, C, NH);
        LayerActs dla = layer_acts(ga, l, block_ln, B, T, C, NH);

        residual_backward(dla.residual2, dla.fcproj, dla.residual3, BTC);
        matmul_backward(dla.fch_act, g.fcprojw + (size_t)l * 4 * C * C, g.fcprojb + l * C, dla.fcproj, la.fch_act,
                        p.fcprojw + (size_t)l * 4 * C * C, B * T, 4 * C, C);
        double dslope = activation_backward(dla.fch, la.fch, dla.fch_act, BTC * 4, cfg.variant.act, layer_slope(model, l));
        if (cfg.variant.act == ACT_LRELU_LAYER) g.slopes[l] += (float)dslope;
        if (cfg.variant.act == ACT_LRELU_GLOBAL) g.slopes[0] += (float)dslope;
        matmul_backward(dla.ln2, g.fcw + (size_t)l * 4 * C * C, g.fcb + l * 4 * C, dla.fch, la.ln2,
                        p.fcw + (size_t)l * 4 * C * C, B * T, C, 4 * C);
        if (block_ln)
            layernorm_backward(dla.residual2, g.ln2w + l * C, g.ln2b + l * C, dla.ln2, la.residual2, p.ln2w + l * C,
                               la.ln2_mean, la.ln2_rstd, B, T, C);
        residual_backward(dla.residual, dla.attproj, dla.residual2, BTC);
        matmul_backward(dla.atty, g.attprojw + (size_t)l * C * C, g.attprojb + l * C, dla.attproj, la.atty,
                        p.attprojw + (size_t)l * C * C, B * T, C, C);
        attention_backward(dla.qkv, dla.preatt, dla.att, dla.atty, la.qkv, la.att, B, T, C, NH);
        matmul_backward(dla.ln1, g.qkvw + (size_t)l * 3 * C * C, g.qkvb + l * 3 * C, dla.qkv, la.ln1,
                        p.qkvw + (size_t)l * 3 * C * C, B * T, C, 3 * C);
        if (block_ln)
            layernorm_backward(dla.residual, g.ln1w + l * C, g.ln1b + l * C, dla.ln1, la.residual, p.ln1w + l * C,
                               la.ln1_mean, la.ln1_rstd, B, T, C);
    }
    encoder_backward(g.wte, g.wpe, ga.encoded, model->inputs, B, T, C);
}

// Sum of squares of the gradients [lo, hi) (slopes included), summed in fixed blocks for
// reproducibility.
double gpt2_grad_sumsq(const GPT2* model, size_t lo, size_t hi) {
    const size_t BLOCK = 1 << 16;
    size_t n = hi - lo, nblocks = (n + BLOCK - 1) / BLOCK;
    const float* g = model->grads_memory + lo;
    std::vector<double> partial(nblocks, 0.0);
    #pragma omp parallel for
    for (size_t blk = 0; blk < nblocks; blk++) {
        double s = 0.0;
        for (size_t i = blk * BLOCK; i < std::min(n, (blk + 1) * BLOCK); i++) s += (double)g[i] * g[i];
        partial[blk] = s;
    }
    double total = 0.0;
    for (double s : partial) total += s;
    return total;
}

// Global L2 norm of the gradients.
float gpt2_grad_norm(const GPT2* model) { return (float)sqrt(gpt2_grad_sumsq(model, 0, model->num_params)); }

// One AdamW step (t = 1, 2, ... counts applied updates), in the same order of operations as
// torch.optim.AdamW: decoupled decay, moment updates, bias-corrected step. grad_scale folds in
// gradient clipping. Weight decay touches matrices and embeddings only. Only the parameters
// [lo, hi) of the flat array change: a rank's ZeRO-1 slice (multiproc.h).
void gpt2_update(GPT2* model, float lr, float beta1, float beta2, float eps, float weight_decay, int t, float grad_scale,
                 size_t lo = 0, size_t hi = SIZE_MAX) {
    if (model->m_memory == NULL) {
        model->m_memory = (float*)calloc_or_fail(model->num_params, sizeof(float), "AdamW state");
        model->v_memory = (float*)calloc_or_fail(model->num_params, sizeof(float), "AdamW state");
    }
    double bias1 = 1.0 - pow((double)beta1, t);
    double bias2_sqrt = sqrt(1.0 - pow((double)beta2, t));
    float step_size = (float)(lr / bias1);
    float one_minus_beta1 = (float)(1.0 - (double)beta1), one_minus_beta2 = (float)(1.0 - (double)beta2);
    size_t offset = 0;
    for (int k = 0; k < NUM_ALL_TENSORS; k++) {
        size_t first = std::max(offset, lo), end = std::min(offset + model->param_sizes[k], hi);  // tensor k's part of [lo, hi)
        size_t n = end > first ? end - first : 0;
        float decay = param_tensor_decays(k) ? (float)(1.0 - (double)lr * weight_decay) : 1.0f;
        float* p = model->params_memory + first;
        float* gr = model->grads_memory + first;
        float* m = model->m_memory + first;
        float* v = model->v_memory + first;
        #pragma omp parallel for
        for (size_t i = 0; i < n; i++) {
            float grad = gr[i] * grad_scale;
            p[i] *= decay;
            m[i] = m[i] * beta1 + one_minus_beta1 * grad;
            v[i] = v[i] * beta2 + one_minus_beta2 * grad * grad;
            float denom = sqrtf(v[i]) / (float)bias2_sqrt + eps;
            p[i] -= step_size * (m[i] / denom);
        }
        offset += model->param_sizes[k];
    }
}

// ----------------------------------------------------------------------------
// Data parallelism (multiproc.h), ZeRO-1 shape: what a step adds to the single-process trainer
// when R ranks each run B sequences. Each rank's backward scaled its loss by 1/R, so the sum
// over ranks of the gradients is the gradient of the mean loss of all R*B sequences. With one
// rank every collective is a no-op and the numbers are the single-process ones, bit for bit.

// Sums the step's measurements over the ranks (the loss sum, the non-finite counts, and on
// logging steps the entropy sums and rows), then reduce-scatters the gradients: this rank's
// slice of grads_memory holds the global gradient, the rest is stale. Returns the global
// gradient norm (every rank's slice counted once).
float gpt2_reduce_step(GPT2* model, double* loss_sum, bool entropy, bool diag) {
    int L = model->config.num_layers;
    mp_sum(loss_sum, 1);
    mp_sum(model->nonfinite_att.data(), L);
    mp_sum(model->nonfinite_ffn.data(), L);
    if (entropy) {
        mp_sum(model->entropy_sum.data(), (int)model->entropy_sum.size());
        mp_sum(model->entropy_nansum.data(), (int)model->entropy_nansum.size());  // the paper's metrics
        mp_sum(model->nan_entries.data(), (int)model->nan_entries.size());
        mp_sum(&model->entropy_rows, 1);
    }
    if (diag) diag_reduce(model->diag_sums.data(), L, &model->diag_passes);
    mp_reduce_scatter_sum(model->grads_memory, model->num_params);
    size_t lo, hi;
    mp_slice(model->num_params, mp_rank(), mp_size(), &lo, &hi);
    double sumsq = gpt2_grad_sumsq(model, lo, hi);
    mp_sum(&sumsq, 1);
    return (float)sqrt(sumsq);
}

// AdamW on this rank's slice of the weights and moments, then every rank gathers all weights.
// The moments stay sliced (stale outside the slice) until a checkpoint gathers them.
void gpt2_update_sharded(GPT2* model, float lr, float beta1, float beta2, float eps, float weight_decay, int t,
                         float grad_scale) {
    size_t lo, hi;
    mp_slice(model->num_params, mp_rank(), mp_size(), &lo, &hi);
    gpt2_update(model, lr, beta1, beta2, eps, weight_decay, t, grad_scale, lo, hi);
    mp_all_gather(model->params_memory, model->num_params);
}

void gpt2_free(GPT2* model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->acts_memory);
    free(model->grads_acts_memory);
}

#ifndef TESTING
// ----------------------------------------------------------------------------
// Training

double now_seconds() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Mean loss over the first max_batches (global) batches of the validation set; each rank runs
// its slice of every batch.
float evaluate(GPT2* model, DataLoader* val, int max_batches) {
    dataloader_reset(val);
    int64_t n = dataloader_batches_per_epoch(val);
    if (max_batches > 0 && max_batches < n) n = max_batches;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        dataloader_next_batch(val);
        gpt2_forward(model, val->inputs, val->targets, val->B, val->T);
        sum += model->mean_loss;
    }
    mp_sum(&sum, 1);
    return (float)(sum / (n * mp_size()));
}

// Generates up to n tokens after the end-of-text token and prints them.
void sample(GPT2* model, const Tokenizer* tok, Rng* rng, int n) {
    int V = model->config.vocab_size, Vp = model->config.padded_vocab_size;
    n = std::min(n, model->alloc_T - 1);
    std::vector<int> tokens(n + 1, 0);
    tokens[0] = tok->eot_token < V ? tok->eot_token : 0;
    printf("sample: ");
    for (int t = 1; t <= n; t++) {
        gpt2_forward(model, tokens.data(), NULL, 1, t);
        int next = rng_categorical(rng, model->acts.probs + (size_t)(t - 1) * Vp, V);  // the last position's
        tokens[t] = next;
        printf("%s", tokenizer_decode(tok, next).c_str());
    }
    printf("\n");
}

bool params_finite(const GPT2* model) { return all_finite(model->params_memory, model->num_params); }

// Every rank calls this: the ranks' slices of the AdamW moments are gathered, then rank 0 alone
// writes the single-process files.
void save_checkpoint(GPT2* model, const std::string& dir, const TrainState& state) {
    if (model->m_memory) {
        mp_gather_to_root(model->m_memory, model->num_params);
        mp_gather_to_root(model->v_memory, model->num_params);
    }
    if (!mp_is_root()) return;
    std::string model_path = checkpoint_path(dir, "model", state.step, ".bin");
    std::string state_path = checkpoint_path(dir, "state", state.step, ".bin");
    write_model_file(model_path.c_str(), model->config, model->params_memory);
    write_state_file(state_path.c_str(), state, model->num_params - model->num_slopes, model->num_slopes,
                     model->m_memory, model->v_memory);
    write_done_marker(dir, state.step);
    printf("checkpoint: %s\n", model_path.c_str());
}

int main(int argc, char** argv) {
    mp_init(&argc, &argv);  // one process, or rank mp_rank() of mp_size() under mpirun (USE_MPI=1)
    TrainConfig cfg;
    parse_flags(argc, argv, &cfg);
    setvbuf(stdout, NULL, _IOLBF, 0);

    // the model: a checkpoint to resume, a model file, or a descriptor
    GPT2 model;
    TrainState state = {};
    ModelSource source = model_source(cfg);
    int resume_step = source.resume_step;  // -1: a fresh run
    if (source.path.empty()) gpt2_build_from_random(&model, source.config, (uint64_t)cfg.seed);
    else gpt2_build_from_file(&model, source.path.c_str(), &cfg);
    const GPT2Config& mc = model.config;
    int B = cfg.B, T = cfg.T, L = mc.num_layers, NH = mc.num_heads;

    // data, and the run's shape: grad_accum micro-batches of B x T tokens per step, `steps` steps
    DataLoader train, val;
    RunPlan plan = open_data(cfg, mc, &train, &val);
    long total_batch = plan.total_batch, steps = plan.steps;
    int grad_accum = plan.grad_accum;
    bool validating = plan.validating;
    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, find_tokenizer(cfg.train_pattern).c_str());
    rng_seed(&state.sample_rng, (uint64_t)cfg.seed + 1);

    // --fp16-autocast 1: fp16 rounding in the forward and GradScaler's dynamic loss scale (fp16.h)
    model.fp16 = cfg.fp16_autocast == 1;
    LossScaler scaler;

    // resume: optimizer, data position and RNGs exactly as they were
    if (resume_step >= 0) {
        std::string path = checkpoint_path(cfg.output_dir, "state", resume_step, ".bin");
        model.m_memory = (float*)calloc_or_fail(model.num_params, sizeof(float), "AdamW state");
        model.v_memory = (float*)calloc_or_fail(model.num_params, sizeof(float), "AdamW state");
        read_state_file(path.c_str(), resume_step, &state, model.num_params - model.num_slopes, model.num_slopes,
                        model.m_memory, model.v_memory);
        check_resume_step(plan, state.step, path.c_str());
        if (!model.fp16) state.scaler.present = 0;  // a loss scale is kept only under --fp16-autocast 1
        if (state.scaler.present) scaler = LossScaler{state.scaler.scale, state.scaler.clean_steps, state.scaler.overflows};
        dataloader_restore(&train, state.loader);
        printf("resumed from %s (step %d)\n", path.c_str(), state.step);
    }
    if (model.fp16) printf("fp16 autocast regime: on (dynamic loss scale %g)\n", scaler.scale);
    Logger logger;
    open_output(&logger, cfg, resume_step, model.num_slopes > 0);  // rank 0 only
    LRSchedule schedule = {cfg.schedule, cfg.lr, cfg.warmup, cfg.final_frac, (int)steps};

    print_run_config(cfg, mc, model.num_params, &train, plan);
    if (mp_size() > 1)
        printf("ranks: %d data-parallel, B=%d each (global batch %d sequences), ZeRO-1 slices of ~%zu parameters\n",
               mp_size(), B, B * mp_size(), model.num_params / mp_size());
#ifdef _OPENMP
    printf("threads: %d\n", omp_get_max_threads());
#endif

    std::vector<float> entropy((size_t)L * NH), paper_entropy((size_t)L * NH), paper_nan((size_t)L * NH);
    std::vector<float> diag_cols((size_t)L * DIAG_COLS);
    FILE* diag_file = diag_log_open(log_dir(cfg), cfg.diag_every, resume_step);  // rank 0 only
    bool params_ok = true;   // false once --on-nan log applied a non-finite update
    int last_checkpoint = resume_step;
    double total_time = 0.0;  // excludes the run's first step (warm-up)
    int timed_steps = 0, first_step = state.step;
    int exit_code = 0;
    gpt2_allocate_activations(&model, B, T);
    if (cfg.overfit_single_batch) load_overfit_batch(&train);
    for (int step = state.step; step <= steps; step++) {
        bool last = step == steps;
        if (validating && (step % cfg.val_every == 0 || last)) {
            model.measure = false;
            float val_loss = evaluate(&model, &val, cfg.val_max_steps);
            printf("val loss %.6f | perplexity %.4f (step %d)\n", val_loss, expf(val_loss), step);
            logger_val(&logger, step, val_loss);
        }
        if (!cfg.output_dir.empty() && step > 0 && step != last_checkpoint &&
            ((cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0) || last)) {
            if (params_ok && !params_finite(&model)) {
                params_ok = false;  // e.g. an update too large for fp32: the guard's loss and norm were finite
                printf("step %d: the parameters are non-finite after the update\n", step);
            }
            if (params_ok) {
                state.step = step;
                state.loader = train.state;
                state.scaler = LossScalerRecord{model.fp16 ? 1 : 0, scaler.scale, scaler.good_steps, scaler.skipped};
                save_checkpoint(&model, cfg.output_dir, state);
                last_checkpoint = step;
            } else {
                printf("checkpoint at step %d not written: the parameters are non-finite\n", step);
                if (cfg.on_nan == ON_NAN_STOP) {  // every rank holds the same parameters, so all stop here; rank 0 says why
                    if (mp_is_root())
                        fprintf(stderr, "error: non-finite parameters at step %d; stopped with --on-nan stop, last good checkpoint: %s\n",
                                step, last_checkpoint >= 0 ? checkpoint_path(cfg.output_dir, "model", last_checkpoint, ".bin").c_str() : "none");
                    exit_code = EXIT_NONFINITE;
                    break;
                }
            }
        }
        if (mp_is_root() && cfg.sample_every > 0 && step > 0 && (step % cfg.sample_every == 0 || last)) {
            model.measure = false;
            sample(&model, &tokenizer, &state.sample_rng, cfg.gen_tokens);
        }
        if (last) break;

        // one optimizer step: grad_accum micro-batches, then AdamW
        double t0 = now_seconds();
        bool log_entropy = cfg.entropy_every > 0 && step % cfg.entropy_every == 0;
        model.measure = true;
        model.want_entropy = log_entropy;
        bool log_diag = cfg.diag_every > 0 && step % cfg.diag_every == 0;
        model.want_diag = log_diag;
        gpt2_measurements_reset(&model);
        gpt2_zero_grad(&model);
        double loss_sum = 0.0;
        float loss_scale = model.fp16 ? scaler.scale : 1.0f;  // a power of 2: exact in fp32 unless it overflows
        for (int micro = 0; micro < grad_accum; micro++) {
            if (!cfg.overfit_single_batch) dataloader_next_batch(&train);
            gpt2_forward(&model, train.inputs, train.targets, B, T);
            gpt2_backward(&model, loss_scale / (grad_accum * mp_size()));
            loss_sum += model.mean_loss;
        }
        float norm = gpt2_reduce_step(&model, &loss_sum, log_entropy, log_diag) / loss_scale;  // over all ranks
        float loss = (float)(loss_sum / (grad_accum * mp_size()));
        // fp16 regime: Hugging Face's Trainer steps its LR scheduler only when GradScaler let the
        // optimizer step run, so the schedule follows the applied updates, not the steps
        float lr = lr_at(schedule, model.fp16 ? state.adam_t : step);
        long bad_values = 0;
        for (int l = 0; l < L; l++) bad_values += model.nonfinite_att[l] + model.nonfinite_ffn[l];
        bool forward_ok = std::isfinite(loss) && bad_values == 0;
        bool finite = forward_ok && std::isfinite(norm);
        // --fp16-autocast: a finite forward whose scaled gradients overflow is GradScaler's skip, not
        // a NaN-guard event (as the CUDA FP16 build, llmc/guard.cuh)
        bool overflow = model.fp16 && forward_ok && !finite;
        // every rank sees the same summed counts, so all take the same branch; rank 0 reports
        if (!finite && !overflow &&
            (mp_is_root() ? report_nonfinite(&logger, cfg, step, L, model.nonfinite_att.data(), model.nonfinite_ffn.data(),
                                             loss, lr, norm, last_checkpoint)
                          : cfg.on_nan == ON_NAN_STOP)) {
            exit_code = EXIT_NONFINITE;  // --on-nan stop: free everything on the way out
            break;
        }
        if (model.fp16 && (finite || overflow || cfg.on_nan == ON_NAN_SKIP)) {
            loss_scaler_update(&scaler, finite);  // GradScaler: skip and halve, or count towards growth
            if (!finite) printf("step %d: %s, update skipped, loss scale -> %g\n", step,
                                overflow ? "scaled gradients overflowed" : "non-finite forward", scaler.scale);
        }
        if (finite || (!overflow && cfg.on_nan == ON_NAN_LOG)) {
            state.adam_t++;
            gpt2_update_sharded(&model, lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, state.adam_t,
                                clip_scale(norm, cfg.grad_clip) / loss_scale);
            if (!finite) params_ok = false;
        } else {
            state.skipped++;
        }
        double dt = now_seconds() - t0;
        if (step > first_step) { total_time += dt; timed_steps++; }

        if (finite) logger_train(&logger, step, loss, lr, norm);
        if (log_entropy) {
            gpt2_entropies(&model, entropy.data());
            logger_entropy(&logger, step, L, NH, entropy.data());
            gpt2_paper_metrics(&model, paper_entropy.data(), paper_nan.data());
            logger_paper(&logger, step, L, NH, paper_nan.data(), paper_entropy.data());
            if (finite) logger_nonfinite(&logger, step, L, model.nonfinite_att.data(), model.nonfinite_ffn.data());
        }
        logger_slopes(&logger, step, model.num_slopes, L, model.params.slopes);
        logger_flush(&logger);
        print_step_line(step, steps, loss, lr, norm, dt, total_batch, state.skipped, "");
        if (log_entropy) print_entropy_summary(L, NH, entropy.data(), T);
        if (log_diag) {
            diag_finalize(model.diag_sums.data(), L, B, T, mc.channels, NH, model.diag_passes, diag_cols.data());
            diag_log(diag_file, step, L, diag_cols.data());
            diag_print(L, diag_cols.data());
        }
    }
    if (exit_code == 0 && timed_steps > 0)
        printf("average: %.2f ms/step, %.0f tok/s\n", total_time / timed_steps * 1000, total_batch * timed_steps / total_time);
    logger_close(&logger);
    diag_log_close(diag_file);
    dataloader_free(&train);
    if (validating) dataloader_free(&val);
    gpt2_free(&model);
    return exit_code;
}
#endif
