// llmc/colsum.cuh: deterministic column sums of a row-major (N, C) floatX matrix, added into
// fp32 gradients: the bias gradients (sum of dout over rows) and LayerNorm's weight and bias
// gradients (sums of dout * xhat and of dout). No float atomics: each block sums a fixed chunk
// of rows in a fixed order into a partial row, and a second kernel adds the partials in order,
// so a run is bit-identical to a rerun (checkpoint -> resume depends on it).
#pragma once

#include "cuda_common.cuh"

#define COLSUM_ROWS_PER_CHUNK 64
#define COLSUM_MAX_CHUNKS 128

inline int colsum_chunks(int N) {
    int chunks = ceil_div(N, COLSUM_ROWS_PER_CHUNK);
    return chunks < COLSUM_MAX_CHUNKS ? chunks : COLSUM_MAX_CHUNKS;
}

// Scratch floats a colsum over (N, C) needs (two outputs).
inline size_t colsum_scratch_floats(int N, int C) { return (size_t)colsum_chunks(N) * 2 * C; }

// Columns one thread of colsum_partial_kernel<VEC> covers: a 16-byte pack, or one.
template <bool VEC>
__host__ __device__ constexpr int colsum_pack() { return VEC ? (int)(16 / sizeof(floatX)) : 1; }

// partial (chunks, 2, C): [chunk][0][c] = sum of a[r][c] over the chunk's rows; with x given
// (LayerNorm), [chunk][1][c] = sum of a[r][c] * (x[r][c] - mean[r]) * rstd[r].
// Block (32, 8): a thread owns P consecutive columns (VEC: one 16-byte load per row, so a warp
// reads 512 bytes of a bf16 row at once; these ~75 calls a step stream ~3 GB), threadIdx.y
// strides over the chunk's rows. Each column is summed in the same order on either path: row by
// row within a thread, then the 8 threads of a column in order.
template <bool VEC>
__global__ void __launch_bounds__(256) colsum_partial_kernel(float* __restrict__ partial, const floatX* __restrict__ a,
                                                             const floatX* __restrict__ x, const float* __restrict__ mean,
                                                             const float* __restrict__ rstd, int N, int C, int rows_per_chunk) {
    constexpr int P = colsum_pack<VEC>();
    constexpr int BLOCK_COLS = 32 * P;
    // a thread's P partial sums sit S apart from the next thread's: with S = P the stores of a
    // warp would hit every (32 / P)-th bank only (8-way conflicts in bf16); P + 1 is odd, so the
    // 32 lanes' stores of one k land in 32 different banks
    constexpr int S = P == 1 ? 1 : P + 1;
    __shared__ float s0[8][32 * S], s1[8][32 * S];
    int c0 = blockIdx.x * BLOCK_COLS + threadIdx.x * P;
    int chunk = blockIdx.y;
    int r_begin = chunk * rows_per_chunk;
    int r_end = min(N, r_begin + rows_per_chunk);
    float sum0[P], sum1[P];
    for (int k = 0; k < P; k++) sum0[k] = sum1[k] = 0.0f;
    if (c0 < C) {  // VEC: C % P == 0, so a pack is whole
#pragma unroll 4
        for (int r = r_begin + threadIdx.y; r < r_end; r += 8) {
            const floatX* ar = a + (size_t)r * C + c0;
            float av[P], xv[P];
            if (VEC) {
                Packed128<floatX> pa = load128cs(ar);
                for (int k = 0; k < P; k++) av[k] = to_float(pa[k]);
            } else {
                av[0] = to_float(ar[0]);
            }
            for (int k = 0; k < P; k++) sum0[k] += av[k];
            if (x != NULL) {
                const floatX* xr = x + (size_t)r * C + c0;
                if (VEC) {
                    Packed128<floatX> px = load128cs(xr);
                    for (int k = 0; k < P; k++) xv[k] = to_float(px[k]);
                } else {
                    xv[0] = to_float(xr[0]);
                }
                float m = mean[r], s = rstd[r];
                for (int k = 0; k < P; k++) sum1[k] += av[k] * (xv[k] - m) * s;
            }
        }
    }
    for (int k = 0; k < P; k++) {
        s0[threadIdx.y][threadIdx.x * S + k] = sum0[k];
        s1[threadIdx.y][threadIdx.x * S + k] = sum1[k];
    }
    __syncthreads();
    for (int col = threadIdx.y * 32 + threadIdx.x; col < BLOCK_COLS; col += 256) {
        int c = blockIdx.x * BLOCK_COLS + col;
        if (c >= C) continue;
        int slot = (col / P) * S + col % P;
        float t0 = 0.0f, t1 = 0.0f;
        for (int i = 0; i < 8; i++) {  // fixed order
            t0 += s0[i][slot];
            t1 += s1[i][slot];
        }
        partial[((size_t)chunk * 2 + 0) * C + c] = t0;
        partial[((size_t)chunk * 2 + 1) * C + c] = t1;
    }
}

// out_q[c] += sum over chunks of partial[chunk][q][c] for q < nsum (<= 3; an out_q may be NULL:
// that sum is skipped). partial is (chunks, nsum, C).
// Block (32, 16): threadIdx.x picks the column, threadIdx.y sums every 16th chunk, then the 16
// sums are added in a fixed order, so each thread waits on chunks/16 loads, not on all of them.
__global__ void colsum_finish_kernel(float* out0, float* out1, float* out2, const float* partial, int nsum, int chunks, int C) {
    __shared__ float s[3][16][33];
    float* outs[3] = {out0, out1, out2};
    int c = blockIdx.x * 32 + threadIdx.x;
    float t[3] = {0.0f, 0.0f, 0.0f};
    if (c < C) {
        for (int k = threadIdx.y; k < chunks; k += 16)
#pragma unroll
            for (int q = 0; q < 3; q++)  // a skipped sum's partials may be unwritten: not read
                if (q < nsum && outs[q] != NULL) t[q] += partial[((size_t)k * nsum + q) * C + c];
    }
    for (int q = 0; q < 3; q++) s[q][threadIdx.y][threadIdx.x] = t[q];
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
#pragma unroll
        for (int q = 0; q < 3; q++) {
            if (q >= nsum || outs[q] == NULL) continue;
            float u = 0.0f;
            for (int i = 0; i < 16; i++) u += s[q][i][threadIdx.x];  // fixed order
            outs[q][c] += u;
        }
    }
}

// Adds partial (chunks, nsum, C) into out0..out2 (colsum_finish_kernel).
inline void colsum_finish(float* out0, float* out1, float* out2, const float* partial, int nsum, int chunks, int C) {
    colsum_finish_kernel<<<ceil_div(C, 32), dim3(32, 16), 0, g_stream>>>(out0, out1, out2, partial, nsum, chunks, C);
    cudaCheckLaunch();
}

// sum_out (C) += column sums of a (N, C); with x, mean, rstd (LayerNorm's input and saved
// statistics) also xhat_out (C) += column sums of a * xhat. scratch: colsum_scratch_floats(N, C).
inline void colsum_accumulate(float* sum_out, float* xhat_out, const floatX* a, const floatX* x, const float* mean,
                              const float* rstd, int N, int C, float* scratch) {
    int chunks = colsum_chunks(N);
    int rows_per_chunk = ceil_div(N, chunks);
    bool vec = C % colsum_pack<true>() == 0 && aligned16(a) && (x == NULL || aligned16(x));
    dim3 block(32, 8);
    if (vec)
        colsum_partial_kernel<true><<<dim3(ceil_div(C, 32 * colsum_pack<true>()), chunks), block, 0, g_stream>>>(
            scratch, a, x, mean, rstd, N, C, rows_per_chunk);
    else
        colsum_partial_kernel<false><<<dim3(ceil_div(C, 32), chunks), block, 0, g_stream>>>(scratch, a, x, mean, rstd, N, C,
                                                                                            rows_per_chunk);
    cudaCheckLaunch();
    colsum_finish(sum_out, xhat_out, NULL, scratch, 2, chunks, C);
}
