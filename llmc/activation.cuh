// llmc/activation.cuh: the FFN activation f = act(h), elementwise over (B, T, 4C), forward and
// backward, for every --act variant:
//   gelu       0.5 h (1 + erf(h / sqrt 2))           f' = Phi(h) + h phi(h)
//   gelu-tanh  GPT-2's tanh approximation
//   relu       max(h, 0)                             f'(0) = 0, as PyTorch
//   lrelu*     h >= 0 ? h : s h                      f'(0) = 1; dL/ds = sum over h < 0 of h dL/df
//   identity   h
// The forward also counts the non-finite outputs for the NaN guard (counted after rounding to
// floatX: in fp16 an activation past 65504 is exactly the overflow the guard exists for), with
// one integer atomicAdd per warp. The slope's gradient is summed per block into a fixed number
// of partials and those in order by a one-warp kernel: no float atomics, bit-reproducible.
// The backward runs in place (dinp may be dout). A learnable slope is read from device memory
// (the fp32 master copy), a fixed one is passed by value. The trainer's backward
// (activation_backward_bias) also sums what it writes over rows: the fc bias gradient.
#pragma once

#include "cuda_common.cuh"
#include "../config.h"
#include "colsum.cuh"

#define ACT_THREADS 256
#define ACT_MAX_BLOCKS 1024
#define GELU_SCALE_F 0.7978845608028654f  // sqrt(2/pi)

// kinds of kernel: the three leaky variants share one
enum ActKernel { AK_GELU, AK_GELU_TANH, AK_RELU, AK_LRELU, AK_IDENTITY };

inline int act_kernel_kind(int act) {
    switch (act) {
        case ACT_GELU: return AK_GELU;
        case ACT_GELU_TANH: return AK_GELU_TANH;
        case ACT_RELU: return AK_RELU;
        case ACT_LRELU: case ACT_LRELU_LAYER: case ACT_LRELU_GLOBAL: return AK_LRELU;
        default: return AK_IDENTITY;
    }
}

template <int AK>
__device__ __forceinline__ float act_value(float x, float slope) {
    if (AK == AK_GELU) return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    if (AK == AK_GELU_TANH) return 0.5f * x * (1.0f + tanhf(GELU_SCALE_F * (x + 0.044715f * x * x * x)));
    if (AK == AK_RELU) return x < 0.0f ? 0.0f : x;  // NaN stays NaN, as torch.relu
    if (AK == AK_LRELU) return x >= 0.0f ? x : slope * x;
    return x;
}

template <int AK>
__device__ __forceinline__ float act_derivative(float x, float slope) {
    if (AK == AK_GELU) {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;  // 1/sqrt(2 pi)
        return cdf + x * pdf;
    }
    if (AK == AK_GELU_TANH) {
        float cube = 0.044715f * x * x * x;
        float th = tanhf(GELU_SCALE_F * (x + cube));
        float sech2 = 1.0f - th * th;
        return 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE_F * (1.0f + 3.0f * 0.044715f * x * x);
    }
    if (AK == AK_RELU) return x > 0.0f ? 1.0f : 0.0f;
    if (AK == AK_LRELU) return x >= 0.0f ? 1.0f : slope;
    return 1.0f;
}

inline int act_grid(size_t N, int P) {
    long packs = (long)((N + P - 1) / P);
    int g = ceil_div(packs, ACT_THREADS);
    return g < 1 ? 1 : (g > ACT_MAX_BLOCKS ? ACT_MAX_BLOCKS : g);
}

// out (N) = act(inp); nonfinite (or NULL) += number of non-finite outputs.
template <int AK, bool VEC>
__global__ void __launch_bounds__(ACT_THREADS) activation_forward_kernel(floatX* out, const floatX* inp, size_t N, float slope,
                                                                       const float* slope_ptr, unsigned long long* nonfinite) {
    const int P = VEC ? Packed128<floatX>::size : 1;
    if (slope_ptr != NULL) slope = *slope_ptr;
    unsigned int bad = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x * P;
    for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * P; i < N; i += stride) {
        if (VEC) {
            Packed128<floatX> h = load128(inp + i), f;
            for (int k = 0; k < P; k++) {
                f[k] = from_float<floatX>(act_value<AK>(to_float(h[k]), slope));
                bad += !isfinite(to_float(f[k]));
            }
            store128(out + i, f);
        } else {
            floatX f = from_float<floatX>(act_value<AK>(to_float(inp[i]), slope));
            bad += !isfinite(to_float(f));
            out[i] = f;
        }
    }
    if (nonfinite != NULL) {  // every lane gets here: one atomic per warp, only if it saw any
        bad = __reduce_add_sync(0xffffffffu, bad);
        if (threadIdx.x % 32 == 0 && bad > 0) atomicAdd(nonfinite, (unsigned long long)bad);
    }
}

// dinp (N) = act'(inp) * dout (dinp may alias dout). LEARN: slope_partials[block] = this
// block's sum over inp < 0 of inp * dout (double).
template <int AK, bool VEC, bool LEARN>
__global__ void __launch_bounds__(ACT_THREADS) activation_backward_kernel(floatX* dinp, const floatX* inp, const floatX* dout,
                                                                        size_t N, float slope, const float* slope_ptr,
                                                                        double* slope_partials) {
    __shared__ double shared[32];
    const int P = VEC ? Packed128<floatX>::size : 1;
    if (slope_ptr != NULL) slope = *slope_ptr;
    float ds = 0.0f;
    size_t stride = (size_t)gridDim.x * blockDim.x * P;
    for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * P; i < N; i += stride) {
        if (VEC) {
            Packed128<floatX> h = load128(inp + i), g = load128(dout + i), d;
            for (int k = 0; k < P; k++) {
                float x = to_float(h[k]), gk = to_float(g[k]);
                d[k] = from_float<floatX>(act_derivative<AK>(x, slope) * gk);
                if (LEARN && x < 0.0f) ds += x * gk;
            }
            store128(dinp + i, d);
        } else {
            float x = to_float(inp[i]), gk = to_float(dout[i]);
            dinp[i] = from_float<floatX>(act_derivative<AK>(x, slope) * gk);
            if (LEARN && x < 0.0f) ds += x * gk;
        }
    }
    if (LEARN) {
        double total = block_sum<double>((double)ds, shared);
        if (threadIdx.x == 0) slope_partials[blockIdx.x] = total;
    }
}

// The backward with the fc bias gradient folded in: dinp (rows, cols) as activation_backward_kernel,
// run on colsum_partial_kernel's grid (block (32, 8), a thread per P columns, the 8 threads of a
// column striding a chunk of rows), so that the values it writes (rounded to floatX, as stored)
// are summed into partial rows (chunks, cols) in colsum's order: with colsum's second pass the
// bias gradient is bit-identical to matmul_backward_bias on the stored result, without reading
// it again.
// LEARN: slope_partials[block] (blocks numbered x-fastest) as the flat kernel's.
template <int AK, bool VEC, bool LEARN>
__global__ void __launch_bounds__(256) activation_backward_colsum_kernel(floatX* dinp, float* partial, const floatX* inp,
                                                                        const floatX* dout, int rows, int cols,
                                                                        int rows_per_chunk, float slope, const float* slope_ptr,
                                                                        double* slope_partials) {
    constexpr int P = colsum_pack<VEC>();
    constexpr int BLOCK_COLS = 32 * P;
    constexpr int S = P == 1 ? 1 : P + 1;  // padded partial rows, as colsum_partial_kernel's
    __shared__ float s0[8][32 * S];
    __shared__ double shared[8];
    if (slope_ptr != NULL) slope = *slope_ptr;
    int c0 = blockIdx.x * BLOCK_COLS + threadIdx.x * P;
    int chunk = blockIdx.y;
    int r_begin = chunk * rows_per_chunk, r_end = min(rows, r_begin + rows_per_chunk);
    float sum[P];
    for (int k = 0; k < P; k++) sum[k] = 0.0f;
    float ds = 0.0f;
    if (c0 < cols) {
#pragma unroll 4
        for (int r = r_begin + threadIdx.y; r < r_end; r += 8) {
            size_t i = (size_t)r * cols + c0;
            if (VEC) {
                Packed128<floatX> h = load128cs(inp + i), g = load128cs(dout + i), d;
                for (int k = 0; k < P; k++) {
                    float x = to_float(h[k]), gk = to_float(g[k]);
                    d[k] = from_float<floatX>(act_derivative<AK>(x, slope) * gk);
                    sum[k] += to_float(d[k]);
                    if (LEARN && x < 0.0f) ds += x * gk;
                }
                store128(dinp + i, d);
            } else {
                float x = to_float(inp[i]), gk = to_float(dout[i]);
                floatX d = from_float<floatX>(act_derivative<AK>(x, slope) * gk);
                sum[0] += to_float(d);
                if (LEARN && x < 0.0f) ds += x * gk;
                dinp[i] = d;
            }
        }
    }
    for (int k = 0; k < P; k++) s0[threadIdx.y][threadIdx.x * S + k] = sum[k];
    __syncthreads();
    for (int col = threadIdx.y * 32 + threadIdx.x; col < BLOCK_COLS; col += 256) {
        int c = blockIdx.x * BLOCK_COLS + col;
        if (c >= cols) continue;
        int slot = (col / P) * S + col % P;
        float t = 0.0f;
        for (int i = 0; i < 8; i++) t += s0[i][slot];  // fixed order
        partial[(size_t)chunk * cols + c] = t;
    }
    if (LEARN) {  // the block's sum: each row of threads (a warp), then the 8 in order
        double w = warp_sum((double)ds);
        if (threadIdx.x == 0) shared[threadIdx.y] = w;
        __syncthreads();
        if (threadIdx.x == 0 && threadIdx.y == 0) {
            double total = 0.0;
            for (int i = 0; i < 8; i++) total += shared[i];
            slope_partials[blockIdx.y * gridDim.x + blockIdx.x] = total;
        }
    }
}

// grad[0] += sum of the n partials, summed in a fixed order by one warp.
__global__ void slope_grad_finish_kernel(float* grad, const double* partials, int n) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += 32) s += partials[i];
    s = warp_sum(s);
    if (threadIdx.x == 0) grad[0] += (float)s;
}

inline bool act_vec_ok(const void* a, const void* b, size_t N) {
    return N % Packed128<floatX>::size == 0 && aligned16(a) && aligned16(b);
}

// f (N) = act(h). slope: the fixed slope, or slope_ptr (device, fp32) for a learnable one.
// nonfinite: a device counter to add the number of non-finite outputs to, or NULL.
inline void activation_forward(floatX* out, const floatX* inp, size_t N, int act, float slope, const float* slope_ptr,
                               unsigned long long* nonfinite) {
    bool vec = act_vec_ok(out, inp, N);
    int P = vec ? Packed128<floatX>::size : 1;
    int grid = act_grid(N, P);
#define ACT_FWD(AK) \
    if (vec) activation_forward_kernel<AK, true><<<grid, ACT_THREADS, 0, g_stream>>>(out, inp, N, slope, slope_ptr, nonfinite); \
    else activation_forward_kernel<AK, false><<<grid, ACT_THREADS, 0, g_stream>>>(out, inp, N, slope, slope_ptr, nonfinite);
    switch (act_kernel_kind(act)) {
        case AK_GELU: ACT_FWD(AK_GELU); break;
        case AK_GELU_TANH: ACT_FWD(AK_GELU_TANH); break;
        case AK_RELU: ACT_FWD(AK_RELU); break;
        case AK_LRELU: ACT_FWD(AK_LRELU); break;
        default: ACT_FWD(AK_IDENTITY); break;
    }
#undef ACT_FWD
    cudaCheckLaunch();
}

// Scratch doubles the backward needs for a learnable slope (activation_backward_bias on (rows,
// cols) too, when given).
inline size_t activation_scratch_doubles(int rows = 0, int cols = 0) {
    size_t blocks = rows > 0 ? (size_t)ceil_div(cols, 32) * colsum_chunks(rows) : 0;  // the widest grid (one column per thread)
    return blocks > ACT_MAX_BLOCKS ? blocks : ACT_MAX_BLOCKS;
}

// dinp (N) = act'(h) * dout, in place allowed. For a learnable slope (slope_ptr != NULL and
// slope_grad != NULL) also slope_grad[0] += sum over h < 0 of h * dout; scratch holds
// activation_scratch_doubles() doubles.
inline void activation_backward(floatX* dinp, const floatX* inp, const floatX* dout, size_t N, int act, float slope,
                                const float* slope_ptr, float* slope_grad, double* scratch) {
    bool vec = act_vec_ok(dinp, inp, N) && aligned16(dout);
    int P = vec ? Packed128<floatX>::size : 1;
    int grid = act_grid(N, P);
    bool learn = act_is_learnable(act) && slope_grad != NULL;
#define ACT_BWD(AK) \
    if (vec) activation_backward_kernel<AK, true, false><<<grid, ACT_THREADS, 0, g_stream>>>(dinp, inp, dout, N, slope, slope_ptr, NULL); \
    else activation_backward_kernel<AK, false, false><<<grid, ACT_THREADS, 0, g_stream>>>(dinp, inp, dout, N, slope, slope_ptr, NULL);
    if (learn) {
        if (vec) activation_backward_kernel<AK_LRELU, true, true><<<grid, ACT_THREADS, 0, g_stream>>>(dinp, inp, dout, N, slope, slope_ptr, scratch);
        else activation_backward_kernel<AK_LRELU, false, true><<<grid, ACT_THREADS, 0, g_stream>>>(dinp, inp, dout, N, slope, slope_ptr, scratch);
        cudaCheckLaunch();
        slope_grad_finish_kernel<<<1, 32, 0, g_stream>>>(slope_grad, scratch, grid);
    } else {
        switch (act_kernel_kind(act)) {
            case AK_GELU: ACT_BWD(AK_GELU); break;
            case AK_GELU_TANH: ACT_BWD(AK_GELU_TANH); break;
            case AK_RELU: ACT_BWD(AK_RELU); break;
            case AK_LRELU: ACT_BWD(AK_LRELU); break;
            default: ACT_BWD(AK_IDENTITY); break;
        }
    }
#undef ACT_BWD
    cudaCheckLaunch();
}

// dinp (rows, cols) = act'(h) * dout (in place allowed) and dbias (cols) += its column sums (the
// fc bias gradient), summed as matmul_backward_bias would on the stored dinp, bit for bit. The
// slope as in activation_backward; colsum_scratch: rows' chunks x cols floats (fewer than
// colsum_scratch_floats(rows, cols)); scratch:
// activation_scratch_doubles(rows, cols) doubles.
inline void activation_backward_bias(floatX* dinp, float* dbias, const floatX* inp, const floatX* dout, int rows, int cols,
                                     int act, float slope, const float* slope_ptr, float* slope_grad, float* colsum_scratch,
                                     double* scratch) {
    bool vec = cols % colsum_pack<true>() == 0 && aligned16(dinp) && aligned16(inp) && aligned16(dout);
    int P = vec ? colsum_pack<true>() : 1;
    int chunks = colsum_chunks(rows), rows_per_chunk = ceil_div(rows, chunks);
    dim3 grid(ceil_div(cols, 32 * P), chunks), block(32, 8);
    bool learn = act_is_learnable(act) && slope_grad != NULL;
#define ACT_BWD_BIAS(AK, LEARN) \
    if (vec) activation_backward_colsum_kernel<AK, true, LEARN><<<grid, block, 0, g_stream>>>( \
        dinp, colsum_scratch, inp, dout, rows, cols, rows_per_chunk, slope, slope_ptr, scratch); \
    else activation_backward_colsum_kernel<AK, false, LEARN><<<grid, block, 0, g_stream>>>( \
        dinp, colsum_scratch, inp, dout, rows, cols, rows_per_chunk, slope, slope_ptr, scratch);
    if (learn) {
        ACT_BWD_BIAS(AK_LRELU, true);
        cudaCheckLaunch();
        slope_grad_finish_kernel<<<1, 32, 0, g_stream>>>(slope_grad, scratch, (int)(grid.x * grid.y));
    } else {
        switch (act_kernel_kind(act)) {
            case AK_GELU: ACT_BWD_BIAS(AK_GELU, false); break;
            case AK_GELU_TANH: ACT_BWD_BIAS(AK_GELU_TANH, false); break;
            case AK_RELU: ACT_BWD_BIAS(AK_RELU, false); break;
            case AK_LRELU: ACT_BWD_BIAS(AK_LRELU, false); break;
            default: ACT_BWD_BIAS(AK_IDENTITY, false); break;
        }
    }
#undef ACT_BWD_BIAS
    cudaCheckLaunch();
    colsum_finish(dbias, NULL, NULL, colsum_scratch, 1, chunks, cols);
}
