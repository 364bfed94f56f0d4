// fp16.h: the paper's precision regime on the host (doc/fp16-and-nans.md): rounding an fp32 value
// to IEEE fp16 the way a GPU stores a half (round to nearest even, fp16 subnormals, overflow to
// +-inf), the attention score as PyTorch fp16 autocast forms it, and a dynamic loss scaler with
// the update rule of torch.cuda.amp.GradScaler. The CPU trainer uses all three under
// --fp16-autocast 1; the CUDA trainer's FP16 build does the same on the device (entropy.cuh,
// llmc/guard.cuh), with the same constants.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#define FP16_MAX 65504.0f
#define SCALER_INIT_SCALE 65536.0f     // GradScaler(init_scale=2**16)
#define SCALER_GROWTH_STEPS 2000       // GradScaler(growth_interval=2000)

// x rounded to the nearest fp16 value (ties to even), returned as a float. |x| >= 65520 (65504
// plus half its spacing of 32) becomes inf, as __float2half_rn and numpy's float16 do.
inline float round_fp16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = u & 0x80000000u, a = u ^ sign;
    if (a >= 0x7f800000u) return x;                    // inf and NaN stay
    float ax;
    memcpy(&ax, &a, 4);
    float r;
    if (ax >= 65520.0f) {
        r = INFINITY;
    } else if (ax < 6.103515625e-05f) {                // below 2^-14: fp16 subnormals, spacing 2^-24
        r = nearbyintf(ax * 16777216.0f) / 16777216.0f;  // exact scalings by 2^24; rint ties to even
    } else {                                           // keep 10 of the 23 mantissa bits, ties to even
        a += 0xfffu + ((a >> 13) & 1u);
        a &= ~0x1fffu;
        memcpy(&r, &a, 4);
    }
    return sign ? -r : r;
}

// Rounds n floats in place.
inline void round_fp16_array(float* x, size_t n) {
#ifdef _OPENMP
    #pragma omp parallel for
#endif
    for (size_t i = 0; i < n; i++) x[i] = round_fp16(x[i]);
}

// The attention score of the authors' GPT-2 under fp16 autocast: q.k^T comes out of the matmul
// in fp16 (fp32 accumulation, then rounded: above 65504 it is inf), and is then divided by
// sqrt(hs) held in fp16, the quotient rounded to fp16 again. dot is the fp32 dot product.
inline float fp16_score(float dot, int hs) {
    return round_fp16(round_fp16(dot) / round_fp16(sqrtf((float)hs)));
}

// Dynamic loss scaling with GradScaler's rule (torch/csrc: _amp_update_scale_): the loss is
// multiplied by scale before the backward; a step whose gradients (or loss) are not finite is
// skipped and the scale halves; after SCALER_GROWTH_STEPS finite steps in a row it doubles.
struct LossScaler {
    float scale = SCALER_INIT_SCALE;
    int good_steps = 0;   // finite steps since the last skip or growth (GradScaler's growth tracker)
    int skipped = 0;      // skipped steps in total
};

// Updates the scaler after a step; returns true when the optimizer may apply the step.
inline bool loss_scaler_update(LossScaler* s, bool finite) {
    if (!finite) {
        s->scale *= 0.5f;
        s->good_steps = 0;
        s->skipped++;
        return false;
    }
    if (++s->good_steps == SCALER_GROWTH_STEPS) {
        s->scale *= 2.0f;
        s->good_steps = 0;
    }
    return true;
}
