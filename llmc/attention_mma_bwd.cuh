// llmc/attention_mma_bwd.cuh: causal attention backward on tensor cores with every score tile in
// registers (mma.sync m16n8k16, llmc/mma_frag.cuh), for any T, head size 64 or 128, bf16/fp16.
//
// The same results' meaning as attention_tiled_bwd.cuh (whose header comment is the design kept
// here): P recomputed from the saved lse, p~_tj = e^(s_tj - lse_t) rounded to floatX, dp_tj =
// dO_t . v_j, D_t = sum_j p~ dp / sum_j p~ from that very p~ and dp (entropy.cuh says why not
// D = dO . O from the rounded output), dS = p~ (dP - D) rounded to floatX; dq = dS K / sqrt(hs),
// dk = dS^T Q / sqrt(hs), dv = P~^T dO. Two kernels, so each output has one writer and no float
// atomics are needed: the results are the same bits on every run.
//
// What changes against the tiled backward: wmma's fragments have no documented layout, so there
// S, dP, P~, dS and the fp32 accumulators round-trip shared memory. mma.sync's layouts are fixed
// (FragC: lane (g, q) holds rows g and g+8, columns 2q, 2q+1 of each 16x8 tile), so here
//   attention_backward_mma_dq_kernel   query-major, 4 warps x 16 query rows per block. Q and dO
//       A fragments in registers. Pass 1 over the 64-key tiles (K, V double-buffered by
//       cp.async), one 16-key strip at a time: S = Q K^T and dP = dO V^T in FragC registers,
//       p~, and each row's sums of p~ dp and p~ over the lane's columns, then over the row's 4
//       lanes (2 shuffles) -> D, written to Dbuf. Pass 2: S and dP again, dS in registers,
//       converted (frag_a_from_c) into the A operand of dQ += dS K (K as B by ldmatrix.trans);
//       dQ stays in FragC registers and is written once.
//   attention_backward_mma_dkv_kernel  key-major, 4 warps x 16 keys per block, over the query
//       tiles at or after them (Q, dO, lse, D double-buffered): the transposed products S^T =
//       K Q^T and dP^T = V dO^T (A = the warp's K, V fragments), p~^T and dS^T from the lse and D
//       of the query columns, then dV += P~^T dO and dK += dS^T Q with A from frag_a_from_c.
// Shared memory holds only the operand tiles (55 KiB at hs 64, 103 KiB at hs 128).
//
// Same bits in both kernels? S_tj is formed as the sum over the HS/16 k-steps, in the same order,
// of one mma's 16-element dot product q_t[16kk..16kk+15] . k_j[same] plus the running sum; in
// the key-major kernel the row and column roles swap but each element's 16 products sit at the
// same k positions and are accumulated in the same order. If the tensor core's reduction of a
// 16-element dot product depends only on the products at each k position (the same circuit for
// every output element), p~ and dS are bit-identical between the kernels, as the tiled backward
// claims for its wmma products. The PTX ISA does not promise this. If it did not hold, a p~^T
// differing from the query-major p~ by one rounding (relative 2^-9 in bf16) would leave D_t
// from the query-major kernel's p~ and each dS^T row of dk would sum to sum_t dp_tj (dp_tj - D_t)
// times those differences: |dk error| <= 2^-9 sum_t p~_tj |dp_tj - D_t| |q_t| / sqrt(hs), the
// same order as the rounding of dS itself, so dk stays within the rounding bound the tests apply
// (AttRef::cond: u times the condition sum), rows no longer summing to 0 exactly but within fp32
// rounding plus that term. The emulator computes both orders identically; only a GPU can tell.
// Measured in the emulator (lab, bf16, T = 40, hard rows), by planting the worst case by hand:
// every p~ of the key-major kernel's dS one bf16 ulp up moves dk's worst error from 0.76 to
// 1.58 x its bound (tolerance 2); a D off by one rounding (D rounded to bf16 there, the kind of
// error D = dO . O makes) moves it to 96 x: the test tells the two apart.
#pragma once

#include "attention_tiled_bwd.cuh"  // attb_p, attt_load_rows, ATTT_* and the cp.async pipeline
#include "colsum.cuh"  // colsum_finish: the bias fold's last pass
#include "mma_frag.cuh"

#if !defined(ENABLE_FP32)

// Shared memory for head size HS: the block's own 64 rows of two tensors (Q, dO or K, V), then
// two stages of the other two (64 rows each) with 64 floats each of lse and D. Row stride LDX =
// HS + 8 floatX: rows stay 16-byte aligned for ldmatrix and cp.async, and the 8 rows one
// ldmatrix tile reads start 144 (hs 64) or 272 (hs 128) bytes apart, i.e. in 8 different
// 16-byte bank groups.
template <int HS>
struct AttMmaBwdLayout {
    static constexpr int LDX = HS + 8;
    static constexpr size_t tile_bytes = (ATTT_QT * LDX * sizeof(floatX) + 127) & ~(size_t)127;
    static constexpr size_t rows_bytes = (2 * ATTT_QT * sizeof(float) + 127) & ~(size_t)127;  // lse, D
    static constexpr size_t stage_bytes = 2 * tile_bytes + rows_bytes;
    static constexpr size_t total = 2 * tile_bytes + 2 * stage_bytes;  // 55 KiB (hs 64), 103 KiB (hs 128)
    static_assert(LDX == AttTiledBwdLayout<HS, false>::LDX && tile_bytes == AttTiledBwdLayout<HS, false>::tile_bytes &&
                      stage_bytes == AttTiledBwdLayout<HS, false>::stage_bytes,
                  "AttbStream lays out the stages as the tiled backward does");
};

// The A fragments of a warp's 16 rows (16, HS) over the HS/16 k-steps: held in registers
// (HOLD), or read from shared memory at each use where registers would spill (the key-major
// kernel at hs 128 also holds two (16, HS) fp32 accumulators).
template <int HS, bool HOLD>
struct MmabRows {
    FragA f[HOLD ? HS / 16 : 1];
    const floatX* rows;
    __device__ void load(const floatX* p) {
        rows = p;
        if constexpr (HOLD) {
#pragma unroll
            for (int kk = 0; kk < HS / 16; kk++) f[kk] = ldsm_a(p + 16 * kk, AttMmaBwdLayout<HS>::LDX);
        }
    }
    __device__ FragA get(int kk) const {
        if constexpr (HOLD) return f[kk];
        else return ldsm_a(rows + 16 * kk, AttMmaBwdLayout<HS>::LDX);
    }
};

// c (16, 16) as two 16x8 tiles = A (16, HS) times the transpose of the 16 row-major rows at p
// (16, HS): c[n][r][col] = sum_d A[r][d] p[8n + col][d], k-steps in increasing d. Both kernels
// form S (resp. S^T) and dP (dP^T) only through this.
template <int HS, bool HOLD>
__device__ inline void mmab_dots(FragC (&c)[2], const MmabRows<HS, HOLD>& a, const floatX* p) {
    frag_zero(c[0]);
    frag_zero(c[1]);
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
        FragB b0, b1;
        ldsm_b_pair(b0, b1, p + 16 * kk, AttMmaBwdLayout<HS>::LDX);
        const FragA ak = a.get(kk);
        mma_16816(c[0], ak, b0);
        mma_16816(c[1], ak, b1);
    }
}

// acc (16, HS) as HS/8 16x8 tiles += A (16, 16) times the 16 row-major rows at p (16, HS).
template <int HS>
__device__ inline void mmab_accumulate(FragC (&acc)[HS / 8], const FragA& a, const floatX* p) {
#pragma unroll
    for (int dd = 0; dd < HS / 16; dd++) {
        FragB b0, b1;
        ldsm_b_pair_trans(b0, b1, p + 16 * dd, AttMmaBwdLayout<HS>::LDX);
        mma_16816(acc[2 * dd], a, b0);
        mma_16816(acc[2 * dd + 1], a, b1);
    }
}

// Writes a warp's accumulator (16 rows from r0, HS) times mul to dst + row * stride, rows < T:
// each lane its two adjacent columns of rows g and g+8 per 16x8 tile, as one 32-bit store.
template <int HS>
__device__ inline void mmab_store(floatX* dst, size_t stride, const FragC (&acc)[HS / 8], int r0, int T, float mul) {
    const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int t = r0 + g + 8 * half;
        if (t >= T) continue;
        uint32_t* row = (uint32_t*)(dst + (size_t)t * stride);
#pragma unroll
        for (int n = 0; n < HS / 8; n++) row[4 * n + q] = pack2(acc[n].x[2 * half] * mul, acc[n].x[2 * half + 1] * mul);
    }
}

// The bias gradient's share of one block: out[d] = the sum over the block's 64 rows (< T) of
// the values mmab_store writes, round(acc * mul) in floatX, as matmul_backward_bias would read
// them back. A warp adds its two rows per lane, then its 8 row groups (a butterfly over lane
// bits 2-4), then the 4 warps in order: the same bits on every run. red: 4 * HS floats of shared
// memory no thread reads meanwhile. Every thread of the block calls it (it synchronises).
template <int HS>
__device__ inline void mmab_bias_partial(float* out, const FragC (&acc)[HS / 8], int r0, int T, float mul, float* red) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    const bool lo = r0 + g < T, hi = r0 + g + 8 < T;
#pragma unroll
    for (int n = 0; n < HS / 8; n++)
#pragma unroll
        for (int e = 0; e < 2; e++) {  // column 8 n + 2 q + e
            float v = lo ? to_float(from_float<floatX>(acc[n].x[e] * mul)) : 0.0f;
            v += hi ? to_float(from_float<floatX>(acc[n].x[2 + e] * mul)) : 0.0f;
            v += __shfl_xor_sync(0xffffffffu, v, 4);
            v += __shfl_xor_sync(0xffffffffu, v, 8);
            v += __shfl_xor_sync(0xffffffffu, v, 16);
            if (g == 0) red[warp * HS + 8 * n + 2 * q + e] = v;
        }
    __syncthreads();
    for (int d = threadIdx.x; d < HS; d += blockDim.x) out[d] = ((red[d] + red[HS + d]) + red[2 * HS + d]) + red[3 * HS + d];
}

// Grid (ceil(T / 64), NH, B), 128 threads. Writes dq (the q part of dqkv (B, T, 3C)) and each
// row's D into Dbuf (B, NH, T); with bias_part (B, ceil(T / 64), 3C), its q columns: the block's
// share of the q bias gradient (mmab_bias_partial).
template <int HS>
__global__ void __launch_bounds__(ATTT_WARPS * 32) attention_backward_mma_dq_kernel(floatX* dqkv, float* Dbuf, float* bias_part,
                                                                                   const floatX* dout,
                                                                                   const floatX* qkv, const float* lse, int B, int T,
                                                                                   int C, int NH) {
    using L = AttMmaBwdLayout<HS>;
    extern __shared__ __align__(128) unsigned char smem_w[];  // the name the emulator maps (dev/cuda/emu)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    floatX* Qs = (floatX*)smem_w;                        // (64, LDX) this block's queries
    floatX* dOs = (floatX*)(smem_w + L::tile_bytes);     // (64, LDX)
    unsigned char* stages = smem_w + 2 * L::tile_bytes;  // K, V of a key tile
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * ATTT_QT, t0 = q0 + 16 * warp;
    const size_t C3 = 3 * (size_t)C;
    const AttbStream<HS, false> keys(stages, qkv, dout, lse, Dbuf, b, h, T, C, NH, 0);
    const float scale = 1.0f / sqrtf((float)HS);
    const int nkt = (min(T, q0 + ATTT_QT) + ATTT_KT - 1) / ATTT_KT;
    const int rows[2] = {t0 + g, t0 + g + 8};  // this lane's two query rows
    float row_lse[2], D[2] = {0.0f, 0.0f}, num[2] = {0.0f, 0.0f}, den[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; r++) row_lse[r] = rows[r] < T ? keys.lse[rows[r]] : 0.0f;
    MmabRows<HS, true> qf, of;
    FragC dq[HS / 8];
#pragma unroll
    for (int n = 0; n < HS / 8; n++) frag_zero(dq[n]);
    keys.load_own(Qs, dOs, q0);
    for (int pass = 0; pass < 2; pass++) {  // 0: D, 1: dS and dQ
        keys.start();
        for (int it = 0; it < nkt; it++) {
            attt_pipeline_step(it, nkt, keys);
            if (pass == 0 && it == 0) {  // Q and dO arrived with the first stage
                qf.load(Qs + 16 * warp * L::LDX);
                of.load(dOs + 16 * warp * L::LDX);
            }
            const int k0 = it * ATTT_KT;
            const floatX *Ks = keys.stage(it).a, *Vs = keys.stage(it).b;
            const int nsub = min(ATTT_KT / 16, (t0 + 15 - k0) / 16 + 1);  // key strips at or below the diagonal
            if (t0 < T) {  // warp-uniform
                for (int n = 0; n < nsub; n++) {
                    FragC s[2], dp[2], ds[2];
                    mmab_dots<HS, true>(s, qf, Ks + 16 * n * L::LDX);
                    mmab_dots<HS, true>(dp, of, Vs + 16 * n * L::LDX);
#pragma unroll
                    for (int c = 0; c < 2; c++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {  // row rows[e / 2], key k0 + 16 n + 8 c + 2 q + e % 2
                            const int r = e / 2, t = rows[r], j = k0 + 16 * n + 8 * c + 2 * q + e % 2;
                            const bool valid = j <= t && t < T;
                            const float p = attb_p(s[c].x[e], HS, scale, row_lse[r], valid);
                            if (pass == 0) {
                                num[r] += valid ? p * dp[c].x[e] : 0.0f;
                                den[r] += p;
                            } else {
                                ds[c].x[e] = valid ? p * (dp[c].x[e] - D[r]) : 0.0f;
                            }
                        }
                    if (pass == 1) mmab_accumulate<HS>(dq, frag_a_from_c(ds[0], ds[1]), Ks + 16 * n * L::LDX);
                }
            }
            __syncthreads();  // this stage is consumed before it is refilled
        }
        if (pass == 0) {
#pragma unroll
            for (int r = 0; r < 2; r++) {  // the row's 4 lanes, in a fixed butterfly
                float n_ = num[r], d_ = den[r];
                n_ += __shfl_xor_sync(0xffffffffu, n_, 1);
                d_ += __shfl_xor_sync(0xffffffffu, d_, 1);
                n_ += __shfl_xor_sync(0xffffffffu, n_, 2);
                d_ += __shfl_xor_sync(0xffffffffu, d_, 2);
                D[r] = d_ > 0.0f ? n_ / d_ : 0.0f;
                if (q == 0 && rows[r] < T) Dbuf[((size_t)b * NH + h) * T + rows[r]] = D[r];
            }
        }
    }
    if (t0 < T) mmab_store<HS>(dqkv + (size_t)b * T * C3 + (size_t)h * HS, C3, dq, t0, T, scale);
    if (bias_part != NULL)  // block-uniform; the stages are consumed (the loop's last barrier)
        mmab_bias_partial<HS>(bias_part + ((size_t)b * gridDim.x + qt) * C3 + (size_t)h * HS, dq, t0, T, scale, (float*)stages);
}

// Grid (ceil(T / 64), NH, B), 128 threads. Writes dk and dv (the k and v parts of dqkv); with
// bias_part, the block's share of the k and v bias gradients (as the dq kernel's).
template <int HS>
__global__ void __launch_bounds__(ATTT_WARPS * 32) attention_backward_mma_dkv_kernel(floatX* dqkv, const float* Dbuf,
                                                                                    float* bias_part,
                                                                                    const floatX* dout, const floatX* qkv,
                                                                                    const float* lse, int B, int T, int C, int NH) {
    using L = AttMmaBwdLayout<HS>;
    constexpr bool HOLD = HS <= 64;  // hs 128: K and V fragments from shared memory (registers would spill)
    extern __shared__ __align__(128) unsigned char smem_w[];  // the name the emulator maps (dev/cuda/emu)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    floatX* Ks = (floatX*)smem_w;                        // (64, LDX) this block's keys
    floatX* Vs = (floatX*)(smem_w + L::tile_bytes);      // (64, LDX)
    unsigned char* stages = smem_w + 2 * L::tile_bytes;  // Q, dO, lse, D of a query tile
    const int kt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int k0 = kt * ATTT_KT, j0 = k0 + 16 * warp;
    const size_t C3 = 3 * (size_t)C;
    const AttbStream<HS, true> queries(stages, qkv, dout, lse, Dbuf, b, h, T, C, NH, k0);
    const float scale = 1.0f / sqrtf((float)HS);
    const int nqt = (T - k0 + ATTT_QT - 1) / ATTT_QT;  // query tiles from this one (QT == KT) to the end
    const int keys[2] = {j0 + g, j0 + g + 8};          // this lane's two keys
    MmabRows<HS, HOLD> kf, vf;
    FragC dk[HS / 8], dv[HS / 8];
#pragma unroll
    for (int n = 0; n < HS / 8; n++) {
        frag_zero(dk[n]);
        frag_zero(dv[n]);
    }
    queries.load_own(Ks, Vs, k0);
    queries.start();
    for (int it = 0; it < nqt; it++) {
        attt_pipeline_step(it, nqt, queries);
        if (it == 0) {  // K and V arrived with the first stage
            kf.load(Ks + 16 * warp * L::LDX);
            vf.load(Vs + 16 * warp * L::LDX);
        }
        const int q0 = k0 + it * ATTT_QT;
        const AttbStage st = queries.stage(it);
        const floatX *Qt = st.a, *dOt = st.b;
        const float *lse_s = st.lse, *D_s = st.D;
        if (j0 < T) {  // warp-uniform
            // query strips from the first that reaches this warp's keys (t >= j0 for some t)
            for (int i = max(0, (j0 - q0) / 16); i < ATTT_QT / 16; i++) {
                FragC s[2], dp[2], pt[2], ds[2];
                mmab_dots<HS, HOLD>(s, kf, Qt + 16 * i * L::LDX);   // S^T (16 keys, 16 queries)
                mmab_dots<HS, HOLD>(dp, vf, dOt + 16 * i * L::LDX); // dP^T
#pragma unroll
                for (int c = 0; c < 2; c++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {  // key keys[e / 2], query column 16 i + 8 c + 2 q + e % 2
                        const int col = 16 * i + 8 * c + 2 * q + e % 2, t = q0 + col;
                        const bool valid = keys[e / 2] <= t && t < T;
                        const float p = attb_p(s[c].x[e], HS, scale, lse_s[col], valid);
                        pt[c].x[e] = p;
                        ds[c].x[e] = valid ? p * (dp[c].x[e] - D_s[col]) : 0.0f;
                    }
                mmab_accumulate<HS>(dv, frag_a_from_c(pt[0], pt[1]), dOt + 16 * i * L::LDX);
                mmab_accumulate<HS>(dk, frag_a_from_c(ds[0], ds[1]), Qt + 16 * i * L::LDX);
            }
        }
        __syncthreads();  // this stage is consumed before it is refilled
    }
    if (j0 < T) {
        floatX* dk_out = dqkv + (size_t)b * T * C3 + C + (size_t)h * HS;
        mmab_store<HS>(dk_out, C3, dk, j0, T, scale);
        mmab_store<HS>(dk_out + C, C3, dv, j0, T, 1.0f);
    }
    if (bias_part != NULL) {  // block-uniform; two red areas, so the second needs no barrier before it
        float* row = bias_part + ((size_t)b * gridDim.x + kt) * C3 + C + (size_t)h * HS;
        mmab_bias_partial<HS>(row, dk, j0, T, scale, (float*)stages);
        mmab_bias_partial<HS>(row + C, dv, j0, T, 1.0f, (float*)stages + 4 * HS);
    }
}

template <int HS>
inline void attention_backward_mma_launch(floatX* dqkv, float* Dbuf, float* bias_part, const floatX* dout, const floatX* qkv,
                                          const float* lse, int B, int T, int C, int NH) {
    const size_t smem = AttMmaBwdLayout<HS>::total;
    cudaCheck(cudaFuncSetAttribute(attention_backward_mma_dq_kernel<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    cudaCheck(cudaFuncSetAttribute(attention_backward_mma_dkv_kernel<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((T + ATTT_QT - 1) / ATTT_QT, NH, B);
    attention_backward_mma_dq_kernel<HS><<<grid, ATTT_WARPS * 32, smem, g_stream>>>(dqkv, Dbuf, bias_part, dout, qkv, lse, B, T, C,
                                                                                     NH);
    cudaCheckLaunch();
    attention_backward_mma_dkv_kernel<HS><<<grid, ATTT_WARPS * 32, smem, g_stream>>>(dqkv, Dbuf, bias_part, dout, qkv, lse, B, T, C,
                                                                                      NH);
    cudaCheckLaunch();
}
#endif  // !ENABLE_FP32

// Scratch floats attention_backward_mma's bias fold needs: a partial row (3C) per 64-row tile
// (none in the fp32 build, which has no mma backward).
inline size_t attention_bias_scratch_floats(int B, int T, int C) {
#if defined(ENABLE_FP32)
    return 0;
#else
    return (size_t)B * ceil_div(T, ATTT_QT) * 3 * C;
#endif
}

// dqkv (B, T, 3C) = the gradient (overwritten) from dout (B, T, C), qkv and the lse saved by any
// forward path; Dbuf: (B, NH, T) floats of scratch. attention_backward_tiled's contract. With
// dbias (3C), also dbias += the column sums of dqkv as written (the qkv bias gradient), summed
// inside the kernels into bias_scratch (attention_bias_scratch_floats) and then over the tiles
// in order: dqkv is not read again for it.
inline void attention_backward_mma(floatX* dqkv, float* Dbuf, const floatX* dout, const floatX* qkv, const float* lse, int B, int T,
                                   int C, int NH, float* dbias = NULL, float* bias_scratch = NULL) {
    if (!attention_tiled_supported(qkv, dqkv, C, NH) || !aligned16(dout))
        fail("the mma attention backward needs a bf16/fp16 build, head size 64 or 128 (got C %d / NH %d) and 16-byte aligned rows", C,
             NH);
    if (dbias != NULL && bias_scratch == NULL) fail("attention_backward_mma: a bias gradient needs its scratch");
#if !defined(ENABLE_FP32)
    float* part = dbias != NULL ? bias_scratch : NULL;
    if (C / NH == 64) attention_backward_mma_launch<64>(dqkv, Dbuf, part, dout, qkv, lse, B, T, C, NH);
    else attention_backward_mma_launch<128>(dqkv, Dbuf, part, dout, qkv, lse, B, T, C, NH);
    if (part != NULL) colsum_finish(dbias, NULL, NULL, part, 1, B * ceil_div(T, ATTT_QT), 3 * C);
#endif
}
