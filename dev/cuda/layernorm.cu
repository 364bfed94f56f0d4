/*
dev/cuda/layernorm.cu: kernel lab for the LayerNorm backward (llmc/layernorm.cuh) with every
output the trainer asks of it: dinp accumulated onto the residual gradient already there, the
weight and bias gradients, and the column sums of the new dinp (the bias gradient of the
projection whose output dinp is the gradient of).

  version 1  what the trainer ran until the fused kernel: a warp per row for dinp (dout, x and
             the weight read twice, dinp read and written), then colsum.cuh's two kernels for
             the weight and bias gradients (dout and x read again) and two more for dinp's
             column sums (dinp read again): 6 N C values moved, 6 launches
  version 2  the trainer's (layernorm_backward_fused_kernel): a block of 8 warps per 64-row
             chunk, each lane keeps its columns' three sums in registers, dout, x and dinp
             read once, dinp written once, then colsum's second pass: 4 N C values, 2 launches

Validated against a double-precision reference (the statistics are the rows' exact mean and
rstd, as the forward saves them), then timed with CUDA events at GPT-2 124M's rows (B*T =
16,384 rows of C = 768); the bandwidth printed counts 4 N C values per call (the floor's
bytes: each input read once, dinp written once) whatever a version really moves.

Build: make -f cuda.mk dev/cuda/layernorm.out [PRECISION=BF16|FP32|FP16]
Run:   ./dev/cuda/layernorm.out [version (0 = all)] [N (timing rows, default 16384)] [C (768)]
*/
#include <vector>
#include "../../common.h"
#include "../../rng.h"
#include "../../llmc/layernorm.cuh"

// version 1: the two-kernel path with a separate column sum of dinp
void backward_v1(floatX* dinp, float* dweight, float* dbias, float* dinp_colsum, const floatX* dout, const floatX* inp,
                 const floatX* weight, const float* mean, const float* rstd, int N, int C, float* scratch) {
    bool vec = layernorm_vec_ok(dinp, dout, C) && aligned16(inp) && aligned16(weight);
    int grid = ceil_div(N, 8);
    if (vec)
        layernorm_backward_input_kernel<true><<<grid, 256, 0, g_stream>>>(dinp, dout, inp, weight, mean, rstd, N, C, true);
    else
        layernorm_backward_input_kernel<false><<<grid, 256, 0, g_stream>>>(dinp, dout, inp, weight, mean, rstd, N, C, true);
    cudaCheckLaunch();
    colsum_accumulate(dbias, dweight, dout, inp, mean, rstd, N, C, scratch);
    colsum_accumulate(dinp_colsum, NULL, dinp, NULL, NULL, NULL, N, C, scratch);
}

void run(int version, floatX* dinp, float* dw, float* db, float* dsum, const floatX* dout, const floatX* x, const floatX* w,
         const float* mean, const float* rstd, int N, int C, float* scratch) {
    if (version == 1) backward_v1(dinp, dw, db, dsum, dout, x, w, mean, rstd, N, C, scratch);
    else layernorm_backward(dinp, dw, db, dsum, dout, x, w, mean, rstd, N, C, true, scratch);
}

struct Inputs {
    std::vector<floatX> dout, x, dinp, w;
    std::vector<float> mean, rstd;
};

Inputs make_inputs(int N, int C) {
    Rng rng;
    rng_seed(&rng, 7);
    Inputs in;
    size_t n = (size_t)N * C;
    in.dout.resize(n);
    in.x.resize(n);
    in.dinp.resize(n);
    for (size_t i = 0; i < n; i++) {
        in.dout[i] = from_float<floatX>(rng_normal(&rng));
        in.x[i] = from_float<floatX>(0.5f + 3.0f * rng_normal(&rng));
        in.dinp[i] = from_float<floatX>(rng_normal(&rng));
    }
    for (int c = 0; c < C; c++) in.w.push_back(from_float<floatX>(1.0f + 0.3f * rng_normal(&rng)));
    for (int r = 0; r < N; r++) {  // the row's exact statistics, as the forward saves them
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += to_float(in.x[(size_t)r * C + c]);
        m /= C;
        for (int c = 0; c < C; c++) v += pow(to_float(in.x[(size_t)r * C + c]) - m, 2);
        in.mean.push_back((float)m);
        in.rstd.push_back((float)(1.0 / sqrt(v / C + 1e-5)));
    }
    return in;
}

// worst errors of one run against double: dinp (relative to max(1, |value|)), the three sums
// (absolute; the column sums of dinp are taken of the kernel's own stored dinp)
struct Errors { double dinp, dw, db, dsum; };

Errors validate(const Inputs& in, const std::vector<floatX>& got, const std::vector<float>& dw, const std::vector<float>& db,
                const std::vector<float>& dsum, int N, int C) {
    Errors e = {0, 0, 0, 0};
    std::vector<double> rdw(C, 0.0), rdb(C, 0.0), rsum(C, 0.0);
    for (int r = 0; r < N; r++) {
        double a = 0.0, b = 0.0;
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)r * C + c;
            double g = to_float(in.dout[i]), xhat = (to_float(in.x[i]) - in.mean[r]) * (double)in.rstd[r];
            a += to_float(in.w[c]) * g;
            b += to_float(in.w[c]) * g * xhat;
            rdb[c] += g;
            rdw[c] += g * xhat;
        }
        a /= C;
        b /= C;
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)r * C + c;
            double g = to_float(in.dout[i]), xhat = (to_float(in.x[i]) - in.mean[r]) * (double)in.rstd[r];
            double want = to_float(in.dinp[i]) + (to_float(in.w[c]) * g - a - xhat * b) * in.rstd[r];
            e.dinp = fmax(e.dinp, fabs(to_float(got[i]) - want) / fmax(1.0, fabs(want)));
            rsum[c] += to_float(got[i]);
        }
    }
    for (int c = 0; c < C; c++) {
        e.dw = fmax(e.dw, fabs(dw[c] - rdw[c]));
        e.db = fmax(e.db, fabs(db[c] - rdb[c]));
        e.dsum = fmax(e.dsum, fabs(dsum[c] - rsum[c]));
    }
    return e;
}

int main(int argc, char** argv) {
    int only = argc > 1 ? atoi(argv[1]) : 0;
    const int N = argc > 2 ? atoi(argv[2]) : 128 * 128;  // timing rows
    const int C = argc > 3 ? atoi(argv[3]) : 768;
    if (N < 1 || C < 1) { fprintf(stderr, "N and C must be positive\n"); return 1; }
    cudaCheck(cudaStreamCreate(&g_stream));
    cudaCheck(cudaGetDeviceProperties(&g_device_prop, 0));
    printf("layernorm lab: %s, precision %s, C = %d\n", g_device_prop.name, PRECISION_NAME, C);
    const int NV = N < 1000 ? N : 1000;  // validation rows: 16 chunks, the last one partial
    Inputs in = make_inputs(N, C);
    size_t n = (size_t)N * C;
    floatX *dout = device_alloc<floatX>(n, "dout"), *x = device_alloc<floatX>(n, "x"), *dinp = device_alloc<floatX>(n, "dinp");
    floatX* w = device_alloc<floatX>(C, "weight");
    float *mean = device_alloc<float>(N, "mean"), *rstd = device_alloc<float>(N, "rstd");
    float *dw = device_alloc<float>(C, "dweight"), *db = device_alloc<float>(C, "dbias"), *dsum = device_alloc<float>(C, "dsum");
    float* scratch = device_alloc<float>(layernorm_scratch_floats(N, C), "scratch");
    cudaCheck(cudaMemcpy(dout, in.dout.data(), n * sizeof(floatX), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(x, in.x.data(), n * sizeof(floatX), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(w, in.w.data(), C * sizeof(floatX), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(mean, in.mean.data(), N * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(rstd, in.rstd.data(), N * sizeof(float), cudaMemcpyHostToDevice));
    // dinp: one rounding to floatX of values ~1-5; the sums: fp32 over NV terms of size ~1-3
    const double tol_dinp = sizeof(floatX) == 4 ? 1e-5 : 6e-3, tol_sum = 2e-3;
    int failures = 0;
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    for (int version = 1; version <= 2; version++) {
        if (only && version != only) continue;
        cudaCheck(cudaMemcpy(dinp, in.dinp.data(), (size_t)NV * C * sizeof(floatX), cudaMemcpyHostToDevice));
        for (float* p : {dw, db, dsum}) cudaCheck(cudaMemset(p, 0, C * sizeof(float)));
        run(version, dinp, dw, db, dsum, dout, x, w, mean, rstd, NV, C, scratch);
        cudaCheck(cudaStreamSynchronize(g_stream));
        std::vector<floatX> got((size_t)NV * C);
        std::vector<float> hdw(C), hdb(C), hsum(C);
        cudaCheck(cudaMemcpy(got.data(), dinp, got.size() * sizeof(floatX), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(hdw.data(), dw, C * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(hdb.data(), db, C * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(hsum.data(), dsum, C * sizeof(float), cudaMemcpyDeviceToHost));
        Errors e = validate(in, got, hdw, hdb, hsum, NV, C);
        bool ok = e.dinp <= tol_dinp && e.dw <= tol_sum && e.db <= tol_sum && e.dsum <= tol_sum;
        failures += !ok;
        // timing over all N rows (dinp keeps accumulating: the values do not matter here)
        cudaCheck(cudaMemcpy(dinp, in.dinp.data(), n * sizeof(floatX), cudaMemcpyHostToDevice));
        run(version, dinp, dw, db, dsum, dout, x, w, mean, rstd, N, C, scratch);
        const int reps = 20;
        cudaCheck(cudaEventRecord(e0, g_stream));
        for (int r = 0; r < reps; r++) run(version, dinp, dw, db, dsum, dout, x, w, mean, rstd, N, C, scratch);
        cudaCheck(cudaEventRecord(e1, g_stream));
        cudaCheck(cudaEventSynchronize(e1));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
        ms /= reps;
        double gbs = 4.0 * n * sizeof(floatX) / (ms * 1e-3) / 1e9;
        printf("version %d: %s dinp %.1e dweight %.1e dbias %.1e dinp sums %.1e | %.4f ms per call, %.0f GB/s (4 N C values)\n",
               version, ok ? "ok  " : "FAIL", e.dinp, e.dw, e.db, e.dsum, ms, gbs);
    }
    printf("%s\n", failures ? "FAILED" : "all versions valid");
    return failures ? 1 : 0;
}
