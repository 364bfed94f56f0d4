// dev/cuda/emu/include/mma.h: nvcuda::wmma for 16x16x16 tiles; every lane holds the whole tile.
// Checks the real API's rules (256-bit aligned pointers, ld a multiple of 16 bytes).
#pragma once
#include "emu_engine.h"
#include <type_traits>
namespace nvcuda { namespace wmma {
struct matrix_a {}; struct matrix_b {}; struct accumulator {}; struct row_major {}; struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment { float x[256]; };
template <class Use, class T, class Layout> void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ld) {
    if (((uintptr_t)p % 32) != 0 || ld % (16 / sizeof(T)) != 0) { fprintf(stderr, "emu: wmma load misaligned\n"); abort(); }
    for (int r = 0; r < 16; r++) for (int c = 0; c < 16; c++)
        f.x[r * 16 + c] = to_float(std::is_same<Layout, row_major>::value ? p[r * ld + c] : p[c * ld + r]);
}
// The accumulator's load (an fp32 tile resumed in place: llmc/attention_tiled.cuh's O += P V).
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ld, layout_t layout) {
    if (((uintptr_t)p % 32) != 0 || ld % 4 != 0) { fprintf(stderr, "emu: wmma load misaligned\n"); abort(); }
    for (int r = 0; r < 16; r++) for (int c = 0; c < 16; c++)
        f.x[r * 16 + c] = layout == mem_row_major ? p[r * ld + c] : p[c * ld + r];
}
template <class T> void fill_fragment(fragment<accumulator, 16, 16, 16, T>& f, T v) { for (auto& e : f.x) e = v; }
template <class LA, class LB, class T>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
    float out[256];
    for (int r = 0; r < 16; r++) for (int col = 0; col < 16; col++) {
        float s = c.x[r * 16 + col];
        for (int k = 0; k < 16; k++) s += a.x[r * 16 + k] * b.x[k * 16 + col];
        out[r * 16 + col] = s;
    }
    memcpy(d.x, out, sizeof(out));
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ld, layout_t) {
    if (((uintptr_t)p % 32) != 0 || ld % 4 != 0) { fprintf(stderr, "emu: wmma store misaligned\n"); abort(); }
    __syncwarp();
    if (threadIdx.x % 32 == 0) for (int r = 0; r < 16; r++) for (int c = 0; c < 16; c++) p[r * ld + c] = f.x[r * 16 + c];
    __syncwarp();
}
}}
