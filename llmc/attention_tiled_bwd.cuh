// llmc/attention_tiled_bwd.cuh: causal attention backward on tensor cores for any T, head size
// 64 or 128 (bf16/fp16 builds), the partner of attention_tiled.cuh's forward.
//
// P is recomputed from the saved lse: p~_tj = e^(s_tj - lse_t) rounded to floatX (the P that the
// products use), dp_tj = dO_t . v_j, and, as entropy.cuh's tensor-core backward does, D_t =
// sum_j p~ dp / sum_j p~ formed from that very p~ and dp (so each row's dS sums to 0 to fp32
// rounding, and collapsed rows get no spurious dq, dk; entropy.cuh explains why D = dO . O from
// the rounded output does not). dS = p~ (dP - D) rounded to floatX; dq_t = sum_j ds_tj k_j / sqrt(hs),
// dk_j = sum_t ds_tj q_t / sqrt(hs), dv_j = sum_t p~_tj dO_t.
//
// Deterministic, no float atomics: each output has one writer, at the price of the scores.
//   attention_backward_tiled_dq_kernel   query-major, 64 rows per block (4 warps x 16): pass 1
//       over the key tiles forms S and dP and each row's D (written to Dbuf for the next kernel);
//       pass 2 forms them again with dS, and dQ += dS K.
//   attention_backward_tiled_dkv_kernel  key-major, 64 keys per block (4 warps x 16): over the
//       query tiles at or after them, S and dP again (the same 16x16 wmma products as the first
//       kernel, in the same order, so p~ and dS are the same bits), dV += P~^T dO, dK += dS^T Q.
// S and dP are thus formed 3 times (FlashAttention-2 forms them once but adds dQ with float
// atomics, and takes D = dO . O). K/V (resp. Q/dO) tiles are double-buffered with cp.async; the
// fp32 accumulators (dQ; dK, dV) live in each warp's shared strip.
#pragma once

#include <type_traits>
#include "attention_tiled.cuh"

#if !defined(ENABLE_FP32)

// Shared memory of a kernel for head size HS: the block's own 64 rows of two tensors (Q, dO or
// K, V), two stages of the other two (64 rows each) and 64 floats of lse and D per stage, then per
// warp two fp32 score scratches (S and dP), two floatX strips (P~ and dS) and the fp32
// accumulators (16, HS): dQ (query-major), or dK and dV (KEY_MAJOR). The query-major kernel's
// scores are (16, 64) strips (stride 68; P~, dS stride 72), the key-major kernel's one 16x16
// tile at a time (stride 20; its P~ and dS (64, 16), stride 24). Totals: query-major 130 KiB
// (hs 64) and 194 KiB (hs 128), key-major 123 KiB and 203 KiB, under the 227 KiB an H100/H200
// block may have.
template <int HS, bool KEY_MAJOR>
struct AttTiledBwdLayout {
    static constexpr int LDX = HS + 8;
    static constexpr int LDA = HS + 4;                   // fp32 accumulator stride
    static constexpr size_t tile_bytes = (ATTT_QT * LDX * sizeof(floatX) + 127) & ~(size_t)127;
    static constexpr size_t rows_bytes = (2 * ATTT_QT * sizeof(float) + 127) & ~(size_t)127;  // lse, D
    static constexpr size_t sf_bytes = ((KEY_MAJOR ? 16 * 20 : 16 * 68) * sizeof(float) + 127) & ~(size_t)127;
    static constexpr size_t sx_bytes = (64 * 24 * sizeof(floatX) + 127) & ~(size_t)127;       // (16, 72) or (64, 24) floatX
    static constexpr size_t acc_bytes = (16 * LDA * sizeof(float) + 127) & ~(size_t)127;
    static constexpr size_t warp_bytes = 2 * sf_bytes + 2 * sx_bytes + (KEY_MAJOR ? 2 : 1) * acc_bytes;
    static constexpr size_t stage_bytes = 2 * tile_bytes + rows_bytes;
    static constexpr size_t total = 2 * tile_bytes + 2 * stage_bytes + ATTT_WARPS * warp_bytes;
};

// A streamed tile's four parts: a query-major kernel's K and V, or a key-major kernel's Q and dO
// with the rows' lse and D (0 past T).
struct AttbStage {
    const floatX *a, *b;   // (64, LDX) each
    const float *lse, *D;  // (64) each; key-major only
};

// One (b, h) pair's inputs to a backward kernel and the double-buffered stream of 64-row tiles it
// walks: a query-major kernel (KEY_MAJOR false) streams K and V, key tiles 0, 1, ...; a key-major
// one streams Q and dO with their lse and D, query tiles from its own on. Each stage holds two
// tiles of stride LDX, then 64 floats of lse and 64 of D. Shared by this file's and
// attention_mma_bwd.cuh's kernels (whose layouts agree on these sizes).
template <int HS, bool KEY_MAJOR>
struct AttbStream {
    using L = AttTiledBwdLayout<HS, false>;
    unsigned char* stages;
    const floatX* q;       // the head's q columns of qkv, row stride 3C (k at +C, v at +2C)
    const floatX* dout;    // the head's columns of dout, row stride C
    const float *lse, *D;  // the head's row statistics, (T) each
    int C, T, first;       // first: the first streamed tile's row

    __device__ AttbStream(unsigned char* stages_, const floatX* qkv, const floatX* dout_, const float* lse_, const float* Dbuf,
                          int b, int h, int T_, int C_, int NH, int first_)
        : stages(stages_),
          q(qkv + (size_t)b * T_ * 3 * C_ + (size_t)h * HS),
          dout(dout_ + (size_t)b * T_ * C_ + (size_t)h * HS),
          lse(lse_ + ((size_t)b * NH + h) * T_),
          D(Dbuf + ((size_t)b * NH + h) * T_),
          C(C_), T(T_), first(first_) {}

    // The kernel's own 64 rows from r0 (Q, dO or K, V) into A and B; they join the next group.
    __device__ void load_own(floatX* A, floatX* B, int r0) const {
        if (KEY_MAJOR) {
            attt_load_rows<HS>(A, L::LDX, q + C, 3 * (size_t)C, r0, ATTT_KT, T);
            attt_load_rows<HS>(B, L::LDX, q + 2 * C, 3 * (size_t)C, r0, ATTT_KT, T);
        } else {
            attt_load_rows<HS>(A, L::LDX, q, 3 * (size_t)C, r0, ATTT_QT, T);
            attt_load_rows<HS>(B, L::LDX, dout, C, r0, ATTT_QT, T);
        }
    }

    // Starts the copies of streamed tile `it` into stage it % 2 (attt_pipeline_step's load).
    __device__ void operator()(int it) const {
        unsigned char* st = stages + (it % 2) * L::stage_bytes;
        const int r0 = first + it * ATTT_QT;
        if (KEY_MAJOR) {
            attt_load_rows<HS>((floatX*)st, L::LDX, q, 3 * (size_t)C, r0, ATTT_QT, T);
            attt_load_rows<HS>((floatX*)(st + L::tile_bytes), L::LDX, dout, C, r0, ATTT_QT, T);
            if (threadIdx.x < ATTT_QT) {  // plain loads, visible after the step's barrier
                float* rows = (float*)(st + 2 * L::tile_bytes);
                const int t = r0 + threadIdx.x;
                rows[threadIdx.x] = t < T ? lse[t] : 0.0f;
                rows[ATTT_QT + threadIdx.x] = t < T ? D[t] : 0.0f;
            }
        } else {
            attt_load_rows<HS>((floatX*)st, L::LDX, q + C, 3 * (size_t)C, r0, ATTT_KT, T);
            attt_load_rows<HS>((floatX*)(st + L::tile_bytes), L::LDX, q + 2 * C, 3 * (size_t)C, r0, ATTT_KT, T);
        }
    }

    // Tile 0 into stage 0 as one cp.async group (with the own rows, when they were just loaded).
    __device__ void start() const {
        (*this)(0);
        __pipeline_commit();
    }

    __device__ AttbStage stage(int it) const {
        const unsigned char* st = stages + (it % 2) * L::stage_bytes;
        const float* rows = (const float*)(st + 2 * L::tile_bytes);
        return {(const floatX*)st, (const floatX*)(st + L::tile_bytes), rows, rows + ATTT_QT};
    }
};

// One warp's scratch: S and dP (fp32), P~ and dS (floatX), one or two accumulators (16, HS) fp32.
struct AttTiledBwdWarp {
    float *S, *dP;
    floatX *P, *dS;
    float *acc1, *acc2;
};

template <int HS, bool KEY_MAJOR>
__device__ inline AttTiledBwdWarp attb_carve(unsigned char* smem) {
    using L = AttTiledBwdLayout<HS, KEY_MAJOR>;
    unsigned char* w = smem + 2 * L::tile_bytes + 2 * L::stage_bytes + (threadIdx.x / 32) * L::warp_bytes;
    AttTiledBwdWarp s;
    s.S = (float*)w;
    s.dP = (float*)(w + L::sf_bytes);
    s.P = (floatX*)(w + 2 * L::sf_bytes);
    s.dS = (floatX*)(w + 2 * L::sf_bytes + L::sx_bytes);
    s.acc1 = (float*)(w + 2 * L::sf_bytes + 2 * L::sx_bytes);
    s.acc2 = KEY_MAJOR ? (float*)(w + 2 * L::sf_bytes + 2 * L::sx_bytes + L::acc_bytes) : NULL;
    return s;
}

// The 16x16 tiles of S = Q K^T (unscaled) and dP = dO V^T for 16 query rows (Qr, dOr) and 16 keys
// (Kr, Vr), all row-major with stride LDX; both kernels call exactly this, so their tiles agree.
template <int HS>
__device__ inline void attb_tile_scores(float* S, float* dP, int ld, const floatX* Qr, const floatX* dOr, const floatX* Kr,
                                        const floatX* Vr) {
    namespace wmma = nvcuda::wmma;
    constexpr int LDX = HS + 8;  // AttTiledBwdLayout's
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc_s, acc_p;
    wmma::fill_fragment(acc_s, 0.0f);
    wmma::fill_fragment(acc_p, 0.0f);
    for (int kk = 0; kk < HS / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::col_major> bt;
        wmma::load_matrix_sync(a, Qr + kk * 16, LDX);
        wmma::load_matrix_sync(bt, Kr + kk * 16, LDX);
        wmma::mma_sync(acc_s, a, bt, acc_s);
        wmma::load_matrix_sync(a, dOr + kk * 16, LDX);
        wmma::load_matrix_sync(bt, Vr + kk * 16, LDX);
        wmma::mma_sync(acc_p, a, bt, acc_p);
    }
    wmma::store_matrix_sync(S, acc_s, ld, wmma::mem_row_major);
    wmma::store_matrix_sync(dP, acc_p, ld, wmma::mem_row_major);
}

// p~ of one element (0 where masked: key after the query, or a query past T); s is the unscaled
// dot, turned into the score by att_score exactly as the forward did (fp16 rounding in FP16).
__device__ inline float attb_p(float s, int hs, float scale, float lse, bool valid) {
    return to_float(from_float<floatX>(valid ? expf(att_score(s, hs, scale) - lse) : 0.0f));
}

// acc (16, HS) fp32 += A (16, 16 n) B (16 n, HS); A row-major (lda) or, with A_T, the transpose of
// a row-major (16 n, 16) tile (lda); B row-major with stride LDX. Only the first `n` 16-blocks.
template <int HS, bool A_T>
__device__ inline void attb_accumulate(float* acc, const floatX* A, int lda, const floatX* Bm, int n) {
    namespace wmma = nvcuda::wmma;
    using L = AttTiledBwdLayout<HS, false>;  // LDX and LDA, the same in both
    typedef typename std::conditional<A_T, wmma::col_major, wmma::row_major>::type ALayout;
    for (int nt = 0; nt < HS / 16; nt++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
        wmma::load_matrix_sync(c, acc + nt * 16, L::LDA, wmma::mem_row_major);
        for (int k = 0; k < n; k++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, ALayout> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::row_major> bm;
            wmma::load_matrix_sync(a, A + (A_T ? 16 * k * lda : 16 * k), lda);
            wmma::load_matrix_sync(bm, Bm + 16 * k * L::LDX + nt * 16, L::LDX);
            wmma::mma_sync(c, a, bm, c);
        }
        wmma::store_matrix_sync(acc + nt * 16, c, L::LDA, wmma::mem_row_major);
    }
}

// Writes a warp's accumulator rows (16, HS) times `mul` to dst + row * stride for rows < T.
template <int HS>
__device__ inline void attb_store_rows(floatX* dst, size_t stride, const float* acc, int r0, int T, float mul) {
    const int lane = threadIdx.x % 32;
    for (int rr = 0; rr < 16; rr++) {
        if (r0 + rr >= T) break;
        for (int d = lane; d < HS; d += 32)
            dst[(size_t)(r0 + rr) * stride + d] = from_float<floatX>(acc[rr * AttTiledBwdLayout<HS, false>::LDA + d] * mul);
    }
}

// Grid (ceil(T / 64), NH, B), 128 threads. Writes dq (the q part of dqkv (B, T, 3C)) and each
// row's D into Dbuf (B, NH, T).
template <int HS>
__global__ void __launch_bounds__(ATTT_WARPS * 32) attention_backward_tiled_dq_kernel(floatX* dqkv, float* Dbuf, const floatX* dout,
                                                                                     const floatX* qkv, const float* lse, int B,
                                                                                     int T, int C, int NH) {
    using L = AttTiledBwdLayout<HS, false>;
    extern __shared__ __align__(128) unsigned char smem_w[];  // the name the emulator maps (dev/cuda/emu)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const AttTiledBwdWarp w = attb_carve<HS, false>(smem_w);
    floatX* Qs = (floatX*)smem_w;                         // (64, LDX) this block's queries
    floatX* dOs = (floatX*)(smem_w + L::tile_bytes);      // (64, LDX)
    unsigned char* stages = smem_w + 2 * L::tile_bytes;   // K, V of a key tile
    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int q0 = qt * ATTT_QT, t0 = q0 + 16 * warp;
    const size_t C3 = 3 * (size_t)C;
    const AttbStream<HS, false> keys(stages, qkv, dout, lse, Dbuf, b, h, T, C, NH, 0);
    const float scale = 1.0f / sqrtf((float)HS);
    const int nkt = (min(T, q0 + ATTT_QT) + ATTT_KT - 1) / ATTT_KT;
    float row_lse[16], D[16], num[16], den[16];  // lane's partial sums of row rr over its keys
#pragma unroll
    for (int rr = 0; rr < 16; rr++) {
        row_lse[rr] = t0 + rr < T ? keys.lse[t0 + rr] : 0.0f;
        num[rr] = den[rr] = D[rr] = 0.0f;
    }
    for (int idx = lane; idx < 16 * HS; idx += 32) w.acc1[(idx / HS) * L::LDA + idx % HS] = 0.0f;
    keys.load_own(Qs, dOs, q0);
    for (int pass = 0; pass < 2; pass++) {  // 0: D, 1: dS and dQ
        keys.start();
        for (int it = 0; it < nkt; it++) {
            attt_pipeline_step(it, nkt, keys);
            const int k0 = it * ATTT_KT;
            const floatX *Ks = keys.stage(it).a, *Vs = keys.stage(it).b;
            const int nsub = min(ATTT_KT / 16, (t0 + 15 - k0) / 16 + 1);  // key strips at or below the diagonal
            if (t0 < T) {  // warp-uniform
                for (int n = 0; n < nsub; n++)
                    attb_tile_scores<HS>(w.S + 16 * n, w.dP + 16 * n, 68, Qs + 16 * warp * L::LDX, dOs + 16 * warp * L::LDX,
                                         Ks + 16 * n * L::LDX, Vs + 16 * n * L::LDX);
                __syncwarp();
#pragma unroll
                for (int rr = 0; rr < 16; rr++) {
                    const int t = t0 + rr;
                    for (int j = lane; j < 16 * nsub; j += 32) {
                        const bool valid = k0 + j <= t && t < T;
                        const float p = attb_p(w.S[rr * 68 + j], HS, scale, row_lse[rr], valid), dp = w.dP[rr * 68 + j];
                        if (pass == 0) {
                            num[rr] += valid ? p * dp : 0.0f;
                            den[rr] += p;
                        } else {
                            w.dS[rr * 72 + j] = from_float<floatX>(valid ? p * (dp - D[rr]) : 0.0f);
                        }
                    }
                }
                __syncwarp();
                if (pass == 1) attb_accumulate<HS, false>(w.acc1, w.dS, 72, Ks, nsub);
                __syncwarp();
            }
            __syncthreads();  // this stage is consumed before it is refilled
        }
        if (pass == 0) {
#pragma unroll
            for (int rr = 0; rr < 16; rr++) {  // the lanes' partials in a fixed butterfly
                const float n_ = warp_sum(num[rr]), d_ = warp_sum(den[rr]);
                D[rr] = d_ > 0.0f ? n_ / d_ : 0.0f;
                if (lane == 0 && t0 + rr < T) Dbuf[((size_t)b * NH + h) * T + t0 + rr] = D[rr];
            }
        }
    }
    if (t0 < T) attb_store_rows<HS>(dqkv + (size_t)b * T * C3 + (size_t)h * HS, C3, w.acc1, t0, T, scale);
}

// Grid (ceil(T / 64), NH, B), 128 threads. Writes dk and dv (the k and v parts of dqkv).
template <int HS>
__global__ void __launch_bounds__(ATTT_WARPS * 32) attention_backward_tiled_dkv_kernel(floatX* dqkv, const float* Dbuf,
                                                                                      const floatX* dout, const floatX* qkv,
                                                                                      const float* lse, int B, int T, int C,
                                                                                      int NH) {
    using L = AttTiledBwdLayout<HS, true>;
    extern __shared__ __align__(128) unsigned char smem_w[];  // the name the emulator maps (dev/cuda/emu)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const AttTiledBwdWarp w = attb_carve<HS, true>(smem_w);
    floatX* Ks = (floatX*)smem_w;                         // (64, LDX) this block's keys
    floatX* Vs = (floatX*)(smem_w + L::tile_bytes);       // (64, LDX)
    unsigned char* stages = smem_w + 2 * L::tile_bytes;   // Q, dO, lse, D of a query tile
    const int kt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int k0 = kt * ATTT_KT, j0 = k0 + 16 * warp;
    const size_t C3 = 3 * (size_t)C;
    const AttbStream<HS, true> queries(stages, qkv, dout, lse, Dbuf, b, h, T, C, NH, k0);
    const float scale = 1.0f / sqrtf((float)HS);
    const int nqt = (T - k0 + ATTT_QT - 1) / ATTT_QT;  // query tiles from this one (QT == KT) to the end
    for (int idx = lane; idx < 16 * HS; idx += 32) w.acc1[(idx / HS) * L::LDA + idx % HS] = w.acc2[(idx / HS) * L::LDA + idx % HS] = 0.0f;
    queries.load_own(Ks, Vs, k0);
    queries.start();
    for (int it = 0; it < nqt; it++) {
        attt_pipeline_step(it, nqt, queries);
        const int q0 = k0 + it * ATTT_QT;
        const AttbStage st = queries.stage(it);
        const floatX *Qt = st.a, *dOt = st.b;
        const float *lse_s = st.lse, *D_s = st.D;
        // query strips from the first that reaches this warp's keys (t >= j0 for some t)
        const int i0 = max(0, (j0 - q0) / 16);
        if (j0 < T && i0 < ATTT_QT / 16) {  // warp-uniform
            for (int i = i0; i < ATTT_QT / 16; i++) {  // one 16x16 tile (queries of strip i, this warp's keys) at a time
                attb_tile_scores<HS>(w.S, w.dP, 20, Qt + 16 * i * L::LDX, dOt + 16 * i * L::LDX, Ks + 16 * warp * L::LDX,
                                     Vs + 16 * warp * L::LDX);
                __syncwarp();
                for (int e = lane; e < 256; e += 32) {  // (query r, key c) into the (64, 16) strips of P~ and dS
                    const int rr = e / 16, c = e % 16, r = 16 * i + rr, t = q0 + r, j = j0 + c;
                    const bool valid = j <= t && t < T;
                    const float p = attb_p(w.S[rr * 20 + c], HS, scale, lse_s[r], valid);
                    w.P[r * 24 + c] = from_float<floatX>(p);
                    w.dS[r * 24 + c] = from_float<floatX>(valid ? p * (w.dP[rr * 20 + c] - D_s[r]) : 0.0f);
                }
                __syncwarp();
            }
            const int n = ATTT_QT / 16 - i0;
            attb_accumulate<HS, true>(w.acc1, w.dS + 16 * i0 * 24, 24, Qt + 16 * i0 * L::LDX, n);   // dK
            attb_accumulate<HS, true>(w.acc2, w.P + 16 * i0 * 24, 24, dOt + 16 * i0 * L::LDX, n);   // dV
            __syncwarp();
        }
        __syncthreads();
    }
    if (j0 < T) {
        floatX* dk = dqkv + (size_t)b * T * C3 + C + (size_t)h * HS;
        attb_store_rows<HS>(dk, C3, w.acc1, j0, T, scale);
        attb_store_rows<HS>(dk + C, C3, w.acc2, j0, T, 1.0f);
    }
}

template <int HS>
inline void attention_backward_tiled_launch(floatX* dqkv, float* Dbuf, const floatX* dout, const floatX* qkv, const float* lse,
                                            int B, int T, int C, int NH) {
    const size_t smem_q = AttTiledBwdLayout<HS, false>::total, smem_k = AttTiledBwdLayout<HS, true>::total;
    cudaCheck(cudaFuncSetAttribute(attention_backward_tiled_dq_kernel<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    cudaCheck(cudaFuncSetAttribute(attention_backward_tiled_dkv_kernel<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_k));
    dim3 grid((T + ATTT_QT - 1) / ATTT_QT, NH, B);
    attention_backward_tiled_dq_kernel<HS><<<grid, ATTT_WARPS * 32, smem_q, g_stream>>>(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH);
    cudaCheckLaunch();
    attention_backward_tiled_dkv_kernel<HS><<<grid, ATTT_WARPS * 32, smem_k, g_stream>>>(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH);
    cudaCheckLaunch();
}
#endif  // !ENABLE_FP32

// dqkv (B, T, 3C) = the gradient (overwritten) from dout (B, T, C), qkv and the lse saved by the
// forward; Dbuf: (B, NH, T) floats of scratch. The same contract as attention_backward
// (entropy.cuh) less the output, which it does not read.
inline void attention_backward_tiled(floatX* dqkv, float* Dbuf, const floatX* dout, const floatX* qkv, const float* lse, int B,
                                     int T, int C, int NH) {
    if (!attention_tiled_supported(qkv, dqkv, C, NH) || !aligned16(dout))
        fail("the tiled attention backward needs a bf16/fp16 build, head size 64 or 128 (got C %d / NH %d) and 16-byte aligned rows",
             C, NH);
#if !defined(ENABLE_FP32)
    if (C / NH == 64) attention_backward_tiled_launch<64>(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH);
    else attention_backward_tiled_launch<128>(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH);
#endif
}
