/*
dev/cuda/adamw.cu: kernel lab for the AdamW update (llmc/adamw.cuh): fp32 master weights, the
two moments, the gradient zeroed for the next step, and the rounded floatX working copy.

  version 1  one parameter per thread in a grid-stride loop (grid capped at 2048 blocks of 512),
             plain loads and stores (the first trainer kernel: 5.5 ms for GPT-2 124M on an H200)
  version 2  the trainer's kernel: a thread per 4 parameters, 16-byte streaming loads issued
             before any store (__restrict__), one thread per pack (no grid-stride loop)

Both run the same float operations (adamw_element), so they must agree bit for bit; each is
validated against a double-precision CPU reference on random inputs (with a non-multiple-of-4
size and a "skip" verdict that must leave everything but the zeroed gradient alone), then timed
with CUDA events over GPT-2 124M's 124.4M parameters.

Build: make -f cuda.mk dev/cuda/adamw.out [PRECISION=BF16|FP32|FP16]
Run:   ./dev/cuda/adamw.out [version (0 = all)] [N (timing size, default 124439808)]
*/
#include <vector>
#include "../../common.h"
#include "../../rng.h"
#include "../../llmc/adamw.cuh"

// version 1
__global__ void adamw_v1(float* params, floatX* params_x, float* grads, float* m, float* v, size_t n, float decay,
                         AdamWArgs a, const StepHeader* h) {
    bool apply = h->apply != 0;
    float grad_scale = h->grad_scale;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float grad = __fmul_rn(grads[i], grad_scale);
        grads[i] = 0.0f;
        if (!apply) continue;
        float mi = m[i], vi = v[i];
        float p = adamw_element(params[i], grad, mi, vi, decay, a);
        m[i] = mi;
        v[i] = vi;
        params[i] = p;
        if (params_x != NULL) params_x[i] = from_float<floatX>(p);
    }
}

struct Buffers {
    float *p, *g, *m, *v;
    floatX* px;
    StepHeader* h;
};

void run(int version, const Buffers& b, size_t n, float decay, const AdamWArgs& a) {
    floatX* px = sizeof(floatX) == 4 ? NULL : b.px;  // FP32: the master is the working copy
    if (version == 1) {
        int grid = ceil_div((long)n, 512);
        if (grid > 2048) grid = 2048;
        adamw_v1<<<grid, 512, 0, g_stream>>>(b.p, px, b.g, b.m, b.v, n, decay, a, b.h);
        cudaCheckLaunch();
    } else {
        adamw_update(b.p, px, b.g, b.m, b.v, n, decay, a, b.h);
    }
}

void upload_state(const Buffers& b, const std::vector<float>& p, const std::vector<float>& g, const std::vector<float>& m,
                  const std::vector<float>& v, size_t n) {
    cudaCheck(cudaMemcpy(b.p, p.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(b.g, g.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(b.m, m.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(b.v, v.data(), n * sizeof(float), cudaMemcpyHostToDevice));
}

void set_header(const Buffers& b, bool apply, float grad_scale) {
    StepHeader h;
    memset(&h, 0, sizeof(h));
    h.apply = apply ? 1 : 0;
    h.grad_scale = grad_scale;
    cudaCheck(cudaMemcpy(b.h, &h, sizeof(h), cudaMemcpyHostToDevice));
}

int main(int argc, char** argv) {
    int only = argc > 1 ? atoi(argv[1]) : 0;
    const size_t N = argc > 2 ? (size_t)atoll(argv[2]) : (size_t)124439808;  // GPT-2 124M
    const size_t NV = 100003;                                                 // validation: not a multiple of 4
    if (N < NV) { fprintf(stderr, "N must be at least %zu\n", NV); return 1; }
    cudaCheck(cudaStreamCreate(&g_stream));
    cudaCheck(cudaGetDeviceProperties(&g_device_prop, 0));
    printf("adamw lab: %s, precision %s\n", g_device_prop.name, PRECISION_NAME);
    Rng rng;
    rng_seed(&rng, 11);
    std::vector<float> p(NV), g(NV), m(NV), v(NV);
    for (size_t i = 0; i < NV; i++) {
        p[i] = 0.02f * rng_normal(&rng);
        g[i] = 0.01f * rng_normal(&rng);
        if (i % 101 == 0) g[i] *= 1e-6f;  // gradients near eps: the update's most sensitive case
        m[i] = 0.001f * rng_normal(&rng);
        v[i] = 1e-5f * rng_uniform(&rng);
    }
    const float lr = 1e-3f, decay = adamw_decay(lr, 0.1f, true), grad_scale = 0.5f;
    const AdamWArgs a = adamw_args(lr, 0.9f, 0.999f, 1e-8f, 7);
    Buffers b;
    b.p = device_alloc<float>(N, "params");
    b.g = device_alloc<float>(N, "grads");
    b.m = device_alloc<float>(N, "m");
    b.v = device_alloc<float>(N, "v");
    b.px = device_alloc<floatX>(N, "working copy");
    b.h = device_alloc<StepHeader>(1, "header");
    int failures = 0;
    std::vector<float> first_p;  // version 1's result, which version 2 must equal bit for bit
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    for (int version = 1; version <= 2; version++) {
        if (only && version != only) continue;
        // applied step
        upload_state(b, p, g, m, v, NV);
        set_header(b, true, grad_scale);
        run(version, b, NV, decay, a);
        std::vector<float> rp(NV), rg(NV), rm(NV), rv(NV);
        std::vector<floatX> rpx(NV);
        cudaCheck(cudaMemcpy(rp.data(), b.p, NV * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(rg.data(), b.g, NV * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(rm.data(), b.m, NV * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(rv.data(), b.v, NV * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(rpx.data(), b.px, NV * sizeof(floatX), cudaMemcpyDeviceToHost));
        double worst = 0.0;
        bool zeroed = true, rounded = true;
        for (size_t i = 0; i < NV; i++) {
            double gi = (double)g[i] * grad_scale;
            double mi = 0.9 * m[i] + 0.1 * gi, vi = 0.999 * v[i] + 0.001 * gi * gi;
            double bias1 = 1.0 - pow(0.9, 7), bias2 = 1.0 - pow(0.999, 7);
            double ref = p[i] * (double)decay - lr / bias1 * mi / (sqrt(vi) / sqrt(bias2) + 1e-8);
            worst = fmax(worst, fabs(rp[i] - ref) / lr);  // in units of the step size
            zeroed &= rg[i] == 0.0f;
            if (sizeof(floatX) != 4) rounded &= to_float(rpx[i]) == to_float(from_float<floatX>(rp[i]));
        }
        bool same = first_p.empty() || memcmp(first_p.data(), rp.data(), NV * sizeof(float)) == 0;
        if (first_p.empty()) first_p = rp;
        // skipped step (NaN guard / fp16 overflow): only the gradient changes (to zero)
        upload_state(b, p, g, m, v, NV);
        set_header(b, false, grad_scale);
        run(version, b, NV, decay, a);
        std::vector<float> sp(NV), sg(NV);
        cudaCheck(cudaMemcpy(sp.data(), b.p, NV * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(sg.data(), b.g, NV * sizeof(float), cudaMemcpyDeviceToHost));
        bool skipped = memcmp(sp.data(), p.data(), NV * sizeof(float)) == 0;
        for (size_t i = 0; i < NV; i++) skipped &= sg[i] == 0.0f;
        bool ok = worst < 1e-4 && zeroed && rounded && same && skipped;
        failures += !ok;
        // timing over N parameters (values as left: the update's cost does not depend on them)
        set_header(b, true, grad_scale);
        run(version, b, N, decay, a);
        const int reps = 10;
        cudaCheck(cudaEventRecord(e0, g_stream));
        for (int r = 0; r < reps; r++) run(version, b, N, decay, a);
        cudaCheck(cudaEventRecord(e1, g_stream));
        cudaCheck(cudaEventSynchronize(e1));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
        ms /= reps;
        // bytes: grad, master, m, v read; all four written; the working copy written
        double bytes = (double)N * (8 * sizeof(float) + (sizeof(floatX) == 4 ? 0 : sizeof(floatX)));
        printf("version %d: %s max error %.1e step sizes, gradient zeroed %s, working copy %s, same as v1 %s, skip %s | "
               "%.3f ms for %zu parameters, %.0f GB/s\n",
               version, ok ? "ok  " : "FAIL", worst, zeroed ? "yes" : "NO", rounded ? "ok" : "WRONG", same ? "yes" : "NO",
               skipped ? "ok" : "WRONG", ms, N, bytes / (ms * 1e-3) / 1e9);
    }
    printf("%s\n", failures ? "FAILED" : "all versions valid");
    return failures ? 1 : 0;
}
