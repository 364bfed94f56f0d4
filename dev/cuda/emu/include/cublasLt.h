// dev/cuda/emu/include/cublasLt.h: the cuBLASLt subset the trainer uses; cublasLtMatmul is a
// plain column-major GEMM accumulating in fp32, with the bias epilogue and beta; shapes checked.
#pragma once
#include "cuda_runtime.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0 };
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA, CUBLASLT_MATMUL_DESC_TRANSB, CUBLASLT_MATMUL_DESC_EPILOGUE,
               CUBLASLT_MATMUL_DESC_BIAS_POINTER, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE } cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
               CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES } cublasLtMatmulPreferenceAttributes_t;
struct EmuDesc { int transa = 0, transb = 0, epilogue = CUBLASLT_EPILOGUE_DEFAULT; const void* bias = nullptr; int bias_type = -1; };
struct EmuLayout { int type; uint64_t rows, cols; int64_t ld; };
typedef EmuDesc* cublasLtMatmulDesc_t;
typedef EmuLayout* cublasLtMatrixLayout_t;
typedef void* cublasLtMatmulPreference_t;
typedef void* cublasLtHandle_t;
struct cublasLtMatmulAlgo_t { uint64_t data[8]; };
struct cublasLtMatmulHeuristicResult_t { cublasLtMatmulAlgo_t algo; size_t workspaceSize; cublasStatus_t state; float wavesCount; int reserved[4]; };
inline long long g_emu_gemms = 0;
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) { *h = (void*)1; return 0; }
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t c, cudaDataType_t s) {
    if (c != CUBLAS_COMPUTE_32F || s != CUDA_R_32F) return 7;
    *d = new EmuDesc; return 0;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return 0; }
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void* buf, size_t n) {
    switch (a) {
        case CUBLASLT_MATMUL_DESC_TRANSA: assert(n == sizeof(int)); memcpy(&d->transa, buf, 4); break;
        case CUBLASLT_MATMUL_DESC_TRANSB: assert(n == sizeof(int)); memcpy(&d->transb, buf, 4); break;
        case CUBLASLT_MATMUL_DESC_EPILOGUE: assert(n == sizeof(int)); memcpy(&d->epilogue, buf, 4); break;
        case CUBLASLT_MATMUL_DESC_BIAS_POINTER: assert(n == sizeof(void*)); memcpy(&d->bias, buf, sizeof(void*)); break;
        case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: assert(n == sizeof(int)); memcpy(&d->bias_type, buf, 4); break;
    }
    return 0;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType_t t, uint64_t r, uint64_t c, int64_t ld) {
    if (ld < (int64_t)r) return 7;
    *l = new EmuLayout{(int)t, r, c, ld}; return 0;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return 0; }
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) { *p = (void*)1; return 0; }
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t) { return 0; }
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t, const void*, size_t) { return 0; }
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                                     cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatmulPreference_t, int want,
                                                     cublasLtMatmulHeuristicResult_t* r, int* returned) {
    // up to 3 "algorithms" (all the same GEMM), so that code choosing among them runs here too
    *returned = want < 3 ? want : 3;
    memset(r, 0, sizeof(*r) * *returned);
    return 0;
}
inline double emu_load(const void* p, int type, size_t i) {
    if (type == CUDA_R_32F) return ((const float*)p)[i];
    if (type == CUDA_R_16BF) return __bfloat162float(((const __nv_bfloat16*)p)[i]);
    return __half2float(((const __half*)p)[i]);
}
inline void emu_store(void* p, int type, size_t i, double v) {
    if (type == CUDA_R_32F) ((float*)p)[i] = (float)v;
    else if (type == CUDA_R_16BF) ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn((float)v);
    else ((__half*)p)[i] = __float2half_rn((float)v);
}
// D (m, n) = alpha op(A) op(B) + beta C + bias, column-major, accumulated in fp32 like the real one
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha, const void* A, cublasLtMatrixLayout_t la,
                                     const void* B, cublasLtMatrixLayout_t lb, const void* beta, const void* C, cublasLtMatrixLayout_t lc,
                                     void* D, cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t) {
    g_emu_gemms++;
    size_t m = ld->rows, n = ld->cols, k = d->transa ? la->rows : la->cols;
    size_t kb = d->transb ? lb->cols : lb->rows, nb = d->transb ? lb->rows : lb->cols, ma = d->transa ? la->cols : la->rows;
    if (kb != k || nb != n || ma != m || lc->rows != m || lc->cols != n || la->type != lb->type || lc->type != ld->type) {
        fprintf(stderr, "emu: cublasLtMatmul shape mismatch m=%zu n=%zu k=%zu (A %zux%zu, B %zux%zu)\n", m, n, k,
                (size_t)la->rows, (size_t)la->cols, (size_t)lb->rows, (size_t)lb->cols);
        abort();
    }
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS && (d->bias == nullptr || d->bias_type < 0)) { fprintf(stderr, "emu: bias epilogue without bias\n"); abort(); }
    float al = *(const float*)alpha, be = *(const float*)beta;
    std::vector<double> out(m * n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) {
            float acc = 0.0f;
            for (size_t kk = 0; kk < k; kk++) {
                double a = d->transa ? emu_load(A, la->type, kk + i * la->ld) : emu_load(A, la->type, i + kk * la->ld);
                double b = d->transb ? emu_load(B, lb->type, j + kk * lb->ld) : emu_load(B, lb->type, kk + j * lb->ld);
                acc += (float)a * (float)b;
            }
            double v = al * acc;
            if (be != 0.0f) v += be * emu_load(C, lc->type, i + j * lc->ld);
            if (d->epilogue == CUBLASLT_EPILOGUE_BIAS) v += emu_load(d->bias, d->bias_type, i);
            out[i + j * m] = v;
        }
    for (size_t j = 0; j < n; j++) for (size_t i = 0; i < m; i++) emu_store(D, ld->type, i + j * ld->ld, out[i + j * m]);
    return 0;
}
