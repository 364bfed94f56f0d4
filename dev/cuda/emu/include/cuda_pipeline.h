// cuda_pipeline.h for the CPU emulator: cp.async as a plain copy (it completes at once, so
// commit and wait have nothing to do). What the emulator cannot check: a read of the tile
// before the wait, which on a GPU could see stale data (review the barrier order instead).
#pragma once
#include <cstring>
inline void __pipeline_memcpy_async(void* dst, const void* src, size_t size, size_t zfill = 0) {
    memcpy(dst, src, size - zfill);
    if (zfill) memset((char*)dst + size - zfill, 0, zfill);
}
inline void __pipeline_commit() {}
inline void __pipeline_wait_prior(size_t) {}
