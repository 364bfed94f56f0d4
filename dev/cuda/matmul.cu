/*
dev/cuda/matmul.cu: lab for the trainer's matrix products (llmc/matmul.cuh): for each product of
one GPT-2 124M training step, every algorithm cuBLASLt's heuristic offers (up to 8, its first
choice first, which is the one the trainer uses), validated and timed.

The products (row-major, nn.Linear convention; N = B*T tokens) and how often a step runs each:
  forward      out (N, OC) = inp (N, IC) W^T + b      qkv, attention proj, fc, fc proj x12; LM head x1
  backward dx  dinp (N, IC) = dout (N, OC) W           the same five
  backward dW  dW (OC, IC) += dout^T inp (fp32)        the same five
Version k = the heuristic's k-th algorithm. Validation: 64 sampled output entries against a
double-precision CPU product of the same rounded inputs, relative to the row's sum of |terms|
(a bound that holds for any summation order in fp32); the step total then sums, per product,
the first choice's time and the fastest valid algorithm's. Different algorithms may sum in
different orders (split-K), so a pinned faster algorithm changes the last bits of the results,
but deterministically: each run uses the same one.

Build: make -f cuda.mk dev/cuda/matmul.out [PRECISION=BF16|FP16|FP32]
Run:   ./dev/cuda/matmul.out [N (16384)] [C (768)] [Vp (50304)] [reps (20)]
CPU:   dev/cuda/emu/run.sh BF16 matmul 64 32 96 1   (the emulator: one algorithm, logic only)
*/
#include <vector>
#include "../../common.h"
#include "../../rng.h"
#include "../../llmc/matmul.cuh"

struct Product {
    const char* name;
    int IC, OC, per_step;
};

enum Kind { FORWARD, BACKWARD_INPUT, BACKWARD_WEIGHT };
static const char* kind_name[] = {"fwd", "bwd dx", "bwd dW"};

// Inputs for one product: inp (N, IC), W (OC, IC), dout (N, OC), bias (OC); outputs sized for all
// three kinds.
struct Buffers {
    floatX *inp, *w, *dout, *bias, *out, *dinp;
    float* dw;
    std::vector<float> h_inp, h_w, h_dout, h_bias;
};

static floatX* upload_random(std::vector<float>& host, size_t n, Rng& rng, float scale) {
    host.resize(n);
    std::vector<floatX> x(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = from_float<floatX>(scale * (2.0f * rng_uniform(&rng) - 1.0f));
        host[i] = to_float(x[i]);  // the reference multiplies the rounded values
    }
    floatX* d = device_alloc<floatX>(n, "matmul lab input");
    cudaCheck(cudaMemcpy(d, x.data(), n * sizeof(floatX), cudaMemcpyHostToDevice));
    return d;
}

// The problem for one kind, described exactly as matmul.cuh's wrappers describe it.
static MatmulProblem describe(Kind kind, const Buffers& b, int N, int IC, int OC, void** d, const void** a, const void** bb,
                              float* beta) {
    if (kind == FORWARD) {
        *d = b.out; *a = b.w; *bb = b.inp; *beta = 0.0f;
        return matmul_describe(b.out, CUDA_FLOATX, b.out, b.w, b.inp, CUDA_FLOATX, b.bias, OC, N, IC, true, false, IC, IC, OC);
    }
    if (kind == BACKWARD_INPUT) {
        *d = b.dinp; *a = b.w; *bb = b.dout; *beta = 0.0f;
        return matmul_describe(b.dinp, CUDA_FLOATX, b.dinp, b.w, b.dout, CUDA_FLOATX, NULL, IC, N, OC, false, false, IC, OC, IC);
    }
    *d = b.dw; *a = b.inp; *bb = b.dout; *beta = 0.0f;  // the trainer adds (beta 1); here a fresh product
    return matmul_describe(b.dw, CUDA_R_32F, b.dw, b.inp, b.dout, CUDA_FLOATX, NULL, IC, OC, N, false, true, IC, OC, IC);
}

// Worst sampled |error| / (sum of |terms| * 2^-22 + 1e-30): <= 1 passes (fp32 accumulation of
// any order, with the output's own rounding for floatX outputs added).
static double validate(Kind kind, const Buffers& b, int N, int IC, int OC, Rng& rng) {
    const int rows = kind == BACKWARD_WEIGHT ? OC : N, cols = kind == FORWARD ? OC : IC;
    const int inner = kind == FORWARD ? IC : kind == BACKWARD_INPUT ? OC : N;
    std::vector<floatX> got_x;
    std::vector<float> got_f;
    if (kind == BACKWARD_WEIGHT) {
        got_f.resize((size_t)rows * cols);
        cudaCheck(cudaMemcpy(got_f.data(), b.dw, got_f.size() * sizeof(float), cudaMemcpyDeviceToHost));
    } else {
        got_x.resize((size_t)rows * cols);
        cudaCheck(cudaMemcpy(got_x.data(), kind == FORWARD ? b.out : b.dinp, got_x.size() * sizeof(floatX), cudaMemcpyDeviceToHost));
    }
    const double out_ulp = kind == BACKWARD_WEIGHT ? 0.0 : (sizeof(floatX) == 2 ? (CUDA_FLOATX == CUDA_R_16F ? 1.0 / 1024 : 1.0 / 128) : 0.0);
    double worst = 0.0;
    for (int s = 0; s < 64; s++) {
        const int r = (int)rng_below(&rng, rows), c = (int)rng_below(&rng, cols);
        double ref = 0.0, mag = 0.0;
        for (int k = 0; k < inner; k++) {
            double t;
            if (kind == FORWARD) t = (double)b.h_inp[(size_t)r * IC + k] * b.h_w[(size_t)c * IC + k];
            else if (kind == BACKWARD_INPUT) t = (double)b.h_dout[(size_t)r * OC + k] * b.h_w[(size_t)k * IC + c];
            else t = (double)b.h_dout[(size_t)k * OC + r] * b.h_inp[(size_t)k * IC + c];
            ref += t;
            mag += fabs(t);
        }
        if (kind == FORWARD) { ref += b.h_bias[c]; mag += fabs(b.h_bias[c]); }
        const double got = kind == BACKWARD_WEIGHT ? got_f[(size_t)r * cols + c] : to_float(got_x[(size_t)r * cols + c]);
        const double bound = mag * ldexp(1.0, -22) + fabs(ref) * out_ulp + 1e-30;
        worst = fmax(worst, fabs(got - ref) / bound);
    }
    return worst;
}

int main(int argc, char** argv) {
    const int N = argc > 1 ? atoi(argv[1]) : 16384, C = argc > 2 ? atoi(argv[2]) : 768;
    const int Vp = argc > 3 ? atoi(argv[3]) : 50304, reps = argc > 4 ? atoi(argv[4]) : 20;
    if (N < 8 || C < 8 || Vp < 8 || reps < 1 || N % 8 || C % 8 || Vp % 8) fail("usage: matmul.out [N] [C] [Vp] [reps]: sizes multiples of 8");
    cudaCheck(cudaStreamCreate(&g_stream));
    cudaCheck(cudaGetDeviceProperties(&g_device_prop, 0));
    printf("matmul lab: %s, precision %s, %d reps per timing\n", g_device_prop.name, PRECISION_NAME, reps);
    matmul_setup();
    const Product products[] = {{"qkv", C, 3 * C, 12}, {"attn proj", C, C, 12}, {"fc", C, 4 * C, 12},
                                {"fc proj", 4 * C, C, 12}, {"lm head", C, Vp, 1}};
    Rng rng;
    rng_seed(&rng, 1337);
    double step_first = 0.0, step_best = 0.0, flops_step = 0.0;
    bool all_valid = true;
    printf("%-10s %-7s %4s %10s %10s %9s\n", "product", "kind", "algo", "ms", "TFLOP/s", "err/bound");
    for (const Product& pd : products) {
        Buffers b;
        b.inp = upload_random(b.h_inp, (size_t)N * pd.IC, rng, 1.0f);
        b.w = upload_random(b.h_w, (size_t)pd.OC * pd.IC, rng, 0.05f);
        b.dout = upload_random(b.h_dout, (size_t)N * pd.OC, rng, 1.0f);
        b.bias = upload_random(b.h_bias, pd.OC, rng, 0.1f);
        b.out = device_alloc<floatX>((size_t)N * pd.OC, "matmul lab out");
        b.dinp = device_alloc<floatX>((size_t)N * pd.IC, "matmul lab dinp");
        b.dw = device_alloc<float>((size_t)pd.OC * pd.IC, "matmul lab dW");
        const double flops = 2.0 * N * pd.IC * pd.OC;
        for (int kind = FORWARD; kind <= BACKWARD_WEIGHT; kind++) {
            void* d;
            const void *a, *bb;
            float beta;
            MatmulProblem pr = describe((Kind)kind, b, N, pd.IC, pd.OC, &d, &a, &bb, &beta);
            cublasLtMatmulHeuristicResult_t algos[8];
            const int n = matmul_heuristics(pr, algos, 8);
            if (n == 0) fail("cuBLASLt offers no algorithm for %s %s", pd.name, kind_name[kind]);
            double first = 0.0, best = 1e30;
            for (int i = 0; i < n; i++) {
                // timed as autotuning times it (beta 0 here: every call writes the same output)
                const double t = matmul_time_algo(pr, algos[i].algo, d, d, a, bb, beta, reps);
                if (t < 0.0) fail("cuBLASLt refused the algorithm it offered (%s %s, %d)", pd.name, kind_name[kind], i + 1);
                cudaCheck(cudaGetLastError());
                const double err = validate((Kind)kind, b, N, pd.IC, pd.OC, rng);
                const bool ok = err <= 1.0;
                all_valid &= ok || i > 0;  // the trainer's (first) algorithm must be right; others are only skipped
                if (i == 0) first = t;
                if (ok) best = fmin(best, t);
                printf("%-10s %-7s %4d %10.4f %10.1f %9.3f%s\n", pd.name, kind_name[kind], i + 1, t, flops / t * 1e-9, err,
                       ok ? "" : "  INVALID");
            }
            step_first += first * pd.per_step;
            step_best += best * pd.per_step;
            flops_step += flops * pd.per_step;
            matmul_release(pr);
        }
        cudaCheck(cudaFree(b.inp)); cudaCheck(cudaFree(b.w)); cudaCheck(cudaFree(b.dout)); cudaCheck(cudaFree(b.bias));
        cudaCheck(cudaFree(b.out)); cudaCheck(cudaFree(b.dinp)); cudaCheck(cudaFree(b.dw));
    }
    printf("step (N = %d, C = %d, Vp = %d): first choices %.3f ms (%.1f TFLOP/s), fastest valid %.3f ms (%.1f TFLOP/s)\n", N, C, Vp,
           step_first, flops_step / step_first * 1e-9, step_best, flops_step / step_best * 1e-9);
    printf("%s\n", all_valid ? "valid" : "INVALID: the trainer's algorithm failed validation");
    return all_valid ? 0 : 1;
}
