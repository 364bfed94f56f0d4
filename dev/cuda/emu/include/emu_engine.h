// dev/cuda/emu/include/emu_engine.h: runs CUDA kernels on the CPU, for checking kernel logic
// on machines without a GPU (dev/cuda/emu/README.md). One ucontext fiber per CUDA thread, the
// blocks of a launch one after another; __syncthreads and __syncwarp (and so every shuffle)
// yield to a scheduler that releases a barrier when every live thread of the block / warp
// waits at it, and aborts on a deadlock (divergent barriers). Shared memory requested
// dynamically starts as NaN bytes, so reads of unwritten shared memory show. Slow (a fraction of
// a microsecond per barrier and thread), exact in logic, not in timing or in the order of float
// atomics. On x86-64 a fiber switch is emu_ctx_switch below: callee-saved registers and the stack
// pointer only, no system call (glibc's swapcontext also saves the signal mask, a system call per
// switch, which was half of a long run's time); elsewhere ucontext.
#pragma once
#include <ucontext.h>
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>
using std::isfinite;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __restrict__

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) int4 { int x, y, z, w; };
inline dim3 threadIdx, blockIdx, blockDim, gridDim;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
template <class T> T __ldcs(const T* p) { return *p; }
template <class T> void __stcs(T* p, T v) { *p = v; }
inline float __expf(float x) { return expf(x); }
// the round-to-nearest, never-contracted arithmetic intrinsics (the host compiler does not contract)
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }

enum { F_RUN = 0, F_WAIT_BLOCK = 1, F_WAIT_WARP = 2, F_DONE = 3 };
#if defined(__x86_64__)
// Switches stacks: pushes the callee-saved registers (the System V ABI's rbp, rbx, r12-r15) and
// the SSE/x87 control words on the current stack, stores its pointer in *from, loads `to`, and
// pops the same from there. A new fiber's stack is laid out as if it had switched away
// (emu_fiber_stack), so its first switch-in "returns" into emu_fiber_entry.
extern "C" void emu_ctx_switch(void** from, void* to);
asm(R"(
    .text
    .globl emu_ctx_switch
    .type emu_ctx_switch, @function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
)");
struct EmuContext { void* sp; };
#define EMU_SWITCH(from, to) emu_ctx_switch(&(from).sp, (to).sp)
#else
typedef ucontext_t EmuContext;
#define EMU_SWITCH(from, to) swapcontext(&(from), &(to))
#endif
struct EmuFiber { EmuContext ctx; int state; dim3 tid; };
inline EmuContext g_sched_ctx;
inline std::vector<EmuFiber> g_fibers;
inline int g_cur = -1;
inline std::vector<char> g_stacks;
inline const size_t EMU_STACK = 96 * 1024;
inline std::function<void()> g_body;
struct EmuWarpX { uint64_t raw[32]; };
inline std::vector<EmuWarpX> g_warpx;
alignas(256) inline unsigned char g_dyn_smem[232448];
inline long long g_emu_launches = 0, g_emu_switches = 0;

inline void emu_yield(int state) {
    if (g_cur < 0) { fprintf(stderr, "emu: barrier outside a kernel\n"); abort(); }
    g_fibers[g_cur].state = state;
    g_emu_switches++;
    EMU_SWITCH(g_fibers[g_cur].ctx, g_sched_ctx);
}
inline void __syncthreads() { emu_yield(F_WAIT_BLOCK); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu_yield(F_WAIT_WARP); }

// A thread's place in its block counted x-fastest, as the hardware forms warps (with blockDim.y > 1
// a warp is not threadIdx.x / 32).
inline int emu_linear_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

template <class T> T emu_shfl(T v, int src) {
    int lane = emu_linear_tid() % 32, w = emu_linear_tid() / 32;
    uint64_t r = 0;
    memcpy(&r, &v, sizeof(T));
    g_warpx[w].raw[lane] = r;
    __syncwarp();
    uint64_t got = g_warpx[w].raw[src & 31];
    __syncwarp();
    T out;
    memcpy(&out, &got, sizeof(T));
    return out;
}
template <class T> T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, src); }
template <class T> T __shfl_xor_sync(unsigned, T v, int o) { return emu_shfl(v, (emu_linear_tid() % 32) ^ o); }
inline unsigned __reduce_add_sync(unsigned, unsigned v) {
    unsigned s = 0;
    for (int o = 0; o < 32; o++) s += emu_shfl(v, o);
    return s;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { unsigned long long o = *p; *p += v; return o; }
inline double atomicAdd(double* p, double v) { double o = *p; *p += v; return o; }
inline float atomicAdd(float* p, float v) { float o = *p; *p += v; return o; }
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) { unsigned long long o = *p; if (v > o) *p = v; return o; }
inline unsigned int __float_as_uint(float f) { unsigned int u; memcpy(&u, &f, sizeof(u)); return u; }

inline void emu_fiber_entry() {  // never returns: the scheduler drops a finished fiber's stack
    g_body();
    g_fibers[g_cur].state = F_DONE;
    EMU_SWITCH(g_fibers[g_cur].ctx, g_sched_ctx);
    abort();
}

// A fresh fiber on stack [base, base + size) that starts in emu_fiber_entry.
inline void emu_fiber_stack(EmuFiber& f, char* base, size_t size) {
#if defined(__x86_64__)
    uintptr_t top = ((uintptr_t)(base + size)) & ~(uintptr_t)15;
    uint64_t* sp = (uint64_t*)top;
    *--sp = 0;                              // emu_fiber_entry's return address (it never returns)
    *--sp = (uint64_t)&emu_fiber_entry;     // popped by emu_ctx_switch's ret; rsp is then 8 mod 16, as after a call
    for (int r = 0; r < 6; r++) *--sp = 0;  // rbp, rbx, r12-r15
    *--sp = 0x1F80ull | (0x037Full << 32);  // MXCSR and the x87 control word at their defaults
    f.ctx.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = base;
    f.ctx.uc_stack.ss_size = size;
    f.ctx.uc_link = NULL;
    makecontext(&f.ctx, emu_fiber_entry, 0);
#endif
}

template <class G, class Bk, class F>
void emu_launch(G grid_, Bk block_, size_t smem, F body) {
    dim3 grid = dim3(grid_), block = dim3(block_);
    if (smem > sizeof(g_dyn_smem)) { fprintf(stderr, "emu: %zu bytes of shared memory requested\n", smem); abort(); }
    int n = block.x * block.y * block.z;
    if (n < 1 || n > 1024 || grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "emu: bad launch grid (%u %u %u) block (%u %u %u)\n", grid.x, grid.y, grid.z, block.x, block.y, block.z);
        abort();
    }
    g_emu_launches++;
    gridDim = grid;
    blockDim = block;
    g_body = body;
    int nw = (n + 31) / 32;
    g_fibers.resize(n);
    g_warpx.resize(nw);
    if (g_stacks.size() < n * EMU_STACK) g_stacks.resize(n * EMU_STACK);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                if (smem) memset(g_dyn_smem, 0xff, smem);  // uninitialised shared memory reads as NaN
                blockIdx = dim3(bx, by, bz);
                for (int i = 0; i < n; i++) {
                    EmuFiber& f = g_fibers[i];
                    f.state = F_RUN;
                    f.tid = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
                    emu_fiber_stack(f, &g_stacks[i * EMU_STACK], EMU_STACK);
                }
                while (true) {
                    for (int i = 0; i < n; i++) {
                        if (g_fibers[i].state != F_RUN) continue;
                        g_cur = i;
                        threadIdx = g_fibers[i].tid;
                        EMU_SWITCH(g_sched_ctx, g_fibers[i].ctx);
                    }
                    g_cur = -1;
                    bool all_done = true, released = false;
                    for (int i = 0; i < n; i++) all_done &= g_fibers[i].state == F_DONE;
                    if (all_done) break;
                    for (int w = 0; w < nw; w++) {  // a warp barrier: every live lane waits at it
                        bool any = false, all = true;
                        for (int i = w * 32; i < std::min(n, w * 32 + 32); i++) {
                            int s = g_fibers[i].state;
                            if (s == F_DONE) continue;
                            any = true;
                            all &= s == F_WAIT_WARP;
                        }
                        if (any && all) {
                            for (int i = w * 32; i < std::min(n, w * 32 + 32); i++)
                                if (g_fibers[i].state == F_WAIT_WARP) g_fibers[i].state = F_RUN;
                            released = true;
                        }
                    }
                    bool all_block = true;
                    for (int i = 0; i < n; i++) all_block &= g_fibers[i].state == F_DONE || g_fibers[i].state == F_WAIT_BLOCK;
                    if (all_block) {
                        for (int i = 0; i < n; i++) if (g_fibers[i].state == F_WAIT_BLOCK) g_fibers[i].state = F_RUN;
                        released = true;
                    }
                    if (!released) {
                        fprintf(stderr, "emu: deadlock in block (%u %u %u): divergent barriers\n", bx, by, bz);
                        abort();
                    }
                }
            }
}
