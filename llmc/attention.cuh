// llmc/attention.cuh: which attention kernels the trainer runs, for every shape and precision.
//
// Four paths compute the same outputs (out (B, T, C), lse (B, NH, T), the entropy and paper
// partials (B, NH, ceil(T / 32)), the non-finite count; the gradient dqkv (B, T, 3C)):
//   MMA        llmc/attention_mma.cuh (forward) and llmc/attention_mma_bwd.cuh (backward): the
//              online softmax over 64-key tiles with the scores, the entropy sums and the
//              accumulators in mma.sync's registers (nothing but the Q/K/V/dO tiles in shared
//              memory): bf16/fp16, head size 64 or 128, any T. The trainer runs it wherever a
//              tensor-core path applies, forward and backward.
//   WHOLE_ROW  entropy.cuh's wmma kernels, a (b, h)'s whole key range in shared memory: bf16/fp16,
//              head size 64, T <= 128 (measured on an H200 at 751614f: 0.202 ms forward, 0.34 ms
//              backward per layer at B = 128, T = 128).
//   TILED      llmc/attention_tiled*.cuh, wmma with the scores round-tripping shared memory:
//              bf16/fp16, head size 64 or 128, any T.
//   SIMT       entropy.cuh's general kernels: the fp32 build (exact tests against PyTorch), any
//              other head size (up to 256), and rows that are not 16-byte aligned.
// WHOLE_ROW and TILED stay for the labs' and tests' comparisons: g_attention_fwd_mma = false or
// g_attention_bwd_mma = false gives back attention_path's wmma kernel for that direction. A
// forward and a backward from different tensor-core paths may pair: every path saves
// lse = m + ln l of the same scores, and the backward needs nothing else from the forward.
// attention_path and the two attention_*_any functions are the one place that rule lives; the
// trainer, its tests and docs follow it.
#pragma once

#include "../entropy.cuh"
#include "attention_tiled.cuh"
#include "attention_tiled_bwd.cuh"
#include "attention_mma.cuh"
#include "attention_mma_bwd.cuh"

// A build with -DATTENTION_WMMA (make -f cuda.mk ... NVCC_EXTRA=-DATTENTION_WMMA) runs the wmma
// kernels by default: the A/B against the register-resident ones inside the whole trainer.
#ifdef ATTENTION_WMMA
#define ATTENTION_MMA_DEFAULT false
#else
#define ATTENTION_MMA_DEFAULT true
#endif

enum AttentionPath { ATT_PATH_SIMT, ATT_PATH_WHOLE_ROW, ATT_PATH_TILED, ATT_PATH_MMA };

inline const char* attention_path_name(AttentionPath p) {
    return p == ATT_PATH_WHOLE_ROW ? "whole-row tensor cores" : p == ATT_PATH_TILED ? "tiled tensor cores"
           : p == ATT_PATH_MMA       ? "register-resident tensor cores (mma)" : "SIMT";
}

// The path for a call with these rows (every tensor's rows must be 16-byte aligned for the
// tensor-core paths; pass any one pointer that is not to get SIMT). g_attention_force_simt
// (tests, labs) forces SIMT.
inline AttentionPath attention_path(int T, int C, int NH, bool rows_aligned) {
    if (g_attention_force_simt || !rows_aligned) return ATT_PATH_SIMT;
    const void* ok = (const void*)16;  // an aligned stand-in: alignment was decided above
    if (attention_use_wmma(ok, ok, T, C, NH)) return ATT_PATH_WHOLE_ROW;
    if (attention_tiled_supported(ok, ok, C, NH)) return ATT_PATH_TILED;
    return ATT_PATH_SIMT;
}

// The forward's path: MMA wherever a tensor-core path applies (its shapes are TILED's, which
// include WHOLE_ROW's). g_attention_fwd_mma = false (labs, tests) leaves attention_path's wmma choice.
static bool g_attention_fwd_mma = ATTENTION_MMA_DEFAULT;
inline AttentionPath attention_forward_path(int T, int C, int NH, bool rows_aligned) {
    const AttentionPath p = attention_path(T, C, NH, rows_aligned);
    return p != ATT_PATH_SIMT && g_attention_fwd_mma ? ATT_PATH_MMA : p;
}

// attention_forward's contract (entropy.cuh) on the path attention_forward_path picks.
inline void attention_forward_any(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite, const floatX* qkv,
                                  int B, int T, int C, int NH, float* paper_partial) {
    const bool aligned = aligned16(qkv) && aligned16(out);
    const AttentionPath p = attention_forward_path(T, C, NH, aligned);
    if (p == ATT_PATH_MMA) {
        attention_forward_mma(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);
    } else if (p == ATT_PATH_TILED) {
        attention_forward_tiled(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);
    } else {
        attention_forward(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);  // whole-row or SIMT
    }
}

// The backward's path: MMA wherever a tensor-core path applies (it needs only the saved lse).
// g_attention_bwd_mma = false (labs, tests) runs attention_path's own backward (entropy.cuh's
// whole-row kernels, attention_tiled_bwd.cuh); SIMT pairs with SIMT only (the rows' alignment
// and shape decide both directions alike).
static bool g_attention_bwd_mma = ATTENTION_MMA_DEFAULT;

inline AttentionPath attention_backward_path(int T, int C, int NH, bool rows_aligned) {
    const AttentionPath p = attention_path(T, C, NH, rows_aligned);
    return p != ATT_PATH_SIMT && g_attention_bwd_mma ? ATT_PATH_MMA : p;
}

// attention_backward's contract (entropy.cuh) on that path, and dqkvb (3C) += the column sums of
// dqkv (the qkv bias gradient): folded into the MMA kernels (attention_backward_mma), a colsum
// pass over dqkv on the other paths. scratch: attention_backward_scratch_floats(B, T, C).
inline void attention_backward_any(floatX* dqkv, float* dqkvb, float* Dbuf, const floatX* dout, const floatX* qkv, const floatX* out,
                                   const float* lse, int B, int T, int C, int NH, float* scratch) {
    const bool aligned = aligned16(qkv) && aligned16(out) && aligned16(dqkv) && aligned16(dout);
    const AttentionPath path = attention_backward_path(T, C, NH, aligned);
    if (path == ATT_PATH_MMA) {
        attention_backward_mma(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH, dqkvb, scratch);
        return;
    }
    if (path == ATT_PATH_TILED) attention_backward_tiled(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH);
    else attention_backward(dqkv, Dbuf, dout, qkv, out, lse, B, T, C, NH);  // whole-row or SIMT
    colsum_accumulate(dqkvb, NULL, dqkv, NULL, NULL, NULL, B * T, 3 * C, scratch);
}

// Scratch floats attention_backward_any needs for its bias gradient on any path.
inline size_t attention_backward_scratch_floats(int B, int T, int C) {
    return std::max(attention_bias_scratch_floats(B, T, C), colsum_scratch_floats(B * T, 3 * C));
}
