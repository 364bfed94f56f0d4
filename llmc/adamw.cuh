// llmc/adamw.cuh: AdamW on the fp32 master weights, in torch.optim.AdamW's order of
// operations (decoupled decay, moment updates, bias-corrected step), as the CPU trainer:
//   g = grad * grad_scale;  p *= decay;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps),   step_size = lr / (1 - b1^t)
// It also writes the rounded floatX working copy (round to nearest: deterministic) and zeroes
// the gradient for the next step. Whether to update at all is the device's verdict
// (StepHeader.apply, guard.cuh): the host does not wait for it. The gradient is zeroed either way.
#pragma once

#include "cuda_common.cuh"
#include "guard.cuh"

struct AdamWArgs {
    float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
    float step_size;   // (float)(lr / (1 - beta1^t))
    float bias2_sqrt;  // (float)sqrt(1 - beta2^t)
};

// One parameter's update. Every operation is pinned to round-to-nearest with no contraction
// (__fmul_rn/__fadd_rn never fuse into an FMA): left to itself nvcc contracts `m*b1 + (1-b1)*g`
// differently in the packed and the scalar path, so results would depend on which path ran and
// would differ from the CPU trainer (g++ -std=c++17 does not contract either).
__device__ __forceinline__ float adamw_element(float p, float grad, float& mi, float& vi, float decay, const AdamWArgs& a) {
    p = __fmul_rn(p, decay);
    mi = __fadd_rn(__fmul_rn(mi, a.beta1), __fmul_rn(a.one_minus_beta1, grad));
    vi = __fadd_rn(__fmul_rn(vi, a.beta2), __fmul_rn(__fmul_rn(a.one_minus_beta2, grad), grad));
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), a.bias2_sqrt), a.eps);
    return __fsub_rn(p, __fmul_rn(a.step_size, __fdiv_rn(mi, denom)));
}

// A thread per ADAMW_PACK consecutive parameters. The update is a pure stream (34 bytes per
// parameter in bf16: grad, master, m, v read; all four and the working copy written), so it is
// bound by memory only when the accesses are 16 bytes wide and the loads are all issued before
// any store (__restrict__: none of the arrays alias). A first version (one float per thread in a
// grid-stride loop) took 5.5 ms for GPT-2 124M on an H200, ~5x this stream's floor.
// VEC: all arrays 16-byte aligned (params_x 4 * sizeof(floatX)); the last, partial pack and
// unaligned tensors take the scalar path.
#define ADAMW_PACK 4
#define ADAMW_THREADS 256
struct alignas(ADAMW_PACK * sizeof(floatX)) PackedX4 {
    floatX v[ADAMW_PACK];
};

template <bool VEC>
__global__ void __launch_bounds__(ADAMW_THREADS) adamw_kernel(float* __restrict__ params, floatX* __restrict__ params_x,
                                                            float* __restrict__ grads, float* __restrict__ m,
                                                            float* __restrict__ v, size_t n, float decay, AdamWArgs a,
                                                            const StepHeader* __restrict__ h) {
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * ADAMW_PACK;
    if (i0 >= n) return;
    bool apply = h->apply != 0;
    float grad_scale = h->grad_scale;
    if (VEC && i0 + ADAMW_PACK <= n) {
        float4 g4 = __ldcs(reinterpret_cast<const float4*>(grads + i0));
        float4 p4 = __ldcs(reinterpret_cast<const float4*>(params + i0));
        float4 m4 = __ldcs(reinterpret_cast<const float4*>(m + i0));
        float4 v4 = __ldcs(reinterpret_cast<const float4*>(v + i0));
        __stcs(reinterpret_cast<float4*>(grads + i0), make_float4(0.0f, 0.0f, 0.0f, 0.0f));
        if (!apply) return;
        float g[4] = {g4.x, g4.y, g4.z, g4.w}, p[4] = {p4.x, p4.y, p4.z, p4.w};
        float mm[4] = {m4.x, m4.y, m4.z, m4.w}, vv[4] = {v4.x, v4.y, v4.z, v4.w};
        PackedX4 px;
        for (int k = 0; k < ADAMW_PACK; k++) {
            p[k] = adamw_element(p[k], __fmul_rn(g[k], grad_scale), mm[k], vv[k], decay, a);
            px.v[k] = from_float<floatX>(p[k]);
        }
        __stcs(reinterpret_cast<float4*>(params + i0), make_float4(p[0], p[1], p[2], p[3]));
        __stcs(reinterpret_cast<float4*>(m + i0), make_float4(mm[0], mm[1], mm[2], mm[3]));
        __stcs(reinterpret_cast<float4*>(v + i0), make_float4(vv[0], vv[1], vv[2], vv[3]));
        if (params_x != NULL) *reinterpret_cast<PackedX4*>(params_x + i0) = px;
        return;
    }
    size_t end = i0 + ADAMW_PACK < n ? i0 + ADAMW_PACK : n;
    for (size_t i = i0; i < end; i++) {
        float grad = __fmul_rn(grads[i], grad_scale);
        grads[i] = 0.0f;
        if (!apply) continue;
        float mi = m[i], vi = v[i];
        float p = adamw_element(params[i], grad, mi, vi, decay, a);
        m[i] = mi;
        v[i] = vi;
        params[i] = p;
        if (params_x != NULL) params_x[i] = from_float<floatX>(p);
    }
}

// One tensor's update. params_x: the working copy, or NULL when it is the master itself (FP32).
inline void adamw_update(float* params, floatX* params_x, float* grads, float* m, float* v, size_t n, float decay,
                         const AdamWArgs& a, const StepHeader* h) {
    if (n == 0) return;
    bool vec = aligned16(params) && aligned16(grads) && aligned16(m) && aligned16(v) &&
               (reinterpret_cast<uintptr_t>(params_x) % sizeof(PackedX4)) == 0;
    int grid = ceil_div(ceil_div((long)n, ADAMW_PACK), ADAMW_THREADS);
    if (vec) adamw_kernel<true><<<grid, ADAMW_THREADS, 0, g_stream>>>(params, params_x, grads, m, v, n, decay, a, h);
    else adamw_kernel<false><<<grid, ADAMW_THREADS, 0, g_stream>>>(params, params_x, grads, m, v, n, decay, a, h);
    cudaCheckLaunch();
}

// Host: the bias corrections for AdamW's step count t (1, 2, ...), in double as the CPU trainer.
inline AdamWArgs adamw_args(float lr, float beta1, float beta2, float eps, int t) {
    double bias1 = 1.0 - pow((double)beta1, t);
    double bias2_sqrt = sqrt(1.0 - pow((double)beta2, t));
    AdamWArgs a;
    a.beta1 = beta1;
    a.beta2 = beta2;
    a.one_minus_beta1 = (float)(1.0 - (double)beta1);
    a.one_minus_beta2 = (float)(1.0 - (double)beta2);
    a.eps = eps;
    a.step_size = (float)(lr / bias1);
    a.bias2_sqrt = (float)bias2_sqrt;
    return a;
}

// Host: decay factor of a tensor (weight decay on matrices and embeddings only, config.h).
inline float adamw_decay(float lr, float weight_decay, bool decays) {
    return decays ? (float)(1.0 - (double)lr * weight_decay) : 1.0f;
}

// Rounds the master weights into the working copy (after loading or resuming).
__global__ void round_params_kernel(floatX* out, const float* in, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = from_float<floatX>(in[i]);
}

inline void round_params(floatX* out, const float* in, size_t n) {
    if (n == 0) return;
    int grid = ceil_div((long)n, 512);
    if (grid > 2048) grid = 2048;
    round_params_kernel<<<grid, 512, 0, g_stream>>>(out, in, n);
    cudaCheckLaunch();
}
