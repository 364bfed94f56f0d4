// llmc/classifier.cuh: the fused classifier. One block per position (b, t) reads its row of
// logits (Vp floatX, the first V real) and computes, in fp32,
//   loss = logsumexp(logits) - logits[target]                 -> losses (B*T)
// and, for training, overwrites the row in place with the gradient of dloss * loss:
//   dlogits_i = (softmax_i - [i == target]) * dloss,  0 in the padded columns
// so the (B, T, Vp) probabilities are never stored (the CPU trainer keeps a probs tensor).
// Where the row fits in shared memory (Vp * sizeof(floatX): 100.6 KB in bf16 at GPT-2's
// vocabulary), the first pass keeps it there and the second reads it from there: the logits
// are read from memory once, not twice (a row's two reads are too far apart for L2 to hold it).
// The mean of the B*T losses is then added to a device accumulator in a fixed order.
#pragma once

#include "cuda_common.cuh"

#define CLASSIFIER_THREADS 512
#define CLASSIFIER_BATCH 4  // 16-byte packs per thread in flight at once

// The kernel evaluates two exponentials per logit (~1.6e9 at GPT-2 124M, B = 128, T = 128), so
// their cost shows beside the memory traffic: bf16/fp16 builds use the hardware's approximate
// exp (relative error ~1e-6, far below the logits' own rounding); the exact FP32 build, expf.
#if defined(ENABLE_FP32)
#define CLASSIFIER_EXP(x) expf(x)
#else
#define CLASSIFIER_EXP(x) __expf(x)
#endif

// (m, s): running max and sum of exp(x - m). Merge two; an empty side (m = -inf) adds nothing.
__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    float a = (m == -INFINITY) ? 0.0f : s * expf(m - mn);
    float b = (m2 == -INFINITY) ? 0.0f : s2 * expf(m2 - mn);
    m = mn;
    s = a + b;
}

// losses (N = B*T); logits (N, Vp) in place. dloss_ptr: NULL for no gradient, else the device
// scalar multiplying dloss (the fp16 loss scale; 1.0 otherwise), times dloss_base.
// STAGE (VEC only): Vp floatX of dynamic shared memory hold the row between the passes.
template <bool VEC, bool STAGE>
__global__ void __launch_bounds__(CLASSIFIER_THREADS) classifier_kernel(floatX* logits, float* losses, const int* targets, int V,
                                                                       int Vp, bool write_grad, float dloss_base,
                                                                       const float* dloss_scale) {
    __shared__ float sm[32], ss[32];
    extern __shared__ float smem[];  // STAGE: the row, (Vp) floatX
    floatX* row_s = reinterpret_cast<floatX*>(smem);
    const int P = VEC ? Packed128<floatX>::size : 1;
    int row = blockIdx.x;
    floatX* x = logits + (size_t)row * Vp;
    int target = targets[row];
    // pass 1: max and sum of exponentials over the V real columns (online, per thread; on the
    // VEC path the running max moves once per pack of P, so one rescale per pack at most)
    float m = -INFINITY, s = 0.0f;
    int vec_end = VEC ? (V / P) * P : 0;
    // CLASSIFIER_BATCH packs are loaded before any is used: a row is ~13 packs per thread, and
    // one load at a time would leave ~13 memory latencies in a row per pass
    const int stride = blockDim.x * P;
    for (int i0 = threadIdx.x * P; i0 < vec_end; i0 += CLASSIFIER_BATCH * stride) {
        Packed128<floatX> vb[CLASSIFIER_BATCH];
#pragma unroll
        for (int u = 0; u < CLASSIFIER_BATCH; u++)
            if (i0 + u * stride < vec_end) vb[u] = load128(x + i0 + u * stride);
#pragma unroll
        for (int u = 0; u < CLASSIFIER_BATCH; u++) {
            if (i0 + u * stride >= vec_end) break;
            if (STAGE) store128(row_s + i0 + u * stride, vb[u]);
            float xs[P];
            float pack_max = -INFINITY;
            for (int k = 0; k < P; k++) {
                xs[k] = to_float(vb[u][k]);
                pack_max = fmaxf(pack_max, xs[k]);
            }
            if (pack_max > m) {
                s = m == -INFINITY ? 0.0f : s * CLASSIFIER_EXP(m - pack_max);
                m = pack_max;
            }
            for (int k = 0; k < P; k++) s += CLASSIFIER_EXP(xs[k] - m);
            // a NaN fails pack_max > m (fmaxf skips it) but lands in s through its own term
        }
    }
    if (STAGE)  // the rest of the row, the padding as zeros (pass 2 reads whole packs)
        for (int i = vec_end + threadIdx.x; i < Vp; i += blockDim.x) row_s[i] = i < V ? x[i] : from_float<floatX>(0.0f);
    for (int i = vec_end + threadIdx.x; i < V; i += blockDim.x) {
        float xv = to_float(x[i]);
        if (xv > m) { s = (m == -INFINITY ? 0.0f : s * CLASSIFIER_EXP(m - xv)) + 1.0f; m = xv; }
        else s += CLASSIFIER_EXP(xv - m);  // NaN lands here and spreads into s, as it should
    }
    // block reduction of (m, s) in a fixed order
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        online_merge(m, s, m2, s2);
    }
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    __syncthreads();
    m = lane < nwarps ? sm[lane] : -INFINITY;
    s = lane < nwarps ? ss[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        online_merge(m, s, m2, s2);
    }
    float lse = m + logf(s);
    float xt = to_float(x[target]);
    __syncthreads();  // everyone has read x[target] before pass 2 overwrites the row (and, STAGE,
                      // every thread's part of row_s is written: the reduction's barriers too)
    if (threadIdx.x == 0) losses[row] = lse - xt;
    if (!write_grad) return;
    // pass 2: dlogits in place
    float dloss = dloss_base * (dloss_scale != NULL ? *dloss_scale : 1.0f);
    float inv_s = 1.0f / s;
    int vec_end_p = VEC ? Vp : 0;  // Vp is a multiple of P on the VEC path
    for (int i0 = threadIdx.x * P; i0 < vec_end_p; i0 += CLASSIFIER_BATCH * stride) {
        Packed128<floatX> vb[CLASSIFIER_BATCH];
#pragma unroll
        for (int u = 0; u < CLASSIFIER_BATCH; u++)
            if (i0 + u * stride < vec_end_p) vb[u] = STAGE ? load128(row_s + i0 + u * stride) : load128(x + i0 + u * stride);
#pragma unroll
        for (int u = 0; u < CLASSIFIER_BATCH; u++) {
            const int i = i0 + u * stride;
            if (i >= vec_end_p) break;
            Packed128<floatX> g;
            for (int k = 0; k < P; k++) {
                int col = i + k;
                float p = col < V ? CLASSIFIER_EXP(to_float(vb[u][k]) - m) * inv_s : 0.0f;
                g[k] = from_float<floatX>((p - (col == target ? 1.0f : 0.0f)) * dloss);
            }
            store128(x + i, g);
        }
    }
    for (int i = vec_end_p + threadIdx.x; i < Vp; i += blockDim.x) {
        float p = i < V ? CLASSIFIER_EXP(to_float(x[i]) - m) * inv_s : 0.0f;
        x[i] = from_float<floatX>((p - (i == target ? 1.0f : 0.0f)) * dloss);
    }
}

// losses (N) from logits (N, Vp); with write_grad, logits become dlogits for dloss_base *
// (*dloss_scale, or 1 if NULL) times the loss.
inline void classifier_forward(floatX* logits, float* losses, const int* targets, int N, int V, int Vp, bool write_grad,
                               float dloss_base, const float* dloss_scale) {
    bool vec = Vp % Packed128<floatX>::size == 0 && aligned16(logits);
    size_t row_bytes = (size_t)Vp * sizeof(floatX);
    if (vec && row_bytes <= g_device_prop.sharedMemPerBlockOptin) {
        static size_t allowed = 48 * 1024;  // what a kernel may use without asking
        if (row_bytes > allowed) {
            cudaCheck(cudaFuncSetAttribute(classifier_kernel<true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)row_bytes));
            allowed = row_bytes;
        }
        classifier_kernel<true, true><<<N, CLASSIFIER_THREADS, row_bytes, g_stream>>>(logits, losses, targets, V, Vp, write_grad,
                                                                                     dloss_base, dloss_scale);
    } else if (vec) {
        classifier_kernel<true, false><<<N, CLASSIFIER_THREADS, 0, g_stream>>>(logits, losses, targets, V, Vp, write_grad,
                                                                              dloss_base, dloss_scale);
    } else {
        classifier_kernel<false, false><<<N, CLASSIFIER_THREADS, 0, g_stream>>>(logits, losses, targets, V, Vp, write_grad,
                                                                               dloss_base, dloss_scale);
    }
    cudaCheckLaunch();
}

// acc[0] += (double)(float)(mean of losses[0..n)): one block, fixed order (as the CPU trainer:
// the micro-batch's mean loss in fp32, summed over micro-batches in double).
__global__ void loss_mean_accumulate_kernel(double* acc, const float* losses, int n) {
    __shared__ double shared[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += losses[i];
    s = block_sum<double>(s, shared);
    if (threadIdx.x == 0) acc[0] += (double)(float)(s / n);
}

inline void loss_mean_accumulate(double* acc, const float* losses, int n) {
    loss_mean_accumulate_kernel<<<1, 1024, 0, g_stream>>>(acc, losses, n);
    cudaCheckLaunch();
}
