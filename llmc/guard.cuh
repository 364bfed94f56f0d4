// llmc/guard.cuh: the end of a training step on the device, so that the host never waits for
// it: the global gradient norm, the NaN guard's verdict, the clipping factor and (fp16) dynamic
// loss scaling, all written into a StepHeader that AdamW reads and that is copied to pinned host
// memory with the step's other measurements, for the host to read one step later.
//   finite  = loss finite && gradient norm finite && no non-finite attention score or FFN
//             activation counted in the step's forward passes (the CPU trainer's test)
//   apply   = finite, or anything under --on-nan log (fp16: see below)
//   scale   = clip / (norm + 1e-6) if that is below 1 (torch.nn.utils.clip_grad_norm_), / S
// FP16 (loss scale S): the loss is multiplied by S before the backward and the gradients are
// divided by S in the update. A non-finite gradient norm with a finite forward is an overflow
// of the scaled gradients, not a NaN-guard event: the update is skipped, S halves and the step
// is counted as an overflow; after SCALER_GROWTH_INTERVAL clean steps S doubles (as PyTorch's
// GradScaler: 65536 to start, growth interval 2000). A non-finite forward is a NaN-guard event;
// under --on-nan skip it also halves S (and restarts the growth count), because GradScaler sees
// its non-finite gradients and backs off whatever their cause (doc/fp16-and-nans.md).
#pragma once

#include "cuda_common.cuh"

#define NORM_BLOCKS 1024
#define NORM_THREADS 512
#define SCALER_INIT 65536.0f
#define SCALER_GROWTH_INTERVAL 2000

// The step's scalars, at the start of the step's result block (device) and of its pinned copy.
struct StepHeader {
    double loss_sum;   // sum over the micro-batches of their mean loss
    float loss;        // loss_sum / micro-batches
    float norm;        // global L2 norm of the (unscaled) gradients, before clipping
    float grad_scale;  // what AdamW multiplies the raw gradients by (clipping, 1/S)
    float loss_scale;  // S during this step (1 unless fp16)
    int finite;        // the NaN guard's verdict
    int apply;         // 1 if AdamW applied the update
    int overflow;      // fp16: the scaled gradients overflowed (update skipped, S halved)
    int pad;
};

// fp16 dynamic loss scaling state, on the device.
struct ScalerState {
    float scale;
    int clean_steps;   // steps since the last overflow or growth
    int overflows;     // skipped overflow steps, in total
    int pad;
};

// partials[block] = sum of squares of this block's share of g[0..n), in double. g must be
// 16-byte aligned (the trainer's gradient buffer is one cudaMalloc): a thread reads 4 floats at
// a time into two accumulators, so several loads are in flight, not one at a time.
__global__ void __launch_bounds__(NORM_THREADS) grad_norm_partial_kernel(double* partials, const float* g, size_t n) {
    __shared__ double shared[32];
    double s0 = 0.0, s1 = 0.0;
    const size_t stride = (size_t)gridDim.x * blockDim.x, n4 = n / 4;
    const float4* g4 = reinterpret_cast<const float4*>(g);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 v = __ldcs(g4 + i);
        s0 += (double)v.x * v.x + (double)v.y * v.y;
        s1 += (double)v.z * v.z + (double)v.w * v.w;
    }
    for (size_t i = 4 * n4 + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        double v = g[i];
        s0 += v * v;
    }
    double s = block_sum<double>(s0 + s1, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// One warp: folds the norm partials, the non-finite counters and the loss into the verdict.
__global__ void step_finalize_kernel(StepHeader* h, ScalerState* scaler, const double* partials, int num_partials,
                                     const unsigned long long* att_bad, const unsigned long long* ffn_bad, int L,
                                     int micro_batches, float clip, int log_anyway, int use_scaler) {
    double sq = 0.0;
    unsigned long long bad = 0;
    for (int i = threadIdx.x; i < num_partials; i += 32) sq += partials[i];
    for (int l = threadIdx.x; l < L; l += 32) bad += att_bad[l] + ffn_bad[l];
    sq = warp_sum(sq);
    for (int o = 16; o > 0; o >>= 1) bad += __shfl_xor_sync(0xffffffffu, bad, o);
    if (threadIdx.x != 0) return;
    float S = use_scaler ? scaler->scale : 1.0f;
    float loss = (float)(h->loss_sum / micro_batches);
    float norm = (float)(sqrt(sq) / (double)S);
    bool forward_ok = isfinite(loss) && bad == 0;
    bool norm_ok = isfinite(norm);
    int finite, apply, overflow = 0;
    if (!use_scaler) {
        finite = forward_ok && norm_ok;
        apply = finite || log_anyway;
    } else {
        finite = forward_ok;
        if (!forward_ok) {
            apply = log_anyway;
            if (!log_anyway) {
                scaler->scale = S * 0.5f;
                scaler->clean_steps = 0;
            }
        } else if (!norm_ok) {
            overflow = 1;
            apply = 0;
            scaler->scale = S * 0.5f;
            scaler->clean_steps = 0;
            scaler->overflows++;
        } else {
            apply = 1;
            if (++scaler->clean_steps >= SCALER_GROWTH_INTERVAL) {
                scaler->scale = S * 2.0f;
                scaler->clean_steps = 0;
            }
        }
    }
    float coef = 1.0f;
    if (clip > 0.0f) {
        coef = clip / (norm + 1e-6f);
        if (coef > 1.0f) coef = 1.0f;
    }
    h->loss = loss;
    h->norm = norm;
    h->grad_scale = coef / S;
    h->loss_scale = S;
    h->finite = finite;
    h->apply = apply;
    h->overflow = overflow;
}

// The norm's NORM_BLOCKS partial sums of squares of grads[0..n).
inline void grad_norm_partials(double* partials, const float* grads, size_t n) {
    if (!aligned16(grads)) fail("internal: the gradient buffer is not 16-byte aligned");
    grad_norm_partial_kernel<<<NORM_BLOCKS, NORM_THREADS, 0, g_stream>>>(partials, grads, n);
    cudaCheckLaunch();
}

// The verdict from the partials (summed over ranks first under data parallelism, llmc/zero.cuh).
inline void step_verdict(StepHeader* h, ScalerState* scaler, const double* partials, const unsigned long long* att_bad,
                         const unsigned long long* ffn_bad, int L, int micro_batches, float clip, bool log_anyway,
                         bool use_scaler) {
    step_finalize_kernel<<<1, 32, 0, g_stream>>>(h, scaler, partials, NORM_BLOCKS, att_bad, ffn_bad, L, micro_batches, clip,
                                                 log_anyway ? 1 : 0, use_scaler ? 1 : 0);
    cudaCheckLaunch();
}

// Both on one GPU; partials holds NORM_BLOCKS doubles.
inline void step_finalize(StepHeader* h, ScalerState* scaler, double* partials, const float* grads, size_t n,
                          const unsigned long long* att_bad, const unsigned long long* ffn_bad, int L, int micro_batches,
                          float clip, bool log_anyway, bool use_scaler) {
    grad_norm_partials(partials, grads, n);
    step_verdict(h, scaler, partials, att_bad, ffn_bad, L, micro_batches, clip, log_anyway, use_scaler);
}
