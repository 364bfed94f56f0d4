// llmc/colsum.cuh: deterministic column sums of a row-major (N, C) floatX matrix, added into
// fp32 gradients: the bias gradients (sum of dout over rows) and LayerNorm's weight and bias
// gradients (sums of dout * xhat and of dout). No float atomics: each block sums a fixed chunk
// of rows in a fixed order into a partial row, and a second kernel adds the partials in order,
// so a run is bit-identical to a rerun (checkpoint -> resume depends on it).
#pragma once

#include "cuda_common.cuh"

#define COLSUM_ROWS_PER_CHUNK 256
#define COLSUM_MAX_CHUNKS 128

inline int colsum_chunks(int N) {
    int chunks = ceil_div(N, COLSUM_ROWS_PER_CHUNK);
    return chunks < COLSUM_MAX_CHUNKS ? chunks : COLSUM_MAX_CHUNKS;
}

// Scratch floats a colsum over (N, C) needs (two outputs).
inline size_t colsum_scratch_floats(int N, int C) { return (size_t)colsum_chunks(N) * 2 * C; }

// partial (chunks, 2, C): [chunk][0][c] = sum of a[r][c] over the chunk's rows; with x given
// (LayerNorm), [chunk][1][c] = sum of a[r][c] * (x[r][c] - mean[r]) * rstd[r].
// Block (32, 8): threadIdx.x picks the column (a warp reads 32 consecutive values of a row),
// threadIdx.y strides over the rows of the chunk.
__global__ void colsum_partial_kernel(float* partial, const floatX* a, const floatX* x, const float* mean,
                                      const float* rstd, int N, int C, int rows_per_chunk) {
    __shared__ float s0[8][33], s1[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int chunk = blockIdx.y;
    int r_begin = chunk * rows_per_chunk;
    int r_end = min(N, r_begin + rows_per_chunk);
    float sum0 = 0.0f, sum1 = 0.0f;
    if (c < C) {
        for (int r = r_begin + threadIdx.y; r < r_end; r += 8) {
            float v = to_float(a[(size_t)r * C + c]);
            sum0 += v;
            if (x != NULL) sum1 += v * (to_float(x[(size_t)r * C + c]) - mean[r]) * rstd[r];
        }
    }
    s0[threadIdx.y][threadIdx.x] = sum0;
    s1[threadIdx.y][threadIdx.x] = sum1;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t0 = 0.0f, t1 = 0.0f;
        for (int i = 0; i < 8; i++) {  // fixed order
            t0 += s0[i][threadIdx.x];
            t1 += s1[i][threadIdx.x];
        }
        partial[((size_t)chunk * 2 + 0) * C + c] = t0;
        partial[((size_t)chunk * 2 + 1) * C + c] = t1;
    }
}

// out0[c] += sum over chunks of partial[chunk][0][c]; out1 likewise with [1] (if out1).
// Block (32, 16): threadIdx.x picks the column, threadIdx.y sums every 16th chunk, then the 16
// sums are added in a fixed order, so each thread waits on chunks/16 loads, not on all of them.
__global__ void colsum_finish_kernel(float* out0, float* out1, const float* partial, int chunks, int C) {
    __shared__ float s0[16][33], s1[16][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float t0 = 0.0f, t1 = 0.0f;
    if (c < C) {
        for (int k = threadIdx.y; k < chunks; k += 16) {
            t0 += partial[((size_t)k * 2 + 0) * C + c];
            t1 += partial[((size_t)k * 2 + 1) * C + c];
        }
    }
    s0[threadIdx.y][threadIdx.x] = t0;
    s1[threadIdx.y][threadIdx.x] = t1;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float u0 = 0.0f, u1 = 0.0f;
        for (int i = 0; i < 16; i++) {  // fixed order
            u0 += s0[i][threadIdx.x];
            u1 += s1[i][threadIdx.x];
        }
        out0[c] += u0;
        if (out1 != NULL) out1[c] += u1;
    }
}

// sum_out (C) += column sums of a (N, C); with x, mean, rstd (LayerNorm's input and saved
// statistics) also xhat_out (C) += column sums of a * xhat. scratch: colsum_scratch_floats(N, C).
inline void colsum_accumulate(float* sum_out, float* xhat_out, const floatX* a, const floatX* x, const float* mean,
                              const float* rstd, int N, int C, float* scratch) {
    int chunks = colsum_chunks(N);
    int rows_per_chunk = ceil_div(N, chunks);
    dim3 grid(ceil_div(C, 32), chunks), block(32, 8);
    colsum_partial_kernel<<<grid, block, 0, g_stream>>>(scratch, a, x, mean, rstd, N, C, rows_per_chunk);
    cudaCheckLaunch();
    colsum_finish_kernel<<<ceil_div(C, 32), dim3(32, 16), 0, g_stream>>>(sum_out, xhat_out, scratch, chunks, C);
    cudaCheckLaunch();
}
