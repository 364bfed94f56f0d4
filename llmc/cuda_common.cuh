// llmc/cuda_common.cuh: what every CUDA file of the trainer shares: checked CUDA calls, the
// precision (floatX), conversions, 128-bit packed loads, warp/block reductions that sum in a
// fixed order (so that runs are bit-reproducible), and device allocations that are counted (the
// benchmark reports them as peak memory).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

// ----------------------------------------------------------------------------
// Errors: one line on stderr, then exit 1 (as common.h's fail()). A CUDA error is not the
// user's fault, but the one-line contract of the CLI holds for it too.

inline void cuda_check_(cudaError_t err, const char* what, const char* file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "error: CUDA: %s (%s) at %s:%d\n", cudaGetErrorString(err), what, file, line);
        fflush(stdout);
        exit(1);
    }
}
#define cudaCheck(call) cuda_check_((call), #call, __FILE__, __LINE__)
// after a kernel launch: catches bad launch configurations at once (not execution errors)
#define cudaCheckLaunch() cuda_check_(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// Precision. floatX is the type of activations and of the working copy of the weights;
// master weights, gradients of parameters and the AdamW state are always fp32.
//   PRECISION=BF16 (default): bf16 tensors, fp32 accumulation everywhere
//   PRECISION=FP32: fp32 everything (exact tests against PyTorch)
//   PRECISION=FP16: fp16 tensors with dynamic loss scaling (the paper's regime)
#if defined(ENABLE_FP32)
typedef float floatX;
#define PRECISION_NAME "fp32"
#elif defined(ENABLE_FP16)
typedef __half floatX;
#define PRECISION_NAME "fp16"
#else
#ifndef ENABLE_BF16
#define ENABLE_BF16
#endif
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "bf16"
#endif

// conversions that work for all three floatX choices
__device__ __host__ __forceinline__ float to_float(float x) { return x; }
__device__ __host__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __host__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T> __device__ __host__ __forceinline__ T from_float(float x);
template <> __device__ __host__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __host__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __host__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// ----------------------------------------------------------------------------
// 128-bit packs: 4 floats or 8 bf16/fp16 values moved with one instruction. Callers check
// that the address is 16-byte aligned (or fall back to scalar code).

template <typename T>
struct alignas(16) Packed128 {
    static constexpr int size = 16 / sizeof(T);
    T v[size];
    __device__ __forceinline__ T& operator[](int i) { return v[i]; }
    __device__ __forceinline__ const T& operator[](int i) const { return v[i]; }
};

template <typename T>
__device__ __forceinline__ Packed128<T> load128(const T* p) {
    Packed128<T> r;
    *reinterpret_cast<int4*>(&r) = *reinterpret_cast<const int4*>(p);
    return r;
}

// streaming load: the data is read once, so keep it out of L1/L2's way (ld.global.cs)
template <typename T>
__device__ __forceinline__ Packed128<T> load128cs(const T* p) {
    Packed128<T> r;
    *reinterpret_cast<int4*>(&r) = __ldcs(reinterpret_cast<const int4*>(p));
    return r;
}

template <typename T>
__device__ __forceinline__ void store128(T* p, const Packed128<T>& v) {
    *reinterpret_cast<int4*>(p) = *reinterpret_cast<const int4*>(&v);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// ----------------------------------------------------------------------------
// Reductions. Butterfly shuffles give every lane the same result and always add in the same
// order, so they are deterministic.

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `shared` holds 32 values of T. Ends with a barrier, so it can be called again at once.
template <typename T>
__device__ T block_sum(T v, T* shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    T r = lane < nwarps ? shared[lane] : (T)0;
    r = warp_sum(r);
    __syncthreads();
    return r;
}

inline int ceil_div(long a, long b) { return (int)((a + b - 1) / b); }

// ----------------------------------------------------------------------------
// Device memory: every allocation goes through here and is counted, so that the trainer can
// report its peak device memory (it allocates everything up front, so peak = total).

static size_t g_device_bytes = 0;       // allocated now
static size_t g_device_peak_bytes = 0;  // the most ever allocated at once

template <typename T>
inline T* device_alloc(size_t count, const char* what) {
    void* p = NULL;
    size_t bytes = count * sizeof(T);
    if (bytes == 0) bytes = 16;  // a valid pointer for empty tensors
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        fprintf(stderr, "error: out of GPU memory allocating %zu bytes for %s (%s; try a smaller -b or -t)\n",
                bytes, what, cudaGetErrorString(err));
        exit(1);
    }
    g_device_bytes += bytes;
    if (g_device_bytes > g_device_peak_bytes) g_device_peak_bytes = g_device_bytes;
    return (T*)p;
}

inline void device_free(void* p, size_t bytes) {
    if (p == NULL) return;
    cudaCheck(cudaFree(p));
    g_device_bytes -= bytes;
}

template <typename T>
inline T* pinned_alloc(size_t count, const char* what) {
    void* p = NULL;
    cudaError_t err = cudaMallocHost(&p, count * sizeof(T) > 0 ? count * sizeof(T) : 16);
    if (err != cudaSuccess) {
        fprintf(stderr, "error: cannot allocate %zu bytes of pinned host memory for %s (%s)\n", count * sizeof(T), what,
                cudaGetErrorString(err));
        exit(1);
    }
    return (T*)p;
}

// The stream every kernel of the trainer runs on (one stream: its order is the program order).
static cudaStream_t g_stream = 0;
static cudaDeviceProp g_device_prop;
