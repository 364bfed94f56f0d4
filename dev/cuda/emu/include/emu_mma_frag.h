// dev/cuda/emu/include/emu_mma_frag.h: llmc/mma_frag.cuh's mma.sync m16n8k16 and ldmatrix x4
// on the emulator. Each lane passes what it passes on a GPU (its fragment registers, its one row
// address); the warp exchange (emu_shfl) gathers every lane's part, and each lane keeps the
// elements the PTX ISA's layouts give it. Row addresses must be 16-byte aligned, as on hardware.
#pragma once
#include "emu_engine.h"

inline float emu_half_to_float(uint32_t bits16) {
    uint16_t h = (uint16_t)bits16;
    floatX v;
    memcpy(&v, &h, 2);
    return to_float(v);
}

inline void mma_16816(FragC& d, const FragA& a, const FragB& b) {
    float A[16][16], Bm[16][8];
    for (int l = 0; l < 32; l++) {  // every lane's registers, placed by the layouts
        const int g = l / 4, q = l % 4;
        uint32_t ar[4], br[2];
        for (int i = 0; i < 4; i++) ar[i] = emu_shfl(a.r[i], l);
        for (int i = 0; i < 2; i++) br[i] = emu_shfl(b.r[i], l);
        for (int h = 0; h < 2; h++) {
            A[g][2 * q + h] = emu_half_to_float(ar[0] >> (16 * h));
            A[g + 8][2 * q + h] = emu_half_to_float(ar[1] >> (16 * h));
            A[g][2 * q + 8 + h] = emu_half_to_float(ar[2] >> (16 * h));
            A[g + 8][2 * q + 8 + h] = emu_half_to_float(ar[3] >> (16 * h));
            Bm[2 * q + h][g] = emu_half_to_float(br[0] >> (16 * h));
            Bm[2 * q + 8 + h][g] = emu_half_to_float(br[1] >> (16 * h));
        }
    }
    const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    for (int i = 0; i < 4; i++) {
        const int row = g + 8 * (i / 2), col = 2 * q + i % 2;
        float s = d.x[i];
        for (int k = 0; k < 16; k++) s += A[row][k] * Bm[k][col];
        d.x[i] = s;
    }
}

inline void emu_ldsm_x4(uint32_t (&r)[4], const floatX* row, bool trans) {
    if ((uintptr_t)row % 16 != 0) { fprintf(stderr, "emu: ldmatrix row address not 16-byte aligned\n"); abort(); }
    const floatX* rows[32];
    for (int l = 0; l < 32; l++) rows[l] = (const floatX*)emu_shfl((uint64_t)(uintptr_t)row, l);
    const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
    for (int i = 0; i < 4; i++) {
        uint16_t lo, hi;
        if (!trans) {  // tile i's row g, columns 2q, 2q+1
            memcpy(&lo, rows[8 * i + g] + 2 * q, 2);
            memcpy(&hi, rows[8 * i + g] + 2 * q + 1, 2);
        } else {  // tile i's rows 2q, 2q+1, column g
            memcpy(&lo, rows[8 * i + 2 * q] + g, 2);
            memcpy(&hi, rows[8 * i + 2 * q + 1] + g, 2);
        }
        r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
}
inline void ldsm_x4(uint32_t (&r)[4], const floatX* row) { emu_ldsm_x4(r, row, false); }
inline void ldsm_x4_trans(uint32_t (&r)[4], const floatX* row) { emu_ldsm_x4(r, row, true); }
