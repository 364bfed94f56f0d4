// entropy.cuh: causal self-attention with the per-head attention entropy fused into the
// softmax, forward and backward, fp32 accumulation throughout.
//
// qkv (B, T, 3C) holds q, k, v side by side; head h uses columns h*hs .. h*hs+hs-1 of each,
// hs = C / NH. Scores s_tj = q_t . k_j / sqrt(hs) for j <= t (causal; a row always has its
// diagonal). Forward, per query row, an online softmax over key tiles keeps
//   m  = running max,   l = sum e^(s_j - m),   u' = sum e^(s_j - m) (s_j - m)
// and when the max moves from m0 to m1 rescales both (u' <- e^(m0-m1) (u' + (m0 - m1) l) before
// adding the new terms), so that the entropy H_t = -sum p ln p = ln l - u'/l is one more running
// sum, centred on m (no cancellation for large scores; design-notes.md). Saved for the backward:
// the row's log-sum-exp lse = m + ln l (B, NH, T), and the output itself. Entropy is a
// measurement, not part of the loss: it has no backward.
//
// Entropy reduction without a (B, NH, T) round trip: each block sums its rows' H into one
// partial per (b, h, 32-row tile), and entropy_reduce adds them per head in a fixed order (no
// float atomics: runs are bit-reproducible). NaN guard: scores that are not finite are counted
// per thread, summed per warp, and added with one integer atomicAdd per warp to the layer's
// counter, only when non-zero.
//
// Backward with P recomputed from lse (design-notes): D_t = dO_t . O_t, dp_tj = dO_t . v_j,
// ds_tj = p_tj (dp_tj - D_t); dq_t = sum_j ds_tj k_j / sqrt(hs), dk_j = sum_t ds_tj q_t / sqrt(hs),
// dv_j = sum_t p_tj dO_t. Two kernels, query-major (dq, and D) then key-major (dk, dv), so each
// output has one writer: deterministic, no atomics, at the price of computing the scores twice.
//
// This is the general SIMT path: any T, head size up to 256, one warp per query row and the
// 32 keys of a tile across the lanes, tiles of K and V (fp32) in shared memory with an odd row
// stride (conflict-free column reads). SPEED WORK REMAINS: the scores and P V products belong
// on tensor cores (wmma/mma); at GPT-2 124M, T = 128, this path spends several ms per step.
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

// Entropy partials per (b, h): one per 32-row query tile.
inline int att_num_qtiles(int T) { return (T + ATT_QT - 1) / ATT_QT; }

// ----------------------------------------------------------------------------
// Forward

// Grid (qtiles, NH, B), ATT_THREADS threads. DPL: head dims per lane (hs <= 32 * DPL).
// out (B, T, C); lse (B, NH, T); ent_partial (B, NH, qtiles) or NULL; nonfinite: the layer's
// counter or NULL.
template <int DPL>
__global__ void __launch_bounds__(ATT_THREADS) attention_forward_kernel(floatX* out, float* lse, float* ent_partial,
                                                                       unsigned long long* nonfinite, const floatX* qkv,
                                                                       int B, int T, int C, int NH) {
    extern __shared__ float smem[];
    __shared__ float warp_entropy[ATT_WARPS];
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
                s = dot * scale;
                bad += !isfinite(s);
            }
            const float mt = warp_max(valid ? s : -INFINITY);
            const float mnew = fmaxf(m[i], mt);
            const bool first = m[i] == -INFINITY;
            const float alpha = first ? 0.0f : expf(m[i] - mnew);
            const float e = valid ? expf(s - mnew) : 0.0f;
            const float c = valid ? s - mnew : 0.0f;
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
    float entropy = 0.0f;
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
                const float p = expf(dot * scale - row_lse[i]);
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
                p = expf(dot * scale - lse_s[lane]);
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
// per (l, h), in a fixed order. partial (L, B, NH, qtiles).
__global__ void entropy_reduce_kernel(double* ent_sum, const float* partial, int B, int NH, int qtiles) {
    const int lh = blockIdx.x, l = lh / NH, h = lh % NH;
    double s = 0.0;
    for (int idx = threadIdx.x; idx < B * qtiles; idx += 32) {
        int b = idx / qtiles, q = idx % qtiles;
        s += partial[(((size_t)l * B + b) * NH + h) * qtiles + q];
    }
    s = warp_sum(s);
    if (threadIdx.x == 0) ent_sum[lh] += s;
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
// or NULL for no entropy; nonfinite: counter for non-finite scores, or NULL.
inline void attention_forward(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite,
                              const floatX* qkv, int B, int T, int C, int NH) {
    const int hs = C / NH, st = att_stride(hs);
    dim3 grid(att_num_qtiles(T), NH, B);
    size_t smem = (size_t)(ATT_QT + 2 * ATT_KT) * st * sizeof(float);
#define ATT_FWD(DPL) \
    att_set_smem(attention_forward_kernel<DPL>, smem); \
    attention_forward_kernel<DPL><<<grid, ATT_THREADS, smem, g_stream>>>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH);
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
// the forward; Dbuf: (B, NH, T) floats of scratch.
inline void attention_backward(floatX* dqkv, float* Dbuf, const floatX* dout, const floatX* qkv, const floatX* out,
                               const float* lse, int B, int T, int C, int NH) {
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
    entropy_reduce_kernel<<<L * NH, 32, 0, g_stream>>>(ent_sum, partial, B, NH, att_num_qtiles(T));
    cudaCheckLaunch();
}
