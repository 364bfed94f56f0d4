// llmc/attention_tiled.cuh: causal attention forward on tensor cores for any T, head size 64 or
// 128, with the per-head entropy and the non-finite score count fused in (bf16/fp16 builds).
//
// What entropy.cuh's tensor-core forward cannot do: it holds a (b, h)'s whole key range in shared
// memory, so it stops at T = 128 and head size 64. Here each block owns 64 query rows (4 warps x
// 16) and walks the key tiles of 64 up to its causal limit, the next tile's K and V loading
// (cp.async, two stages) while the current one is used. Per tile and warp:
//   S (16, 64) = Q K^T           wmma, fp32 accumulation, into the warp's shared strip
//   online softmax per row       m, l and the centred sum u' = sum e^(s-m) (s-m) updated exactly
//                                as entropy.cuh's SIMT forward does (u' <- e^(m0-m1) (u' + (m0-m1) l)
//                                when the max moves from m0 to m1); non-finite scores counted
//   P~ = e^(s - m) rounded to floatX (unnormalised, <= 1), O <- alpha O + P~ V (wmma; O in fp32
//                                in the warp's shared strip, rescaled by alpha = e^(m0-m1) per row)
// At the end O / l is written, lse = m + ln l (the backward's saved statistic), and the entropy
// H_t = ln l - u'/l of every row summed per 32-row tile: the same out (B, T, C), lse (B, NH, T),
// entropy partials (B, NH, ceil(T / 32)), paper partials (NaN-ignoring entropy and NaN rows per
// tile) and counter as attention_forward, so it drops in (entropy_reduce and paper_reduce read
// the partials unchanged). The FP16 build rounds the scores as entropy.cuh's att_score does (the
// paper's regime), here and in the backward's recomputed P.
//
// Why centred: u'/l is a p-weighted mean of s - m, terms of the row's own spread; the uncentred
// sum_j p_j s_j at scores ~1e4 is ~1e4 and H = lse - sum p s loses ~1e4 * 2^-24 per term and
// lse's own half ulp (~5e-4 at 1e4) to cancellation. dev/cuda/attention_entropy.cu's hard rows
// show it: built with -DATTT_UNCENTRED (cuda.mk's attention_entropy_uncentred.out) the worst
// 32-row partial at scores ~1e4 is off by 3.0e-2, 331x the centred sum's rounding bound, where
// the centred sum stays at 0.02x (CPU emulator, bf16, T = 64 and 256).
//
// l is the sum of the fp32 e^(s-m), not of the rounded P~, so lse (and the backward's recomputed
// P) is the exact softmax's; O uses P~, whose rounding (relative 2^-9 in bf16) is what the
// tensor cores cost, as in entropy.cuh's forward. The softmax here runs SIMT on the scores in
// shared memory (3 warp reductions per row and tile) and O round-trips shared memory per tile;
// llmc/attention_mma.cuh does the same work in the mma fragments' registers and is what the
// trainer runs (this kernel stays for the labs and tests: g_attention_fwd_mma = false).
#pragma once

#include "cuda_common.cuh"
#include "../common.h"   // fail
#include "../entropy.cuh"  // attw_store_entropy_partials, the shared tile layout of the partials

#if !defined(ENABLE_FP32)
#include <mma.h>
#include <cuda_pipeline.h>

#define ATTT_QT 64      // query rows per block
#define ATTT_KT 64      // keys per tile (== ATTT_QT: a block's key tiles end where its rows do)
#define ATTT_WARPS 4    // each owns 16 query rows

__host__ __device__ inline size_t attt_align128(size_t x) { return (x + 127) & ~(size_t)127; }

// Shared-memory layout for head size HS: Q (64, LDX), two stages of K and V (64, LDX), and per
// warp its scores S (16, LDS) fp32, P~ (16, LDP) floatX and O (16, LDO) fp32. The strides keep
// wmma's rules (floatX multiple of 8, fp32 multiple of 4, 32-byte aligned tile starts) and skew
// the banks.
template <int HS>
struct AttTiledLayout {
    static constexpr int LDX = HS + 8;
    static constexpr int LDS = ATTT_KT + 4;
    static constexpr int LDP = ATTT_KT + 8;
    static constexpr int LDO = HS + 4;
    static constexpr size_t q_bytes = (ATTT_QT * LDX * sizeof(floatX) + 127) & ~(size_t)127;
    static constexpr size_t kv_bytes = (ATTT_KT * LDX * sizeof(floatX) + 127) & ~(size_t)127;
    static constexpr size_t s_bytes = (16 * LDS * sizeof(float) + 127) & ~(size_t)127;
    static constexpr size_t p_bytes = (16 * LDP * sizeof(floatX) + 127) & ~(size_t)127;
    static constexpr size_t o_bytes = (16 * LDO * sizeof(float) + 127) & ~(size_t)127;
    static constexpr size_t warp_bytes = s_bytes + p_bytes + o_bytes;
    static constexpr size_t total = q_bytes + 4 * kv_bytes + ATTT_WARPS * warp_bytes;  // 88 KiB (hs 64), 144 KiB (hs 128)
};

// Starts the copies of rows [r0, r0 + n) of one head (HS floatX at src + t * src_stride) into a
// shared tile of row stride ld, 16-byte packs over all threads; rows at or past `valid` are
// zeroed (plain stores: a zero V row times P~ = 0 stays 0, where stale bytes could be NaN).
template <int HS>
__device__ inline void attt_load_rows(floatX* dst, int ld, const floatX* src, size_t src_stride, int r0, int n, int valid) {
    const int P = Packed128<floatX>::size, packs = HS / P;
    for (int idx = threadIdx.x; idx < n * packs; idx += blockDim.x) {
        int r = idx / packs, c = (idx % packs) * P, t = r0 + r;
        if (t < valid) {
            __pipeline_memcpy_async(dst + r * ld + c, src + (size_t)t * src_stride + c, 16);
        } else {
            Packed128<floatX> z;
            for (int k = 0; k < P; k++) z[k] = from_float<floatX>(0.0f);
            store128(dst + r * ld + c, z);
        }
    }
}

// One step of the double-buffered loop every tiled and mma attention kernel runs over its n
// tiles (stage it % 2 holds tile it; tile 0 was started and committed before the loop): starts
// tile it + 1 into the other stage if there is one (load(it + 1)), waits for tile it's copies
// only, and makes them visible to the block. The loop body must end with __syncthreads() before
// the next call refills the stage it read.
template <class Load>
__device__ inline void attt_pipeline_step(int it, int n, Load&& load) {
    if (it + 1 < n) {
        load(it + 1);
        __pipeline_commit();
        __pipeline_wait_prior(1);
    } else {
        __pipeline_wait_prior(0);
    }
    __syncthreads();
}

// The running statistics of a warp's 16 rows; every lane holds all of them (the warp reductions
// leave the same bits in every lane).
struct AttTiledRows {
    float m[16], l[16], u[16];
};

// S (16, 64) = Q strip K tile^T, unscaled, into Sw; key strips wholly above the warp's last row
// (t0 + 15) are skipped (their S is never read).
template <int HS>
__device__ inline void attt_scores(float* Sw, const floatX* Qstrip, const floatX* Ks, int k0, int t0) {
    using L = AttTiledLayout<HS>;
    namespace wmma = nvcuda::wmma;
    for (int n = 0; n < ATTT_KT / 16; n++) {
        if (k0 + 16 * n > t0 + 15) break;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int kk = 0; kk < HS / 16; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::col_major> bt;
            wmma::load_matrix_sync(a, Qstrip + kk * 16, L::LDX);
            wmma::load_matrix_sync(bt, Ks + n * 16 * L::LDX + kk * 16, L::LDX);
            wmma::mma_sync(acc, a, bt, acc);
        }
        wmma::store_matrix_sync(Sw + n * 16, acc, L::LDS, wmma::mem_row_major);
    }
}

// The online softmax step of one key tile for the warp's 16 rows (t0 ..): lane holds keys
// k0 + lane and k0 + lane + 32. Updates the rows' m, l, u' as entropy.cuh's SIMT forward does,
// writes P~ = e^(s - m_new) rounded to floatX (0 where masked) and rescales O's rows by alpha.
// Returns the number of non-finite scores this lane saw.
template <int HS>
__device__ inline unsigned int attt_softmax_tile(AttTiledRows& rs, const float* Sw, floatX* Pw, float* Ow, int k0, int t0,
                                                 int T, float scale) {
    using L = AttTiledLayout<HS>;
    const int lane = threadIdx.x % 32;
    unsigned int bad = 0;
#pragma unroll
    for (int rr = 0; rr < 16; rr++) {
        const int t = t0 + rr;
        float s[2], e[2], c[2];
        bool valid[2];
        float mt = -INFINITY;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int j = k0 + lane + 32 * h;
            valid[h] = j <= t && t < T;
            s[h] = valid[h] ? att_score(Sw[rr * L::LDS + lane + 32 * h], HS, scale) : -INFINITY;  // fp16 build: rounded
            if (valid[h]) bad += !isfinite(s[h]);
            mt = fmaxf(mt, s[h]);
        }
        mt = warp_max(mt);
        const float m0 = rs.m[rr], mnew = fmaxf(m0, mt);
        const bool first = m0 == -INFINITY;
        const float alpha = first ? 0.0f : expf(m0 - mnew);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            e[h] = valid[h] ? expf(s[h] - mnew) : 0.0f;
#if defined(ATTT_UNCENTRED)  // the lab's negative control: sum e^(s-m) s, no centring
            c[h] = valid[h] ? s[h] : 0.0f;
#else
            c[h] = valid[h] ? s[h] - mnew : 0.0f;
#endif
            Pw[rr * L::LDP + lane + 32 * h] = from_float<floatX>(e[h]);
        }
        const float lt = warp_sum(e[0] + e[1]), ut = warp_sum(e[0] * c[0] + e[1] * c[1]);
#if defined(ATTT_UNCENTRED)
        rs.u[rr] = first ? ut : alpha * rs.u[rr] + ut;
#else
        rs.u[rr] = first ? ut : alpha * (rs.u[rr] + (m0 - mnew) * rs.l[rr]) + ut;
#endif
        rs.l[rr] = alpha * rs.l[rr] + lt;
        rs.m[rr] = mnew;
        for (int d = lane; d < HS; d += 32) Ow[rr * L::LDO + d] *= alpha;
    }
    return bad;
}

// O (16, HS) += P~ (16, 64) V tile (64, HS), in place in the warp's fp32 strip; key strips
// wholly above the warp's last row are skipped (their P~ is 0).
template <int HS>
__device__ inline void attt_accumulate_pv(float* Ow, const floatX* Pw, const floatX* Vs, int k0, int t0) {
    using L = AttTiledLayout<HS>;
    namespace wmma = nvcuda::wmma;
    for (int nt = 0; nt < HS / 16; nt++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::load_matrix_sync(acc, Ow + nt * 16, L::LDO, wmma::mem_row_major);
        for (int kt = 0; kt < ATTT_KT / 16; kt++) {
            if (k0 + 16 * kt > t0 + 15) break;
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::row_major> bv;
            wmma::load_matrix_sync(a, Pw + kt * 16, L::LDP);
            wmma::load_matrix_sync(bv, Vs + kt * 16 * L::LDX + nt * 16, L::LDX);
            wmma::mma_sync(acc, a, bv, acc);
        }
        wmma::store_matrix_sync(Ow + nt * 16, acc, L::LDO, wmma::mem_row_major);
    }
}

// Grid (ceil(T / 64), NH, B), 128 threads, AttTiledLayout<HS>::total bytes of dynamic shared
// memory. out (B, T, C); lse (B, NH, T); ent_partial (B, NH, ceil(T / 32)) or NULL; nonfinite:
// the layer's counter or NULL. qkv (B, T, 3C) with 16-byte aligned rows (C % 8 == 0).
template <int HS>
__global__ void __launch_bounds__(ATTT_WARPS * 32) attention_forward_tiled_kernel(floatX* out, float* lse, float* ent_partial,
                                                                                 unsigned long long* nonfinite,
                                                                                 const floatX* qkv, int B, int T, int C, int NH,
                                                                                 float* paper_partial) {
    using L = AttTiledLayout<HS>;
    extern __shared__ __align__(128) unsigned char smem_w[];  // the name the emulator maps (dev/cuda/emu)
    __shared__ float warp_entropy[ATTT_WARPS], warp_paper[2][ATTT_WARPS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    floatX* Qs = (floatX*)smem_w;                                        // (64, LDX)
    unsigned char* kv = smem_w + L::q_bytes;                              // stage s: K at 2s, V at 2s + 1
    unsigned char* mine = smem_w + L::q_bytes + 4 * L::kv_bytes + warp * L::warp_bytes;
    float* Sw = (float*)mine;                                             // (16, LDS)
    floatX* Pw = (floatX*)(mine + L::s_bytes);                            // (16, LDP)
    float* Ow = (float*)(mine + L::s_bytes + L::p_bytes);                 // (16, LDO)
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * ATTT_QT, r0 = warp * 16, t0 = q0 + r0;
    const size_t C3 = 3 * (size_t)C;
    const floatX* base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const int nkt = (min(T, q0 + ATTT_QT) + ATTT_KT - 1) / ATTT_KT;  // key tiles up to the causal limit

    for (int idx = lane; idx < 16 * HS; idx += 32) Ow[(idx / HS) * L::LDO + idx % HS] = 0.0f;
    auto load_kv = [&](int i) {  // key tile i's K and V into stage i % 2
        unsigned char* st = kv + 2 * (i % 2) * L::kv_bytes;
        attt_load_rows<HS>((floatX*)st, L::LDX, base + C, C3, i * ATTT_KT, ATTT_KT, T);
        attt_load_rows<HS>((floatX*)(st + L::kv_bytes), L::LDX, base + 2 * C, C3, i * ATTT_KT, ATTT_KT, T);
    };
    attt_load_rows<HS>(Qs, L::LDX, base, C3, q0, ATTT_QT, T);
    load_kv(0);
    __pipeline_commit();
    AttTiledRows rs;
#pragma unroll
    for (int rr = 0; rr < 16; rr++) {
        rs.m[rr] = -INFINITY;
        rs.l[rr] = 0.0f;
        rs.u[rr] = 0.0f;
    }
    unsigned int bad = 0;
    for (int it = 0; it < nkt; it++) {
        attt_pipeline_step(it, nkt, load_kv);  // tile `it` (and Q, the first time) visible to all warps
        const int k0 = it * ATTT_KT;
        const floatX* Ks = (const floatX*)(kv + 2 * (it % 2) * L::kv_bytes);
        const floatX* Vs = (const floatX*)(kv + (2 * (it % 2) + 1) * L::kv_bytes);
        if (t0 < T && k0 <= t0 + 15) {  // warp-uniform
            attt_scores<HS>(Sw, Qs + r0 * L::LDX, Ks, k0, t0);
            __syncwarp();
            bad += attt_softmax_tile<HS>(rs, Sw, Pw, Ow, k0, t0, T, scale);
            __syncwarp();
            attt_accumulate_pv<HS>(Ow, Pw, Vs, k0, t0);
            __syncwarp();
        }
        __syncthreads();  // this stage is consumed before the next iteration refills it
    }
    float entropy = 0.0f, nansum = 0.0f, nan_rows = 0.0f;
#pragma unroll
    for (int rr = 0; rr < 16; rr++) {
        const int t = t0 + rr;
        if (t < T) {
            const float inv_l = 1.0f / rs.l[rr], log_l = logf(rs.l[rr]);
            floatX* o_t = out + ((size_t)b * T + t) * C + (size_t)h * HS;
            for (int d = lane; d < HS; d += 32) o_t[d] = from_float<floatX>(Ow[rr * L::LDO + d] * inv_l);
            if (lane == 0) lse[((size_t)b * NH + h) * T + t] = rs.m[rr] + log_l;
#if defined(ATTT_UNCENTRED)
            entropy += rs.m[rr] + log_l - rs.u[rr] * inv_l;
#else
            entropy += log_l - rs.u[rr] * inv_l;
#endif
            att_paper_row(log_l - rs.u[rr] * inv_l, rs.l[rr], &nansum, &nan_rows);
        }
    }
    // one partial per 32-row tile (entropy_reduce's layout): two warps
    if (ent_partial != NULL) attw_store_entropy_partials(ent_partial, warp_entropy, entropy, qt, b, h, NH, T);
    if (paper_partial != NULL) attw_store_paper_partials(paper_partial, warp_paper, nansum, nan_rows, qt, b, h, B, NH, T);
    if (nonfinite != NULL) {
        bad = __reduce_add_sync(0xffffffffu, bad);
        if (lane == 0 && bad > 0) atomicAdd(nonfinite, (unsigned long long)bad);
    }
}
#endif  // !ENABLE_FP32

// Whether the tiled forward handles this call: bf16/fp16, head size 64 or 128, 16-byte rows.
inline bool attention_tiled_supported(const void* qkv, const void* out, int C, int NH) {
#if defined(ENABLE_FP32)
    return false;
#else
    const int hs = C / NH;
    return (hs == 64 || hs == 128) && C % 8 == 0 && aligned16(qkv) && aligned16(out);
#endif
}

#if !defined(ENABLE_FP32)
template <int HS>
inline void attention_forward_tiled_launch(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite,
                                           const floatX* qkv, int B, int T, int C, int NH, float* paper_partial) {
    const size_t smem = AttTiledLayout<HS>::total;
    cudaCheck(cudaFuncSetAttribute(attention_forward_tiled_kernel<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((T + ATTT_QT - 1) / ATTT_QT, NH, B);
    attention_forward_tiled_kernel<HS><<<grid, ATTT_WARPS * 32, smem, g_stream>>>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH,
                                                                                         paper_partial);
    cudaCheckLaunch();
}
#endif

// The same contract as attention_forward (entropy.cuh): out (B, T, C), lse (B, NH, T) from qkv
// (B, T, 3C); ent_partial (B, NH, ceil(T / 32)) or NULL; nonfinite or NULL; paper_partial
// (2, B, NH, ceil(T / 32)) for the paper's metrics (entropy.cuh's att_paper_row) or NULL.
inline void attention_forward_tiled(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite,
                                    const floatX* qkv, int B, int T, int C, int NH, float* paper_partial = NULL) {
    if (!attention_tiled_supported(qkv, out, C, NH))
        fail("the tiled attention needs a bf16/fp16 build, head size 64 or 128 (got C %d / NH %d) and 16-byte aligned rows", C, NH);
#if !defined(ENABLE_FP32)
    if (C / NH == 64) attention_forward_tiled_launch<64>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);
    else attention_forward_tiled_launch<128>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);
#endif
}
