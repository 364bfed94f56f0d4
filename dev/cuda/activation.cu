/*
dev/cuda/activation.cu: kernel lab for the FFN activations (llmc/activation.cuh), forward with
the non-finite count and backward with the learnable slope's gradient.

  version 1  one element per thread, a float atomicAdd per element for the slope gradient
             (simple; not reproducible run to run)
  version 2  the trainer's kernels: 16-byte packs, a grid-stride loop, the non-finite count as
             one integer atomic per warp, the slope gradient in fixed-order block partials
  version 3  version 2's forward; the trainer's backward with the fc bias gradient folded in
             (activation_backward_bias: the values viewed as (N / cols, cols) rows, colsum's
             grid, the column sums of what it writes in colsum's order); also checks those sums

Validated against a CPU reference on random inputs that include exact zeros (the kinks),
large values and one infinity, then timed with CUDA events on GPT-2 124M's FFN at B = 128,
T = 128 (B*T*4C = 50M values).

Build: make -f cuda.mk dev/cuda/activation.out [PRECISION=BF16|FP32|FP16]
Run:   ./dev/cuda/activation.out [version (0 = all)] [N (timing size, default 128*128*3072)]
Version 3 views the values as rows of 3072 (the FFN's 4C; 256 if N is no multiple of 3072) for
timing and of 256 for validation.
*/
#include <vector>
#include "../../common.h"
#include "../../rng.h"
#include "../../llmc/activation.cuh"

// CPU reference: the CPU trainer's formulas, in double
double act_cpu(double x, int act, double s) {
    switch (act) {
        case ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
        case ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
        case ACT_RELU: return x > 0 ? x : 0.0;
        case ACT_IDENTITY: return x;
        default: return x >= 0 ? x : s * x;
    }
}

double dact_cpu(double x, int act, double s) {
    switch (act) {
        case ACT_GELU: return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
        case ACT_GELU_TANH: {
            double k = sqrt(2.0 / M_PI), th = tanh(k * (x + 0.044715 * x * x * x));
            return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
        }
        case ACT_RELU: return x > 0 ? 1.0 : 0.0;
        case ACT_IDENTITY: return 1.0;
        default: return x >= 0 ? 1.0 : s;
    }
}

// version 1
template <int AK>
__global__ void act_forward_v1(floatX* out, const floatX* inp, size_t N, float slope, unsigned long long* bad) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    floatX f = from_float<floatX>(act_value<AK>(to_float(inp[i]), slope));
    out[i] = f;
    if (!isfinite(to_float(f))) atomicAdd(bad, 1ull);
}

template <int AK>
__global__ void act_backward_v1(floatX* dinp, const floatX* inp, const floatX* dout, size_t N, float slope, float* dslope) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float x = to_float(inp[i]), g = to_float(dout[i]);
    dinp[i] = from_float<floatX>(act_derivative<AK>(x, slope) * g);
    if (AK == AK_LRELU && x < 0.0f) atomicAdd(dslope, x * g);
}

void run(int version, int act, floatX* out, floatX* din, const floatX* inp, const floatX* dout, size_t N, float slope,
         float* d_slope, float* d_slope_grad, double* scratch, unsigned long long* bad, float* bias, float* colsum, int cols) {
    if (version == 3) {
        activation_forward(out, inp, N, act, slope, act_is_learnable(act) ? d_slope : NULL, bad);
        activation_backward_bias(din, bias, inp, dout, (int)(N / cols), cols, act, slope, act_is_learnable(act) ? d_slope : NULL,
                                 act_is_learnable(act) ? d_slope_grad : NULL, colsum, scratch);
        return;
    }
    if (version == 2) {
        activation_forward(out, inp, N, act, slope, act_is_learnable(act) ? d_slope : NULL, bad);
        activation_backward(din, inp, dout, N, act, slope, act_is_learnable(act) ? d_slope : NULL,
                            act_is_learnable(act) ? d_slope_grad : NULL, scratch);
        return;
    }
    int grid = ceil_div((long)N, 256);
#define V1(AK) \
    act_forward_v1<AK><<<grid, 256, 0, g_stream>>>(out, inp, N, slope, bad); \
    act_backward_v1<AK><<<grid, 256, 0, g_stream>>>(din, inp, dout, N, slope, d_slope_grad);
    switch (act_kernel_kind(act)) {
        case AK_GELU: V1(AK_GELU); break;
        case AK_GELU_TANH: V1(AK_GELU_TANH); break;
        case AK_RELU: V1(AK_RELU); break;
        case AK_LRELU: V1(AK_LRELU); break;
        default: V1(AK_IDENTITY); break;
    }
#undef V1
    cudaCheckLaunch();
}

int main(int argc, char** argv) {
    int only = argc > 1 ? atoi(argv[1]) : 0;
    cudaCheck(cudaStreamCreate(&g_stream));
    cudaCheck(cudaGetDeviceProperties(&g_device_prop, 0));
    printf("activation lab: %s, precision %s\n", g_device_prop.name, PRECISION_NAME);
    const size_t N = argc > 2 ? (size_t)atoll(argv[2]) : (size_t)128 * 128 * 3072;  // timing size
    const size_t NV = N < (1 << 16) ? N : (1 << 16);                                  // validation size
    if (N <= 12345) { fprintf(stderr, "N must be above 12345 (one value there is infinite)\n"); return 1; }
    const float slope = 0.1f;
    Rng rng;
    rng_seed(&rng, 3);
    std::vector<floatX> h_in(N), h_dout(N);
    for (size_t i = 0; i < N; i++) {
        float x = 3.0f * rng_normal(&rng);
        if (i % 97 == 0) x = 0.0f;       // kinks
        if (i % 1009 == 0) x *= 30.0f;   // large values
        h_in[i] = from_float<floatX>(x);
        h_dout[i] = from_float<floatX>(rng_normal(&rng));
    }
    h_in[12345] = from_float<floatX>(INFINITY);  // one non-finite activation to count
    floatX *inp = device_alloc<floatX>(N, "in"), *dout = device_alloc<floatX>(N, "dout");
    floatX *out = device_alloc<floatX>(N, "out"), *din = device_alloc<floatX>(N, "din");
    float* d_slope = device_alloc<float>(1, "slope");
    float* d_slope_grad = device_alloc<float>(1, "slope grad");
    // version 3's rows: 3072 values (the FFN's; 256 if N is no multiple of it) for timing, 256 for
    // validation (NV / 256 rows)
    const int cols_val = 256, cols_time = N % 3072 == 0 ? 3072 : cols_val;
    if (N % cols_val != 0) { fprintf(stderr, "N must be a multiple of 256\n"); return 1; }
    double* scratch = device_alloc<double>(std::max(activation_scratch_doubles((int)(N / cols_time), cols_time),
                                                    activation_scratch_doubles((int)(NV / cols_val), cols_val)), "scratch");
    float* bias = device_alloc<float>(cols_time, "bias gradient");
    float* colsum = device_alloc<float>(std::max(colsum_scratch_floats((int)(N / cols_time), cols_time),
                                                 colsum_scratch_floats((int)(NV / cols_val), cols_val)), "colsum scratch");
    unsigned long long* bad = device_alloc<unsigned long long>(1, "counter");
    cudaCheck(cudaMemcpy(inp, h_in.data(), N * sizeof(floatX), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(dout, h_dout.data(), N * sizeof(floatX), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(d_slope, &slope, sizeof(float), cudaMemcpyHostToDevice));
    const int acts[] = {ACT_GELU, ACT_GELU_TANH, ACT_RELU, ACT_LRELU, ACT_LRELU_LAYER, ACT_IDENTITY};
    const char* names[] = {"gelu", "gelu-tanh", "relu", "lrelu:0.1", "lrelu-layer", "identity"};
    const float tol = sizeof(floatX) == 4 ? 1e-5f : 1e-2f;  // relative, rounding to floatX
    int failures = 0;
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    for (int a = 0; a < 6; a++) {
        int act = acts[a];
        for (int version = 1; version <= 3; version++) {
            if (only && version != only) continue;
            // validation on the first NV values (the infinity included)
            cudaCheck(cudaMemset(bad, 0, sizeof(unsigned long long)));
            cudaCheck(cudaMemset(d_slope_grad, 0, sizeof(float)));
            cudaCheck(cudaMemset(bias, 0, cols_val * sizeof(float)));
            run(version, act, out, din, inp, dout, NV, slope, d_slope, d_slope_grad, scratch, bad, bias, colsum, cols_val);
            cudaCheck(cudaStreamSynchronize(g_stream));
            std::vector<floatX> f(NV), d(NV);
            cudaCheck(cudaMemcpy(f.data(), out, NV * sizeof(floatX), cudaMemcpyDeviceToHost));
            cudaCheck(cudaMemcpy(d.data(), din, NV * sizeof(floatX), cudaMemcpyDeviceToHost));
            unsigned long long nbad;
            float gs;
            cudaCheck(cudaMemcpy(&nbad, bad, sizeof(nbad), cudaMemcpyDeviceToHost));
            cudaCheck(cudaMemcpy(&gs, d_slope_grad, sizeof(gs), cudaMemcpyDeviceToHost));
            double worst_f = 0.0, worst_d = 0.0, ref_gs = 0.0;
            for (size_t i = 0; i < NV; i++) {
                double x = to_float(h_in[i]), g = to_float(h_dout[i]);
                if (!std::isfinite(x)) continue;
                double rf = act_cpu(x, act, slope), rd = dact_cpu(x, act, slope) * g;
                worst_f = fmax(worst_f, fabs(to_float(f[i]) - rf) / fmax(1.0, fabs(rf)));
                worst_d = fmax(worst_d, fabs(to_float(d[i]) - rd) / fmax(1.0, fabs(rd)));
                if (act_is_leaky(act) && x < 0) ref_gs += x * g;
            }
            bool gs_ok = !act_is_learnable(act) || fabs(gs - ref_gs) <= 1e-4 * fmax(1.0, fabs(ref_gs));
            // version 3: the bias gradient against double sums of the stored din (the column
            // with the infinity is NaN there and skipped)
            double worst_b = 0.0;
            if (version == 3) {
                std::vector<float> hb(cols_val);
                cudaCheck(cudaMemcpy(hb.data(), bias, cols_val * sizeof(float), cudaMemcpyDeviceToHost));
                std::vector<double> want(cols_val, 0.0);
                for (size_t i = 0; i < NV; i++) want[i % cols_val] += to_float(d[i]);
                for (int c = 0; c < cols_val; c++)
                    if (c != 12345 % cols_val) worst_b = fmax(worst_b, fabs(hb[c] - want[c]) / fmax(1.0, fabs(want[c])));
            }
            bool ok = worst_f <= tol && worst_d <= tol && nbad == 1 && gs_ok && worst_b <= 1e-4;
            failures += !ok;
            // timing: forward + backward over all N values
            run(version, act, out, din, inp, dout, N, slope, d_slope, d_slope_grad, scratch, bad, bias, colsum, cols_time);
            const int reps = 10;
            cudaCheck(cudaEventRecord(e0, g_stream));
            for (int r = 0; r < reps; r++)
                run(version, act, out, din, inp, dout, N, slope, d_slope, d_slope_grad, scratch, bad, bias, colsum, cols_time);
            cudaCheck(cudaEventRecord(e1, g_stream));
            cudaCheck(cudaEventSynchronize(e1));
            float ms;
            cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
            double gbs = 5.0 * N * sizeof(floatX) / (ms / reps * 1e-3) / 1e9;  // fwd: r+w, bwd: 2r+w
            printf("%-12s v%d: %s f %.1e df %.1e non-finite %llu dslope %s dbias %s | %.3f ms fwd+bwd, %.0f GB/s\n", names[a],
                   version, ok ? "ok  " : "FAIL", worst_f, worst_d, nbad, act_is_learnable(act) ? (gs_ok ? "ok" : "WRONG") : "-",
                   version == 3 ? (worst_b <= 1e-4 ? "ok" : "WRONG") : "-", ms / reps, gbs);
        }
    }
    printf("%s\n", failures ? "FAILED" : "all versions valid");
    return failures ? 1 : 0;
}
