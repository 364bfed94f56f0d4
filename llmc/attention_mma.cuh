// llmc/attention_mma.cuh: causal attention forward with the softmax, the per-head entropy and the
// non-finite score count computed in the tensor cores' registers (mma.sync, FlashAttention-2's
// shape), for any T and head size 64 or 128 (bf16/fp16 builds).
//
// What it changes against llmc/attention_tiled.cuh (same grid, same online softmax, same outputs):
// there every 16x64 score tile and every 16xHS output strip goes through shared memory per key
// tile (wmma's fragments have no known layout), and the softmax runs one row at a time with three
// 32-lane reductions. Here nothing but Q, K and V touches shared memory:
//   Q (16, HS) per warp        A fragments, loaded once (ldsm_a), kept in registers
//   S (16, 64) = Q K^T          8 FragC (n8 tiles of keys), K's B operands by ldmatrix
//   softmax, per row            lane (g, q) = (lane / 4, lane % 4) owns rows g and g + 8 and,
//                               of each, keys 8n + 2q, 8n + 2q + 1 (n = 0..7): 16 scores per row;
//                               max and sums over the row are the lane's 16 then 2 shuffles
//                               (xor 1, xor 2) within the 4 lanes of the group
//   P~ = e^(s - m) (floatX)     FragC -> FragA in registers (frag_a_from_c): two key tiles of the
//                               scores are exactly the A operand of O += P~ V over those 16 keys
//   O (16, HS) fp32             HS / 8 FragC, rescaled per row by alpha = e^(m0 - m1)
// The row statistics follow entropy.cuh's SIMT forward and the tiled kernel: m, l = sum e^(s-m)
// (fp32, not of the rounded P~), and the centred sum u' = sum e^(s-m) (s-m), which becomes
// e^(m0-m1) (u' + (m0-m1) l) when the max moves from m0 to m1. At the end O / l is written (staged
// through the warp's Q rows for 16-byte stores), lse = m + ln l, and H = ln l - u'/l per row goes
// into the same entropy and paper partials (one per 32-row tile, fixed order: the lane's 2 rows,
// then xor 4, 8, 16 over the 8 groups, then attw_store_*_partials' two warps), so
// entropy_reduce/paper_reduce read them unchanged and the result does not depend on timing. The
// FP16 build rounds the scores as att_score does. The backward pairs with any forward: every path
// saves lse = m + ln l of the same scores.
//
// Shared memory: Q (64, HS + 8) and two cp.async stages of K and V, 45 KiB at head size 64 and
// 85 KiB at 128 (the tiled kernel needs 88 and 144), so 4 (hs 64) blocks fit per SM where
// registers allow (dev/cuda/PERF.md).
#pragma once

#include "cuda_common.cuh"
#include "../common.h"           // fail
#include "../entropy.cuh"        // att_score, att_paper_row, attw_store_*_partials
#include "attention_tiled.cuh"   // attt_load_rows, attention_tiled_supported (the same shapes)
#include "mma_frag.cuh"

#if !defined(ENABLE_FP32)

#define ATTM_QT 64     // query rows per block (4 warps x 16)
#define ATTM_KT 64     // keys per tile
#define ATTM_WARPS 4
// Blocks per SM that __launch_bounds__ asks registers for. Head size 64: 4 (128 registers, no
// spills; unbounded, the bf16 build took 143, i.e. 3 blocks). Head size 128: 2 (208-218, no
// spills; 3 fits in 168 registers with 32-68 bytes of spill loads: an A/B for a GPU,
// -DATTM_MIN_BLOCKS_HS128=3).
#ifndef ATTM_MIN_BLOCKS_HS128
#define ATTM_MIN_BLOCKS_HS128 2
#endif

template <int HS>
struct AttMmaLayout {
    static constexpr int LDX = HS + 8;  // 16-byte rows whose 8 ldmatrix addresses hit 8 different bank quads
    static constexpr size_t tile_bytes = ((size_t)ATTM_QT * LDX * sizeof(floatX) + 127) & ~(size_t)127;
    static constexpr size_t total = 5 * tile_bytes;  // Q, then stage s: K at 1 + 2s, V at 2 + 2s
};

// The running statistics of the lane's two rows (g and g + 8 of the warp's 16); the 4 lanes of a
// group hold the same bits (butterfly sums add in the same order on every lane).
struct AttMmaRows {
    float m[2], l[2], u[2];
};

__device__ inline float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// S (16, 64) = Q K^T, unscaled, for the first `strips` 16-key strips of the tile (the others lie
// wholly above the warp's last row and stay 0; the mask drops them).
template <int HS>
__device__ inline void attm_scores(FragC (&S)[8], const FragA (&qa)[HS / 16], const floatX* Ks, int strips) {
    constexpr int LD = AttMmaLayout<HS>::LDX;
#pragma unroll
    for (int n = 0; n < 8; n++) frag_zero(S[n]);
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
#pragma unroll
        for (int np = 0; np < 4; np++) {
            if (np < strips) {
                FragB b0, b1;
                ldsm_b_pair(b0, b1, Ks + np * 16 * LD + kk * 16, LD);
                mma_16816(S[2 * np], qa[kk], b0);
                mma_16816(S[2 * np + 1], qa[kk], b1);
            }
        }
    }
}

// The online softmax step of one key tile (keys k0 ..) for the lane's rows t0 + g and t0 + g + 8:
// scores scaled (att_score) and masked (key > row, row >= T), m, l, u' updated, S overwritten by
// e^(s - m_new) (0 where masked). alpha[i]: the factor for row i's O. Returns the non-finite
// scores this lane saw (each score has one owner lane, so the warp's sum counts each once).
// MASKED = false: the caller knows every key of the tile is at or before every row and every row
// is below T (tiles wholly under the diagonal: most of them at long T), so no mask is evaluated.
template <int HS, bool MASKED>
__device__ inline unsigned int attm_softmax_tile(AttMmaRows& rs, FragC (&S)[8], float (&alpha)[2], int k0, int t0, int T,
                                                 float scale) {
    const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    unsigned int bad = 0;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int t = t0 + g + 8 * i;
        float mt = -INFINITY;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int j = k0 + 8 * n + 2 * q + e;
                const bool valid = !MASKED || (j <= t && t < T);
                const float s = valid ? att_score(S[n].x[2 * i + e], HS, scale) : -INFINITY;  // fp16 build: rounded
                if (valid) bad += !isfinite(s);
                S[n].x[2 * i + e] = s;
                mt = fmaxf(mt, s);
            }
        mt = quad_max(mt);
        const float m0 = rs.m[i], mnew = fmaxf(m0, mt);
        const bool first = m0 == -INFINITY;
        alpha[i] = first ? 0.0f : expf(m0 - mnew);
        float lt = 0.0f, ut = 0.0f;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int j = k0 + 8 * n + 2 * q + e;
                const bool valid = !MASKED || (j <= t && t < T);
                const float s = S[n].x[2 * i + e];
#if defined(ATTT_UNCENTRED)  // the lab's negative control (as the tiled kernel's): sum e^(s-m) s
                const float ev = valid ? expf(s - mnew) : 0.0f, c = valid ? s : 0.0f;
#else
                const float ev = valid ? expf(s - mnew) : 0.0f, c = valid ? s - mnew : 0.0f;
#endif
                lt += ev;
                ut += ev * c;
                S[n].x[2 * i + e] = ev;
            }
        lt = quad_sum(lt);
        ut = quad_sum(ut);
#if defined(ATTT_UNCENTRED)
        rs.u[i] = first ? ut : alpha[i] * rs.u[i] + ut;
#else
        rs.u[i] = first ? ut : alpha[i] * (rs.u[i] + (m0 - mnew) * rs.l[i]) + ut;
#endif
        rs.l[i] = alpha[i] * rs.l[i] + lt;
        rs.m[i] = mnew;
    }
    return bad;
}

// O = alpha O + P~ V over the first `strips` 16-key strips of the tile; P~ (rounded to floatX)
// comes straight from the score registers.
template <int HS>
__device__ inline void attm_accumulate_pv(FragC (&O)[HS / 8], const FragC (&P)[8], const float (&alpha)[2], const floatX* Vs,
                                          int strips) {
    constexpr int LD = AttMmaLayout<HS>::LDX;
#pragma unroll
    for (int n = 0; n < HS / 8; n++) {
        O[n].x[0] *= alpha[0];
        O[n].x[1] *= alpha[0];
        O[n].x[2] *= alpha[1];
        O[n].x[3] *= alpha[1];
    }
#pragma unroll
    for (int kt = 0; kt < 4; kt++) {
        if (kt < strips) {
            const FragA pa = frag_a_from_c(P[2 * kt], P[2 * kt + 1]);
#pragma unroll
            for (int dp = 0; dp < HS / 16; dp++) {
                FragB b0, b1;
                ldsm_b_pair_trans(b0, b1, Vs + kt * 16 * LD + dp * 16, LD);
                mma_16816(O[2 * dp], pa, b0);
                mma_16816(O[2 * dp + 1], pa, b1);
            }
        }
    }
}

// Grid (ceil(T / 64), NH, B), 128 threads, AttMmaLayout<HS>::total bytes of dynamic shared
// memory. out (B, T, C); lse (B, NH, T); ent_partial (B, NH, ceil(T / 32)) or NULL; nonfinite:
// the layer's counter or NULL; paper_partial (2, B, NH, ceil(T / 32)) or NULL. qkv (B, T, 3C)
// with 16-byte aligned rows.
template <int HS>
__global__ void __launch_bounds__(ATTM_WARPS * 32, HS == 64 ? 4 : ATTM_MIN_BLOCKS_HS128)
    attention_forward_mma_kernel(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite, const floatX* qkv,
                                 int B, int T, int C, int NH, float* paper_partial) {
    using L = AttMmaLayout<HS>;
    extern __shared__ __align__(128) unsigned char smem_w[];  // the name the emulator maps (dev/cuda/emu)
    __shared__ float warp_entropy[ATTM_WARPS], warp_paper[2][ATTM_WARPS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    floatX* Qs = (floatX*)smem_w;  // (64, LDX)
    unsigned char* kv = smem_w + L::tile_bytes;
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * ATTM_QT, r0 = warp * 16, t0 = q0 + r0;
    const size_t C3 = 3 * (size_t)C;
    const floatX* base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const int nkt = (min(T, q0 + ATTM_QT) + ATTM_KT - 1) / ATTM_KT;  // key tiles up to the causal limit

    auto load_kv = [&](int i) {  // key tile i's K and V into stage i % 2
        unsigned char* st = kv + 2 * (i % 2) * L::tile_bytes;
        attt_load_rows<HS>((floatX*)st, L::LDX, base + C, C3, i * ATTM_KT, ATTM_KT, T);
        attt_load_rows<HS>((floatX*)(st + L::tile_bytes), L::LDX, base + 2 * C, C3, i * ATTM_KT, ATTM_KT, T);
    };
    attt_load_rows<HS>(Qs, L::LDX, base, C3, q0, ATTM_QT, T);
    load_kv(0);
    __pipeline_commit();
    FragA qa[HS / 16];
    FragC O[HS / 8];
#pragma unroll
    for (int n = 0; n < HS / 8; n++) frag_zero(O[n]);
    AttMmaRows rs;
#pragma unroll
    for (int i = 0; i < 2; i++) rs.m[i] = -INFINITY, rs.l[i] = 0.0f, rs.u[i] = 0.0f;
    unsigned int bad = 0;
    for (int it = 0; it < nkt; it++) {
        attt_pipeline_step(it, nkt, load_kv);  // tile `it` (and Q, the first time) visible to all warps
        const int k0 = it * ATTM_KT;
        if (t0 < T && k0 <= t0 + 15) {  // warp-uniform
            if (it == 0) {
#pragma unroll
                for (int kk = 0; kk < HS / 16; kk++) qa[kk] = ldsm_a(Qs + r0 * L::LDX + kk * 16, L::LDX);
            }
            const floatX* Ks = (const floatX*)(kv + 2 * (it % 2) * L::tile_bytes);
            const floatX* Vs = (const floatX*)(kv + (2 * (it % 2) + 1) * L::tile_bytes);
            const int strips = min(4, (t0 + 15 - k0) / 16 + 1);  // 16-key strips not wholly above row t0 + 15
            FragC S[8];
            float alpha[2];
            attm_scores<HS>(S, qa, Ks, strips);
            if (k0 + ATTM_KT - 1 <= t0 && t0 + 15 < T) bad += attm_softmax_tile<HS, false>(rs, S, alpha, k0, t0, T, scale);
            else bad += attm_softmax_tile<HS, true>(rs, S, alpha, k0, t0, T, scale);
            attm_accumulate_pv<HS>(O, S, alpha, Vs, strips);
        }
        __syncthreads();  // this stage is consumed before the next iteration refills it
    }

    // O / l into the warp's own Q rows (Q is in registers now; no other warp reads these rows),
    // then out in 16-byte packs.
    float inv_l[2], log_l[2];
#pragma unroll
    for (int i = 0; i < 2; i++) inv_l[i] = 1.0f / rs.l[i], log_l[i] = logf(rs.l[i]);
    floatX* Ow = Qs + r0 * L::LDX;
    if (t0 < T) {
#pragma unroll
        for (int n = 0; n < HS / 8; n++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const uint32_t v = pack2(O[n].x[2 * i] * inv_l[i], O[n].x[2 * i + 1] * inv_l[i]);
                memcpy(Ow + (g + 8 * i) * L::LDX + 8 * n + 2 * q, &v, 4);
            }
        __syncwarp();
        constexpr int packs = HS / 8;
        for (int idx = lane; idx < 16 * packs; idx += 32) {
            const int r = idx / packs, c = (idx % packs) * 8, t = t0 + r;
            if (t < T) store128(out + ((size_t)b * T + t) * C + (size_t)h * HS + c, load128(Ow + r * L::LDX + c));
        }
    }
    float entropy = 0.0f, nansum = 0.0f, nan_rows = 0.0f;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int t = t0 + g + 8 * i;
        if (t < T) {
            if (q == 0) lse[((size_t)b * NH + h) * T + t] = rs.m[i] + log_l[i];
#if defined(ATTT_UNCENTRED)
            const float H = rs.m[i] + log_l[i] - rs.u[i] * inv_l[i];
#else
            const float H = log_l[i] - rs.u[i] * inv_l[i];
#endif
            entropy += H;
            att_paper_row(H, rs.l[i], &nansum, &nan_rows);
        }
    }
    for (int o = 4; o < 32; o <<= 1) {  // over the 8 groups; the 4 lanes of a group hold the same rows
        entropy += __shfl_xor_sync(0xffffffffu, entropy, o);
        nansum += __shfl_xor_sync(0xffffffffu, nansum, o);
        nan_rows += __shfl_xor_sync(0xffffffffu, nan_rows, o);
    }
    if (ent_partial != NULL) attw_store_entropy_partials(ent_partial, warp_entropy, entropy, qt, b, h, NH, T);
    if (paper_partial != NULL) attw_store_paper_partials(paper_partial, warp_paper, nansum, nan_rows, qt, b, h, B, NH, T);
    if (nonfinite != NULL) {
        bad = __reduce_add_sync(0xffffffffu, bad);
        if (lane == 0 && bad > 0) atomicAdd(nonfinite, (unsigned long long)bad);
    }
}

template <int HS>
inline void attention_forward_mma_launch(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite,
                                         const floatX* qkv, int B, int T, int C, int NH, float* paper_partial) {
    const size_t smem = AttMmaLayout<HS>::total;
    cudaCheck(cudaFuncSetAttribute(attention_forward_mma_kernel<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((T + ATTM_QT - 1) / ATTM_QT, NH, B);
    attention_forward_mma_kernel<HS><<<grid, ATTM_WARPS * 32, smem, g_stream>>>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH,
                                                                                      paper_partial);
    cudaCheckLaunch();
}
#endif  // !ENABLE_FP32

// attention_forward's contract (entropy.cuh) on the shapes attention_tiled_supported accepts
// (bf16/fp16, head size 64 or 128, 16-byte aligned rows); anything else ends with an error.
inline void attention_forward_mma(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite, const floatX* qkv,
                                  int B, int T, int C, int NH, float* paper_partial = NULL) {
    if (!attention_tiled_supported(qkv, out, C, NH))
        fail("the mma attention forward needs a bf16/fp16 build, head size 64 or 128 (got C %d / NH %d) and 16-byte aligned rows",
             C, NH);
#if !defined(ENABLE_FP32)
    if (C / NH == 64) attention_forward_mma_launch<64>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);
    else attention_forward_mma_launch<128>(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);
#endif
}
