// llmc/mma_frag.cuh: warp-level tensor-core products on registers (PTX mma.sync m16n8k16 with
// bf16/fp16 inputs and fp32 accumulation) and the ldmatrix loads that fill their operands.
//
// Why not wmma: wmma's fragments have no documented element layout, so a kernel that needs to
// touch the scores of a product (a softmax, an entropy) must store them to shared memory and read
// them back. mma.sync's layout is fixed by the PTX ISA, so a row's scores stay in the registers of
// the 4 lanes that own it: row reductions are 2 shuffles, and a score tile converts in registers
// into the A operand of the next product (P V) without touching shared memory.
//
// Layouts, with g = lane / 4 (the group) and q = lane % 4 (the lane in its group):
//   FragA (16 x 16, row-major A; 4 x 32 bits = 8 values):
//     r[0] = A[g][2q, 2q+1]   r[1] = A[g+8][2q, 2q+1]   r[2] = A[g][2q+8, 2q+9]   r[3] = A[g+8][2q+8, 2q+9]
//   FragB (16 x 8, K x N; 2 x 32 bits):  r[0] = B[2q, 2q+1][g]   r[1] = B[2q+8, 2q+9][g]
//   FragC (16 x 8 fp32):  x[0], x[1] = C[g][2q, 2q+1]   x[2], x[3] = C[g+8][2q, 2q+1]
// In each 32-bit register the lower-numbered column (A) or row (B) is in the low 16 bits.
//
// ldmatrix (x4: four 8x8 tiles of 16-bit values from shared memory, every lane giving one row's
// address: lanes 8i .. 8i+7 the rows of tile i) leaves tile i's row g, columns 2q and 2q+1, in the
// lane's register i; with .trans it leaves the transposed tile's (rows 2q and 2q+1 of column g).
// So, with row-major tiles in shared memory (row stride ld elements, rows 16-byte aligned):
//   A from a (16, 16) block at p:               ldsm_a(p, ld)
//   B = K^T for S = Q K^T, K (8 keys, 16 dims) row-major: ldsm_b(p, ld) gives the B of keys p..p+7
//   B = V for O = P V, V (16 keys, 8 dims) row-major:     ldsm_b_trans(p, ld)
// and the x4 forms of the last two load two adjacent B operands in one instruction.
//
// The CPU emulator (dev/cuda/emu) has its own implementation with the same per-lane semantics
// (addresses gathered from every lane, values scattered by the layouts above), so index bugs in a
// kernel show there; whether these layouts are the hardware's is checked only on a GPU (the lab's
// validation against its CPU reference).
#pragma once

#include "cuda_common.cuh"

#if !defined(ENABLE_FP32)

struct FragA { uint32_t r[4]; };
struct FragB { uint32_t r[2]; };
struct FragC { float x[4]; };

__device__ inline void frag_zero(FragC& c) { c.x[0] = c.x[1] = c.x[2] = c.x[3] = 0.0f; }

// Two floats rounded to floatX and packed into one 32-bit register (lo in the low half).
__device__ inline uint32_t pack2(float lo, float hi) {
    floatX a = from_float<floatX>(lo), b = from_float<floatX>(hi);
    uint16_t ua, ub;
    memcpy(&ua, &a, 2);
    memcpy(&ub, &b, 2);
    return (uint32_t)ua | ((uint32_t)ub << 16);
}

// The A operand of a product whose left factor is two adjacent 16x8 fp32 accumulator tiles
// (columns 0-7 in c0, 8-15 in c1), rounded to floatX: FlashAttention-2's P -> A conversion.
__device__ inline FragA frag_a_from_c(const FragC& c0, const FragC& c1) {
    FragA a;
    a.r[0] = pack2(c0.x[0], c0.x[1]);
    a.r[1] = pack2(c0.x[2], c0.x[3]);
    a.r[2] = pack2(c1.x[0], c1.x[1]);
    a.r[3] = pack2(c1.x[2], c1.x[3]);
    return a;
}

#if defined(__CUDACC__)

__device__ inline uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// d = a b + d (16x8x16).
__device__ inline void mma_16816(FragC& d, const FragA& a, const FragB& b) {
#if defined(ENABLE_FP16)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
#endif
                 : "+f"(d.x[0]), "+f"(d.x[1]), "+f"(d.x[2]), "+f"(d.x[3])
                 : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
}

// Four 8x8 tiles; this lane gives the address of one row (see the header comment).
__device__ inline void ldsm_x4(uint32_t (&r)[4], const floatX* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(row)));
}
__device__ inline void ldsm_x4_trans(uint32_t (&r)[4], const floatX* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(row)));
}

#else  // the CPU emulator: same semantics through the warp exchange

#include <emu_mma_frag.h>

#endif

// A from the (16, 16) row-major block at p (row stride ld elements): tiles (rows 0-7, cols 0-7),
// (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) are registers 0..3.
__device__ inline FragA ldsm_a(const floatX* p, int ld) {
    const int lane = threadIdx.x % 32;
    FragA a;
    ldsm_x4(a.r, p + (lane % 16) * ld + (lane / 16) * 8);
    return a;
}

// B operands of S = Q K^T for keys p .. p+15 (two n8 tiles: b0 keys 0-7, b1 keys 8-15) over
// dims 0-15 of a row-major K block (keys x dims, stride ld).
__device__ inline void ldsm_b_pair(FragB& b0, FragB& b1, const floatX* p, int ld) {
    const int lane = threadIdx.x % 32;
    // tiles: (keys 0-7, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 0-7), (keys 8-15, dims 8-15)
    uint32_t r[4];
    ldsm_x4(r, p + ((lane % 8) + (lane / 16) * 8) * ld + ((lane / 8) % 2) * 8);
    b0.r[0] = r[0]; b0.r[1] = r[1]; b1.r[0] = r[2]; b1.r[1] = r[3];
}

// B operands of O = P V for keys p .. p+15 and dims 0-15 of a row-major V block (keys x dims,
// stride ld): b0 dims 0-7, b1 dims 8-15.
__device__ inline void ldsm_b_pair_trans(FragB& b0, FragB& b1, const floatX* p, int ld) {
    const int lane = threadIdx.x % 32;
    // tiles: (keys 0-7, dims 0-7), (keys 8-15, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 8-15)
    uint32_t r[4];
    ldsm_x4_trans(r, p + (lane % 16) * ld + (lane / 16) * 8);
    b0.r[0] = r[0]; b0.r[1] = r[1]; b1.r[0] = r[2]; b1.r[1] = r[3];
}

#endif  // !ENABLE_FP32
