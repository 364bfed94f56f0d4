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

__global__ void adamw_kernel(float* params, floatX* params_x, float* grads, float* m, float* v, size_t n, float decay,
                             AdamWArgs a, const StepHeader* h) {
    bool apply = h->apply != 0;
    float grad_scale = h->grad_scale;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float grad = grads[i] * grad_scale;
        grads[i] = 0.0f;
        if (!apply) continue;
        float p = params[i] * decay;
        float mi = m[i] * a.beta1 + a.one_minus_beta1 * grad;
        float vi = v[i] * a.beta2 + a.one_minus_beta2 * grad * grad;
        float denom = sqrtf(vi) / a.bias2_sqrt + a.eps;
        p -= a.step_size * (mi / denom);
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
    int grid = ceil_div((long)n, 512);
    if (grid > 2048) grid = 2048;
    adamw_kernel<<<grid, 512, 0, g_stream>>>(params, params_x, grads, m, v, n, decay, a, h);
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
