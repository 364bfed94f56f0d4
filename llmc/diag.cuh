// llmc/diag.cuh: the per-layer diagnostics of diag.h on the device, run only on --diag-every
// steps. The sums go into the step's result block, (L, DIAG_SUMS) 8-byte slots, so they reach the
// host with the step's other measurements. All sums are doubles added with atomicAdd (one per
// block); the score maximum is kept as an order-preserving integer key (diag_max_key) in its
// slot, because atomicMax exists for integers only. Float atomics add in no fixed order, so
// diag.tsv can differ in its last digits between identical runs; training never reads these sums.
// The fused attention kernel never forms the scores in memory, so diag_scores recomputes them
// (q.k over the causal entries, fp32 sums of floatX inputs, as the attention kernel): one extra
// pass of O(B NH T^2 hs) on diagnostic steps, none on the others.
#pragma once

#include "cuda_common.cuh"
#include "../diag.h"

#define DIAG_THREADS 256
#define DIAG_ROWS_PER_BLOCK (DIAG_THREADS / 32)  // one warp per query row
#define DIAG_MAX_HS 256

// float -> unsigned key with the same order; key 0 is below every float (a zeroed slot = empty).
__device__ __forceinline__ unsigned long long diag_max_key(float f) {
    unsigned int u = __float_as_uint(f);
    return (unsigned long long)((u & 0x80000000u) ? ~u : (u | 0x80000000u));
}

inline float diag_key_to_float(unsigned long long key) {
    if (key == 0) return -INFINITY;
    unsigned int k = (unsigned int)key;
    unsigned int u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

// sums[0] += sum x^2; if neg: neg[0] += count of x < 0. Grid-stride over n values.
__global__ void __launch_bounds__(DIAG_THREADS) diag_sumsq_kernel(double* sumsq, double* neg, const floatX* x, size_t n) {
    __shared__ double shared[32];
    double s = 0.0, c = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = to_float(x[i]);
        s += (double)v * v;
        c += v < 0.0f ? 1.0 : 0.0;
    }
    s = block_sum<double>(s, shared);
    if (neg) c = block_sum<double>(c, shared);
    if (threadIdx.x == 0) {
        atomicAdd(sumsq, s);
        if (neg) atomicAdd(neg, c);
    }
}

// Grid (ceil(T / DIAG_ROWS_PER_BLOCK), NH, B). qkv (B, T, 3C). sums: one layer's DIAG_SUMS slots.
__global__ void __launch_bounds__(DIAG_THREADS) diag_scores_kernel(double* sums, const floatX* qkv, int T, int C, int NH) {
    __shared__ float q_shared[DIAG_ROWS_PER_BLOCK][DIAG_MAX_HS];
    __shared__ double red[32];
    int hs = C / NH, C3 = 3 * C, b = blockIdx.z, h = blockIdx.y;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int t = blockIdx.x * DIAG_ROWS_PER_BLOCK + warp;
    float scale = 1.0f / sqrtf((float)hs);
    const floatX* base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
    double s1 = 0.0, s2 = 0.0;
    float m = -INFINITY;
    if (t < T) {
        for (int i = lane; i < hs; i += 32) q_shared[warp][i] = to_float(base[(size_t)t * C3 + i]);
        __syncwarp();
        for (int j = lane; j <= t; j += 32) {  // causal entries of row t
            const floatX* k = base + (size_t)j * C3 + C;
            float dot = 0.0f;
            for (int i = 0; i < hs; i++) dot += q_shared[warp][i] * to_float(k[i]);
            float s = dot * scale;
            s1 += s;
            s2 += (double)s * s;
            m = fmaxf(m, s);
        }
    }
    s1 = block_sum<double>(s1, red);
    s2 = block_sum<double>(s2, red);
    m = warp_max(m);
    __shared__ float maxes[DIAG_ROWS_PER_BLOCK];
    if (lane == 0) maxes[warp] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 0; w < DIAG_ROWS_PER_BLOCK; w++) m = fmaxf(m, maxes[w]);
        atomicAdd(&sums[DIAG_SCORE_SUM], s1);
        atomicAdd(&sums[DIAG_SCORE_SQ], s2);
        if (m > -INFINITY) atomicMax((unsigned long long*)&sums[DIAG_SCORE_MAX], diag_max_key(m));
    }
}

inline void diag_check_shape(int C, int NH) {
    if (C / NH > DIAG_MAX_HS)
        fail("--diag-every supports head sizes up to %d, this model has %d (C %d / NH %d)", DIAG_MAX_HS, C / NH, C, NH);
}

// One layer's diagnostics: its input residual (B, T, C), qkv (B, T, 3C), FFN pre-activation h
// (B, T, 4C). sums: the layer's DIAG_SUMS slots in the step's result block.
inline void diag_layer(double* sums, const floatX* residual, const floatX* qkv, const floatX* fch, int B, int T, int C,
                       int NH) {
    size_t BTC = (size_t)B * T * C;
    int blocks = 2 * g_device_prop.multiProcessorCount;
    diag_sumsq_kernel<<<blocks, DIAG_THREADS, 0, g_stream>>>(&sums[DIAG_RESID_SQ], NULL, residual, BTC);
    cudaCheckLaunch();
    dim3 grid(ceil_div(T, DIAG_ROWS_PER_BLOCK), NH, B);
    diag_scores_kernel<<<grid, DIAG_THREADS, 0, g_stream>>>(sums, qkv, T, C, NH);
    cudaCheckLaunch();
    diag_sumsq_kernel<<<blocks, DIAG_THREADS, 0, g_stream>>>(&sums[DIAG_FFN_SQ], &sums[DIAG_FFN_NEG], fch, 4 * BTC);
    cudaCheckLaunch();
}

// The device's slots (copied to the host) -> diag.h's sums: the score maximum decoded.
inline void diag_sums_from_device(const double* slots, int L, double* sums) {
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < DIAG_SUMS; k++) sums[l * DIAG_SUMS + k] = slots[l * DIAG_SUMS + k];
        unsigned long long key;
        memcpy(&key, &slots[l * DIAG_SUMS + DIAG_SCORE_MAX], sizeof(key));
        sums[l * DIAG_SUMS + DIAG_SCORE_MAX] = diag_key_to_float(key);
    }
}
