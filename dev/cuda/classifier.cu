/*
dev/cuda/classifier.cu: kernel lab for the fused classifier (llmc/classifier.cuh): per row of
logits the loss (logsumexp - the target's logit) and, in place, dlogits = (softmax - onehot) *
dloss, with the padded columns' gradients 0.

  version 1  pass 2 re-reads the row from global memory (the trainer's kernel until
             2026-11-30): the logits are read twice
  version 2  the trainer's: pass 1 stages the row in dynamic shared memory, pass 2 reads it
             from there (falls back to version 1 where a row does not fit)

Validated against double precision on a few rows (one with a dominant logit, one whose target is
the last real column), then timed with CUDA events at GPT-2 124M's head: 16,384 rows of
Vp = 50,304 (V = 50,257). The bandwidth printed counts the floor's bytes (the row read once,
dlogits written once) whatever a version really moves.

Build: make -f cuda.mk dev/cuda/classifier.out [PRECISION=BF16|FP32|FP16]
Run:   ./dev/cuda/classifier.out [version (0 = all)] [N (timing rows, default 16384)]
*/
#include <vector>
#include "../../common.h"
#include "../../rng.h"
#include "../../llmc/classifier.cuh"

void run(int version, floatX* logits, float* losses, const int* targets, int N, int V, int Vp, float dloss) {
    if (version == 2) {
        classifier_forward(logits, losses, targets, N, V, Vp, true, dloss, NULL);
        return;
    }
    classifier_kernel<true, false><<<N, CLASSIFIER_THREADS, 0, g_stream>>>(logits, losses, targets, V, Vp, true, dloss, NULL);
    cudaCheckLaunch();
}

int main(int argc, char** argv) {
    int only = argc > 1 ? atoi(argv[1]) : 0;
    const int N = argc > 2 ? atoi(argv[2]) : 128 * 128;  // timing rows
    const int V = 50257, Vp = 50304, NV = 4;              // NV validation rows
    if (N < NV) { fprintf(stderr, "N must be at least %d\n", NV); return 1; }
    cudaCheck(cudaStreamCreate(&g_stream));
    cudaCheck(cudaGetDeviceProperties(&g_device_prop, 0));
    printf("classifier lab: %s, precision %s, V = %d in rows of %d\n", g_device_prop.name, PRECISION_NAME, V, Vp);
    Rng rng;
    rng_seed(&rng, 9);
    std::vector<floatX> h((size_t)NV * Vp, from_float<floatX>(0.0f));
    for (int r = 0; r < NV; r++)
        for (int i = 0; i < V; i++) h[(size_t)r * Vp + i] = from_float<floatX>(3.0f * rng_normal(&rng));
    h[(size_t)1 * Vp + 777] = from_float<floatX>(40.0f);  // row 1: one logit dominates
    std::vector<int> targets(N);
    for (int r = 0; r < N; r++) targets[r] = (int)rng_below(&rng, V);
    targets[0] = 5;
    targets[1] = 777;
    targets[2] = V - 1;
    const float dloss = 1.0f / N, dloss_val = 1.0f / NV;  // the mean loss's gradient at N and at NV rows
    floatX* logits = device_alloc<floatX>((size_t)N * Vp, "logits");
    float* losses = device_alloc<float>(N, "losses");
    int* d_targets = device_alloc<int>(N, "targets");
    cudaCheck(cudaMemcpy(d_targets, targets.data(), N * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemset(logits, 0, (size_t)N * Vp * sizeof(floatX)));  // timing rows: the values do not matter
    // dlogits are at most dloss in size: their rounding to floatX is the bf16/fp16 bound
    const double tol_loss = sizeof(floatX) == 4 ? 2e-5 : 1e-4, tol_grad = sizeof(floatX) == 4 ? 1e-7 : 1e-3;
    int failures = 0;
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    for (int version = 1; version <= 2; version++) {
        if (only && version != only) continue;
        cudaCheck(cudaMemcpy(logits, h.data(), h.size() * sizeof(floatX), cudaMemcpyHostToDevice));
        run(version, logits, losses, d_targets, NV, V, Vp, dloss_val);
        std::vector<floatX> g(h.size());
        std::vector<float> loss(NV);
        cudaCheck(cudaMemcpy(g.data(), logits, g.size() * sizeof(floatX), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(loss.data(), losses, NV * sizeof(float), cudaMemcpyDeviceToHost));
        double worst_loss = 0.0, worst_grad = 0.0, worst_pad = 0.0;
        for (int r = 0; r < NV; r++) {
            const floatX* x = &h[(size_t)r * Vp];
            double m = -1e30, sum = 0.0;
            for (int i = 0; i < V; i++) m = fmax(m, (double)to_float(x[i]));
            for (int i = 0; i < V; i++) sum += exp(to_float(x[i]) - m);
            double lse = m + log(sum);
            worst_loss = fmax(worst_loss, fabs(loss[r] - (lse - to_float(x[targets[r]]))));
            for (int i = 0; i < Vp; i++) {
                double want = i < V ? (exp(to_float(x[i]) - lse) - (i == targets[r] ? 1.0 : 0.0)) * dloss_val : 0.0;
                double d = fabs(to_float(g[(size_t)r * Vp + i]) - want);
                if (i < V) worst_grad = fmax(worst_grad, d);
                else worst_pad = fmax(worst_pad, d);
            }
        }
        bool ok = worst_loss <= tol_loss && worst_grad <= tol_grad && worst_pad == 0.0;
        failures += !ok;
        run(version, logits, losses, d_targets, N, V, Vp, dloss);  // warm-up; dlogits overwrite the rows from here on
        const int reps = 10;
        cudaCheck(cudaEventRecord(e0, g_stream));
        for (int r = 0; r < reps; r++) run(version, logits, losses, d_targets, N, V, Vp, dloss);
        cudaCheck(cudaEventRecord(e1, g_stream));
        cudaCheck(cudaEventSynchronize(e1));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
        ms /= reps;
        double gbs = 2.0 * N * Vp * sizeof(floatX) / (ms * 1e-3) / 1e9;
        printf("version %d: %s loss %.1e dlogits %.1e padding %.1e | %.4f ms per call, %.0f GB/s (row read + written once)\n",
               version, ok ? "ok  " : "FAIL", worst_loss, worst_grad, worst_pad, ms, gbs);
    }
    printf("%s\n", failures ? "FAILED" : "all versions valid");
    return failures ? 1 : 0;
}
