// llmc/attention.cuh: which attention kernels the trainer runs, for every shape and precision.
//
// Three paths compute the same outputs (out (B, T, C), lse (B, NH, T), the entropy and paper
// partials (B, NH, ceil(T / 32)), the non-finite count; the gradient dqkv (B, T, 3C)):
//   WHOLE_ROW  entropy.cuh's tensor-core kernels, a (b, h)'s whole key range in shared memory:
//              bf16/fp16, head size 64, T <= 128 (GPT-2 at the paper's T = 128).
//   TILED      llmc/attention_tiled*.cuh, online softmax over 64-key tiles on tensor cores:
//              bf16/fp16, head size 64 or 128, any T. Where WHOLE_ROW also applies, WHOLE_ROW
//              runs: dev/cuda/PERF.md predicts the tiled forward no faster at T = 128 (0.2-0.3 ms
//              per layer against the whole-row kernel's measured 0.202 ms at B = 128), and the
//              issue asks that T = 128 not get slower.
//   SIMT       entropy.cuh's general kernels: the fp32 build (exact tests against PyTorch), any
//              other head size (up to 256), and rows that are not 16-byte aligned.
// The backward of both tensor-core paths is llmc/attention_mma_bwd.cuh's (mma.sync, scores in
// registers, any T; g_attention_bwd_mma below), fed the lse the forward saved.
// attention_path is the one place that rule lives; the trainer, its tests and docs follow it.
#pragma once

#include "../entropy.cuh"
#include "attention_tiled.cuh"
#include "attention_tiled_bwd.cuh"
#include "attention_mma_bwd.cuh"

enum AttentionPath { ATT_PATH_SIMT, ATT_PATH_WHOLE_ROW, ATT_PATH_TILED };

inline const char* attention_path_name(AttentionPath p) {
    return p == ATT_PATH_WHOLE_ROW ? "whole-row tensor cores" : p == ATT_PATH_TILED ? "tiled tensor cores" : "SIMT";
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

// attention_forward's contract (entropy.cuh) on the path attention_path picks.
inline void attention_forward_any(floatX* out, float* lse, float* ent_partial, unsigned long long* nonfinite, const floatX* qkv,
                                  int B, int T, int C, int NH, float* paper_partial) {
    const bool aligned = aligned16(qkv) && aligned16(out);
    if (attention_path(T, C, NH, aligned) == ATT_PATH_TILED) {
        attention_forward_tiled(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);
    } else {
        attention_forward(out, lse, ent_partial, nonfinite, qkv, B, T, C, NH, paper_partial);  // whole-row or SIMT
    }
}

// The backward on both tensor-core paths (whole-row and tiled forwards alike) is
// llmc/attention_mma_bwd.cuh's register-resident one: it needs only the lse, which every forward
// path saves. Tests and labs clear this to run the path's own backward (entropy.cuh's whole-row
// kernels, attention_tiled_bwd.cuh) instead.
static bool g_attention_bwd_mma = true;

// attention_backward's contract (entropy.cuh); the path must match the forward's for the saved
// lse to mean the same thing (it does: both rows' alignment and shape decide alike, and every path
// saves lse = m + ln l of the same scores).
inline void attention_backward_any(floatX* dqkv, float* Dbuf, const floatX* dout, const floatX* qkv, const floatX* out,
                                   const float* lse, int B, int T, int C, int NH) {
    const bool aligned = aligned16(qkv) && aligned16(out) && aligned16(dqkv) && aligned16(dout);
    const AttentionPath path = attention_path(T, C, NH, aligned);
    if (path != ATT_PATH_SIMT && g_attention_bwd_mma) {
        attention_backward_mma(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH);
    } else if (path == ATT_PATH_TILED) {
        attention_backward_tiled(dqkv, Dbuf, dout, qkv, lse, B, T, C, NH);
    } else {
        attention_backward(dqkv, Dbuf, dout, qkv, out, lse, B, T, C, NH);  // whole-row or SIMT
    }
}
