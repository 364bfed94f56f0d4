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
// (the fp32 master copy), a fixed one is passed by value.
#pragma once

#include "cuda_common.cuh"
#include "../config.h"

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

// Scratch doubles the backward needs for a learnable slope.
inline size_t activation_scratch_doubles() { return ACT_MAX_BLOCKS; }

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
