// entropy.cuh: causal self-attention with the per-head attention entropy fused into the
// softmax, forward and backward, fp32 accumulation throughout.
//
// qkv (B, T, 3C) holds q, k, v side by side; head h uses columns h*hs .. h*hs+hs-1 of each,
// hs = C / NH. Scores s_tj = q_t . k_j / sqrt(hs) for j <= t (causal; a row always has its
// diagonal). Forward, per query row, an online softmax over key tiles keeps
//   m  = running max,   l = sum e^(s_j - m),   u' = sum e^(s_j - m) (s_j - m)
// and when the max moves from m0 to m1 rescales both (u' <- e^(m0-m1) (u' + (m0 - m1) l) before
// adding the new terms), so that the entropy H_t = -sum p ln p = ln l - u'/l is one more running
// sum, centred on m (no cancellation for large scores; doc/attention-entropy.md). Saved for the backward:
// the row's log-sum-exp lse = m + ln l (B, NH, T), and the output itself. Entropy is a
// measurement, not part of the loss: it has no backward.
//
// Entropy reduction without a (B, NH, T) round trip: each block sums its rows' H into one
// partial per (b, h, 32-row tile), and entropy_reduce adds them per head in a fixed order (no
// float atomics: runs are bit-reproducible). NaN guard: scores that are not finite are counted
// per thread, summed per warp, and added with one integer atomicAdd per warp to the layer's
// counter, only when non-zero.
//
// Backward with P recomputed from lse (doc/backward.md, attention): D_t = dO_t . O_t, dp_tj = dO_t . v_j,
// ds_tj = p_tj (dp_tj - D_t); dq_t = sum_j ds_tj k_j / sqrt(hs), dk_j = sum_t ds_tj q_t / sqrt(hs),
// dv_j = sum_t p_tj dO_t. Two kernels, query-major (dq, and D) then key-major (dk, dv), so each
// output has one writer: deterministic, no atomics, at the price of computing the scores twice.
//
// This file has two of the four paths llmc/attention.cuh chooses from: the general SIMT path
// below (any T, head size up to 256; what the trainer runs in the FP32 build and at bf16/fp16
// head sizes other than 64 and 128), one warp per query row and the 32 keys of a tile across the
// lanes, tiles of K and V (fp32) in shared memory with an odd row stride (conflict-free column
// reads); and the whole-row wmma path further down (bf16/fp16, head size 64, T <= 128), which the
// trainer ran until llmc/attention_mma*.cuh's register-resident kernels replaced it (it stays
// for the labs and tests). At GPT-2 124M, T = 128, the SIMT path spends several ms per step.
#pragma once

#include "llmc/cuda_common.cuh"

#define ATT_QT 32                              // query rows per block
#define ATT_KT 32                              // keys per tile (one per lane)
#define ATT_WARPS 8
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_RPW (ATT_QT / ATT_WARPS)           // rows per warp: warp w owns rows w, w+8, w+16, w+24
#define ATT_MAX_HS 256

// Shared-memory row stride: odd, so that lane j reading row j, column d hits bank (j*st + d) % 32,
// a different bank for every lane.
__host__ __device__ inline int att_stride(int hs) { return hs % 2 == 0 ? hs + 1 : hs; }

// The score s = q.k / sqrt(hs) from the fp32 dot product. The FP16 build is the paper's regime
// (fp16.h's fp16_score, doc/fp16-and-nans.md): q.k^T rounded to fp16 as autocast's matmul output
// (above 65504: inf, and the softmax row NaN), divided by sqrt(hs) held in fp16, rounded again.
// Forward and both backward paths call this, so the recomputed P is the forward's.
__device__ __forceinline__ float att_score(float dot, int hs, float scale) {
#if defined(ENABLE_FP16)
    const float div = __half2float(__float2half_rn(sqrtf((float)hs)));
    return __half2float(__float2half_rn(__half2float(__float2half_rn(dot)) / div));
#else
    return dot * scale;
#endif
}

// Entropy partials per (b, h): one per 32-row query tile.
inline int att_num_qtiles(int T) { return (T + ATT_QT - 1) / ATT_QT; }

// The paper's metrics (doc/fp16-and-nans.md), when paper_partial is given: per (b, h, 32-row
// tile), the sum of the row entropies with a NaN row counted as 0 (torch.nansum), then, one plane
// of B * NH * qtiles later, the number of NaN rows (a row is NaN iff its sum l is).
__device__ __forceinline__ void att_paper_row(float row_entropy, float l, float* nansum, float* nan_rows) {
    if (l != l) *nan_rows += 1.0f;  // NaN
    else *nansum += row_entropy;
}

// ----------------------------------------------------------------------------
// Forward

// Grid (qtiles, NH, B), ATT_THREADS threads. DPL: head dims per lane (hs <= 32 * DPL).
// out (B, T, C); lse (B, NH, T); ent_partial (B, NH, qtiles) or NULL; nonfinite: the layer's
// counter or NULL.
template <int DPL>
__global__ void __launch_bounds__(ATT_THREADS) attention_forward_kernel(floatX* out, float* lse, float* ent_partial,
                                                                       unsigned long long* nonfinite, const floatX* qkv,
                                                                       int B, int T, int C, int NH, float* paper_partial) {
    extern __shared__ float smem[];
    __shared__ float warp_entropy[ATT_WARPS], warp_paper[2][ATT_WARPS];
    const int hs = C / NH, st = att_stride(hs);
    float* Qs = smem;                // (QT, st)
    float* Ks = Qs + ATT_QT * st;    // (KT, st)
    float* Vs = Ks + ATT_KT * st;    // (KT, st)
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * ATT_QT;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t C3 = 3 * (size_t)C;
    const floatX* base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
    const float scale = 1.0f / sqrtf((float)hs);

    for (int idx = threadIdx.x; idx < ATT_QT * hs; idx += blockDim.x) {
        int r = idx / hs, d = idx % hs, t = q0 + r;
        Qs[r * st + d] = t < T ? to_float(base[(size_t)t * C3 + d]) : 0.0f;
    }
    float m[ATT_RPW], l[ATT_RPW], u[ATT_RPW], o[ATT_RPW][DPL];
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        u[i] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) o[i][dd] = 0.0f;
    }
    unsigned int bad = 0;
    const int kend = min(T, q0 + ATT_QT);  // the last query row of the tile sees keys < kend
    for (int k0 = 0; k0 < kend; k0 += ATT_KT) {
        __syncthreads();  // the previous tile is consumed (and Qs is written, the first time)
        for (int idx = threadIdx.x; idx < ATT_KT * hs; idx += blockDim.x) {
            int r = idx / hs, d = idx % hs, j = k0 + r;
            bool in = j < T;
            Ks[r * st + d] = in ? to_float(base[(size_t)j * C3 + C + d]) : 0.0f;
            Vs[r * st + d] = in ? to_float(base[(size_t)j * C3 + 2 * C + d]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_RPW; i++) {
            const int r = warp + ATT_WARPS * i, t = q0 + r;
            if (t >= T || k0 > t) continue;  // warp-uniform
            const int j = k0 + lane;
            const bool valid = j <= t;
            float s = -INFINITY;
            if (valid) {
                float dot = 0.0f;
                for (int d = 0; d < hs; d++) dot += Qs[r * st + d] * Ks[lane * st + d];
                s = att_score(dot, hs, scale);
                bad += !isfinite(s);
            }
            const float mt = warp_max(valid ? s : -INFINITY);
            const float mnew = fmaxf(m[i], mt);
            const bool first = m[i] == -INFINITY;
            const float alpha = first ? 0.0f : expf(m[i] - mnew);
            const float e = valid ? expf(s - mnew) : 0.0f;
            const float c = valid && e != 0.0f ? s - mnew : 0.0f;  // p = 0 (a -inf score): 0 ln 0 = 0, not 0 * -inf
            const float lt = warp_sum(e), ut = warp_sum(e * c);
            u[i] = first ? ut : alpha * (u[i] + (m[i] - mnew) * l[i]) + ut;
            l[i] = alpha * l[i] + lt;
            m[i] = mnew;
#pragma unroll
            for (int dd = 0; dd < DPL; dd++) o[i][dd] *= alpha;
            const int jmax = min(ATT_KT, t - k0 + 1);
            for (int jj = 0; jj < jmax; jj++) {
                const float ej = __shfl_sync(0xffffffffu, e, jj);
#pragma unroll
                for (int dd = 0; dd < DPL; dd++) {
                    const int d = lane + 32 * dd;
                    if (d < hs) o[i][dd] += ej * Vs[jj * st + d];
                }
            }
        }
    }
    float entropy = 0.0f, nansum = 0.0f, nan_rows = 0.0f;
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        const int t = q0 + warp + ATT_WARPS * i;
        if (t >= T) continue;
        const float inv_l = 1.0f / l[i];
        floatX* o_t = out + ((size_t)b * T + t) * C + (size_t)h * hs;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) {
            const int d = lane + 32 * dd;
            if (d < hs) o_t[d] = from_float<floatX>(o[i][dd] * inv_l);
        }
        const float log_l = logf(l[i]);
        if (lane == 0) lse[((size_t)b * NH + h) * T + t] = m[i] + log_l;
        entropy += log_l - u[i] * inv_l;
        att_paper_row(log_l - u[i] * inv_l, l[i], &nansum, &nan_rows);
    }
    if (ent_partial != NULL) {
        if (lane == 0) warp_entropy[warp] = entropy;
        __syncthreads();
        if (threadIdx.x == 0) {
            float total = 0.0f;
            for (int w = 0; w < ATT_WARPS; w++) total += warp_entropy[w];  // fixed order
            ent_partial[((size_t)b * NH + h) * gridDim.x + qt] = total;
        }
    }
    if (paper_partial != NULL) {
        if (lane == 0) warp_paper[0][warp] = nansum, warp_paper[1][warp] = nan_rows;
        __syncthreads();
        if (threadIdx.x < 2) {
            float total = 0.0f;
            for (int w = 0; w < ATT_WARPS; w++) total += warp_paper[threadIdx.x][w];
            paper_partial[(size_t)threadIdx.x * B * NH * gridDim.x + ((size_t)b * NH + h) * gridDim.x + qt] = total;
        }
    }
    if (nonfinite != NULL) {
        bad = __reduce_add_sync(0xffffffffu, bad);
        if (lane == 0 && bad > 0) atomicAdd(nonfinite, (unsigned long long)bad);
    }
}

// ----------------------------------------------------------------------------
// Backward, query-major: dq and D_t = dO_t . O_t (stored for the key-major kernel).
// Grid (qtiles, NH, B). dqkv (B, T, 3C): writes the q part.
template <int DPL>
__global__ void __launch_bounds__(ATT_THREADS) attention_backward_dq_kernel(floatX* dqkv, float* Dbuf, const floatX* dout,
                                                                           const floatX* qkv, const floatX* out,
                                                                           const float* lse, int B, int T, int C, int NH) {
    extern __shared__ float smem[];
    const int hs = C / NH, st = att_stride(hs);
    float* Qs = smem;                 // (QT, st)
    float* dOs = Qs + ATT_QT * st;    // (QT, st)
    float* Ks = dOs + ATT_QT * st;    // (KT, st)
    float* Vs = Ks + ATT_KT * st;     // (KT, st)
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * ATT_QT;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t C3 = 3 * (size_t)C;
    const floatX* base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
    const floatX* dbase = dout + (size_t)b * T * C + (size_t)h * hs;
    const float scale = 1.0f / sqrtf((float)hs);

    for (int idx = threadIdx.x; idx < ATT_QT * hs; idx += blockDim.x) {
        int r = idx / hs, d = idx % hs, t = q0 + r;
        Qs[r * st + d] = t < T ? to_float(base[(size_t)t * C3 + d]) : 0.0f;
        dOs[r * st + d] = t < T ? to_float(dbase[(size_t)t * C + d]) : 0.0f;
    }
    __syncthreads();
    float D[ATT_RPW], row_lse[ATT_RPW], dq[ATT_RPW][DPL];
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        const int r = warp + ATT_WARPS * i, t = q0 + r;
        float dsum = 0.0f;
        if (t < T) {
            const floatX* o_t = out + ((size_t)b * T + t) * C + (size_t)h * hs;
            for (int d = lane; d < hs; d += 32) dsum += dOs[r * st + d] * to_float(o_t[d]);
        }
        D[i] = warp_sum(dsum);
        row_lse[i] = t < T ? lse[((size_t)b * NH + h) * T + t] : 0.0f;
        if (t < T && lane == 0) Dbuf[((size_t)b * NH + h) * T + t] = D[i];
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) dq[i][dd] = 0.0f;
    }
    const int kend = min(T, q0 + ATT_QT);
    for (int k0 = 0; k0 < kend; k0 += ATT_KT) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < ATT_KT * hs; idx += blockDim.x) {
            int r = idx / hs, d = idx % hs, j = k0 + r;
            bool in = j < T;
            Ks[r * st + d] = in ? to_float(base[(size_t)j * C3 + C + d]) : 0.0f;
            Vs[r * st + d] = in ? to_float(base[(size_t)j * C3 + 2 * C + d]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_RPW; i++) {
            const int r = warp + ATT_WARPS * i, t = q0 + r;
            if (t >= T || k0 > t) continue;
            const int j = k0 + lane;
            float ds = 0.0f;
            if (j <= t) {
                float dot = 0.0f, dp = 0.0f;
                for (int d = 0; d < hs; d++) {
                    dot += Qs[r * st + d] * Ks[lane * st + d];
                    dp += dOs[r * st + d] * Vs[lane * st + d];
                }
                const float p = expf(att_score(dot, hs, scale) - row_lse[i]);
                ds = p * (dp - D[i]);
            }
            const int jmax = min(ATT_KT, t - k0 + 1);
            for (int jj = 0; jj < jmax; jj++) {
                const float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
                for (int dd = 0; dd < DPL; dd++) {
                    const int d = lane + 32 * dd;
                    if (d < hs) dq[i][dd] += dsj * Ks[jj * st + d];
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        const int t = q0 + warp + ATT_WARPS * i;
        if (t >= T) continue;
        floatX* dq_t = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) {
            const int d = lane + 32 * dd;
            if (d < hs) dq_t[d] = from_float<floatX>(dq[i][dd] * scale);
        }
    }
}

// Backward, key-major: dk and dv of a tile of 32 keys, over the query tiles at or after it.
// Grid (ktiles, NH, B). dqkv: writes the k and v parts.
template <int DPL>
__global__ void __launch_bounds__(ATT_THREADS) attention_backward_dkv_kernel(floatX* dqkv, const float* Dbuf,
                                                                            const floatX* dout, const floatX* qkv,
                                                                            const float* lse, int B, int T, int C, int NH) {
    extern __shared__ float smem[];
    __shared__ float lse_s[ATT_QT], D_s[ATT_QT];
    const int hs = C / NH, st = att_stride(hs);
    float* Ks = smem;                 // (KT, st): this block's keys
    float* Vs = Ks + ATT_KT * st;     // (KT, st)
    float* Qs = Vs + ATT_KT * st;     // (QT, st): the current query tile
    float* dOs = Qs + ATT_QT * st;    // (QT, st)
    const int kt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int k0 = kt * ATT_KT;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t C3 = 3 * (size_t)C;
    const floatX* base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
    const floatX* dbase = dout + (size_t)b * T * C + (size_t)h * hs;
    const float* lse_bh = lse + ((size_t)b * NH + h) * T;
    const float* D_bh = Dbuf + ((size_t)b * NH + h) * T;
    const float scale = 1.0f / sqrtf((float)hs);

    for (int idx = threadIdx.x; idx < ATT_KT * hs; idx += blockDim.x) {
        int r = idx / hs, d = idx % hs, j = k0 + r;
        bool in = j < T;
        Ks[r * st + d] = in ? to_float(base[(size_t)j * C3 + C + d]) : 0.0f;
        Vs[r * st + d] = in ? to_float(base[(size_t)j * C3 + 2 * C + d]) : 0.0f;
    }
    float dk[ATT_RPW][DPL], dv[ATT_RPW][DPL];
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++)
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) dk[i][dd] = dv[i][dd] = 0.0f;
    // queries t >= j: the tiles from this one (QT == KT, so tiles line up) to the end
    for (int q0 = k0; q0 < T; q0 += ATT_QT) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < ATT_QT * hs; idx += blockDim.x) {
            int r = idx / hs, d = idx % hs, t = q0 + r;
            Qs[r * st + d] = t < T ? to_float(base[(size_t)t * C3 + d]) : 0.0f;
            dOs[r * st + d] = t < T ? to_float(dbase[(size_t)t * C + d]) : 0.0f;
        }
        if (threadIdx.x < ATT_QT) {
            int t = q0 + threadIdx.x;
            lse_s[threadIdx.x] = t < T ? lse_bh[t] : 0.0f;
            D_s[threadIdx.x] = t < T ? D_bh[t] : 0.0f;
        }
        __syncthreads();
        const int imax = min(ATT_QT, T - q0);
#pragma unroll
        for (int i = 0; i < ATT_RPW; i++) {
            const int r = warp + ATT_WARPS * i, j = k0 + r;
            if (j >= T) continue;  // warp-uniform
            const int t = q0 + lane;
            float p = 0.0f, ds = 0.0f;
            if (t < T && t >= j) {
                float dot = 0.0f, dp = 0.0f;
                for (int d = 0; d < hs; d++) {
                    dot += Qs[lane * st + d] * Ks[r * st + d];
                    dp += dOs[lane * st + d] * Vs[r * st + d];
                }
                p = expf(att_score(dot, hs, scale) - lse_s[lane]);
                ds = p * (dp - D_s[lane]);
            }
            for (int ii = 0; ii < imax; ii++) {
                const float pi = __shfl_sync(0xffffffffu, p, ii);
                const float dsi = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
                for (int dd = 0; dd < DPL; dd++) {
                    const int d = lane + 32 * dd;
                    if (d < hs) {
                        dv[i][dd] += pi * dOs[ii * st + d];
                        dk[i][dd] += dsi * Qs[ii * st + d];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        const int j = k0 + warp + ATT_WARPS * i;
        if (j >= T) continue;
        floatX* dk_j = dqkv + ((size_t)b * T + j) * C3 + C + (size_t)h * hs;
        floatX* dv_j = dk_j + C;
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) {
            const int d = lane + 32 * dd;
            if (d < hs) {
                dk_j[d] = from_float<floatX>(dk[i][dd] * scale);
                dv_j[d] = from_float<floatX>(dv[i][dd]);
            }
        }
    }
}

// ----------------------------------------------------------------------------
// Entropy reduction: ent_sum[l][h] += sum over b and query tiles of the partials, one warp
// per (l, h), in a fixed order. partial (L, B, NH, qtiles), layers layer_stride floats apart.
__global__ void entropy_reduce_kernel(double* ent_sum, const float* partial, int B, int NH, int qtiles, size_t layer_stride) {
    const int lh = blockIdx.x, l = lh / NH, h = lh % NH;
    double s = 0.0;
    for (int idx = threadIdx.x; idx < B * qtiles; idx += 32) {
        int b = idx / qtiles, q = idx % qtiles;
        s += partial[(size_t)l * layer_stride + ((size_t)b * NH + h) * qtiles + q];
    }
    s = warp_sum(s);
    if (threadIdx.x == 0) ent_sum[lh] += s;
}


// ----------------------------------------------------------------------------
// Tensor-core path (bf16/fp16 builds; head size 64 and T <= 128: GPT-2 at the paper's T).
// The whole key range of a (b, h) fits in shared memory (T <= 128), so there is no online
// rescaling: S = Q K^T by wmma (fp32 accumulation) into shared memory, the masked softmax with
// the centred entropy sum on each full row in fp32 (SIMT, one warp per row, 4 keys per lane),
// P rounded to floatX, O = P V by wmma. Each warp owns 16 query rows end to end, so after the
// loads the warps never wait for each other. The backward holds Q, K, V, dO, P and dS of one
// (b, h) in shared memory (~207 KB): phase 1 recomputes S and dP = dO V^T per 16-row strip and
// writes P and dS = P (dP - D); phase 2 forms dQ = dS K, dK = dS^T Q and dV = P^T dO by wmma.
//
// D is the row's p-weighted mean of the very dp it is subtracted from, D_t = sum_j p~ dp / sum_j
// p~ with p~ = p rounded to floatX (the P that dV uses), not dO_t . O_t from the saved output.
// Why: softmax is invariant to adding a constant to a row's scores, and its exact gradient
// respects that, sum_j ds_tj = 0: dq_t sees the keys only through their differences, and the
// keys' gradients sum to zero, so a component that every key shares (large in an LN-free model:
// one direction of the residual stream) neither scales dq nor gets a gradient. With D =
// dO . O and O rounded to floatX (and formed from P rounded to floatX), sum_j ds_tj = dO . (P V -
// O) ~ u |dO| |O|, an error that does not shrink with the row's true ds; dq_t = sum_j ds_tj k_j /
// sqrt(hs) and dk then carry it times |k| and |q|. Where attention has collapsed (one-hot rows,
// scores of hundreds to thousands) the true dq and dk are ~0 and this spurious part dominates: in
// test_gpt2.cu's hard rows it was up to 21x the gradient's own rounding bound in dq (max error 55%
// of the largest |dq|). It is the suspected cause (not yet confirmed on a GPU) of a bf16 LN-free
// ReLU GPT-2 124M run whose last layers had collapsed seeing its gradient norm go 0.29, 7, 3e5,
// ... inf within 5 steps, where the fp32 build (fp32 O, the SIMT path) did not. With D formed
// here, sum_j ds_tj = 0 to fp32 rounding, every error of dS is relative to dS, and the output is
// no longer read by this backward. The normalisation by sum p~ also absorbs the rounding of lse =
// m + ln l at large scores (lse ~ 1e4: half an ulp is 5e-4, so sum_j p = 1 +- 5e-4 before it).
// (The SIMT path still forms D from O: accurate to fp32 rounding in the fp32 build; in bf16/fp16
// builds, where it runs only for head sizes other than 64 or T > 128, it keeps the conditioning
// described above, which FlashAttention-2's backward, D = rowsum(dO * O) from the rounded O, shares.)
// SPEED WORK REMAINS: wgmma (sm_90a) instead of wmma's mma.sync, more warps per block in the
// backward (it runs 4 warps, one block per SM), and K/V reuse across the heads' query tiles.
#if !defined(ENABLE_FP32)
#include <mma.h>
#include <cuda_pipeline.h>

#define ATTW_HS 64                   // head size of the fast path
#define ATTW_TMAX 128                // longest sequence of the fast path
#define ATTW_QT 64                   // query rows per forward block (4 warps x 16)
#define ATTW_WARPS 4
#define ATTW_LDX (ATTW_HS + 8)       // floatX row stride of Q, K, V, dO tiles (16-byte multiple, skewed banks)
#define ATTW_LDS (ATTW_TMAX + 4)     // fp32 row stride of score strips
#define ATTW_LDP (ATTW_TMAX + 8)     // floatX row stride of P and dS

namespace wmma = nvcuda::wmma;  // W: wmma's opaque fragments (llmc/mma_frag.cuh has FragA/B/C, mma.sync's)
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> WFragA;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::col_major> WFragAT;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::row_major> WFragB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::col_major> WFragBT;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> WFragC;

__host__ __device__ inline int round16(int x) { return (x + 15) & ~15; }
__host__ __device__ inline size_t align128(size_t x) { return (x + 127) & ~(size_t)127; }

// Copies rows [r0, r0 + n) of one head (64 floatX at src + t * src_stride) into a shared tile
// with row stride ATTW_LDX, rows past `valid` zeroed; 16-byte packs, all threads of the block.
// The copies are asynchronous (cp.async: global to shared without a register round trip), so a
// thread's ~20-30 packs are all in flight at once; a load-then-store loop waited on each in turn,
// ~20 memory latencies per block before any arithmetic. Call attw_loads_wait() before the barrier
// that publishes the tiles.
__device__ inline void attw_load_rows(floatX* dst, const floatX* src, size_t src_stride, int r0, int n, int valid) {
    const int P = Packed128<floatX>::size, packs = ATTW_HS / P;
    for (int idx = threadIdx.x; idx < n * packs; idx += blockDim.x) {
        int r = idx / packs, c = (idx % packs) * P, t = r0 + r;
        if (t < valid) {
#if defined(ATTW_SYNC_LOADS)  // the load-then-store loop, kept for the lab's A/B (cuda.mk NVCC_EXTRA)
            store128(dst + r * ATTW_LDX + c, load128(src + (size_t)t * src_stride + c));
#else
            __pipeline_memcpy_async(dst + r * ATTW_LDX + c, src + (size_t)t * src_stride + c, 16);
#endif
        } else {
            Packed128<floatX> z;
            for (int k = 0; k < P; k++) z[k] = from_float<floatX>(0.0f);
            store128(dst + r * ATTW_LDX + c, z);
        }
    }
}

// Waits for this thread's attw_load_rows copies (the block barrier after it publishes them).
// ATTW_NO_LOAD_WAIT leaves the wait out: a deliberately racy build (cuda.mk's
// attention_entropy_nowait.out) that shows whether compute-sanitizer's racecheck sees cp.async.
__device__ inline void attw_loads_wait() {
#if !defined(ATTW_SYNC_LOADS) && !defined(ATTW_NO_LOAD_WAIT)
    __pipeline_commit();
    __pipeline_wait_prior(0);
#endif
}

inline size_t attw_forward_smem() {
    return align128(ATTW_QT * ATTW_LDX * sizeof(floatX)) + 2 * align128(ATTW_TMAX * ATTW_LDX * sizeof(floatX)) +
           ATTW_WARPS * align128(16 * ATTW_LDS * sizeof(float)) + ATTW_WARPS * align128(16 * ATTW_LDP * sizeof(floatX));
}

// Stores the entropy partials of a block of 4 warps x 16 query rows (block qt: rows 64 qt ..) in
// entropy_reduce's layout, one partial per 32-row tile: tile 2 qt + i = warps 2i and 2i + 1.
// Shared by this file's tensor-core forward and llmc/attention_tiled.cuh's; all threads of the
// block call it (it holds a barrier). warp_entropy: the block's shared slots, one per warp.
__device__ inline void attw_store_entropy_partials(float* ent_partial, float* warp_entropy, float entropy, int qt, int b,
                                                   int h, int NH, int T) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_entropy[warp] = entropy;
    __syncthreads();
    const int qtiles = (T + 31) / 32;
    if (threadIdx.x < 2) {
        const int tile = 2 * qt + threadIdx.x;
        if (tile < qtiles)
            ent_partial[((size_t)b * NH + h) * qtiles + tile] = warp_entropy[2 * threadIdx.x] + warp_entropy[2 * threadIdx.x + 1];
    }
}

// The paper's partials of a 64-row block (4 warps x 16 rows) in the same tiles: plane 0 the
// NaN-ignoring entropy, plane 1 the NaN rows (att_paper_row); every thread calls it.
__device__ inline void attw_store_paper_partials(float* paper_partial, float (*warp_paper)[4], float nansum, float nan_rows,
                                                 int qt, int b, int h, int B, int NH, int T) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_paper[0][warp] = nansum, warp_paper[1][warp] = nan_rows;
    __syncthreads();
    const int qtiles = (T + 31) / 32;
    if (threadIdx.x < 4) {
        const int plane = threadIdx.x / 2, tile = 2 * qt + threadIdx.x % 2;
        if (tile < qtiles)
            paper_partial[(size_t)plane * B * NH * qtiles + ((size_t)b * NH + h) * qtiles + tile] =
                warp_paper[plane][2 * (threadIdx.x % 2)] + warp_paper[plane][2 * (threadIdx.x % 2) + 1];
    }
}

// Grid (ceil(T / 64), NH, B), 128 threads. Same outputs as attention_forward_kernel.
__global__ void __launch_bounds__(ATTW_WARPS * 32) attention_forward_wmma_kernel(floatX* out, float* lse, float* ent_partial,
                                                                                unsigned long long* nonfinite,
                                                                                const floatX* qkv, int B, int T, int C, int NH,
                                                                                float* paper_partial) {
    extern __shared__ __align__(128) unsigned char smem_w[];
    __shared__ float warp_entropy[ATTW_WARPS], warp_paper[2][ATTW_WARPS];
    floatX* Qs = (floatX*)smem_w;                                                          // (64, LDX)
    floatX* Ks = (floatX*)(smem_w + align128(ATTW_QT * ATTW_LDX * sizeof(floatX)));        // (TMAX, LDX)
    floatX* Vs = Ks + align128(ATTW_TMAX * ATTW_LDX * sizeof(floatX)) / sizeof(floatX);    // (TMAX, LDX)
    float* Sall = (float*)((unsigned char*)Vs + align128(ATTW_TMAX * ATTW_LDX * sizeof(floatX)));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* Sw = Sall + warp * (align128(16 * ATTW_LDS * sizeof(float)) / sizeof(float));   // (16, LDS) this warp's
    floatX* Pall = (floatX*)(Sall + ATTW_WARPS * (align128(16 * ATTW_LDS * sizeof(float)) / sizeof(float)));
    floatX* Pw = Pall + warp * (align128(16 * ATTW_LDP * sizeof(floatX)) / sizeof(floatX)); // (16, LDP)
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * ATTW_QT;
    const size_t C3 = 3 * (size_t)C;
    const floatX* base = qkv + (size_t)b * T * C3 + (size_t)h * ATTW_HS;
    const float scale = 1.0f / sqrtf((float)ATTW_HS);
    const int kend = min(T, q0 + ATTW_QT), kpad = round16(kend);

    attw_load_rows(Qs, base, C3, q0, ATTW_QT, T);
    attw_load_rows(Ks, base + C, C3, 0, kpad, T);
    attw_load_rows(Vs, base + 2 * C, C3, 0, kpad, T);
    attw_loads_wait();
    __syncthreads();

    const int r0 = warp * 16, t0 = q0 + r0;
    float entropy = 0.0f, nansum = 0.0f, nan_rows = 0.0f;
    unsigned int bad = 0;
    if (t0 < T) {  // warp-uniform; no block-wide barrier until the end
        const int nkt = min(kpad, round16(t0 + 16)) / 16;  // key tiles this strip sees
        // S strip (16, nkt*16) = Q strip K^T
        for (int n = 0; n < nkt; n++) {
            WFragC acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < ATTW_HS / 16; kk++) {
                WFragA a;
                WFragBT bt;
                wmma::load_matrix_sync(a, Qs + r0 * ATTW_LDX + kk * 16, ATTW_LDX);
                wmma::load_matrix_sync(bt, Ks + n * 16 * ATTW_LDX + kk * 16, ATTW_LDX);
                wmma::mma_sync(acc, a, bt, acc);
            }
            wmma::store_matrix_sync(Sw + n * 16, acc, ATTW_LDS, wmma::mem_row_major);
        }
        __syncwarp();
        // softmax of each row with the centred entropy sum; P normalised, rounded to floatX
        for (int rr = 0; rr < 16; rr++) {
            const int t = t0 + rr;
            float s[ATTW_TMAX / 32];
            float mx = -INFINITY;
#pragma unroll
            for (int c = 0; c < ATTW_TMAX / 32; c++) {
                const int j = lane + 32 * c;
                s[c] = -INFINITY;
                if (j <= t && t < T && j < nkt * 16) {
                    s[c] = att_score(Sw[rr * ATTW_LDS + j], ATTW_HS, scale);
                    bad += !isfinite(s[c]);
                    mx = fmaxf(mx, s[c]);
                }
            }
            mx = warp_max(mx);
            float e[ATTW_TMAX / 32], lsum = 0.0f, usum = 0.0f;
#pragma unroll
            for (int c = 0; c < ATTW_TMAX / 32; c++) {
                const int j = lane + 32 * c;
                const bool valid = j <= t && t < T && j < nkt * 16;
                e[c] = valid ? expf(s[c] - mx) : 0.0f;
                lsum += e[c];
                usum += valid && e[c] != 0.0f ? e[c] * (s[c] - mx) : 0.0f;  // 0 ln 0 = 0 at a -inf score
            }
            lsum = warp_sum(lsum);
            usum = warp_sum(usum);
            const float inv_l = t < T ? 1.0f / lsum : 0.0f;  // rows past T: P = 0, O unused
#pragma unroll
            for (int c = 0; c < ATTW_TMAX / 32; c++) {
                const int j = lane + 32 * c;
                if (j < nkt * 16) Pw[rr * ATTW_LDP + j] = from_float<floatX>(e[c] * inv_l);
            }
            if (t < T) {
                const float log_l = logf(lsum);
                if (lane == 0) lse[((size_t)b * NH + h) * T + t] = mx + log_l;
                entropy += log_l - usum * inv_l;
                att_paper_row(log_l - usum * inv_l, lsum, &nansum, &nan_rows);
            }
        }
        __syncwarp();
        // O strip (16, 64) = P strip V, staged in Sw (the scores are no longer needed)
        for (int nt = 0; nt < ATTW_HS / 16; nt++) {
            WFragC acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kt = 0; kt < nkt; kt++) {
                WFragA a;
                WFragB bv;
                wmma::load_matrix_sync(a, Pw + kt * 16, ATTW_LDP);
                wmma::load_matrix_sync(bv, Vs + kt * 16 * ATTW_LDX + nt * 16, ATTW_LDX);
                wmma::mma_sync(acc, a, bv, acc);
            }
            wmma::store_matrix_sync(Sw + nt * 16, acc, ATTW_LDS, wmma::mem_row_major);
        }
        __syncwarp();
        for (int rr = 0; rr < 16; rr++) {
            const int t = t0 + rr;
            if (t >= T) break;
            floatX* o_t = out + ((size_t)b * T + t) * C + (size_t)h * ATTW_HS;
            for (int d = lane; d < ATTW_HS; d += 32) o_t[d] = from_float<floatX>(Sw[rr * ATTW_LDS + d]);
        }
    }
    // the layout of the SIMT path: one partial per 32-row tile = two warps here
    if (ent_partial != NULL) attw_store_entropy_partials(ent_partial, warp_entropy, entropy, qt, b, h, NH, T);
    if (paper_partial != NULL) attw_store_paper_partials(paper_partial, warp_paper, nansum, nan_rows, qt, b, h, B, NH, T);
    if (nonfinite != NULL) {
        bad = __reduce_add_sync(0xffffffffu, bad);
        if (lane == 0 && bad > 0) atomicAdd(nonfinite, (unsigned long long)bad);
    }
}

// The backward's shared memory for one (b, h): the Q, K, V and dO tiles (TMAX, LDX), P and dS
// (TMAX, LDP), `nbuf` fp32 scratch buffers of `buf_bytes` (a few per warp), then each row's lse
// and D (TMAX each); with `tiled`, also dP of every causal 16x16 tile (fp32, tile after tile)
// and each row's partial sums for D per key strip ((TMAX / 16, TMAX) twice).
#define ATTW_NCAUSAL ((ATTW_TMAX / 16) * (ATTW_TMAX / 16 + 1) / 2)
struct AttwBackwardTiles {
    floatX *Qs, *Ks, *Vs, *dOs, *Ps, *dSs;
    unsigned char* scratch;  // buffer k at scratch + k * align128(buf_bytes)
    float *lse_s, *D_s;
    float *dPt, *Dnum, *Dden;  // with `tiled` only
};

__host__ __device__ inline size_t attw_backward_smem_bytes(int nbuf, size_t buf_bytes, bool tiled) {
    return 4 * align128(ATTW_TMAX * ATTW_LDX * sizeof(floatX)) + 2 * align128(ATTW_TMAX * ATTW_LDP * sizeof(floatX)) +
           nbuf * align128(buf_bytes) + 2 * align128(ATTW_TMAX * sizeof(float)) +
           (tiled ? align128(ATTW_NCAUSAL * 256 * sizeof(float)) + 2 * align128(ATTW_TMAX / 16 * ATTW_TMAX * sizeof(float)) : 0);
}

__device__ inline AttwBackwardTiles attw_backward_carve(unsigned char* smem, int nbuf, size_t buf_bytes, bool tiled) {
    const size_t tile_bytes = align128(ATTW_TMAX * ATTW_LDX * sizeof(floatX));
    const size_t p_bytes = align128(ATTW_TMAX * ATTW_LDP * sizeof(floatX));
    const size_t row_bytes = align128(ATTW_TMAX * sizeof(float));
    AttwBackwardTiles s;
    s.Qs = (floatX*)smem;
    s.Ks = (floatX*)(smem + tile_bytes);
    s.Vs = (floatX*)(smem + 2 * tile_bytes);
    s.dOs = (floatX*)(smem + 3 * tile_bytes);
    s.Ps = (floatX*)(smem + 4 * tile_bytes);
    s.dSs = (floatX*)(smem + 4 * tile_bytes + p_bytes);
    s.scratch = smem + 4 * tile_bytes + 2 * p_bytes;
    s.lse_s = (float*)(s.scratch + nbuf * align128(buf_bytes));
    s.D_s = (float*)((unsigned char*)s.lse_s + row_bytes);
    s.dPt = s.Dnum = s.Dden = NULL;
    if (tiled) {
        s.dPt = (float*)((unsigned char*)s.D_s + row_bytes);
        s.Dnum = (float*)((unsigned char*)s.dPt + align128(ATTW_NCAUSAL * 256 * sizeof(float)));
        s.Dden = (float*)((unsigned char*)s.Dnum + align128(ATTW_TMAX / 16 * ATTW_TMAX * sizeof(float)));
    }
    return s;
}

// Loads Q, K, V and dO of (b, h), rows past T zeroed, and each row's lse (saved by the forward);
// ends with the block synchronised.
__device__ inline void attw_backward_load(const AttwBackwardTiles& s, const floatX* dout, const floatX* qkv,
                                          const float* lse, int b, int h, int T, int C, int NH) {
    const size_t C3 = 3 * (size_t)C;
    const floatX* base = qkv + (size_t)b * T * C3 + (size_t)h * ATTW_HS;
    const int Tpad = round16(T);
    attw_load_rows(s.Qs, base, C3, 0, Tpad, T);
    attw_load_rows(s.Ks, base + C, C3, 0, Tpad, T);
    attw_load_rows(s.Vs, base + 2 * C, C3, 0, Tpad, T);
    attw_load_rows(s.dOs, dout + (size_t)b * T * C + (size_t)h * ATTW_HS, C, 0, Tpad, T);
    for (int t = threadIdx.x; t < Tpad; t += blockDim.x) s.lse_s[t] = t < T ? lse[((size_t)b * NH + h) * T + t] : 0.0f;
    attw_loads_wait();
    __syncthreads();
}

// The 16x16 tile (query strip i, key strip n) of the unscaled scores Q K^T and of dP = dO V^T.
__device__ inline void attw_tile_scores(WFragC& acc_s, WFragC& acc_p, const AttwBackwardTiles& s, int i, int n) {
    wmma::fill_fragment(acc_s, 0.0f);
    wmma::fill_fragment(acc_p, 0.0f);
    for (int kk = 0; kk < ATTW_HS / 16; kk++) {
        WFragA a;
        WFragBT bt;
        wmma::load_matrix_sync(a, s.Qs + 16 * i * ATTW_LDX + kk * 16, ATTW_LDX);
        wmma::load_matrix_sync(bt, s.Ks + 16 * n * ATTW_LDX + kk * 16, ATTW_LDX);
        wmma::mma_sync(acc_s, a, bt, acc_s);
        wmma::load_matrix_sync(a, s.dOs + 16 * i * ATTW_LDX + kk * 16, ATTW_LDX);
        wmma::load_matrix_sync(bt, s.Vs + 16 * n * ATTW_LDX + kk * 16, ATTW_LDX);
        wmma::mma_sync(acc_p, a, bt, acc_p);
    }
}

// The dQ tile (query strip i, head columns nt), unscaled: dS (strip i, key tiles <= i) K.
__device__ inline void attw_tile_dq(WFragC& acc, const AttwBackwardTiles& s, int i, int nt) {
    wmma::fill_fragment(acc, 0.0f);
    for (int kt = 0; kt <= i; kt++) {
        WFragA a;
        WFragB bk;
        wmma::load_matrix_sync(a, s.dSs + 16 * i * ATTW_LDP + 16 * kt, ATTW_LDP);
        wmma::load_matrix_sync(bk, s.Ks + 16 * kt * ATTW_LDX + 16 * nt, ATTW_LDX);
        wmma::mma_sync(acc, a, bk, acc);
    }
}

// The dK (unscaled) and dV tiles (key strip c, head columns nt): dS^T Q and P^T dO over the
// query tiles c .. ntiles-1. (dS^T)[keys of c][queries of it] is dS[queries][keys] read
// column-major.
__device__ inline void attw_tile_dkdv(WFragC& acc_k, WFragC& acc_v, const AttwBackwardTiles& s, int c, int nt, int ntiles) {
    wmma::fill_fragment(acc_k, 0.0f);
    wmma::fill_fragment(acc_v, 0.0f);
    for (int it = c; it < ntiles; it++) {
        WFragAT a;
        WFragB bq;
        wmma::load_matrix_sync(a, s.dSs + 16 * it * ATTW_LDP + 16 * c, ATTW_LDP);
        wmma::load_matrix_sync(bq, s.Qs + 16 * it * ATTW_LDX + 16 * nt, ATTW_LDX);
        wmma::mma_sync(acc_k, a, bq, acc_k);
        wmma::load_matrix_sync(a, s.Ps + 16 * it * ATTW_LDP + 16 * c, ATTW_LDP);
        wmma::load_matrix_sync(bq, s.dOs + 16 * it * ATTW_LDX + 16 * nt, ATTW_LDX);
        wmma::mma_sync(acc_v, a, bq, acc_v);
    }
}

// Phase 1 works on the causal 16x16 tiles (query strip i, key strip n <= i), one warp per tile,
// lane l on column l % 16 of rows l / 16 + 2 m, m = 0 .. 7 (the same elements in both kernels, so
// that they agree bit for bit). First attw_tile_p: p = exp(score * scale - lse) rounded to floatX
// into P (zero above the diagonal and on padding rows), and per row the sums of p~ dp and of p~
// over the tile's 16 keys (a butterfly over the row's 16 lanes: every lane of the half-warp ends
// with the same bits). S: the unscaled scores, dP: dO V^T, row strides lds and ldp.
__device__ inline void attw_tile_p(const float* S, int lds, const float* dP, int ldp, const AttwBackwardTiles& s, int i,
                                   int n, int T, float scale, float num[8], float den[8]) {
    const int lane = threadIdx.x % 32, cc = lane % 16;
#pragma unroll
    for (int m = 0; m < 8; m++) {
        const int rr = lane / 16 + 2 * m, t = 16 * i + rr, j = 16 * n + cc;
        const bool valid = j <= t && t < T;
        const floatX p = from_float<floatX>(valid ? expf(att_score(S[rr * lds + cc], ATTW_HS, scale) - s.lse_s[t]) : 0.0f);
        s.Ps[t * ATTW_LDP + j] = p;
        float a = valid ? to_float(p) * dP[rr * ldp + cc] : 0.0f, c = to_float(p);
#pragma unroll
        for (int off = 8; off > 0; off >>= 1) {
            a += __shfl_xor_sync(0xffffffffu, a, off);
            c += __shfl_xor_sync(0xffffffffu, c, off);
        }
        num[m] = a;
        den[m] = c;
    }
}

// Row t's D = sum_j p~ dp / sum_j p~ from its summed partials (0 on padding rows).
__device__ inline float attw_row_D(float num, float den) { return den > 0.0f ? num / den : 0.0f; }

// Then attw_tile_ds, once the rows' D are known (D[m]: row l / 16 + 2 m of the tile): dS = p~ (dP -
// D) into dS, from this lane's own P elements.
__device__ inline void attw_tile_ds(const float* dP, int ldp, const AttwBackwardTiles& s, int i, int n, int T,
                                    const float D[8]) {
    const int lane = threadIdx.x % 32, cc = lane % 16;
#pragma unroll
    for (int m = 0; m < 8; m++) {
        const int rr = lane / 16 + 2 * m, t = 16 * i + rr, j = 16 * n + cc;
        const float ds = j <= t && t < T ? to_float(s.Ps[t * ATTW_LDP + j]) * (dP[rr * ldp + cc] - D[m]) : 0.0f;
        s.dSs[t * ATTW_LDP + j] = from_float<floatX>(ds);
    }
}

inline size_t attw_backward_smem() { return attw_backward_smem_bytes(2 * ATTW_WARPS, 16 * ATTW_LDS * sizeof(float), false); }

// Grid (NH, B), 128 threads; one block holds one (b, h). Writes all of dqkv's (b, h) slice.
// Each warp owns 16-row strips end to end, with two (16, T) fp32 strips of scratch.
__global__ void __launch_bounds__(ATTW_WARPS * 32) attention_backward_wmma_kernel(floatX* dqkv, const floatX* dout,
                                                                                 const floatX* qkv, const float* lse, int B,
                                                                                 int T, int C, int NH) {
    extern __shared__ __align__(128) unsigned char smem_w[];
    const size_t strip_bytes = 16 * ATTW_LDS * sizeof(float);
    const AttwBackwardTiles s = attw_backward_carve(smem_w, 2 * ATTW_WARPS, strip_bytes, false);
    const int h = blockIdx.x, b = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* S1 = (float*)(s.scratch + (2 * warp) * align128(strip_bytes));  // (16, LDS) this warp's scratch
    float* S2 = (float*)(s.scratch + (2 * warp + 1) * align128(strip_bytes));
    const size_t C3 = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)ATTW_HS);
    const int ntiles = round16(T) / 16;
    attw_backward_load(s, dout, qkv, lse, b, h, T, C, NH);
    // phase 1: per 16-row query strip i, the tiles n <= i of S, P, dP, then the rows' D, then dS
    for (int i = warp; i < ntiles; i += ATTW_WARPS) {
        const int nk = i + 1;
        for (int n = 0; n < nk; n++) {
            WFragC acc_s, acc_p;
            attw_tile_scores(acc_s, acc_p, s, i, n);
            wmma::store_matrix_sync(S1 + n * 16, acc_s, ATTW_LDS, wmma::mem_row_major);
            wmma::store_matrix_sync(S2 + n * 16, acc_p, ATTW_LDS, wmma::mem_row_major);
        }
        __syncwarp();
        float num[8] = {}, den[8] = {}, D[8];
        for (int n = 0; n < nk; n++) {
            float a[8], c[8];
            attw_tile_p(S1 + n * 16, ATTW_LDS, S2 + n * 16, ATTW_LDS, s, i, n, T, scale, a, c);
#pragma unroll
            for (int m = 0; m < 8; m++) {  // over the tiles in order, as attention_backward_wmma8_kernel sums
                num[m] += a[m];
                den[m] += c[m];
            }
        }
#pragma unroll
        for (int m = 0; m < 8; m++) D[m] = attw_row_D(num[m], den[m]);
        for (int n = 0; n < nk; n++) attw_tile_ds(S2 + n * 16, ATTW_LDS, s, i, n, T, D);
        __syncwarp();
    }
    __syncthreads();
    // phase 2a: dQ strip i = dS (rows of i, key tiles <= i) K * scale
    for (int i = warp; i < ntiles; i += ATTW_WARPS) {
        for (int nt = 0; nt < ATTW_HS / 16; nt++) {
            WFragC acc;
            attw_tile_dq(acc, s, i, nt);
            wmma::store_matrix_sync(S1 + 16 * nt, acc, ATTW_LDS, wmma::mem_row_major);
        }
        __syncwarp();
        for (int rr = 0; rr < 16; rr++) {
            const int t = 16 * i + rr;
            if (t >= T) break;
            floatX* dq_t = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * ATTW_HS;
            for (int d = lane; d < ATTW_HS; d += 32) dq_t[d] = from_float<floatX>(S1[rr * ATTW_LDS + d] * scale);
        }
        __syncwarp();
    }
    // phase 2b: key strip c: dK = dS^T (query tiles >= c) Q * scale, dV = P^T dO
    for (int c = warp; c < ntiles; c += ATTW_WARPS) {
        for (int nt = 0; nt < ATTW_HS / 16; nt++) {
            WFragC acc_k, acc_v;
            attw_tile_dkdv(acc_k, acc_v, s, c, nt, ntiles);
            wmma::store_matrix_sync(S1 + 16 * nt, acc_k, ATTW_LDS, wmma::mem_row_major);
            wmma::store_matrix_sync(S2 + 16 * nt, acc_v, ATTW_LDS, wmma::mem_row_major);
        }
        __syncwarp();
        for (int rr = 0; rr < 16; rr++) {
            const int j = 16 * c + rr;
            if (j >= T) break;
            floatX* dk_j = dqkv + ((size_t)b * T + j) * C3 + C + (size_t)h * ATTW_HS;
            floatX* dv_j = dk_j + C;
            for (int d = lane; d < ATTW_HS; d += 32) {
                dk_j[d] = from_float<floatX>(S1[rr * ATTW_LDS + d] * scale);
                dv_j[d] = from_float<floatX>(S2[rr * ATTW_LDS + d]);
            }
        }
        __syncwarp();
    }
}

// A second tensor-core backward, for the lab to race against the one above: 8 warps per block
// instead of 4, and no per-warp (16, T) fp32 strips. Since the forward saved each row's lse, P of
// a 16x16 tile depends on that tile alone, so phase 1 runs over the causal tiles (i, n <= i) one
// at a time through a 16x16 fp32 scratch, keeping each tile's dP (fp32, 36 KB at T = 128) and its
// rows' partial sums for D; after a block barrier each row's D is summed over its tiles in order,
// and after another each tile's dS is formed. Phase 2 stages each 16x16 output tile through the
// scratch. ~205 KB of shared memory (the 4-warp kernel: ~207 KB), so one block per SM either way,
// with twice the warps in flight. Same inputs and outputs, bit for bit, as
// attention_backward_wmma_kernel (the same per-element arithmetic and summation orders).
#define ATTW8_WARPS 8
#define ATTW8_LDT 20                  // fp32 row stride of a 16x16 scratch tile (a multiple of 4)

inline size_t attw8_backward_smem() { return attw_backward_smem_bytes(2 * ATTW8_WARPS, 16 * ATTW8_LDT * sizeof(float), true); }

// The causal tile numbered `item` when the tiles (i, n <= i) are numbered row by row:
// (0,0), (1,0), (1,1), (2,0), ...
__device__ inline void attw_causal_tile(int item, int* i, int* n) {
    int r = 0;
    while ((r + 1) * (r + 2) / 2 <= item) r++;
    *i = r;
    *n = item - r * (r + 1) / 2;
}

// Grid (NH, B), 256 threads; one block holds one (b, h). Writes all of dqkv's (b, h) slice.
__global__ void __launch_bounds__(ATTW8_WARPS * 32) attention_backward_wmma8_kernel(floatX* dqkv, const floatX* dout,
                                                                                   const floatX* qkv, const float* lse, int B,
                                                                                   int T, int C, int NH) {
    extern __shared__ __align__(128) unsigned char smem_w[];
    const size_t scratch_bytes = 16 * ATTW8_LDT * sizeof(float);
    const AttwBackwardTiles s = attw_backward_carve(smem_w, 2 * ATTW8_WARPS, scratch_bytes, true);
    const int h = blockIdx.x, b = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* X1 = (float*)(s.scratch + (2 * warp) * align128(scratch_bytes));  // (16, LDT) this warp's scratch
    float* X2 = (float*)(s.scratch + (2 * warp + 1) * align128(scratch_bytes));
    const size_t C3 = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)ATTW_HS);
    const int ntiles = round16(T) / 16;
    attw_backward_load(s, dout, qkv, lse, b, h, T, C, NH);
    // phase 1: the causal tiles (i, n <= i), numbered row by row, dealt to the warps in turn:
    // S, dP (kept, tile `item` at dPt + 256 item), P and the rows' partial sums for D
    const int ncausal = ntiles * (ntiles + 1) / 2;
    for (int item = warp; item < ncausal; item += ATTW8_WARPS) {
        int i, n;
        attw_causal_tile(item, &i, &n);
        WFragC acc_s, acc_p;
        attw_tile_scores(acc_s, acc_p, s, i, n);
        wmma::store_matrix_sync(X1, acc_s, ATTW8_LDT, wmma::mem_row_major);
        wmma::store_matrix_sync(s.dPt + 256 * item, acc_p, 16, wmma::mem_row_major);
        __syncwarp();
        float a[8], c[8];
        attw_tile_p(X1, ATTW8_LDT, s.dPt + 256 * item, 16, s, i, n, T, scale, a, c);
        if (lane % 16 == 0) {
#pragma unroll
            for (int m = 0; m < 8; m++) {
                const int t = 16 * i + lane / 16 + 2 * m;
                s.Dnum[n * ATTW_TMAX + t] = a[m];
                s.Dden[n * ATTW_TMAX + t] = c[m];
            }
        }
        __syncwarp();  // the scratch is rewritten by this warp's next tile
    }
    __syncthreads();
    // each row's D, its partials summed over the key strips in order
    for (int t = threadIdx.x; t < 16 * ntiles; t += blockDim.x) {
        float num = 0.0f, den = 0.0f;
        for (int n = 0; n <= t / 16; n++) {
            num += s.Dnum[n * ATTW_TMAX + t];
            den += s.Dden[n * ATTW_TMAX + t];
        }
        s.D_s[t] = attw_row_D(num, den);
    }
    __syncthreads();
    // dS of each causal tile, dealt as before
    for (int item = warp; item < ncausal; item += ATTW8_WARPS) {
        int i, n;
        attw_causal_tile(item, &i, &n);
        float D[8];
#pragma unroll
        for (int m = 0; m < 8; m++) D[m] = s.D_s[16 * i + lane / 16 + 2 * m];
        attw_tile_ds(s.dPt + 256 * item, 16, s, i, n, T, D);
    }
    __syncthreads();
    // phase 2: 4 * ntiles dQ tiles (strip i, columns nt), then 4 * ntiles dK/dV tiles (key
    // strip c, columns nt), dealt to the warps in turn; each staged through the scratch
    const int nct = ATTW_HS / 16;
    for (int item = warp; item < 2 * nct * ntiles; item += ATTW8_WARPS) {
        const bool is_dq = item < nct * ntiles;
        const int strip = (is_dq ? item : item - nct * ntiles) / nct, nt = item % nct;
        if (is_dq) {
            WFragC acc;
            attw_tile_dq(acc, s, strip, nt);
            wmma::store_matrix_sync(X1, acc, ATTW8_LDT, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                const int rr = e / 16, cc = e % 16, t = 16 * strip + rr;
                if (t < T)
                    dqkv[((size_t)b * T + t) * C3 + (size_t)h * ATTW_HS + 16 * nt + cc] = from_float<floatX>(X1[rr * ATTW8_LDT + cc] * scale);
            }
        } else {
            WFragC acc_k, acc_v;
            attw_tile_dkdv(acc_k, acc_v, s, strip, nt, ntiles);
            wmma::store_matrix_sync(X1, acc_k, ATTW8_LDT, wmma::mem_row_major);
            wmma::store_matrix_sync(X2, acc_v, ATTW8_LDT, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                const int rr = e / 16, cc = e % 16, j = 16 * strip + rr;
                if (j < T) {
                    floatX* dk_j = dqkv + ((size_t)b * T + j) * C3 + C + (size_t)h * ATTW_HS + 16 * nt + cc;
                    dk_j[0] = from_float<floatX>(X1[rr * ATTW8_LDT + cc] * scale);
                    dk_j[C] = from_float<floatX>(X2[rr * ATTW8_LDT + cc]);  // dV sits C further on
                }
            }
        }
        __syncwarp();
    }
}
#endif  // !ENABLE_FP32

// Set to force the SIMT path (tests and labs compare the two).
static bool g_attention_force_simt = false;
// Which tensor-core backward runs: the 8-warp one (attention_backward_wmma8_kernel, the default:
// on an H200 at GPT-2 124M's shape, B = 128, it took 0.48 ms per layer against the 4-warp
// kernel's 0.82, dev/cuda/attention_entropy.cu versions 4 and 3; timed before both formed D
// themselves, not re-timed since) or, if false, the 4-warp one.
static bool g_attention_bwd_wmma8 = true;

// Whether the tensor-core path handles this call: bf16/fp16, head size 64, T <= 128, and
// 16-byte aligned rows.
inline bool attention_use_wmma(const void* qkv, const void* out, int T, int C, int NH) {
#if defined(ENABLE_FP32)
    return false;
#else
    return !g_attention_force_simt && C / NH == ATTW_HS && T <= ATTW_TMAX && C % 8 == 0 && aligned16(qkv) && aligned16(out);
#endif
}

// ----------------------------------------------------------------------------
// Host side

inline int att_dims_per_lane(int hs) { return hs <= 32 ? 1 : hs <= 64 ? 2 : hs <= 128 ? 4 : 8; }

// Raises a kernel's dynamic shared-memory limit when it needs more than the default 48 KB.
template <typename K>
inline void att_set_smem(K kernel, size_t bytes) {
    if (bytes > 48 * 1024) cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// Fails with a clear message if the attention kernels cannot run this shape.
inline void attention_check_shape(int C, int NH) {
    int hs = C / NH;
    if (hs > ATT_MAX_HS) {
        fprintf(stderr, "error: head size %d (C %d / NH %d) is larger than the CUDA attention's maximum %d\n", hs, C, NH, ATT_MAX_HS);
        exit(1);
    }
}

// out (B, T, C), lse (B, NH, T) from qkv (B, T, 3C). ent_partial: (B, NH, att_num_qtiles(T))
// or NULL for no entropy; nonfinite: counter for non-finite scores, or NULL; paper_partial:
// (2, B, NH, att_num_qtiles(T)) for the paper's metrics (att_paper_row), or NULL.
inline void attention_forward(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite,
                              const floatX* qkv, int B, int T, int C, int NH, float* paper_partial = NULL) {
#if !defined(ENABLE_FP32)
    if (attention_use_wmma(qkv, out, T, C, NH)) {
        size_t smem = attw_forward_smem();
        att_set_smem(attention_forward_wmma_kernel, smem);
        dim3 grid((T + ATTW_QT - 1) / ATTW_QT, NH, B);
        attention_forward_wmma_kernel<<<grid, ATTW_WARPS * 32, smem, g_stream>>>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH,
                                                                                 paper_partial);
        cudaCheckLaunch();
        return;
    }
#endif
    const int hs = C / NH, st = att_stride(hs);
    dim3 grid(att_num_qtiles(T), NH, B);
    size_t smem = (size_t)(ATT_QT + 2 * ATT_KT) * st * sizeof(float);
#define ATT_FWD(DPL) \
    att_set_smem(attention_forward_kernel<DPL>, smem); \
    attention_forward_kernel<DPL><<<grid, ATT_THREADS, smem, g_stream>>>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, \
                                                                         paper_partial);
    switch (att_dims_per_lane(hs)) {
        case 1: ATT_FWD(1); break;
        case 2: ATT_FWD(2); break;
        case 4: ATT_FWD(4); break;
        default: ATT_FWD(8); break;
    }
#undef ATT_FWD
    cudaCheckLaunch();
}

// dqkv (B, T, 3C) = the gradient (overwritten) from dout (B, T, C); qkv, out and lse as saved by
// the forward (out is read by the SIMT path only); Dbuf: (B, NH, T) floats of scratch.
inline void attention_backward(floatX* dqkv, float* Dbuf, const floatX* dout, const floatX* qkv, const floatX* out,
                               const float* lse, int B, int T, int C, int NH) {
#if !defined(ENABLE_FP32)
    if (attention_use_wmma(qkv, out, T, C, NH) && aligned16(dqkv) && aligned16(dout) && g_attention_bwd_wmma8) {
        size_t smem = attw8_backward_smem();
        att_set_smem(attention_backward_wmma8_kernel, smem);
        attention_backward_wmma8_kernel<<<dim3(NH, B), ATTW8_WARPS * 32, smem, g_stream>>>(dqkv, dout, qkv, lse, B, T, C, NH);
        cudaCheckLaunch();
        return;
    }
    if (attention_use_wmma(qkv, out, T, C, NH) && aligned16(dqkv) && aligned16(dout)) {
        size_t smem = attw_backward_smem();
        att_set_smem(attention_backward_wmma_kernel, smem);
        dim3 grid(NH, B);
        attention_backward_wmma_kernel<<<grid, ATTW_WARPS * 32, smem, g_stream>>>(dqkv, dout, qkv, lse, B, T, C, NH);
        cudaCheckLaunch();
        return;
    }
#endif
    const int hs = C / NH, st = att_stride(hs);
    dim3 grid(att_num_qtiles(T), NH, B);
    size_t smem = (size_t)(2 * ATT_QT + 2 * ATT_KT) * st * sizeof(float);
#define ATT_BWD(DPL) \
    att_set_smem(attention_backward_dq_kernel<DPL>, smem); \
    att_set_smem(attention_backward_dkv_kernel<DPL>, smem); \
    attention_backward_dq_kernel<DPL><<<grid, ATT_THREADS, smem, g_stream>>>(dqkv, Dbuf, dout, qkv, out, lse, B, T, C, NH); \
    cudaCheckLaunch(); \
    attention_backward_dkv_kernel<DPL><<<grid, ATT_THREADS, smem, g_stream>>>(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH);
    switch (att_dims_per_lane(hs)) {
        case 1: ATT_BWD(1); break;
        case 2: ATT_BWD(2); break;
        case 4: ATT_BWD(4); break;
        default: ATT_BWD(8); break;
    }
#undef ATT_BWD
    cudaCheckLaunch();
}

// ent_sum (L, NH) += per-head sums of the partials (L, B, NH, att_num_qtiles(T)).
inline void entropy_reduce(double* ent_sum, const float* partial, int L, int B, int NH, int T) {
    const int qtiles = att_num_qtiles(T);
    entropy_reduce_kernel<<<L * NH, 32, 0, g_stream>>>(ent_sum, partial, B, NH, qtiles, (size_t)B * NH * qtiles);
    cudaCheckLaunch();
}

// paper_sum (2, L, NH) += per-head sums of the paper's partials (L, 2, B, NH, qtiles): the
// NaN-ignoring entropy sums, then the NaN rows.
inline void paper_reduce(double* paper_sum, const float* partial, int L, int B, int NH, int T) {
    const size_t plane = (size_t)B * NH * att_num_qtiles(T);
    for (int p = 0; p < 2; p++) {
        entropy_reduce_kernel<<<L * NH, 32, 0, g_stream>>>(paper_sum + (size_t)p * L * NH, partial + p * plane, B, NH,
                                                           att_num_qtiles(T), 2 * plane);
        cudaCheckLaunch();
    }
}
