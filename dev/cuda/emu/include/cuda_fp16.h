// dev/cuda/emu/include/cuda_fp16.h: fp16 through the compiler's _Float16.
#pragma once
#include "emu_engine.h"
struct __half { uint16_t x; };
inline float __half2float(__half v) { _Float16 h; memcpy(&h, &v.x, 2); return (float)h; }
inline __half __float2half_rn(float f) { _Float16 h = (_Float16)f; __half r; memcpy(&r.x, &h, 2); return r; }
