/*
dev/cuda/softmax_entropy.cu: the steps between a textbook softmax and the trainer's fused
attention-entropy kernel (entropy.cuh), one version per step, each validated against a
double-precision CPU reference. The derivation is doc/attention-entropy.md.

  version 1  online softmax alone: one thread per query row, one pass over the keys with a
             running max m and sum l; the output O rescaled when m moves. No entropy.
  version 2  + entropy with an UNCENTRED sum u = sum e^(s-m) s, H = m + ln l - u/l. Right in
             exact arithmetic and at small scores; at scores ~1e4 m - u/l cancels in fp32 and
             H is off by ~1e-3 nats. The lab shows that failure (it is expected).
  version 3  + entropy with the CENTRED sum u' = sum e^(s-m)(s-m), H = ln l - u'/l, rescaled
             u' <- alpha (u' + (m0 - m1) l) when the max moves from m0 to m1 (alpha = e^(m0-m1)).
  version 4  version 3 tiled as the trainer's SIMT kernel: a block per (sequence-head, 32 query
             rows), a warp per row, tiles of 32 keys and values in shared memory, one key per
             lane, the tile's max and sums by warp shuffles.
  next       dev/cuda/attention_entropy.cu: the trainer's kernels, SIMT and tensor cores.

Inputs are fp32 q, k, v of BH independent (sequence, head) pairs, head size 64, causal. Half of
the validation pairs have ordinary scores (~N(0, 1)); the other half share one large direction
in q and k, as an LN-free model's residual stream can, so their scores sit near 1e4 with a
spread of a few units (peaked rows). The inputs are chosen so that fp32 computes every score
exactly: what differs between the versions is the softmax and entropy arithmetic alone.

Build: make -f cuda.mk dev/cuda/softmax_entropy.out
Run:   ./dev/cuda/softmax_entropy.out [version (0 = all)] [BH for timing (1536; 0: validation only)] [T (128)]
CPU:   dev/cuda/emu/run.sh FP32 softmax_entropy 0 0 64     (the emulator, validation only)
*/
#include <vector>
#include "../../common.h"
#include "../../rng.h"
#include "../../llmc/cuda_common.cuh"

#define HS 64       // head size (GPT-2's)
#define KT 32       // keys per tile in version 4 (one per lane)
#define QT 32       // query rows per block in version 4
#define WARPS 8

// ----------------------------------------------------------------------------
// CPU reference (double, two passes): out (BH, T, HS), lse and H (BH, T)

void reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, int BH,
               int T, std::vector<double>& out, std::vector<double>& lse, std::vector<double>& H) {
    const double scale = 1.0 / sqrt((double)HS);
    out.assign((size_t)BH * T * HS, 0.0);
    lse.assign((size_t)BH * T, 0.0);
    H.assign((size_t)BH * T, 0.0);
    std::vector<double> s(T);
    for (int bh = 0; bh < BH; bh++)
        for (int t = 0; t < T; t++) {
            const size_t row = (size_t)bh * T + t;
            double m = -INFINITY, l = 0.0, h = 0.0;
            for (int j = 0; j <= t; j++) {
                double dot = 0.0;
                for (int d = 0; d < HS; d++) dot += (double)q[row * HS + d] * k[((size_t)bh * T + j) * HS + d];
                s[j] = dot * scale;
                m = fmax(m, s[j]);
            }
            for (int j = 0; j <= t; j++) l += exp(s[j] - m);
            for (int j = 0; j <= t; j++) {
                double p = exp(s[j] - m) / l;
                if (p > 0) h -= p * log(p);
                for (int d = 0; d < HS; d++) out[row * HS + d] += p * v[((size_t)bh * T + j) * HS + d];
            }
            lse[row] = m + log(l);
            H[row] = h;
        }
}

// ----------------------------------------------------------------------------
// versions 1-3: one thread per query row (bh, t); out (BH, T, HS), lse, H (BH, T)

enum EntropySum { NO_ENTROPY, UNCENTRED, CENTRED };

template <EntropySum MODE>
__global__ void softmax_rows(float* out, float* lse, float* H, const float* q, const float* k, const float* v,
                             int BH, int T) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= BH * T) return;
    const int t = idx % T, bh = idx / T;
    const float scale = 1.0f / sqrtf((float)HS);
    const float* qt = q + (size_t)idx * HS;
    float m = -INFINITY, l = 0.0f, u = 0.0f, o[HS];
    for (int d = 0; d < HS; d++) o[d] = 0.0f;
    for (int j = 0; j <= t; j++) {
        const float* kj = k + ((size_t)bh * T + j) * HS;
        const float* vj = v + ((size_t)bh * T + j) * HS;
        float dot = 0.0f;
        for (int d = 0; d < HS; d++) dot += qt[d] * kj[d];
        const float s = dot * scale;
        const float mnew = fmaxf(m, s);
        const float alpha = expf(m - mnew);  // e^(-inf) = 0 on the first key
        const float e = expf(s - mnew);
        if (MODE == UNCENTRED) u = alpha * u + e * s;  // sum e^(s-m) s: scales like l
        if (MODE == CENTRED)                           // sum e^(s-m)(s-m): shifts too
            u = (j == 0 ? 0.0f : alpha * (u + (m - mnew) * l)) + e * (s - mnew);
        l = alpha * l + e;
        for (int d = 0; d < HS; d++) o[d] = alpha * o[d] + e * vj[d];
        m = mnew;
    }
    for (int d = 0; d < HS; d++) out[(size_t)idx * HS + d] = o[d] / l;
    lse[idx] = m + logf(l);
    if (MODE == UNCENTRED) H[idx] = m + logf(l) - u / l;  // m - u/l: two numbers of size |s|
    if (MODE == CENTRED) H[idx] = logf(l) - u / l;
}

// ----------------------------------------------------------------------------
// version 4: grid (ceil(T / QT), BH), WARPS warps; warp w owns rows w, w + 8, w + 16, w + 24 of
// the block's 32. Lane j holds key k0 + j of the tile; lane d (and d + 32) holds output column d.

__global__ void softmax_tiled(float* out, float* lse, float* H, const float* q, const float* k, const float* v,
                              int BH, int T) {
    __shared__ float Qs[QT][HS + 1], Ks[KT][HS + 1], Vs[KT][HS + 1];  // +1: lane j reads row j, no bank conflicts
    const int q0 = blockIdx.x * QT, bh = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t base = (size_t)bh * T * HS;
    for (int i = threadIdx.x; i < QT * HS; i += blockDim.x) {
        const int r = i / HS, d = i % HS;
        Qs[r][d] = q0 + r < T ? q[base + (size_t)(q0 + r) * HS + d] : 0.0f;
    }
    const int RPW = QT / WARPS;
    float m[RPW], l[RPW], u[RPW], o[RPW][2];
    for (int i = 0; i < RPW; i++) m[i] = -INFINITY, l[i] = u[i] = o[i][0] = o[i][1] = 0.0f;
    const int kend = min(T, q0 + QT);
    for (int k0 = 0; k0 < kend; k0 += KT) {
        __syncthreads();  // the previous tile is consumed (and Qs written, the first time)
        for (int i = threadIdx.x; i < KT * HS; i += blockDim.x) {
            const int r = i / HS, d = i % HS;
            const bool in = k0 + r < T;
            Ks[r][d] = in ? k[base + (size_t)(k0 + r) * HS + d] : 0.0f;
            Vs[r][d] = in ? v[base + (size_t)(k0 + r) * HS + d] : 0.0f;
        }
        __syncthreads();
        for (int i = 0; i < RPW; i++) {
            const int r = warp + WARPS * i, t = q0 + r;
            if (t >= T || k0 > t) continue;  // warp-uniform: the whole warp skips the row
            const bool valid = k0 + lane <= t;
            float s = -INFINITY;
            if (valid) {
                float dot = 0.0f;
                for (int d = 0; d < HS; d++) dot += Qs[r][d] * Ks[lane][d];
                s = dot * scale;
            }
            const float mnew = fmaxf(m[i], warp_max(s));
            const bool first = m[i] == -INFINITY;
            const float alpha = first ? 0.0f : expf(m[i] - mnew);
            const float e = valid ? expf(s - mnew) : 0.0f;
            const float c = valid ? s - mnew : 0.0f;
            const float lt = warp_sum(e), ut = warp_sum(e * c);  // the tile's l and u'
            u[i] = first ? ut : alpha * (u[i] + (m[i] - mnew) * l[i]) + ut;
            l[i] = alpha * l[i] + lt;
            m[i] = mnew;
            o[i][0] *= alpha;
            o[i][1] *= alpha;
            for (int jj = 0; jj < KT && k0 + jj <= t; jj++) {
                const float ej = __shfl_sync(0xffffffffu, e, jj);  // lane jj's weight to every lane
                o[i][0] += ej * Vs[jj][lane];
                o[i][1] += ej * Vs[jj][lane + 32];
            }
        }
    }
    for (int i = 0; i < RPW; i++) {
        const int t = q0 + warp + WARPS * i;
        if (t >= T) continue;
        const size_t row = (size_t)bh * T + t;
        out[row * HS + lane] = o[i][0] / l[i];
        out[row * HS + lane + 32] = o[i][1] / l[i];
        if (lane == 0) {
            lse[row] = m[i] + logf(l[i]);
            H[row] = logf(l[i]) - u[i] / l[i];
        }
    }
}

// ----------------------------------------------------------------------------

struct Buffers {
    float *q, *k, *v, *out, *lse, *H;
};

Buffers alloc_buffers(int BH, int T) {
    Buffers b;
    const size_t n = (size_t)BH * T;
    cudaCheck(cudaMalloc(&b.q, n * HS * sizeof(float)));
    cudaCheck(cudaMalloc(&b.k, n * HS * sizeof(float)));
    cudaCheck(cudaMalloc(&b.v, n * HS * sizeof(float)));
    cudaCheck(cudaMalloc(&b.out, n * HS * sizeof(float)));
    cudaCheck(cudaMalloc(&b.lse, n * sizeof(float)));
    cudaCheck(cudaMalloc(&b.H, n * sizeof(float)));
    return b;
}

void free_buffers(Buffers& b) {
    for (float* p : {b.q, b.k, b.v, b.out, b.lse, b.H}) cudaCheck(cudaFree(p));
}

void run_version(int version, Buffers& b, int BH, int T) {
    const int rows = BH * T, threads = 128;
    switch (version) {
        case 1: softmax_rows<NO_ENTROPY><<<ceil_div(rows, threads), threads, 0, g_stream>>>(b.out, b.lse, b.H, b.q, b.k, b.v, BH, T); break;
        case 2: softmax_rows<UNCENTRED><<<ceil_div(rows, threads), threads, 0, g_stream>>>(b.out, b.lse, b.H, b.q, b.k, b.v, BH, T); break;
        case 3: softmax_rows<CENTRED><<<ceil_div(rows, threads), threads, 0, g_stream>>>(b.out, b.lse, b.H, b.q, b.k, b.v, BH, T); break;
        case 4: softmax_tiled<<<dim3(ceil_div(T, QT), BH), WARPS * 32, 0, g_stream>>>(b.out, b.lse, b.H, b.q, b.k, b.v, BH, T); break;
    }
    cudaCheckLaunch();
}

// Scores exact in fp32, so that the reference and every version see the same scores and only
// the softmax and entropy arithmetic differ: q and k are multiples of 1/4 (and k_0 of 1/64 in
// the large pairs), every product and partial sum then fits fp32's 24 bits, and 1/sqrt(64) = 1/8.
// Pairs bh >= BH/2 share a large direction, q_0 = 283 and k_0 = 283 + m/64 (m ~ N(0, 8)): scores
// 283^2/8 = 10011 plus ~N(0, 4.4) plus the other dimensions' ~N(0, 1).
float quarter_normal(Rng* rng) { return roundf(4.0f * rng_normal(rng)) / 4.0f; }

void make_inputs(std::vector<float>& q, std::vector<float>& k, std::vector<float>& v, int BH, int T, Rng* rng) {
    const size_t n = (size_t)BH * T * HS;
    q.resize(n), k.resize(n), v.resize(n);
    for (size_t i = 0; i < n; i++) q[i] = quarter_normal(rng), k[i] = quarter_normal(rng), v[i] = rng_normal(rng);
    for (int bh = BH / 2; bh < BH; bh++)
        for (int t = 0; t < T; t++) {
            const size_t r = ((size_t)bh * T + t) * HS;
            q[r] = 283.0f;
            k[r] = 283.0f + roundf(8.0f * rng_normal(rng)) / 64.0f;
        }
}

// Largest |got - ref| over the rows of pairs [bh0, bh1), `width` values per row.
double max_err(const std::vector<float>& got, const std::vector<double>& ref, int bh0, int bh1, int T, int width) {
    double e = 0.0;
    for (size_t i = (size_t)bh0 * T * width; i < (size_t)bh1 * T * width; i++) e = fmax(e, fabs(got[i] - ref[i]));
    return e;
}

int main(int argc, char** argv) {
    const int only = argc > 1 ? atoi(argv[1]) : 0;
    const int BHtime = argc > 2 ? atoi(argv[2]) : 1536;  // GPT-2 124M at B = 128: 128 x 12 heads
    const int T = argc > 3 ? atoi(argv[3]) : 128;
    if (only < 0 || only > 4 || BHtime < 0 || T < 1 || T > 4096) {
        fprintf(stderr, "error: usage: softmax_entropy.out [version 0-4] [BH >= 0] [T 1-4096]\n");
        return 1;
    }
    cudaCheck(cudaStreamCreate(&g_stream));
    const int BH = 4;  // validation: pairs 0-1 ordinary, 2-3 with scores near 1e4
    printf("softmax + entropy steps lab: T=%d, head size %d, fp32\n", T, HS);
    Rng rng;
    rng_seed(&rng, 42);
    std::vector<float> q, k, v;
    make_inputs(q, k, v, BH, T, &rng);
    std::vector<double> ref_out, ref_lse, ref_H;
    reference(q, k, v, BH, T, ref_out, ref_lse, ref_H);
    Buffers b = alloc_buffers(BH, T);
    const size_t n = (size_t)BH * T;
    cudaCheck(cudaMemcpy(b.q, q.data(), n * HS * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(b.k, k.data(), n * HS * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(b.v, v.data(), n * HS * sizeof(float), cudaMemcpyHostToDevice));
    // out within 1e-4 (|v| ~ 1); lse within 1e-6 relative; H within 2e-5 nats (the trainer's test: 1e-5)
    const double tol_out = 1e-4, tol_H = 2e-5;
    int failures = 0;
    for (int version = 1; version <= 4; version++) {
        if (only && version != only) continue;
        cudaCheck(cudaMemset(b.H, 0, n * sizeof(float)));
        run_version(version, b, BH, T);
        cudaCheck(cudaStreamSynchronize(g_stream));
        std::vector<float> out(n * HS), lse(n), H(n);
        cudaCheck(cudaMemcpy(out.data(), b.out, out.size() * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(lse.data(), b.lse, n * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(H.data(), b.H, n * sizeof(float), cudaMemcpyDeviceToHost));
        const double e_out = max_err(out, ref_out, 0, BH, T, HS);
        double e_lse = 0.0;
        for (size_t i = 0; i < n; i++) e_lse = fmax(e_lse, fabs(lse[i] - ref_lse[i]) / fmax(1.0, fabs(ref_lse[i])));
        const double e_H_small = max_err(H, ref_H, 0, BH / 2, T, 1), e_H_large = max_err(H, ref_H, BH / 2, BH, T, 1);
        bool ok = e_out <= tol_out && e_lse <= 1e-6;
        if (version >= 3) ok = ok && e_H_small <= tol_H && e_H_large <= tol_H;
        if (version == 2) ok = ok && e_H_small <= tol_H;  // the large-score rows are the lesson
        failures += !ok;
        printf("version %d: %s  out %.1e, lse %.1e (rel)", version, ok ? "ok  " : "FAIL", e_out, e_lse);
        if (version == 1) printf(", no entropy\n");
        else printf(", H at scores ~1: %.1e, at scores ~1e4: %.1e nats%s\n", e_H_small, e_H_large,
                    version == 2 ? (e_H_large > tol_H ? "  <- cancellation (expected)" : "  (no cancellation seen)") : "");
    }
    free_buffers(b);
    if (BHtime == 0) {
        printf("%s\n", failures ? "FAILED" : "all versions valid");
        return failures ? 1 : 0;
    }
    // timing: BHtime pairs of ordinary inputs
    Buffers x = alloc_buffers(BHtime, T);
    std::vector<float> big((size_t)BHtime * T * HS);
    for (auto& e : big) e = rng_normal(&rng);
    for (float* p : {x.q, x.k, x.v}) cudaCheck(cudaMemcpy(p, big.data(), big.size() * sizeof(float), cudaMemcpyHostToDevice));
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    for (int version = 1; version <= 4; version++) {
        if (only && version != only) continue;
        run_version(version, x, BHtime, T);  // warm-up
        cudaCheck(cudaEventRecord(e0, g_stream));
        const int reps = 10;
        for (int r = 0; r < reps; r++) run_version(version, x, BHtime, T);
        cudaCheck(cudaEventRecord(e1, g_stream));
        cudaCheck(cudaEventSynchronize(e1));
        float ms = 0.0f;
        cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
        printf("version %d: %.3f ms (BH = %d, T = %d)\n", version, ms / reps, BHtime, T);
    }
    free_buffers(x);
    printf("%s\n", failures ? "FAILED" : "all versions valid");
    return failures ? 1 : 0;
}
