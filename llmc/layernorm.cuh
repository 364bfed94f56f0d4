// llmc/layernorm.cuh: LayerNorm (eps 1e-5) forward and backward over rows of C channels.
//   forward   out = (x - mean) * rstd * w + b; saves mean and rstd (B*T floats each)
//   backward  dinp += (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) * rstd, dnorm = w * dout
//             dw += sum over rows of dout * xhat, db += sum of dout (colsum.cuh: deterministic),
//             and optionally the column sums of the new dinp (a projection's bias gradient)
// One warp per row, fp32 statistics; the backward in one pass over the rows where C allows.
// Used before attention and the MLP (--norm ln) and as the final LayerNorm (kept unless --norm
// none-all). In LN-free blocks nothing here runs: the "normalised" tensor is the residual itself
// (aliased, never copied).
#pragma once

#include "cuda_common.cuh"
#include "colsum.cuh"

#define LN_EPS 1e-5f

// VEC: 16-byte packs (C a multiple of the pack size, aligned rows); else one value at a time.
template <bool VEC>
__global__ void layernorm_forward_kernel(floatX* out, float* mean, float* rstd, const floatX* inp, const floatX* weight,
                                         const floatX* bias, int N, int C) {
    const int P = VEC ? Packed128<floatX>::size : 1;
    int lane = threadIdx.x % 32;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;  // whole warps leave together
    const floatX* x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = lane * P; i < C; i += 32 * P) {
        if (VEC) { Packed128<floatX> v = load128(x + i); for (int k = 0; k < P; k++) sum += to_float(v[k]); }
        else sum += to_float(x[i]);
    }
    float m = warp_sum(sum) / C;
    float var = 0.0f;
    for (int i = lane * P; i < C; i += 32 * P) {
        if (VEC) { Packed128<floatX> v = load128(x + i); for (int k = 0; k < P; k++) { float d = to_float(v[k]) - m; var += d * d; } }
        else { float d = to_float(x[i]) - m; var += d * d; }
    }
    var = warp_sum(var) / C;
    float s = 1.0f / sqrtf(var + LN_EPS);
    floatX* o = out + (size_t)row * C;
    for (int i = lane * P; i < C; i += 32 * P) {
        if (VEC) {
            Packed128<floatX> v = load128(x + i), w = load128(weight + i), b = load128(bias + i), r;
            for (int k = 0; k < P; k++) r[k] = from_float<floatX>((to_float(v[k]) - m) * s * to_float(w[k]) + to_float(b[k]));
            store128(o + i, r);
        } else {
            o[i] = from_float<floatX>((to_float(x[i]) - m) * s * to_float(weight[i]) + to_float(bias[i]));
        }
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

inline bool layernorm_vec_ok(const void* a, const void* b, int C) {
    return C % Packed128<floatX>::size == 0 && aligned16(a) && aligned16(b);
}

// out (N, C); mean, rstd (N).
inline void layernorm_forward(floatX* out, float* mean, float* rstd, const floatX* inp, const floatX* weight,
                              const floatX* bias, int N, int C) {
    int grid = ceil_div(N, 8);  // 8 warps (rows) per block
    if (layernorm_vec_ok(out, inp, C) && aligned16(weight) && aligned16(bias))
        layernorm_forward_kernel<true><<<grid, 256, 0, g_stream>>>(out, mean, rstd, inp, weight, bias, N, C);
    else
        layernorm_forward_kernel<false><<<grid, 256, 0, g_stream>>>(out, mean, rstd, inp, weight, bias, N, C);
    cudaCheckLaunch();
}

// dinp (N, C) += (or = when !accumulate) the input gradient; one warp per row.
template <bool VEC>
__global__ void layernorm_backward_input_kernel(floatX* dinp, const floatX* dout, const floatX* inp, const floatX* weight,
                                                const float* mean, const float* rstd, int N, int C, bool accumulate) {
    const int P = VEC ? Packed128<floatX>::size : 1;
    int lane = threadIdx.x % 32;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= N) return;
    const floatX* dy = dout + (size_t)row * C;
    const floatX* x = inp + (size_t)row * C;
    floatX* dx = dinp + (size_t)row * C;
    float m = mean[row], s = rstd[row];
    float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
    for (int i = lane * P; i < C; i += 32 * P) {
        if (VEC) {
            Packed128<floatX> g = load128(dy + i), v = load128(x + i), w = load128(weight + i);
            for (int k = 0; k < P; k++) {
                float dn = to_float(w[k]) * to_float(g[k]);
                dnorm_sum += dn;
                dnorm_norm_sum += dn * (to_float(v[k]) - m) * s;
            }
        } else {
            float dn = to_float(weight[i]) * to_float(dy[i]);
            dnorm_sum += dn;
            dnorm_norm_sum += dn * (to_float(x[i]) - m) * s;
        }
    }
    float dnorm_mean = warp_sum(dnorm_sum) / C;
    float dnorm_norm_mean = warp_sum(dnorm_norm_sum) / C;
    for (int i = lane * P; i < C; i += 32 * P) {
        if (VEC) {
            Packed128<floatX> g = load128(dy + i), v = load128(x + i), w = load128(weight + i), r;
            Packed128<floatX> old;
            if (accumulate) old = load128(dx + i);
            for (int k = 0; k < P; k++) {
                float norm = (to_float(v[k]) - m) * s;
                float dn = to_float(w[k]) * to_float(g[k]);
                float val = (dn - dnorm_mean - norm * dnorm_norm_mean) * s;
                r[k] = from_float<floatX>(accumulate ? to_float(old[k]) + val : val);
            }
            store128(dx + i, r);
        } else {
            float norm = (to_float(x[i]) - m) * s;
            float dn = to_float(weight[i]) * to_float(dy[i]);
            float val = (dn - dnorm_mean - norm * dnorm_norm_mean) * s;
            dx[i] = from_float<floatX>(accumulate ? to_float(dx[i]) + val : val);
        }
    }
}

// The fused backward (VEC rows of at most 32 columns per lane): one block of 8 warps per chunk of
// up to 64 rows, a warp per row. Each lane owns the same columns in every row (P-value packs
// 32 * P apart), so it keeps the weight and its columns' three sums in registers over all the
// chunk's rows: dout and x are read once (and held for the second pass), dinp read once and
// written once, and nothing is re-read for the weight and bias gradients.
#define LN_BWD_ROWS_PER_CHUNK 64
#define LN_BWD_MAX_CHUNKS 256
#define LN_BWD_MAX_COLS_PER_LANE 32  // C <= 1024 on the fused path; beyond, the two-kernel one
// Blocks per SM the compiler must fit: at C = 768 the kernel takes 213-219 registers per thread in
// bf16 (one block, 8 warps, per SM); 2 caps it at 128 and spills (the lab's A/B build,
// layernorm_2blocks.out, times that trade)
#ifndef LN_BWD_MIN_BLOCKS
#define LN_BWD_MIN_BLOCKS 1
#endif

inline int layernorm_backward_chunks(int N) {
    int chunks = ceil_div(N, LN_BWD_ROWS_PER_CHUNK);
    return chunks < LN_BWD_MAX_CHUNKS ? chunks : LN_BWD_MAX_CHUNKS;
}

// Scratch floats layernorm_backward needs (either path).
inline size_t layernorm_scratch_floats(int N, int C) {
    size_t fused = (size_t)layernorm_backward_chunks(N) * 3 * C;
    return fused > colsum_scratch_floats(N, C) ? fused : colsum_scratch_floats(N, C);
}

// NP: packs per lane, ceil(C / (32 P)). partial (chunks, 3, C): [chunk][0][c] = sum over the
// chunk's rows of dout, [1] of dout * xhat, [2] (if dinp_sums) of the new dinp as stored (floatX):
// the bias gradient of the projection whose output's gradient dinp is. Within a lane the rows
// are summed in order, then the 8 warps' sums in order: deterministic.
template <int NP>
__global__ void __launch_bounds__(256, LN_BWD_MIN_BLOCKS) layernorm_backward_fused_kernel(floatX* dinp, float* partial, const floatX* dout,
                                                                       const floatX* inp, const floatX* weight, const float* mean,
                                                                       const float* rstd, int N, int C, int rows_per_chunk,
                                                                       bool accumulate, bool dinp_sums) {
    constexpr int P = Packed128<floatX>::size;
    __shared__ float red[8][NP * 32 * P];  // one row of a sum per warp, for the block's reduction
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int chunk = blockIdx.x;
    int r_begin = chunk * rows_per_chunk, r_end = min(N, r_begin + rows_per_chunk);
    Packed128<floatX> w[NP];
    float sum_dy[NP][P], sum_dyx[NP][P], sum_dx[NP][P];
#pragma unroll
    for (int j = 0; j < NP; j++) {
        int i = (j * 32 + lane) * P;  // the same columns as layernorm_backward_input_kernel's lane
        if (i < C) w[j] = load128(weight + i);
        for (int k = 0; k < P; k++) sum_dy[j][k] = sum_dyx[j][k] = sum_dx[j][k] = 0.0f;
    }
    for (int r = r_begin + warp; r < r_end; r += 8) {
        const floatX* dy = dout + (size_t)r * C;
        const floatX* x = inp + (size_t)r * C;
        floatX* dx = dinp + (size_t)r * C;
        Packed128<floatX> g[NP], v[NP], old[NP];
#pragma unroll
        for (int j = 0; j < NP; j++) {  // every load of the row in flight at once
            int i = (j * 32 + lane) * P;
            if (i < C) {
                g[j] = load128cs(dy + i);
                v[j] = load128cs(x + i);
                if (accumulate) old[j] = load128(dx + i);  // dinp stays in L2 for the next products
            }
        }
        float m = mean[r], s = rstd[r];
        float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
#pragma unroll
        for (int j = 0; j < NP; j++) {
            if ((j * 32 + lane) * P >= C) continue;
            for (int k = 0; k < P; k++) {
                float dn = to_float(w[j][k]) * to_float(g[j][k]);
                dnorm_sum += dn;
                dnorm_norm_sum += dn * (to_float(v[j][k]) - m) * s;
            }
        }
        float dnorm_mean = warp_sum(dnorm_sum) / C;
        float dnorm_norm_mean = warp_sum(dnorm_norm_sum) / C;
#pragma unroll
        for (int j = 0; j < NP; j++) {
            int i = (j * 32 + lane) * P;
            if (i >= C) continue;
            Packed128<floatX> out;
            for (int k = 0; k < P; k++) {
                float gk = to_float(g[j][k]), xk = to_float(v[j][k]);
                float norm = (xk - m) * s;
                float dn = to_float(w[j][k]) * gk;
                float val = (dn - dnorm_mean - norm * dnorm_norm_mean) * s;
                out[k] = from_float<floatX>(accumulate ? to_float(old[j][k]) + val : val);
                sum_dy[j][k] += gk;
                sum_dyx[j][k] += gk * (xk - m) * s;
                sum_dx[j][k] += to_float(out[k]);
            }
            store128(dx + i, out);
        }
    }
    // the block's sums: each warp's row of one sum into shared memory, then a thread per column
    // adds the 8 warps in order
#pragma unroll
    for (int q = 0; q < 3; q++) {
        if (q == 2 && !dinp_sums) break;
#pragma unroll
        for (int j = 0; j < NP; j++) {
            int i = (j * 32 + lane) * P;
            if (i >= C) continue;
            for (int k = 0; k < P; k++) red[warp][i + k] = q == 0 ? sum_dy[j][k] : (q == 1 ? sum_dyx[j][k] : sum_dx[j][k]);
        }
        __syncthreads();
        for (int c = threadIdx.x; c < C; c += 256) {
            float t = 0.0f;
            for (int wi = 0; wi < 8; wi++) t += red[wi][c];
            partial[((size_t)chunk * 3 + q) * C + c] = t;
        }
        __syncthreads();
    }
}

template <int NP>
inline void layernorm_backward_fused(floatX* dinp, float* partial, const floatX* dout, const floatX* inp, const floatX* weight,
                                     const float* mean, const float* rstd, int N, int C, int chunks, bool accumulate,
                                     bool dinp_sums) {
    if constexpr (NP * Packed128<floatX>::size <= LN_BWD_MAX_COLS_PER_LANE) {
        layernorm_backward_fused_kernel<NP><<<chunks, 256, 0, g_stream>>>(dinp, partial, dout, inp, weight, mean, rstd, N, C,
                                                                          ceil_div(N, chunks), accumulate, dinp_sums);
        cudaCheckLaunch();
    } else {
        fail("internal: layernorm_backward_fused with %d columns per lane", NP * Packed128<floatX>::size);
    }
}

// dinp (N, C) += gradient (= when !accumulate); dweight, dbias (C) fp32 +=; dinp_colsum (C, or
// NULL) += the column sums of the new dinp (the bias gradient of the projection that dinp is
// the output gradient of). scratch: layernorm_scratch_floats(N, C).
inline void layernorm_backward(floatX* dinp, float* dweight, float* dbias, float* dinp_colsum, const floatX* dout,
                               const floatX* inp, const floatX* weight, const float* mean, const float* rstd, int N, int C,
                               bool accumulate, float* scratch) {
    constexpr int P = Packed128<floatX>::size;
    int np = ceil_div(C, 32 * P);
    bool vec = layernorm_vec_ok(dinp, dout, C) && aligned16(inp) && aligned16(weight);
    if (vec && np * P <= LN_BWD_MAX_COLS_PER_LANE) {
        int chunks = layernorm_backward_chunks(N);
        bool sums = dinp_colsum != NULL;
#define LN_BWD_FUSED(NP) layernorm_backward_fused<NP>(dinp, scratch, dout, inp, weight, mean, rstd, N, C, chunks, accumulate, sums)
        switch (np) {
            case 1: LN_BWD_FUSED(1); break;
            case 2: LN_BWD_FUSED(2); break;
            case 3: LN_BWD_FUSED(3); break;
            case 4: LN_BWD_FUSED(4); break;
            case 5: LN_BWD_FUSED(5); break;
            case 6: LN_BWD_FUSED(6); break;
            case 7: LN_BWD_FUSED(7); break;
            default: LN_BWD_FUSED(8); break;
        }
#undef LN_BWD_FUSED
        colsum_finish(dbias, dweight, dinp_colsum, scratch, 3, chunks, C);
        return;
    }
    int grid = ceil_div(N, 8);
    if (vec)
        layernorm_backward_input_kernel<true><<<grid, 256, 0, g_stream>>>(dinp, dout, inp, weight, mean, rstd, N, C, accumulate);
    else
        layernorm_backward_input_kernel<false><<<grid, 256, 0, g_stream>>>(dinp, dout, inp, weight, mean, rstd, N, C, accumulate);
    cudaCheckLaunch();
    colsum_accumulate(dbias, dweight, dout, inp, mean, rstd, N, C, scratch);
    if (dinp_colsum != NULL) colsum_accumulate(dinp_colsum, NULL, dinp, NULL, NULL, NULL, N, C, scratch);
}
