// llmc/encoder.cuh: token + position embeddings, forward and backward.
//   forward   out (B, T, C) = wte[inp[b, t]] + wpe[t]
//   backward  dwte[tok] += sum of dout over the positions holding tok; dwpe[t] += sum over b
// The backward must not use float atomics (a token repeated in the batch would make the sum's
// order, and so its rounding, vary from run to run). The host already holds the batch, so it
// groups the positions by token (encoder_buckets) and uploads that with the tokens; one block
// then sums each distinct token's positions in a fixed order.
#pragma once

#include <algorithm>
#include <vector>
#include "cuda_common.cuh"

__global__ void encoder_forward_kernel(floatX* out, const int* inp, const floatX* wte, const floatX* wpe, int B, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)B * T * C;
    if (idx >= total) return;
    int c = (int)(idx % C);
    size_t bt = idx / C;
    int t = (int)(bt % T);
    int tok = inp[bt];
    out[idx] = from_float<floatX>(to_float(wte[(size_t)tok * C + c]) + to_float(wpe[(size_t)t * C + c]));
}

// Vectorised form when C is a multiple of the pack size: 16 bytes per thread.
__global__ void encoder_forward_vec_kernel(floatX* out, const int* inp, const floatX* wte, const floatX* wpe, int B, int T, int C) {
    const int P = Packed128<floatX>::size;
    size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * P;
    size_t total = (size_t)B * T * C;
    if (idx >= total) return;
    int c = (int)(idx % C);
    size_t bt = idx / C;
    int t = (int)(bt % T);
    int tok = inp[bt];
    Packed128<floatX> a = load128(wte + (size_t)tok * C + c), p = load128(wpe + (size_t)t * C + c), o;
    for (int k = 0; k < P; k++) o[k] = from_float<floatX>(to_float(a[k]) + to_float(p[k]));
    store128(out + idx, o);
}

inline void encoder_forward(floatX* out, const int* inp, const floatX* wte, const floatX* wpe, int B, int T, int C) {
    const int P = Packed128<floatX>::size;
    size_t total = (size_t)B * T * C;
    if (C % P == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe)) {
        encoder_forward_vec_kernel<<<ceil_div(total / P, 256), 256, 0, g_stream>>>(out, inp, wte, wpe, B, T, C);
    } else {
        encoder_forward_kernel<<<ceil_div(total, 256), 256, 0, g_stream>>>(out, inp, wte, wpe, B, T, C);
    }
    cudaCheckLaunch();
}

// Host: the positions of a (B*T) batch grouped by token, for the deterministic backward.
// sorted_pos (BT): positions ordered by (token, position); seg_tok (U): the distinct tokens;
// seg_start (U+1): where each token's positions begin in sorted_pos. Returns U. inp: ids >= 0
// (gpt2_set_batch has checked them against the vocabulary).
// A counting sort, not a comparison sort: it runs on the host for every batch, and std::sort of
// the (token, position) pairs took ~0.7 ms at B*T = 16,384 (this one ~0.15 ms, mostly the pass
// over the ids up to the largest). Filling each token's slots in increasing position order gives
// exactly the (token, position) order, so the backward's sums are unchanged to the bit.
inline int encoder_buckets(const int* inp, int BT, int* sorted_pos, int* seg_tok, int* seg_start) {
    int max_tok = 0;
    for (int i = 0; i < BT; i++) max_tok = std::max(max_tok, inp[i]);
    std::vector<int> next((size_t)max_tok + 2, 0);  // next[t + 1]: count of t; then next[t]: t's next free slot
    for (int i = 0; i < BT; i++) next[inp[i] + 1]++;
    int U = 0;
    for (int t = 0; t <= max_tok; t++) {
        if (next[t + 1] > 0) {  // t occurs: its positions start where the smaller tokens' end
            seg_tok[U] = t;
            seg_start[U] = next[t];
            U++;
        }
        next[t + 1] += next[t];
    }
    seg_start[U] = BT;
    for (int i = 0; i < BT; i++) sorted_pos[next[inp[i]]++] = i;
    return U;
}

// dwte[seg_tok[u]][c] += sum over the token's positions p of dout[p][c]. Grid (U, C/256).
__global__ void encoder_backward_wte_kernel(float* dwte, const floatX* dout, const int* sorted_pos, const int* seg_tok,
                                            const int* seg_start, int C) {
    int u = blockIdx.x;
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float sum = 0.0f;
    for (int i = seg_start[u]; i < seg_start[u + 1]; i++) sum += to_float(dout[(size_t)sorted_pos[i] * C + c]);
    dwte[(size_t)seg_tok[u] * C + c] += sum;
}

// dwpe[t][c] += sum over b of dout[b][t][c]. One thread per (t, c).
__global__ void encoder_backward_wpe_kernel(float* dwpe, const floatX* dout, int B, int T, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)T * C) return;
    float sum = 0.0f;
    for (int b = 0; b < B; b++) sum += to_float(dout[(size_t)b * T * C + idx]);
    dwpe[idx] += sum;
}

inline void encoder_backward(float* dwte, float* dwpe, const floatX* dout, const int* sorted_pos, const int* seg_tok,
                             const int* seg_start, int num_unique, int B, int T, int C) {
    dim3 grid(num_unique, ceil_div(C, 256));
    encoder_backward_wte_kernel<<<grid, 256, 0, g_stream>>>(dwte, dout, sorted_pos, seg_tok, seg_start, C);
    cudaCheckLaunch();
    encoder_backward_wpe_kernel<<<ceil_div((long)T * C, 256), 256, 0, g_stream>>>(dwpe, dout, B, T, C);
    cudaCheckLaunch();
}
