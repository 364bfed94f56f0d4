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

// The heuristic's choice per problem (matmul_lt).
typedef std::array<int64_t, 16> MatmulKey;
static std::map<MatmulKey, cublasLtMatmulHeuristicResult_t> g_matmul_algos;

// One product's cuBLASLt description: the operation, the four matrix layouts and the key that
// names the problem (shape, types, pointer alignments) in g_matmul_algos.
struct MatmulProblem {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc, ld;
    MatmulKey key;
};

// Column-major: D (m, n) = alpha * op(A) op(B) + beta * C + bias (length m, broadcast over
// columns). C is D's twin (same type and layout). A and B have type ab_type, C and D cd_type;
// bias (or NULL) is floatX.
inline MatmulProblem matmul_describe(const void* d, cudaDataType_t cd_type, const void* c, const void* a, const void* b,
                                     cudaDataType_t ab_type, const floatX* bias, int m, int n, int k, bool transa,
                                     bool transb, int lda, int ldb, int ldd) {
    MatmulProblem pr;
    cublasCheck(cublasLtMatmulDescCreate(&pr.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = transa ? CUBLAS_OP_T : CUBLAS_OP_N, opb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(pr.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    cublasCheck(cublasLtMatmulDescSetAttribute(pr.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    cublasLtEpilogue_t epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cublasCheck(cublasLtMatmulDescSetAttribute(pr.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    if (bias) {
        cudaDataType_t bias_type = CUDA_FLOATX;
        cublasCheck(cublasLtMatmulDescSetAttribute(pr.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
        cublasCheck(cublasLtMatmulDescSetAttribute(pr.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    // stored shapes (before op): A is (m, k) or (k, m), B is (k, n) or (n, k)
    cublasCheck(cublasLtMatrixLayoutCreate(&pr.la, ab_type, transa ? k : m, transa ? m : k, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&pr.lb, ab_type, transb ? n : k, transb ? k : n, ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&pr.lc, cd_type, m, n, ldd));
    cublasCheck(cublasLtMatrixLayoutCreate(&pr.ld, cd_type, m, n, ldd));
    pr.key = {m, n, k, transa, transb, lda, ldb, ldd, (int64_t)ab_type, (int64_t)cd_type, bias != NULL,
              pointer_alignment(a), pointer_alignment(b), pointer_alignment(c), pointer_alignment(d),
              bias ? pointer_alignment(bias) : 256};
    return pr;
}

inline void matmul_release(MatmulProblem& pr) {
    cublasCheck(cublasLtMatrixLayoutDestroy(pr.la));
    cublasCheck(cublasLtMatrixLayoutDestroy(pr.lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(pr.lc));
    cublasCheck(cublasLtMatrixLayoutDestroy(pr.ld));
    cublasCheck(cublasLtMatmulDescDestroy(pr.desc));
}

// Up to `want` algorithms for the problem, the heuristic's best first, restricted to the
// pointers' real alignments (its default assumes 256 bytes); returns how many.
inline int matmul_heuristics(const MatmulProblem& pr, cublasLtMatmulHeuristicResult_t* out, int want) {
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = CUBLASLT_WORKSPACE_BYTES;
    uint32_t align[4] = {(uint32_t)pr.key[11], (uint32_t)pr.key[12], (uint32_t)pr.key[13], (uint32_t)pr.key[14]};
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align[0], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align[1], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align[2], sizeof(uint32_t)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align[3], sizeof(uint32_t)));
    int returned = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g_cublaslt, pr.desc, pr.la, pr.lb, pr.lc, pr.ld, pref, want, out, &returned);
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    return st == CUBLAS_STATUS_SUCCESS ? returned : 0;
}

// The product with the given algorithm; cuBLASLt's status (matmul_run: an error ends the program).
inline cublasStatus_t matmul_try(const MatmulProblem& pr, const cublasLtMatmulAlgo_t& algo, void* d, const void* c, const void* a,
                                 const void* b, float beta) {
    float alpha = 1.0f;
    return cublasLtMatmul(g_cublaslt, pr.desc, &alpha, a, pr.la, b, pr.lb, &beta, c, pr.lc, d, pr.ld, &algo, g_cublaslt_workspace,
                          CUBLASLT_WORKSPACE_BYTES, g_stream);
}

inline void matmul_run(const MatmulProblem& pr, const cublasLtMatmulAlgo_t& algo, void* d, const void* c, const void* a,
                       const void* b, float beta) {
    cublasCheck(matmul_try(pr, algo, d, c, a, b, beta));
}

// Autotuning (--matmul-autotune 1, off by default): the first call of each problem times up to
// MATMUL_CANDIDATES of the heuristic's algorithms on its own operands and keeps the fastest for
// the rest of the run. Different algorithms may sum in different orders (split-K), so which one
// wins changes the last bits of the results; timings vary from run to run, so two autotuned runs
// (or a resumed one) need not be bit-identical. Off, every run takes the heuristic's first choice.
static bool g_matmul_autotune = false;
static const int MATMUL_CANDIDATES = 8;
static const int MATMUL_TIMED_RUNS = 5;
struct MatmulTuneStats {
    int problems = 0, changed = 0;           // problems timed; how many did not keep the first choice
    double first_ms = 0.0, chosen_ms = 0.0;  // one call of each timed problem, summed
};
static MatmulTuneStats g_matmul_tune;

// Mean time in ms of one call with the given algorithm over `reps` calls, after one untimed call;
// < 0 if cuBLASLt refuses it (an offered algorithm may still fail on the device; it is then never
// chosen). Used by autotuning and by the matmul lab (dev/cuda/matmul.cu).
inline float matmul_time_algo(const MatmulProblem& pr, const cublasLtMatmulAlgo_t& algo, void* d, const void* c, const void* a,
                              const void* b, float beta, int reps) {
    if (matmul_try(pr, algo, d, c, a, b, beta) != CUBLAS_STATUS_SUCCESS) return -1.0f;
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    cudaCheck(cudaEventRecord(start, g_stream));
    for (int r = 0; r < reps; r++) matmul_run(pr, algo, d, c, a, b, beta);
    cudaCheck(cudaEventRecord(stop, g_stream));
    cudaCheck(cudaEventSynchronize(stop));
    float ms = 0.0f;
    cudaCheck(cudaEventElapsedTime(&ms, start, stop));
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    return ms / reps;
}

// The fastest of the problem's candidates, timed on the call's own operands. A product that reads
// its output (C = D, beta != 0: the residual add, gradient accumulation) would be applied several
// times, so D is saved to a temporary buffer first and put back after (counted in the peak memory:
// at most the largest such output, the token embedding's fp32 gradient, Vp x C x 4 bytes).
inline cublasLtMatmulHeuristicResult_t matmul_pick_fastest(const MatmulProblem& pr, const cublasLtMatmulHeuristicResult_t* cand,
                                                          int n, void* d, const void* c, const void* a, const void* b, float beta,
                                                          size_t d_bytes) {
    void* saved = NULL;
    if (c == d && beta != 0.0f) {
        saved = device_alloc<char>(d_bytes, "a product's output, saved while its algorithms are timed");
        cudaCheck(cudaMemcpyAsync(saved, d, d_bytes, cudaMemcpyDeviceToDevice, g_stream));
    }
    int best = 0;
    float best_ms = -1.0f, first_ms = -1.0f;
    for (int i = 0; i < n; i++) {
        float ms = matmul_time_algo(pr, cand[i].algo, d, c, a, b, beta, MATMUL_TIMED_RUNS);
        if (i == 0) first_ms = ms;
        if (ms >= 0.0f && (best_ms < 0.0f || ms < best_ms)) best = i, best_ms = ms;
    }
    if (saved) {
        cudaCheck(cudaMemcpyAsync(d, saved, d_bytes, cudaMemcpyDeviceToDevice, g_stream));
        cudaCheck(cudaStreamSynchronize(g_stream));
        device_free(saved, d_bytes);
    }
    if (best_ms < 0.0f) best = 0;  // none ran here: keep the first choice, whose call reports the error
    g_matmul_tune.problems++;
    g_matmul_tune.changed += best != 0;
    g_matmul_tune.first_ms += first_ms > 0.0f ? first_ms : 0.0f;
    g_matmul_tune.chosen_ms += best_ms > 0.0f ? best_ms : 0.0f;
    return cand[best];
}

// The product with the algorithm chosen for its problem: the heuristic's first choice, or with
// autotuning the fastest candidate. The choice is made once per problem (asking costs tens of us
// of host time) so that every call uses the same algorithm. c == NULL means C = D.
inline void matmul_lt(void* d, cudaDataType_t cd_type, const void* c, const void* a, const void* b,
                      cudaDataType_t ab_type, const floatX* bias, int m, int n, int k, bool transa, bool transb,
                      int lda, int ldb, int ldd, float beta) {
    if (c == NULL) c = d;
    MatmulProblem pr = matmul_describe(d, cd_type, c, a, b, ab_type, bias, m, n, k, transa, transb, lda, ldb, ldd);
    auto found = g_matmul_algos.find(pr.key);
    if (found == g_matmul_algos.end()) {
        cublasLtMatmulHeuristicResult_t cand[MATMUL_CANDIDATES];
        int got = matmul_heuristics(pr, cand, g_matmul_autotune ? MATMUL_CANDIDATES : 1);
        if (got == 0) {
            fprintf(stderr, "error: cuBLASLt has no algorithm for m=%d n=%d k=%d transa=%d transb=%d bias=%d\n",
                    m, n, k, (int)transa, (int)transb, (int)(bias != NULL));
            exit(1);
        }
        size_t d_bytes = (size_t)ldd * n * (cd_type == CUDA_R_32F ? 4 : 2);
        cublasLtMatmulHeuristicResult_t chosen = got > 1 ? matmul_pick_fastest(pr, cand, got, d, c, a, b, beta, d_bytes) : cand[0];
        found = g_matmul_algos.emplace(pr.key, chosen).first;
    }
    matmul_run(pr, found->second.algo, d, c, a, b, beta);
    matmul_release(pr);
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
