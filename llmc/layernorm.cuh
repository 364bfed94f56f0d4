// llmc/layernorm.cuh: LayerNorm (eps 1e-5) forward and backward over rows of C channels.
//   forward   out = (x - mean) * rstd * w + b; saves mean and rstd (B*T floats each)
//   backward  dinp += (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) * rstd, dnorm = w * dout
//             dw += sum over rows of dout * xhat, db += sum of dout (colsum.cuh: deterministic)
// One warp per row, fp32 statistics. Used before attention and the MLP (--norm ln) and as the
// final LayerNorm (kept unless --norm none-all). In LN-free blocks nothing here runs: the
// "normalised" tensor is the residual itself (aliased, never copied).
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

// dinp (N, C) += gradient (= when !accumulate); dweight, dbias (C) fp32 +=.
// scratch: colsum_scratch_floats(N, C).
inline void layernorm_backward(floatX* dinp, float* dweight, float* dbias, const floatX* dout, const floatX* inp,
                               const floatX* weight, const float* mean, const float* rstd, int N, int C, bool accumulate,
                               float* scratch) {
    int grid = ceil_div(N, 8);
    if (layernorm_vec_ok(dinp, dout, C) && aligned16(inp) && aligned16(weight))
        layernorm_backward_input_kernel<true><<<grid, 256, 0, g_stream>>>(dinp, dout, inp, weight, mean, rstd, N, C, accumulate);
    else
        layernorm_backward_input_kernel<false><<<grid, 256, 0, g_stream>>>(dinp, dout, inp, weight, mean, rstd, N, C, accumulate);
    cudaCheckLaunch();
    colsum_accumulate(dbias, dweight, dout, inp, mean, rstd, N, C, scratch);
}
