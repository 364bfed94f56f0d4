// llmc/matmul.cuh: the trainer's matrix products through cuBLASLt, in PyTorch's nn.Linear
// convention (row-major activations (N, C), weights (OC, C)):
//   forward          out (N, OC)  = inp (N, C) @ W^T + bias [+ residual]   (bias in the epilogue,
//                                   the residual add as cuBLASLt's C input with beta = 1)
//   backward input   dinp (N, C)  = dout (N, OC) @ W           (or += : beta = 1)
//   backward weight  dW (OC, C)  += dout^T @ inp               (fp32 gradients, bf16/fp16 inputs)
//   backward bias    db (OC)     += column sums of dout        (colsum.cuh, deterministic)
// cuBLAS is column-major: a row-major (R, K) matrix is a column-major (K, R) one, so every call
// below computes the transposed product. All products accumulate in fp32 (CUBLAS_COMPUTE_32F;
// never TF32, so the FP32 build is exact enough for the tests).
#pragma once

#include <array>
#include <map>
#include <cublasLt.h>
#include "cuda_common.cuh"
#include "colsum.cuh"

inline void cublas_check_(cublasStatus_t status, const char* what, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "error: cuBLAS status %d (%s) at %s:%d\n", (int)status, what, file, line);
        fflush(stdout);
        exit(1);
    }
}
#define cublasCheck(call) cublas_check_((call), #call, __FILE__, __LINE__)

static cublasLtHandle_t g_cublaslt = NULL;
static void* g_cublaslt_workspace = NULL;
static const size_t CUBLASLT_WORKSPACE_BYTES = 32u << 20;  // 32 MiB, as NVIDIA advises for Hopper

#if defined(ENABLE_FP32)
static const cudaDataType_t CUDA_FLOATX = CUDA_R_32F;
#elif defined(ENABLE_FP16)
static const cudaDataType_t CUDA_FLOATX = CUDA_R_16F;
#else
static const cudaDataType_t CUDA_FLOATX = CUDA_R_16BF;
#endif

inline void matmul_setup() {
    if (g_cublaslt) return;
    cublasCheck(cublasLtCreate(&g_cublaslt));
    g_cublaslt_workspace = device_alloc<char>(CUBLASLT_WORKSPACE_BYTES, "cuBLASLt workspace");
}

// Largest power of two (up to 256) dividing the address: the heuristic must only pick
// algorithms that work with the pointers we really pass (its default assumes 256).
inline uint32_t pointer_alignment(const void* p) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uint32_t align = 256;
    while (align > 1 && (a % align) != 0) align >>= 1;
    return align;
}

// The heuristic's choice per problem, so that it is asked once per shape (it costs tens of us
// of host time) and the same algorithm is used every time (bit-reproducible runs).
typedef std::array<int64_t, 16> MatmulKey;
static std::map<MatmulKey, cublasLtMatmulHeuristicResult_t> g_matmul_algos;

// Column-major core: D (m, n) = alpha * op(A) op(B) + beta * C + bias (length m, broadcast over
// columns). C is D's twin (same type and layout); c == NULL means C = D. A and B have type
// ab_type, C and D cd_type; bias (or NULL) is floatX.
inline void matmul_lt(void* d, cudaDataType_t cd_type, const void* c, const void* a, const void* b,
                      cudaDataType_t ab_type, const floatX* bias, int m, int n, int k, bool transa, bool transb,
                      int lda, int ldb, int ldd, float beta) {
    if (c == NULL) c = d;
    cublasLtMatmulDesc_t desc;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = transa ? CUBLAS_OP_T : CUBLAS_OP_N, opb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    cublasLtEpilogue_t epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    if (bias) {
        cudaDataType_t bias_type = CUDA_FLOATX;
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    // stored shapes (before op): A is (m, k) or (k, m), B is (k, n) or (n, k)
    cublasLtMatrixLayout_t la, lb, lc, ld;
    cublasCheck(cublasLtMatrixLayoutCreate(&la, ab_type, transa ? k : m, transa ? m : k, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, ab_type, transb ? n : k, transb ? k : n, ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&lc, cd_type, m, n, ldd));
    cublasCheck(cublasLtMatrixLayoutCreate(&ld, cd_type, m, n, ldd));

    uint32_t align_a = pointer_alignment(a), align_b = pointer_alignment(b), align_c = pointer_alignment(c),
             align_d = pointer_alignment(d), align_bias = bias ? pointer_alignment(bias) : 256;
    MatmulKey key = {m, n, k, transa, transb, lda, ldb, ldd, (int64_t)ab_type, (int64_t)cd_type, bias != NULL,
                     align_a, align_b, align_c, align_d, align_bias};
    auto found = g_matmul_algos.find(key);
    cublasLtMatmulHeuristicResult_t heuristic;
    if (found != g_matmul_algos.end()) {
        heuristic = found->second;
    } else {
        cublasLtMatmulPreference_t pref;
        cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
        size_t ws = CUBLASLT_WORKSPACE_BYTES;
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)));
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d)));
        int returned = 0;
        cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g_cublaslt, desc, la, lb, lc, ld, pref, 1, &heuristic, &returned);
        cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
        if (st != CUBLAS_STATUS_SUCCESS || returned == 0) {
            fprintf(stderr, "error: cuBLASLt has no algorithm for m=%d n=%d k=%d transa=%d transb=%d bias=%d (status %d)\n",
                    m, n, k, (int)transa, (int)transb, (int)(bias != NULL), (int)st);
            exit(1);
        }
        g_matmul_algos[key] = heuristic;
    }
    float alpha = 1.0f;
    cublasCheck(cublasLtMatmul(g_cublaslt, desc, &alpha, a, la, b, lb, &beta, c, lc, d, ld, &heuristic.algo,
                               g_cublaslt_workspace, CUBLASLT_WORKSPACE_BYTES, g_stream));
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(lc));
    cublasCheck(cublasLtMatrixLayoutDestroy(ld));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
}

// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC) [+ residual (N, OC)]. out may not
// alias inp; it may alias residual.
inline void matmul_forward(floatX* out, const floatX* inp, const floatX* weight, const floatX* bias, int N, int C, int OC,
                           const floatX* residual = NULL) {
    // column-major: out^T (OC, N) = W (stored (C, OC), transposed) x inp^T (C, N)
    matmul_lt(out, CUDA_FLOATX, residual, weight, inp, CUDA_FLOATX, bias, OC, N, C, true, false, C, C, OC,
              residual ? 1.0f : 0.0f);
}

// dinp (N, C) = dout (N, OC) @ weight (OC, C); accumulate: dinp += instead.
inline void matmul_backward_input(floatX* dinp, const floatX* dout, const floatX* weight, int N, int C, int OC, bool accumulate) {
    // column-major: dinp^T (C, N) = W (stored (C, OC)) x dout^T (OC, N)
    matmul_lt(dinp, CUDA_FLOATX, NULL, weight, dout, CUDA_FLOATX, NULL, C, N, OC, false, false, C, OC, C,
              accumulate ? 1.0f : 0.0f);
}

// dweight (OC, C) += dout (N, OC)^T @ inp (N, C), into the fp32 gradient.
inline void matmul_backward_weight(float* dweight, const floatX* dout, const floatX* inp, int N, int C, int OC) {
    // column-major: dW^T (C, OC) = inp^T (stored (C, N)) x dout (stored (OC, N), transposed)
    matmul_lt(dweight, CUDA_R_32F, NULL, inp, dout, CUDA_FLOATX, NULL, C, OC, N, false, true, C, OC, C, 1.0f);
}

// dbias (OC) += sum over the N rows of dout (N, OC); scratch holds colsum_scratch_floats(N, OC).
inline void matmul_backward_bias(float* dbias, const floatX* dout, int N, int OC, float* scratch) {
    colsum_accumulate(dbias, NULL, dout, NULL, NULL, NULL, N, OC, scratch);
}
