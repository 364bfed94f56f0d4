/*
train_gpt2.cu: GPT-2 training on one NVIDIA GPU (CUDA Toolkit only: cuBLASLt for the matrix
products, our own kernels for the rest), with switchable normalization (LayerNorm or none) and
FFN activation (GELU, ReLU, leaky ReLU with fixed or learnable slope, identity), the attention
entropy of every head measured inside the attention kernel, and NaN guards. It has the CPU
trainer's semantics (train_gpt2.cpp is the reference): the same flags (flags.h), files
(model_file.h, checkpoint.h, logger.h), schedule, validation, sampling, checkpoints and resume,
--on-nan handling and logs. test_gpt2.cu checks it against the PyTorch debug states.

Precision (compile time, cuda.mk's PRECISION): BF16 (default) keeps activations and a working
copy of the weights in bf16; FP32 keeps everything in fp32 (exact tests); FP16 adds dynamic loss
scaling (llmc/guard.cuh), the paper's regime. Always fp32: master weights, parameter gradients,
AdamW moments, and every accumulation inside the kernels.

No device-wide sync per step: the end of a step (gradient norm, the NaN guard's verdict, the
clip factor, AdamW) is decided on the device, and the step's measurements (loss, norm, per-layer
non-finite counts, per-head entropy, slopes) are copied asynchronously to pinned memory and read
by the host one step later, while the GPU runs the next step. The host waits only where the CPU
trainer's output needs the state (validation, checkpoints, samples, the end).

Layout: the model (parameters, activations, forward, backward, the step's end), then the training
loop in main() at the bottom. Shapes in comments: B batch, T time, C channels, NH heads,
hs = C/NH, L layers, V vocab, Vp padded vocab. `#define TESTING` before including this file
leaves out main(). Kernels live in the llmc/ headers (one concern each) and entropy.cuh (attention);
llmc/attention.cuh's attention_path says which attention kernels run for a shape and precision.
*/
#include <cfloat>
#include <cmath>
#include <ctime>
#include <string>
#include <vector>
#include <algorithm>

#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "dataloader.h"
#include "flags.h"
#include "logger.h"
#include "model_file.h"
#include "rng.h"
#include "schedulers.h"
#include "tokenizer.h"
#include "train_common.h"

#include "llmc/cuda_common.cuh"
#include "llmc/matmul.cuh"
#include "llmc/colsum.cuh"
#include "llmc/encoder.cuh"
#include "llmc/layernorm.cuh"
#include "llmc/activation.cuh"
#include "llmc/classifier.cuh"
#include "llmc/guard.cuh"
#include "llmc/adamw.cuh"
#include "llmc/zero.cuh"
#include "llmc/profile.cuh"
#include "llmc/diag.cuh"
#include "llmc/attention.cuh"  // entropy.cuh and the tiled kernels, and which one runs

// -DRECOMPUTE_FFN_ACT: keep f = act(h) for one layer only and recompute it in the backward
// (saves L*B*T*4C floatX of memory, ~1.2 GB at GPT-2 124M, B = 128, T = 128; costs one
// elementwise pass per layer). Off by default: storing it is faster.
#ifdef RECOMPUTE_FFN_ACT
static const bool RECOMPUTE_ACT = true;
#else
static const bool RECOMPUTE_ACT = false;
#endif

// ReLU and identity: f = act(h) overwrites h in place, since their derivative can be read off f
// (h > 0 exactly where f > 0), so the backward needs no h: L*B*T*4C floatX less memory (~1.2 GB
// at GPT-2 124M, B = 128, T = 128) at no cost. The other activations keep both.
inline bool act_in_place(int act) { return act == ACT_RELU || act == ACT_IDENTITY; }

#if defined(ENABLE_FP16)
static const bool USE_LOSS_SCALER = true;
#else
static const bool USE_LOSS_SCALER = false;
#endif

// One stream, the cuBLASLt handle, and the device's properties.
void cuda_setup() {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        fprintf(stderr, "error: no CUDA device available (%s); the CPU trainer is ./train_gpt2\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "no devices");
        exit(1);
    }
    mp_init(NULL, NULL);  // USE_MPI: MPI_Init unless main() did; one process per GPU of its node
    // GPU number = rank on the node; a process that sees one GPU (a launcher that binds one GPU
    // per task, e.g. srun --gpus-per-task=1) takes it
    int device = count == 1 ? 0 : g_mp.local_rank;
    if (device >= count)
        fail("rank %d is process %d on its node, but the node has %d GPU(s): start at most one process per GPU",
             g_mp.rank, device, count);
    cudaCheck(cudaSetDevice(device));
    cudaCheck(cudaGetDeviceProperties(&g_device_prop, device));
    // a blocking stream: the synchronous cudaMemcpy/cudaMemset calls (loading, checkpoints, tests)
    // stay ordered with it
    if (g_stream == 0) cudaCheck(cudaStreamCreate(&g_stream));
    matmul_setup();
}

// ----------------------------------------------------------------------------
// The model. Parameters are viewed through config.h's ParameterTensors<T> (shared with the CPU
// trainer): fp32 for the master weights and gradients, floatX for the working copy.

// What the forward pass keeps for the backward (device). Compared with the CPU trainer: no
// (B, NH, T, T) scores or probabilities (the attention saves its output and one log-sum-exp per
// row), no attproj/fcproj (the residual add is the matmul's C input), no probs (the classifier
// is fused); with RECOMPUTE_FFN_ACT, f = act(h) lives in a one-layer scratch.
struct ActivationTensors {
    floatX* encoded;    // (B, T, C)
    floatX* ln1;        // (L, B, T, C)   NULL without block LayerNorms
    float* ln1_mean;    // (L, B, T)
    float* ln1_rstd;    // (L, B, T)
    floatX* qkv;        // (L, B, T, 3C)
    floatX* atty;       // (L, B, T, C)
    float* att_lse;     // (L, B, NH, T)  log-sum-exp of each attention row
    floatX* residual2;  // (L, B, T, C)
    floatX* ln2;        // (L, B, T, C)   NULL without block LayerNorms
    float* ln2_mean;    // (L, B, T)
    float* ln2_rstd;    // (L, B, T)
    floatX* fch;        // (L, B, T, 4C)  FFN pre-activation h
    floatX* fch_act;    // (L, B, T, 4C)  f = act(h) ((B, T, 4C), one layer, with RECOMPUTE_FFN_ACT;
                        //                NULL for ReLU and identity: f is written over fch)
    floatX* residual3;  // (L, B, T, C)
    floatX* lnf;        // (B, T, C)      NULL with --norm none-all
    float* lnf_mean;    // (B, T)
    float* lnf_rstd;    // (B, T)
    floatX* logits;     // (B, T, Vp)     overwritten in place by dlogits for training
    float* losses;      // (B, T)
};

// Gradient buffers of one layer, reused by every layer (they are overwritten, not accumulated,
// except dresidual, which carries the residual stream's gradient down through the layers).
struct BackwardScratch {
    floatX* dresidual;  // (B, T, C)
    floatX* dln;        // (B, T, C)  gradient of a LayerNorm's output
    floatX* datty;      // (B, T, C)
    floatX* dqkv;       // (B, T, 3C)
    floatX* dfch;       // (B, T, 4C) df, then dh in place
    float* att_D;       // (B, NH, T) rowsum(dO * O)
    float* colsum;      // column-sum partials (bias and LayerNorm gradients)
    double* slope;      // slope-gradient partials
};

// Byte offsets of the step's measurements in one device block (copied to pinned memory whole).
struct StepResultLayout {
    size_t att_bad, ffn_bad, entropy, paper, slopes, diag, total;
};

struct GPT2 {
    GPT2Config config;
    size_t param_sizes[NUM_ALL_TENSORS];
    size_t num_params;     // all parameters, slopes included (the optimizer's view)
    int num_slopes;
    float* params_memory;  // host: fp32 master weights as loaded / last synced (files)
    // device parameters
    float* d_master;       // fp32 master weights
    floatX* d_weights;     // floatX working copy (the master itself in the FP32 build)
    float* d_grads;        // fp32 gradients (zeroed by AdamW after each step)
    float* d_m;            // AdamW first moment
    float* d_v;            // AdamW second moment
    ParameterTensors<floatX> w;
    ParameterTensors<float> g;
    ParameterTensors<float> master;
    // activations, allocated for (B, T) and reused for anything smaller
    ActivationTensors acts;
    BackwardScratch scratch;
    int alloc_B, alloc_T;
    int batch_size, seq_len;  // the last forward's B and T
    bool has_targets;         // the last forward had targets
    bool dlogits_ready;       // the last forward left dlogits in acts.logits
    // the current batch: device ints [inputs | targets | sorted_pos | seg_tok | seg_start] with
    // each part alloc_B*alloc_T long (+1 for seg_start); two pinned staging buffers
    int* d_tokens;
    int* h_tokens[2];
    cudaEvent_t tokens_copied[2];
    int token_slot;
    int num_unique;           // distinct tokens of the current batch (encoder backward)
    // the step's measurements: device block, pinned copies (one per step in flight)
    StepResultLayout layout;
    char* d_result;
    char* h_result[2];
    StepHeader* d_header;
    unsigned long long* d_att_bad;  // (L)
    unsigned long long* d_ffn_bad;  // (L)
    double* d_entropy_sum;          // (L, NH)
    double* d_diag;                 // (L, DIAG_SUMS) diagnostics' sums (llmc/diag.cuh)
    bool want_diag;                 // the next training forwards add to d_diag (--diag-every steps)
    double* d_paper_sum;            // (2, L, NH): the paper's metrics (entropy.cuh paper_reduce)
    float* d_paper_partial;         // (L, 2, B, NH, qtiles)
    float* d_slopes_out;            // slopes after the step's update
    float* d_ent_partial;           // (L, B, NH, qtiles)
    double* d_norm_partials;        // NORM_BLOCKS
    ScalerState* d_scaler;          // fp16 loss scaling
    double* d_loss_acc;             // validation and test loss accumulator
#ifdef USE_MPI
    // data parallelism (llmc/zero.cuh): d_master, d_m, d_v hold this rank's slice only (ZeRO-1),
    // d_grads and d_weights the whole array padded to shard * ranks; the forward reads the
    // learnable slopes from d_slopes_live, every rank's copy of them
    ZeroShard zero;
    float* d_slopes_live;           // (num_slopes)
#endif
    cudaEvent_t step_start[2], step_end[2];
    // everything allocated for this model, released by gpt2_free
    std::vector<std::pair<void*, size_t>> device_allocs;
    std::vector<void*> pinned_allocs;
};

template <typename T>
T* gpt2_alloc(GPT2* model, size_t count, const char* what) {
    T* p = device_alloc<T>(count, what);
    model->device_allocs.push_back({(void*)p, count * sizeof(T) > 0 ? count * sizeof(T) : 16});
    return p;
}

template <typename T>
T* gpt2_pinned(GPT2* model, size_t count, const char* what) {
    T* p = pinned_alloc<T>(count, what);
    model->pinned_allocs.push_back((void*)p);
    return p;
}

void gpt2_allocate(GPT2* model, const GPT2Config& c) {
    validate_config_or_fail(c, "model");  // every way of building a model passes here
    attention_check_shape(c.channels, c.num_heads);
    model->config = c;
    fill_param_sizes(model->param_sizes, c);
    model->num_slopes = (int)model->param_sizes[SLOPE_TENSOR];
    model->num_params = count_params(c, true);
    model->params_memory = (float*)calloc_or_fail(model->num_params, sizeof(float), "parameters");
    size_t n = model->num_params;
#ifdef USE_MPI
    zero_init(&model->zero, n);
    size_t own = model->zero.shard, padded = model->zero.shard * model->zero.size;
    model->d_master = gpt2_alloc<float>(model, own, "master weights (this rank's slice)");
    model->d_weights = gpt2_alloc<floatX>(model, padded, "working weights");
    model->d_grads = gpt2_alloc<float>(model, padded, "gradients");
    model->d_m = gpt2_alloc<float>(model, own, "AdamW state (this rank's slice)");
    model->d_v = gpt2_alloc<float>(model, own, "AdamW state (this rank's slice)");
    model->d_slopes_live = gpt2_alloc<float>(model, std::max(model->num_slopes, 1), "slopes");
    cudaCheck(cudaMemset(model->d_grads, 0, padded * sizeof(float)));
    cudaCheck(cudaMemset(model->d_m, 0, own * sizeof(float)));
    cudaCheck(cudaMemset(model->d_v, 0, own * sizeof(float)));
    point_parameters(&model->master, model->d_master, model->param_sizes);  // valid below hi - lo only
#else
    model->d_master = gpt2_alloc<float>(model, n, "master weights");
#if defined(ENABLE_FP32)
    model->d_weights = model->d_master;
#else
    model->d_weights = gpt2_alloc<floatX>(model, n, "working weights");
#endif
    model->d_grads = gpt2_alloc<float>(model, n, "gradients");
    model->d_m = gpt2_alloc<float>(model, n, "AdamW state");
    model->d_v = gpt2_alloc<float>(model, n, "AdamW state");
    cudaCheck(cudaMemset(model->d_grads, 0, n * sizeof(float)));
    cudaCheck(cudaMemset(model->d_m, 0, n * sizeof(float)));
    cudaCheck(cudaMemset(model->d_v, 0, n * sizeof(float)));
    point_parameters(&model->master, model->d_master, model->param_sizes);
#endif
    point_parameters(&model->w, model->d_weights, model->param_sizes);
    point_parameters(&model->g, model->d_grads, model->param_sizes);
    model->alloc_B = model->alloc_T = 0;
    model->batch_size = model->seq_len = 0;
    model->has_targets = false;
    model->dlogits_ready = false;
    model->d_tokens = NULL;
    model->h_tokens[0] = model->h_tokens[1] = NULL;
    model->token_slot = 0;
    model->num_unique = 0;

    // the step's measurements
    int L = c.num_layers, NH = c.num_heads;
    StepResultLayout& lay = model->layout;
    auto align8 = [](size_t x) { return (x + 7) & ~(size_t)7; };
    lay.att_bad = align8(sizeof(StepHeader));
    lay.ffn_bad = lay.att_bad + L * sizeof(unsigned long long);
    lay.entropy = lay.ffn_bad + L * sizeof(unsigned long long);
    lay.paper = lay.entropy + (size_t)L * NH * sizeof(double);
    lay.slopes = lay.paper + 2 * (size_t)L * NH * sizeof(double);
    lay.diag = align8(lay.slopes + model->num_slopes * sizeof(float));
    lay.total = lay.diag + (size_t)L * DIAG_SUMS * sizeof(double);
    model->d_result = gpt2_alloc<char>(model, lay.total, "step results");
    model->d_header = (StepHeader*)model->d_result;
    model->d_att_bad = (unsigned long long*)(model->d_result + lay.att_bad);
    model->d_ffn_bad = (unsigned long long*)(model->d_result + lay.ffn_bad);
    model->d_entropy_sum = (double*)(model->d_result + lay.entropy);
    model->d_paper_sum = (double*)(model->d_result + lay.paper);
    model->d_slopes_out = (float*)(model->d_result + lay.slopes);
    model->d_diag = (double*)(model->d_result + lay.diag);
    model->want_diag = false;
    cudaCheck(cudaMemset(model->d_result, 0, lay.total));
    for (int i = 0; i < 2; i++) {
        model->h_result[i] = gpt2_pinned<char>(model, lay.total, "step results");
        memset(model->h_result[i], 0, lay.total);
        cudaCheck(cudaEventCreate(&model->step_start[i]));
        cudaCheck(cudaEventCreate(&model->step_end[i]));
        cudaCheck(cudaEventCreateWithFlags(&model->tokens_copied[i], cudaEventDisableTiming));
    }
    model->d_ent_partial = NULL;
    model->d_paper_partial = NULL;
    model->d_norm_partials = gpt2_alloc<double>(model, NORM_BLOCKS, "gradient norm partials");
    model->d_scaler = gpt2_alloc<ScalerState>(model, 1, "loss scaler");
    ScalerState init = {USE_LOSS_SCALER ? SCALER_INIT : 1.0f, 0, 0, 0};
    cudaCheck(cudaMemcpy(model->d_scaler, &init, sizeof(init), cudaMemcpyHostToDevice));
    model->d_loss_acc = gpt2_alloc<double>(model, 1, "loss accumulator");
}

// The master weights from params_memory to the device, and their floatX working copy.
// USE_MPI: every rank has all of params_memory; it uploads its slice and rounds it, then the
// ranks gather the working weights and the slopes.
void gpt2_upload_params(GPT2* model) {
#ifdef USE_MPI
    ZeroShard* z = &model->zero;
    cudaCheck(cudaMemcpy(model->d_master, model->params_memory + z->lo, (z->hi - z->lo) * sizeof(float), cudaMemcpyHostToDevice));
#if defined(ENABLE_FP32)
    cudaCheck(cudaMemcpyAsync(model->d_weights + z->lo, model->d_master, (z->hi - z->lo) * sizeof(float),
                              cudaMemcpyDeviceToDevice, g_stream));
#else
    round_params(model->d_weights + z->lo, model->d_master, z->hi - z->lo);
#endif
    zero_all_gather_weights(z, model->d_weights);
    zero_sync_slopes(z, model->d_slopes_live, model->d_master, z->n - model->num_slopes, model->num_slopes);
#else
    cudaCheck(cudaMemcpy(model->d_master, model->params_memory, model->num_params * sizeof(float), cudaMemcpyHostToDevice));
#if !defined(ENABLE_FP32)
    round_params(model->d_weights, model->d_master, model->num_params);
#endif
#endif
    cudaCheck(cudaStreamSynchronize(g_stream));
}

// The master weights from the device into params_memory (waits for the stream). USE_MPI: every
// rank must call it; rank 0 gets all of them, the others keep theirs as they were.
void gpt2_download_params(GPT2* model) {
    cudaCheck(cudaStreamSynchronize(g_stream));
#ifdef USE_MPI
    zero_gather_to_root_host(&model->zero, model->d_master, model->params_memory);
#else
    cudaCheck(cudaMemcpy(model->params_memory, model->d_master, model->num_params * sizeof(float), cudaMemcpyDeviceToHost));
#endif
}

// From a model file; --norm/--act (flags) override what it records (as the CPU trainer).
void gpt2_build_from_file(GPT2* model, const char* path, const TrainConfig* flags) {
    GPT2Config c;
    int stored_slopes;
    FILE* f = open_model_file(path, &c, &stored_slopes);
    int file_act = c.variant.act;
    if (flags) apply_variant_flags(*flags, &c.variant);
    gpt2_allocate(model, c);
    read_model_params(f, path, c, stored_slopes, file_act, model->params_memory);
    fclose(f);
    gpt2_upload_params(model);
}

// From scratch with llm.c's initialisation, drawn on the host (config.h: init_params_random,
// the CPU trainer's too), so both trainers start from the very same weights.
void gpt2_build_from_random(GPT2* model, const GPT2Config& c, uint64_t seed) {
    gpt2_allocate(model, c);
    init_params_random(model->params_memory, model->param_sizes, c, seed);
    gpt2_upload_params(model);
}

// Activation and gradient buffers for batches up to (B, T).
void gpt2_allocate_activations(GPT2* model, int B, int T) {
    if (model->alloc_B > 0) return;
    const GPT2Config& c = model->config;
    size_t L = c.num_layers, C = c.channels, NH = c.num_heads, Vp = c.padded_vocab_size, BT = (size_t)B * T;
    bool block_ln = c.variant.norm == NORM_LN, final_ln = c.variant.norm != NORM_NONE_ALL;
    ActivationTensors& a = model->acts;
    a.encoded = gpt2_alloc<floatX>(model, BT * C, "activations");
    a.ln1 = block_ln ? gpt2_alloc<floatX>(model, L * BT * C, "activations") : NULL;
    a.ln1_mean = block_ln ? gpt2_alloc<float>(model, L * BT, "activations") : NULL;
    a.ln1_rstd = block_ln ? gpt2_alloc<float>(model, L * BT, "activations") : NULL;
    a.qkv = gpt2_alloc<floatX>(model, L * BT * 3 * C, "activations");
    a.atty = gpt2_alloc<floatX>(model, L * BT * C, "activations");
    a.att_lse = gpt2_alloc<float>(model, L * B * NH * T, "activations");
    a.residual2 = gpt2_alloc<floatX>(model, L * BT * C, "activations");
    a.ln2 = block_ln ? gpt2_alloc<floatX>(model, L * BT * C, "activations") : NULL;
    a.ln2_mean = block_ln ? gpt2_alloc<float>(model, L * BT, "activations") : NULL;
    a.ln2_rstd = block_ln ? gpt2_alloc<float>(model, L * BT, "activations") : NULL;
    a.fch = gpt2_alloc<floatX>(model, L * BT * 4 * C, "activations");
    a.fch_act = act_in_place(c.variant.act) ? NULL : gpt2_alloc<floatX>(model, (RECOMPUTE_ACT ? 1 : L) * BT * 4 * C, "activations");
    a.residual3 = gpt2_alloc<floatX>(model, L * BT * C, "activations");
    a.lnf = final_ln ? gpt2_alloc<floatX>(model, BT * C, "activations") : NULL;
    a.lnf_mean = final_ln ? gpt2_alloc<float>(model, BT, "activations") : NULL;
    a.lnf_rstd = final_ln ? gpt2_alloc<float>(model, BT, "activations") : NULL;
    a.logits = gpt2_alloc<floatX>(model, BT * Vp, "logits");
    a.losses = gpt2_alloc<float>(model, BT, "losses");
    BackwardScratch& s = model->scratch;
    s.dresidual = gpt2_alloc<floatX>(model, BT * C, "gradient scratch");
    s.dln = gpt2_alloc<floatX>(model, BT * C, "gradient scratch");
    s.datty = gpt2_alloc<floatX>(model, BT * C, "gradient scratch");
    s.dqkv = gpt2_alloc<floatX>(model, BT * 3 * C, "gradient scratch");
    s.dfch = gpt2_alloc<floatX>(model, BT * 4 * C, "gradient scratch");
    s.att_D = gpt2_alloc<float>(model, (size_t)B * NH * T, "gradient scratch");
    size_t colsum_floats = std::max({colsum_scratch_floats((int)BT, 4 * (int)C), layernorm_scratch_floats((int)BT, (int)C),
                                     attention_backward_scratch_floats((int)B, (int)T, (int)C)});
    s.colsum = gpt2_alloc<float>(model, colsum_floats, "gradient scratch");
    s.slope = gpt2_alloc<double>(model, activation_scratch_doubles((int)BT, 4 * (int)C), "gradient scratch");
    model->d_ent_partial = gpt2_alloc<float>(model, L * B * NH * att_num_qtiles(T), "entropy partials");
    model->d_paper_partial = gpt2_alloc<float>(model, 2 * L * B * NH * att_num_qtiles(T), "entropy partials");
    size_t token_ints = 5 * BT + 2;
    model->d_tokens = gpt2_alloc<int>(model, token_ints, "tokens");
    for (int i = 0; i < 2; i++) {
        model->h_tokens[i] = gpt2_pinned<int>(model, token_ints, "tokens");
        cudaCheck(cudaEventRecord(model->tokens_copied[i], g_stream));  // "free" from the start
    }
    model->alloc_B = B;
    model->alloc_T = T;
}

// Parts of the token block (offsets by the allocated size, so that smaller batches fit).
inline int* tokens_inputs(GPT2* m, int* base) { return base; }
inline int* tokens_targets(GPT2* m, int* base) { return base + (size_t)m->alloc_B * m->alloc_T; }
inline int* tokens_sorted_pos(GPT2* m, int* base) { return base + 2 * (size_t)m->alloc_B * m->alloc_T; }
inline int* tokens_seg_tok(GPT2* m, int* base) { return base + 3 * (size_t)m->alloc_B * m->alloc_T; }
inline int* tokens_seg_start(GPT2* m, int* base) { return base + 4 * (size_t)m->alloc_B * m->alloc_T; }

// Stages a batch: inputs, targets (B, T), host arrays; targets may be NULL (no loss). Checks the
// ids, groups the positions by token for the encoder backward, and copies it all to the device
// asynchronously through a pinned buffer (two, alternating: the host waits only if the copy
// from two batches ago has not run yet).
void gpt2_set_batch(GPT2* model, const int* inputs, const int* targets, int B, int T) {
    const GPT2Config& cfg = model->config;
    int V = cfg.vocab_size;
    if (T > cfg.max_seq_len) fail("sequence length %d is longer than the model's maximum %d (use a smaller -t)", T, cfg.max_seq_len);
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= V || (targets && (targets[i] < 0 || targets[i] >= V)))
            fail("token id outside the vocabulary of %d at position %d", V, i);
    }
    if (model->alloc_B == 0) gpt2_allocate_activations(model, B, T);
    if (B > model->alloc_B || T > model->alloc_T || (size_t)B * T > (size_t)model->alloc_B * model->alloc_T)
        fail("internal: batch B=%d T=%d larger than the allocated B=%d T=%d", B, T, model->alloc_B, model->alloc_T);
    int slot = model->token_slot;
    model->token_slot ^= 1;
    cudaCheck(cudaEventSynchronize(model->tokens_copied[slot]));
    int* h = model->h_tokens[slot];
    int BT = B * T;
    memcpy(tokens_inputs(model, h), inputs, BT * sizeof(int));
    size_t count = BT;
    if (targets) {
        memcpy(tokens_targets(model, h), targets, BT * sizeof(int));
        model->num_unique = encoder_buckets(inputs, BT, tokens_sorted_pos(model, h), tokens_seg_tok(model, h),
                                            tokens_seg_start(model, h));
        count = 5 * (size_t)model->alloc_B * model->alloc_T + 2;
    }
    prof_mark("tokens to device");
    cudaCheck(cudaMemcpyAsync(model->d_tokens, h, count * sizeof(int), cudaMemcpyHostToDevice, g_stream));
    cudaCheck(cudaEventRecord(model->tokens_copied[slot], g_stream));
    model->batch_size = B;
    model->seq_len = T;
    model->has_targets = targets != NULL;
}

// Layer l's slices of the per-layer activations, laid out by the staged batch's B*T, as the
// forward writes them and the backward reads them. Without block LayerNorms the "normalized"
// inputs ARE the residual stream (aliased, not copied): ln1 is the layer's input and ln2 is
// residual2. f = act(h) is written over h for ReLU and identity (act_in_place), and lives in a
// one-layer scratch with RECOMPUTE_FFN_ACT.
struct LayerActs {
    floatX* residual;   // (B, T, C)   the layer's input: encoded, or residual3 of layer l-1
    floatX* ln1;        // (B, T, C)   = residual without block LayerNorms
    float* ln1_mean;    // (B, T)      NULL without block LayerNorms
    float* ln1_rstd;    // (B, T)      NULL without block LayerNorms
    floatX* qkv;        // (B, T, 3C)
    floatX* atty;       // (B, T, C)
    float* lse;         // (B, NH, T)  log-sum-exp of each attention row
    floatX* residual2;  // (B, T, C)
    floatX* ln2;        // (B, T, C)   = residual2 without block LayerNorms
    float* ln2_mean;    // (B, T)      NULL without block LayerNorms
    float* ln2_rstd;    // (B, T)      NULL without block LayerNorms
    floatX* fch;        // (B, T, 4C)  FFN pre-activation h
    floatX* fch_act;    // (B, T, 4C)  f = act(h): fch itself for ReLU and identity
    floatX* residual3;  // (B, T, C)   the layer's output
};

inline LayerActs layer_acts(const GPT2* model, int l) {
    const GPT2Config& c = model->config;
    const ActivationTensors& a = model->acts;
    bool block_ln = c.variant.norm == NORM_LN;
    size_t N = (size_t)model->batch_size * model->seq_len, BTC = N * c.channels;
    LayerActs la;
    la.residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BTC;
    la.ln1 = block_ln ? a.ln1 + l * BTC : la.residual;
    la.ln1_mean = block_ln ? a.ln1_mean + l * N : NULL;
    la.ln1_rstd = block_ln ? a.ln1_rstd + l * N : NULL;
    la.qkv = a.qkv + l * BTC * 3;
    la.atty = a.atty + l * BTC;
    la.lse = a.att_lse + l * N * c.num_heads;
    la.residual2 = a.residual2 + l * BTC;
    la.ln2 = block_ln ? a.ln2 + l * BTC : la.residual2;
    la.ln2_mean = block_ln ? a.ln2_mean + l * N : NULL;
    la.ln2_rstd = block_ln ? a.ln2_rstd + l * N : NULL;
    la.fch = a.fch + l * BTC * 4;
    la.fch_act = act_in_place(c.variant.act) ? la.fch : a.fch_act + (RECOMPUTE_ACT ? 0 : l * BTC * 4);
    la.residual3 = a.residual3 + l * BTC;
    return la;
}

// The slope of layer l: a device pointer into the fp32 master for a learnable one (and its
// gradient), else the fixed value.
inline void layer_slope(GPT2* model, int l, float* fixed, const float** ptr, float** grad) {
    int act = model->config.variant.act;
    *fixed = model->config.variant.slope;
    *ptr = NULL;
    *grad = NULL;
#ifdef USE_MPI
    const float* live = model->d_slopes_live;  // the master holds only this rank's slice
#else
    const float* live = model->master.slopes;
#endif
    if (act == ACT_LRELU_LAYER) { *ptr = live + l; *grad = model->g.slopes + l; }
    if (act == ACT_LRELU_GLOBAL) { *ptr = live; *grad = model->g.slopes; }
}

// The forward pass of the staged batch (gpt2_set_batch). measure: count non-finite attention
// scores and FFN activations into the step's per-layer counters; entropy: add the per-head
// entropy sums to the step's; grad_multiplier >= 0: the classifier also writes dlogits for
// grad_multiplier * mean loss (gradient accumulation: 1/micro-batches); loss_acc (device, or
// NULL): += the batch's mean loss.
void gpt2_forward(GPT2* model, bool measure, bool entropy, float grad_multiplier, double* loss_acc) {
    const GPT2Config& cfg = model->config;
    int B = model->batch_size, T = model->seq_len;
    int V = cfg.vocab_size, Vp = cfg.padded_vocab_size, L = cfg.num_layers, NH = cfg.num_heads, C = cfg.channels;
    int N = B * T;
    ParameterTensors<floatX>& p = model->w;
    ActivationTensors& a = model->acts;
    bool block_ln = cfg.variant.norm == NORM_LN;
    size_t BTC = (size_t)N * C;
    int qtiles = att_num_qtiles(T);
    const int* inputs = tokens_inputs(model, model->d_tokens);
    entropy = entropy && measure;
    bool diag = measure && model->want_diag;

    prof_mark("encoder fwd");
    encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);  // (B,T,C)
    for (int l = 0; l < L; l++) {
        LayerActs la = layer_acts(model, l);
        // LN-free: no LayerNorms; la.ln1 and la.ln2 are the residual stream itself
        if (block_ln) {
            prof_mark("layernorm fwd");
            layernorm_forward(la.ln1, la.ln1_mean, la.ln1_rstd, la.residual, p.ln1w + l * C, p.ln1b + l * C, N, C);
        }
        prof_mark("matmul fwd: qkv");
        matmul_forward(la.qkv, la.ln1, p.qkvw + (size_t)l * 3 * C * C, p.qkvb + l * 3 * C, N, C, 3 * C);
        prof_mark(entropy ? "attention fwd + entropy" : "attention fwd");
        attention_forward_any(la.atty, la.lse, entropy ? model->d_ent_partial + (size_t)l * B * NH * qtiles : NULL,
                              measure ? model->d_att_bad + l : NULL, la.qkv, B, T, C, NH,
                              entropy ? model->d_paper_partial + (size_t)l * 2 * B * NH * qtiles : NULL);
        // residual2 = residual + atty Wo^T + bo (the residual is the product's C input)
        prof_mark("matmul fwd: attn proj + residual");
        matmul_forward(la.residual2, la.atty, p.attprojw + (size_t)l * C * C, p.attprojb + l * C, N, C, C, la.residual);
        if (block_ln) {
            prof_mark("layernorm fwd");
            layernorm_forward(la.ln2, la.ln2_mean, la.ln2_rstd, la.residual2, p.ln2w + l * C, p.ln2b + l * C, N, C);
        }
        prof_mark("matmul fwd: fc");
        matmul_forward(la.fch, la.ln2, p.fcw + (size_t)l * 4 * C * C, p.fcb + l * 4 * C, N, C, 4 * C);
        float slope;
        const float* slope_ptr;
        float* slope_grad;
        layer_slope(model, l, &slope, &slope_ptr, &slope_grad);
        if (diag) {  // before the activation: ReLU and identity write f over h
            prof_mark("diagnostics");
            diag_layer(model->d_diag + (size_t)l * DIAG_SUMS, la.residual, la.qkv, la.fch, B, T, C, NH);
        }
        prof_mark("activation fwd");
        activation_forward(la.fch_act, la.fch, BTC * 4, cfg.variant.act, slope, slope_ptr, measure ? model->d_ffn_bad + l : NULL);
        prof_mark("matmul fwd: fc proj + residual");
        matmul_forward(la.residual3, la.fch_act, p.fcprojw + (size_t)l * 4 * C * C, p.fcprojb + l * C, N, 4 * C, C, la.residual2);
    }
    prof_mark("entropy reduce");
    if (entropy) entropy_reduce(model->d_entropy_sum, model->d_ent_partial, L, B, NH, T);
    if (entropy) paper_reduce(model->d_paper_sum, model->d_paper_partial, L, B, NH, T);
    floatX* residual = a.residual3 + (L - 1) * BTC;
    floatX* lnf = residual;
    if (cfg.variant.norm != NORM_NONE_ALL) {
        lnf = a.lnf;
        prof_mark("layernorm fwd");
        layernorm_forward(lnf, a.lnf_mean, a.lnf_rstd, residual, p.lnfw, p.lnfb, N, C);
    }
    prof_mark("matmul fwd: lm head");
    matmul_forward(a.logits, lnf, p.wte, NULL, N, C, Vp);  // tied: the LM head is wte
    model->dlogits_ready = false;
    if (model->has_targets) {
        const int* targets = tokens_targets(model, model->d_tokens);
        bool grad = grad_multiplier >= 0.0f;
        prof_mark("classifier: loss + dlogits");
        classifier_forward(a.logits, a.losses, targets, N, V, Vp, grad, grad_multiplier / N,
                           USE_LOSS_SCALER ? &model->d_scaler->scale : NULL);
        model->dlogits_ready = grad;
        prof_mark("loss mean");
        if (loss_acc) loss_mean_accumulate(loss_acc, a.losses, N);
    }
}

void gpt2_zero_grad(GPT2* model) {
    cudaCheck(cudaMemsetAsync(model->d_grads, 0, model->num_params * sizeof(float), g_stream));
}

// Adds the gradient of grad_multiplier * (mean loss of the last forward) (times the fp16 loss
// scale) to the parameter gradients. Uses the dlogits the forward left, or computes them.
void gpt2_backward(GPT2* model, float grad_multiplier) {
    const GPT2Config& cfg = model->config;
    if (!model->has_targets) fail("internal: backward without a forward that had targets");
    int B = model->batch_size, T = model->seq_len;
    int V = cfg.vocab_size, Vp = cfg.padded_vocab_size, L = cfg.num_layers, NH = cfg.num_heads, C = cfg.channels;
    int N = B * T;
    ParameterTensors<floatX>& p = model->w;
    ParameterTensors<float>& g = model->g;
    ActivationTensors& a = model->acts;
    BackwardScratch& s = model->scratch;
    bool block_ln = cfg.variant.norm == NORM_LN;
    size_t BTC = (size_t)N * C;
    const int* d_tok = model->d_tokens;

    if (!model->dlogits_ready) {
        prof_mark("classifier: loss + dlogits");
        classifier_forward(a.logits, a.losses, tokens_targets(model, model->d_tokens), N, V, Vp, true, grad_multiplier / N,
                           USE_LOSS_SCALER ? &model->d_scaler->scale : NULL);
    }
    model->dlogits_ready = false;
    // the tied LM head, then the final LayerNorm; dresidual is overwritten here (first writer).
    // A LayerNorm backward also sums the dresidual it writes over rows: the bias gradient of the
    // projection that wrote that residual (the final one's: the top layer's fc projection)
    floatX* residual = a.residual3 + (L - 1) * BTC;
    bool final_ln = cfg.variant.norm != NORM_NONE_ALL;
    if (final_ln) {
        prof_mark("matmul bwd dx: lm head");
        matmul_backward_input(s.dln, a.logits, p.wte, N, C, Vp, false);
        prof_mark("matmul bwd dW: lm head");
        matmul_backward_weight(g.wte, a.logits, a.lnf, N, C, Vp);
        prof_mark("layernorm bwd + proj bias grads");
        layernorm_backward(s.dresidual, g.lnfw, g.lnfb, g.fcprojb + (L - 1) * C, s.dln, residual, p.lnfw, a.lnf_mean,
                           a.lnf_rstd, N, C, false, s.colsum);
    } else {
        prof_mark("matmul bwd dx: lm head");
        matmul_backward_input(s.dresidual, a.logits, p.wte, N, C, Vp, false);
        prof_mark("matmul bwd dW: lm head");
        matmul_backward_weight(g.wte, a.logits, residual, N, C, Vp);
    }

    for (int l = L - 1; l >= 0; l--) {
        // s.dresidual holds d residual3[l]
        LayerActs la = layer_acts(model, l);
        float slope;
        const float* slope_ptr;
        float* slope_grad;
        layer_slope(model, l, &slope, &slope_ptr, &slope_grad);

        // MLP: residual3 = residual2 + act(ln2 Wfc^T + bfc) Wproj^T + bproj
        bool in_place = act_in_place(cfg.variant.act);
        prof_mark("activation fwd");
        if (RECOMPUTE_ACT && !in_place) activation_forward(la.fch_act, la.fch, BTC * 4, cfg.variant.act, slope, slope_ptr, NULL);
        prof_mark("matmul bwd dx: fc proj");
        matmul_backward_input(s.dfch, s.dresidual, p.fcprojw + (size_t)l * 4 * C * C, N, 4 * C, C, false);
        prof_mark("matmul bwd dW: fc proj");
        matmul_backward_weight(g.fcprojw + (size_t)l * 4 * C * C, s.dresidual, la.fch_act, N, 4 * C, C);
        if (!block_ln && !(l == L - 1 && final_ln)) {  // else a LayerNorm backward summed it
            prof_mark("bias grads");
            matmul_backward_bias(g.fcprojb + l * C, s.dresidual, N, C, s.colsum);
        }
        // dfch in place, and its column sums: the fc bias gradient
        prof_mark("activation bwd + fc bias grad");
        activation_backward_bias(s.dfch, g.fcb + l * 4 * C, la.fch, s.dfch, N, 4 * C, cfg.variant.act, slope, slope_ptr,
                                 slope_grad, s.colsum, s.slope);
        // LN-free: dm is the residual's gradient itself, accumulated straight into dresidual
        prof_mark("matmul bwd dx: fc");
        matmul_backward_input(block_ln ? s.dln : s.dresidual, s.dfch, p.fcw + (size_t)l * 4 * C * C, N, C, 4 * C, !block_ln);
        prof_mark("matmul bwd dW: fc");
        matmul_backward_weight(g.fcw + (size_t)l * 4 * C * C, s.dfch, la.ln2, N, C, 4 * C);
        prof_mark("layernorm bwd + proj bias grads");
        if (block_ln)
            layernorm_backward(s.dresidual, g.ln2w + l * C, g.ln2b + l * C, g.attprojb + l * C, s.dln, la.residual2,
                               p.ln2w + l * C, la.ln2_mean, la.ln2_rstd, N, C, true, s.colsum);
        // s.dresidual holds d residual2[l]. Attention: residual2 = residual + atty Wo^T + bo
        prof_mark("matmul bwd dx: attn proj");
        matmul_backward_input(s.datty, s.dresidual, p.attprojw + (size_t)l * C * C, N, C, C, false);
        prof_mark("matmul bwd dW: attn proj");
        matmul_backward_weight(g.attprojw + (size_t)l * C * C, s.dresidual, la.atty, N, C, C);
        if (!block_ln) {  // else ln2's backward summed it
            prof_mark("bias grads");
            matmul_backward_bias(g.attprojb + l * C, s.dresidual, N, C, s.colsum);
        }
        prof_mark("attention bwd + qkv bias grad");
        attention_backward_any(s.dqkv, g.qkvb + l * 3 * C, s.att_D, s.datty, la.qkv, la.atty, la.lse, B, T, C, NH, s.colsum);
        prof_mark("matmul bwd dx: qkv");
        matmul_backward_input(block_ln ? s.dln : s.dresidual, s.dqkv, p.qkvw + (size_t)l * 3 * C * C, N, C, 3 * C, !block_ln);
        prof_mark("matmul bwd dW: qkv");
        matmul_backward_weight(g.qkvw + (size_t)l * 3 * C * C, s.dqkv, la.ln1, N, C, 3 * C);
        prof_mark("layernorm bwd + proj bias grads");
        if (block_ln)
            layernorm_backward(s.dresidual, g.ln1w + l * C, g.ln1b + l * C, l > 0 ? g.fcprojb + (l - 1) * C : NULL, s.dln,
                               la.residual, p.ln1w + l * C, la.ln1_mean, la.ln1_rstd, N, C, true, s.colsum);
        // s.dresidual holds d residual3[l-1] (d encoded for l = 0)
    }
    prof_mark("encoder bwd");
    encoder_backward(g.wte, g.wpe, s.dresidual, tokens_sorted_pos(model, (int*)d_tok), tokens_seg_tok(model, (int*)d_tok),
                     tokens_seg_start(model, (int*)d_tok), model->num_unique, B, T, C);
}

// Starts a step's measurements: loss sum, counters and entropy sums at zero.
void gpt2_step_begin(GPT2* model) {
    prof_mark("step begin");
    cudaCheck(cudaMemsetAsync(model->d_result, 0, model->layout.total, g_stream));
}

struct StepOptions {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
    int adam_t;        // AdamW's step count if this update is applied (1, 2, ...)
    int micro_batches;
    bool log_anyway;   // --on-nan log: apply even a non-finite update
};

// AdamW over the parameters [lo, hi) of the flat array, tensor by tensor (weight decay is per
// tensor): the master weights and moments hold [lo, hi) from their start (all of it in one
// process, this rank's ZeRO-1 slice under USE_MPI); grads and `working` (the floatX copy, or NULL
// when the master is the working copy) are the whole array.
void adamw_range(GPT2* model, const StepOptions& o, size_t lo, size_t hi, floatX* working) {
    AdamWArgs args = adamw_args(o.lr, o.beta1, o.beta2, o.eps, o.adam_t);
    size_t offset = 0;
    for (int k = 0; k < NUM_ALL_TENSORS; k++) {
        size_t first = std::max(offset, lo), end = std::min(offset + model->param_sizes[k], hi);  // tensor k in [lo, hi)
        if (end > first) {
            float decay = adamw_decay(o.lr, o.weight_decay, param_tensor_decays(k));
            size_t at = first - lo;  // in the master and moment buffers
            adamw_update(model->d_master + at, working ? working + first : NULL, model->d_grads + first, model->d_m + at,
                         model->d_v + at, end - first, decay, args, model->d_header);
        }
        offset += model->param_sizes[k];
    }
}

#ifdef USE_MPI
// The step's end under data parallelism, steps 1-5 of llmc/zero.cuh: the measurements summed
// over ranks, the gradients reduce-scattered, the global norm from every rank's slice, the same
// verdict on every rank, AdamW on this rank's slice, the weights and slopes gathered.
// o.micro_batches counts the micro-batches of all ranks (the loss sum is over all of them).
void gpt2_step_end_sharded(GPT2* model, const StepOptions& o) {
    const GPT2Config& c = model->config;
    ZeroShard* z = &model->zero;
    prof_mark("step end: all-reduce measurements, reduce-scatter grads");
    zero_sum_measurements(z, &model->d_header->loss_sum, model->d_att_bad, 2 * c.num_layers, model->d_entropy_sum,
                          3 * c.num_layers * c.num_heads);  // att_bad, ffn_bad adjacent; entropy then the paper's two sums
    zero_reduce_scatter_grads(z, model->d_grads);
    prof_mark("step end: grad norm, guard");
    grad_norm_partials(model->d_norm_partials, model->d_grads + z->lo, z->hi - z->lo);
    zero_sum_partials(z, model->d_norm_partials, NORM_BLOCKS);
    step_verdict(model->d_header, model->d_scaler, model->d_norm_partials, model->d_att_bad, model->d_ffn_bad, c.num_layers,
                 o.micro_batches, o.grad_clip, o.log_anyway, USE_LOSS_SCALER);
    prof_mark("step end: adamw on this rank's slice");
    adamw_range(model, o, z->lo, z->hi, model->d_weights);
    prof_mark("step end: all-gather weights");
    zero_all_gather_weights(z, model->d_weights);
    zero_sync_slopes(z, model->d_slopes_live, model->d_master, z->n - model->num_slopes, model->num_slopes);
    // AdamW zeroed the gradients of this rank's slice; the rest still holds its own sums
    if (z->size > 1)
        cudaCheck(cudaMemsetAsync(model->d_grads, 0, z->shard * z->size * sizeof(float), g_stream));
}
#endif

// Ends a step on the device: gradient norm, NaN guard, clipping, loss scaling, AdamW (if the
// verdict allows), then copies the measurements to pinned slot `slot` and records step_end[slot].
void gpt2_step_end(GPT2* model, const StepOptions& o, int slot) {
#ifdef USE_MPI
    gpt2_step_end_sharded(model, o);
    const float* slopes_now = model->d_slopes_live;
#else
    const GPT2Config& c = model->config;
    prof_mark("step end: grad norm, guard");
    step_finalize(model->d_header, model->d_scaler, model->d_norm_partials, model->d_grads, model->num_params,
                  model->d_att_bad, model->d_ffn_bad, c.num_layers, o.micro_batches, o.grad_clip, o.log_anyway, USE_LOSS_SCALER);
    prof_mark("step end: adamw");
#if defined(ENABLE_FP32)
    adamw_range(model, o, 0, model->num_params, NULL);  // the master is the working copy
#else
    adamw_range(model, o, 0, model->num_params, model->d_weights);
#endif
    const float* slopes_now = model->master.slopes;
#endif
    prof_mark("step end: results to host");
    if (model->num_slopes > 0)
        cudaCheck(cudaMemcpyAsync(model->d_slopes_out, slopes_now, model->num_slopes * sizeof(float),
                                  cudaMemcpyDeviceToDevice, g_stream));
    cudaCheck(cudaMemcpyAsync(model->h_result[slot], model->d_result, model->layout.total, cudaMemcpyDeviceToHost, g_stream));
    cudaCheck(cudaEventRecord(model->step_end[slot], g_stream));
}

// Views of a pinned step result.
inline const StepHeader* result_header(const GPT2* m, int slot) { return (const StepHeader*)m->h_result[slot]; }
inline const unsigned long long* result_att_bad(const GPT2* m, int slot) { return (const unsigned long long*)(m->h_result[slot] + m->layout.att_bad); }
inline const unsigned long long* result_ffn_bad(const GPT2* m, int slot) { return (const unsigned long long*)(m->h_result[slot] + m->layout.ffn_bad); }
inline const double* result_entropy(const GPT2* m, int slot) { return (const double*)(m->h_result[slot] + m->layout.entropy); }
inline const double* result_paper(const GPT2* m, int slot) { return (const double*)(m->h_result[slot] + m->layout.paper); }
inline const float* result_slopes(const GPT2* m, int slot) { return (const float*)(m->h_result[slot] + m->layout.slopes); }
inline const double* result_diag(const GPT2* m, int slot) { return (const double*)(m->h_result[slot] + m->layout.diag); }

// Per-head mean entropy (L, NH) of a step result whose passes measured `rows` rows per head.
void result_entropies(const GPT2* model, int slot, long rows, float* out) {
    const double* sums = result_entropy(model, slot);
    for (int i = 0; i < model->config.num_layers * model->config.num_heads; i++)
        out[i] = rows > 0 ? (float)(sums[i] / rows) : 0.0f;
}

// fp16 loss scaling state (scale, clean steps, overflows), synchronously.
ScalerState gpt2_scaler(const GPT2* model) {
    ScalerState s;
    cudaCheck(cudaStreamSynchronize(g_stream));
    cudaCheck(cudaMemcpy(&s, model->d_scaler, sizeof(s), cudaMemcpyDeviceToHost));
    return s;
}

void gpt2_set_scaler(GPT2* model, const ScalerState& s) {
    cudaCheck(cudaMemcpy(model->d_scaler, &s, sizeof(s), cudaMemcpyHostToDevice));
}

void gpt2_free(GPT2* model) {
    cudaCheck(cudaStreamSynchronize(g_stream));
    for (auto& a : model->device_allocs) device_free(a.first, a.second);
    for (void* p : model->pinned_allocs) cudaCheck(cudaFreeHost(p));
    model->device_allocs.clear();
    model->pinned_allocs.clear();
    for (int i = 0; i < 2; i++) {
        cudaCheck(cudaEventDestroy(model->step_start[i]));
        cudaCheck(cudaEventDestroy(model->step_end[i]));
        cudaCheck(cudaEventDestroy(model->tokens_copied[i]));
    }
    free(model->params_memory);
    model->params_memory = NULL;
#ifdef USE_MPI
    zero_free(&model->zero);
#endif
}

#ifndef TESTING
// ----------------------------------------------------------------------------
// Training

// Mean loss over the first max_batches (global) batches of the validation set (one wait, at the
// end); each rank runs its slice of every batch.
float evaluate(GPT2* model, DataLoader* val, int max_batches) {
    dataloader_reset(val);
    int64_t n = dataloader_batches_per_epoch(val);
    if (max_batches > 0 && max_batches < n) n = max_batches;
    cudaCheck(cudaMemsetAsync(model->d_loss_acc, 0, sizeof(double), g_stream));
    for (int64_t i = 0; i < n; i++) {
        dataloader_next_batch(val);
        gpt2_set_batch(model, val->inputs, val->targets, val->B, val->T);
        gpt2_forward(model, false, false, -1.0f, model->d_loss_acc);
    }
    double sum;
    cudaCheck(cudaMemcpyAsync(&sum, model->d_loss_acc, sizeof(double), cudaMemcpyDeviceToHost, g_stream));
    cudaCheck(cudaStreamSynchronize(g_stream));
    mp_sum(&sum, 1);
    return (float)(sum / (n * mp_size()));
}

// Generates up to n tokens after the end-of-text token and prints them (as the CPU trainer:
// the probabilities of the last position, in fp32 on the host, and one uniform draw per token).
void sample(GPT2* model, const Tokenizer* tok, Rng* rng, int n, int train_T) {
    int V = model->config.vocab_size, Vp = model->config.padded_vocab_size;
    n = std::min(n, train_T - 1);
    std::vector<int> tokens(n + 1, 0);
    std::vector<floatX> row(Vp);
    std::vector<float> probs(V);
    tokens[0] = tok->eot_token < V ? tok->eot_token : 0;
    printf("sample: ");
    for (int t = 1; t <= n; t++) {
        gpt2_set_batch(model, tokens.data(), NULL, 1, t);
        gpt2_forward(model, false, false, -1.0f, NULL);
        cudaCheck(cudaMemcpyAsync(row.data(), model->acts.logits + (size_t)(t - 1) * Vp, Vp * sizeof(floatX),
                                  cudaMemcpyDeviceToHost, g_stream));
        cudaCheck(cudaStreamSynchronize(g_stream));
        float maxval = -INFINITY;
        for (int i = 0; i < V; i++) maxval = fmaxf(maxval, to_float(row[i]));
        float sum = 0.0f;
        for (int i = 0; i < V; i++) {
            probs[i] = expf(to_float(row[i]) - maxval);
            sum += probs[i];
        }
        int next = rng_categorical(rng, probs.data(), V, 1.0f / sum);  // the softmax: probs / sum
        tokens[t] = next;
        printf("%s", tokenizer_decode(tok, next).c_str());
    }
    printf("\n");
}

// model and state files, then the DONE marker, as the CPU trainer; the FP16 build's loss scaler
// goes into the state file's header (other builds write it absent). Waits for the device: the
// parameters, AdamW state and loss scale must be those after `state.step` steps. USE_MPI: every
// rank calls it; the slices are gathered and rank 0 alone writes.
void save_checkpoint(GPT2* model, const std::string& dir, TrainState state) {
    std::string model_path = checkpoint_path(dir, "model", state.step, ".bin");
    std::string state_path = checkpoint_path(dir, "state", state.step, ".bin");
    gpt2_download_params(model);
    // never a complete checkpoint of non-finite parameters (one its own resume would refuse).
    // Rank 0 holds them all (the others' copies are stale); fail_nonfinite ends every rank.
    if (mp_is_root() && !all_finite(model->params_memory, model->num_params))
        fail_nonfinite("non-finite parameters at step %d: checkpoint not written, stopped", state.step);
    std::vector<float> m(model->num_params), v(model->num_params);
#ifdef USE_MPI
    zero_gather_to_root_host(&model->zero, model->d_m, m.data());
    zero_gather_to_root_host(&model->zero, model->d_v, v.data());
    if (!mp_is_root()) return;
#else
    cudaCheck(cudaMemcpy(m.data(), model->d_m, model->num_params * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(v.data(), model->d_v, model->num_params * sizeof(float), cudaMemcpyDeviceToHost));
#endif
    state.scaler = LossScalerRecord{0, 0.0f, 0, 0};
    if (USE_LOSS_SCALER) {
        ScalerState s = gpt2_scaler(model);
        state.scaler = LossScalerRecord{1, s.scale, s.clean_steps, s.overflows};
    }
    write_model_file(model_path.c_str(), model->config, model->params_memory);
    write_state_file(state_path.c_str(), state, model->num_params - model->num_slopes, model->num_slopes, m.data(), v.data());
    write_done_marker(dir, state.step);
    printf("checkpoint: %s\n", model_path.c_str());
}

// A step whose results are still on their way to the host.
struct PendingStep {
    bool valid;
    int step;
    int slot;
    float lr;
    bool log_entropy;
    bool log_diag;
};

int main(int argc, char** argv) {
    mp_init(&argc, &argv);  // one process, or rank mp_rank() of mp_size() under mpirun (USE_MPI=1)
    TrainConfig cfg;
    parse_flags(argc, argv, &cfg);
    setvbuf(stdout, NULL, _IOLBF, 0);
    // --fp16-autocast: the FP16 build is the paper's fp16 regime (entropy.cuh att_score), the others never
    if (cfg.fp16_autocast == 1 && !USE_LOSS_SCALER)
        fail("--fp16-autocast 1 needs the FP16 build (make -f cuda.mk train_gpt2cu PRECISION=FP16); this one is %s", PRECISION_NAME);
    if (cfg.fp16_autocast == 0 && USE_LOSS_SCALER)
        fail("--fp16-autocast 0: the FP16 build always rounds as fp16 autocast does; use PRECISION=BF16 or FP32 for another regime");
    cuda_setup();
    g_matmul_autotune = cfg.matmul_autotune == 1;
    if (g_matmul_autotune) printf("matmul autotune: on (each product's first call times its candidates)\n");

    // the model: a checkpoint to resume, a model file, or a descriptor
    GPT2 model;
    TrainState state = {};
    ModelSource source = model_source(cfg);
    int resume_step = source.resume_step;  // -1: a fresh run
    if (source.path.empty()) gpt2_build_from_random(&model, source.config, (uint64_t)cfg.seed);
    else gpt2_build_from_file(&model, source.path.c_str(), &cfg);
    const GPT2Config& mc = model.config;
    int B = cfg.B, T = cfg.T, L = mc.num_layers, NH = mc.num_heads;

    // data, and the run's shape: grad_accum micro-batches of B x T tokens per step, `steps` steps
    DataLoader train, val;
    RunPlan plan = open_data(cfg, mc, &train, &val);
    long total_batch = plan.total_batch, steps = plan.steps;
    int grad_accum = plan.grad_accum;
    bool validating = plan.validating;
    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, find_tokenizer(cfg.train_pattern).c_str());
    rng_seed(&state.sample_rng, (uint64_t)cfg.seed + 1);

    // resume: optimizer, data position, RNGs (and the fp16 loss scale) exactly as they were
    if (resume_step >= 0) {
        std::string path = checkpoint_path(cfg.output_dir, "state", resume_step, ".bin");
        std::vector<float> m(model.num_params), v(model.num_params);
        read_state_file(path.c_str(), resume_step, &state, model.num_params - model.num_slopes, model.num_slopes, m.data(),
                        v.data());
        check_resume_step(plan, state.step, path.c_str());
        size_t lo = 0, hi = model.num_params;  // USE_MPI: this rank's slice
#ifdef USE_MPI
        lo = model.zero.lo;
        hi = model.zero.hi;
#endif
        cudaCheck(cudaMemcpy(model.d_m, m.data() + lo, (hi - lo) * sizeof(float), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(model.d_v, v.data() + lo, (hi - lo) * sizeof(float), cudaMemcpyHostToDevice));
        // fp16: the loss scale goes on from the checkpoint's (a state without one, from another
        // build or the CPU trainer, leaves it at its start); other builds ignore the record
        if (USE_LOSS_SCALER && state.scaler.present)
            gpt2_set_scaler(&model, ScalerState{state.scaler.scale, state.scaler.clean_steps, state.scaler.overflows, 0});
        dataloader_restore(&train, state.loader);
        printf("resumed from %s (step %d)\n", path.c_str(), state.step);
    }
    Logger logger;
    open_output(&logger, cfg, resume_step, model.num_slopes > 0);  // rank 0 only
    LRSchedule schedule = {cfg.schedule, cfg.lr, cfg.warmup, cfg.final_frac, (int)steps};

    print_run_config(cfg, mc, model.num_params, &train, plan);
    if (mp_size() > 1)
        printf("ranks: %d GPUs data-parallel, B=%d each (global batch %d sequences), ZeRO-1 slices of %zu parameters\n",
               mp_size(), B, B * mp_size(), mp_shard_size(model.num_params, mp_size()));
    printf("device: %s, %d SMs, precision %s%s\n", g_device_prop.name, g_device_prop.multiProcessorCount, PRECISION_NAME,
           USE_LOSS_SCALER ? " with dynamic loss scaling" : "");

    std::vector<float> entropy((size_t)L * NH), paper_entropy((size_t)L * NH), paper_nan((size_t)L * NH);
    std::vector<long> att_bad(L), ffn_bad(L);
    std::vector<float> slopes(model.num_slopes);
    if (cfg.diag_every > 0) diag_check_shape(mc.channels, NH);
    std::vector<double> diag_sums((size_t)L * DIAG_SUMS);
    std::vector<float> diag_cols((size_t)L * DIAG_COLS);
    FILE* diag_file = diag_log_open(log_dir(cfg), cfg.diag_every, resume_step);  // rank 0 only
    bool params_ok = true;   // false once --on-nan log applied a non-finite update
    int last_checkpoint = resume_step;
    double total_time = 0.0;  // excludes the run's first step (warm-up)
    int timed_steps = 0, first_step = state.step;
    int overflow_skips = 0;   // fp16: updates skipped because the scaled gradients overflowed
    gpt2_allocate_activations(&model, B, T);
    if (cfg.overfit_single_batch) load_overfit_batch(&train);
    PendingStep pending = {false, 0, 0, 0.0f, false, false};

    // Reads a finished step's results and does what the CPU trainer does after its update: the
    // NaN guard's report (and exit under stop), the counts, the logs and the progress line.
    // Returns an exit code to stop with, or -1.
    auto finish_step = [&](PendingStep& ps) -> int {
        if (!ps.valid) return -1;
        ps.valid = false;
        int slot = ps.slot, step = ps.step;
        cudaCheck(cudaEventSynchronize(model.step_end[slot]));
        const StepHeader* h = result_header(&model, slot);
        float loss = h->loss, norm = h->norm, lr = ps.lr;
        bool finite = h->finite != 0;
        for (int l = 0; l < L; l++) {
            att_bad[l] = (long)result_att_bad(&model, slot)[l];
            ffn_bad[l] = (long)result_ffn_bad(&model, slot)[l];
        }
        // every rank has the same summed counts and verdict; rank 0 reports
        if (!finite && (mp_is_root() ? report_nonfinite(&logger, cfg, step, L, att_bad.data(), ffn_bad.data(), loss, lr,
                                                         norm, last_checkpoint)
                                     : cfg.on_nan == ON_NAN_STOP))
            return EXIT_NONFINITE;  // --on-nan stop
        if (h->apply) {
            state.adam_t++;
            if (!finite) params_ok = false;
        } else if (h->overflow) {
            overflow_skips++;
        } else {
            state.skipped++;
        }
        float ms = 0.0f;
        cudaCheck(cudaEventElapsedTime(&ms, model.step_start[slot], model.step_end[slot]));
        double dt = ms / 1000.0;
        if (step > first_step) { total_time += dt; timed_steps++; }

        if (finite) logger_train(&logger, step, loss, lr, norm);
        if (ps.log_entropy) {
            result_entropies(&model, slot, (long)B * T * grad_accum * mp_size(), entropy.data());
            logger_entropy(&logger, step, L, NH, entropy.data());
            // the paper's metrics: entropy with NaN rows as 0 (mean over rows), NaN probabilities of
            // one micro-batch (T per NaN row, mean over the micro-batches), as the CPU trainer
            paper_metrics(L * NH, result_paper(&model, slot), (double)B * T * grad_accum * mp_size(), (double)B * T, T,
                          paper_entropy.data(), paper_nan.data());
            logger_paper(&logger, step, L, NH, paper_nan.data(), paper_entropy.data());
            if (finite) logger_nonfinite(&logger, step, L, att_bad.data(), ffn_bad.data());
        }
        for (int i = 0; i < model.num_slopes; i++) slopes[i] = result_slopes(&model, slot)[i];
        logger_slopes(&logger, step, model.num_slopes, L, slopes.data());
        logger_flush(&logger);
        char extra[96] = "";
        if (USE_LOSS_SCALER)
            snprintf(extra, sizeof(extra), " | loss scale %g%s", h->loss_scale,
                     overflow_skips ? (", overflows " + std::to_string(overflow_skips)).c_str() : "");
        print_step_line(step, steps, loss, lr, norm, dt, total_batch, state.skipped, extra);
        if (ps.log_entropy) print_entropy_summary(L, NH, entropy.data(), T);
        if (ps.log_diag) {
            diag_sums_from_device(result_diag(&model, slot), L, diag_sums.data());
            long passes = grad_accum;
            diag_reduce(diag_sums.data(), L, &passes);  // over all ranks (MPI on the host; one process: nothing)
            diag_finalize(diag_sums.data(), L, B, T, mc.channels, NH, passes, diag_cols.data());
            diag_log(diag_file, step, L, diag_cols.data());
            diag_print(L, diag_cols.data());
        }
        return -1;
    };

    for (int step = state.step; step <= steps; step++) {
        bool last = step == steps;
        bool val_due = validating && (step % cfg.val_every == 0 || last);
        bool checkpoint_due = !cfg.output_dir.empty() && step > 0 && step != last_checkpoint &&
                              ((cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0) || last);
        bool sample_due = mp_is_root() && cfg.sample_every > 0 && step > 0 && (step % cfg.sample_every == 0 || last);
        if (val_due || checkpoint_due || sample_due || last) {
            int rc = finish_step(pending);  // these need the previous step's outcome
            if (rc >= 0) return rc;
        }
        if (val_due) {
            float val_loss = evaluate(&model, &val, cfg.val_max_steps);
            printf("val loss %.6f | perplexity %.4f (step %d)\n", val_loss, expf(val_loss), step);
            logger_val(&logger, step, val_loss);
        }
        if (checkpoint_due) {
            if (params_ok) {
                state.step = step;
                state.loader = train.state;
                save_checkpoint(&model, cfg.output_dir, state);
                last_checkpoint = step;
            } else {
                printf("checkpoint at step %d not written: the parameters are non-finite (--on-nan log)\n", step);
            }
        }
        if (sample_due) sample(&model, &tokenizer, &state.sample_rng, cfg.gen_tokens, T);
        if (last) break;

        // one optimizer step: grad_accum micro-batches, then the device decides and updates
        int slot = step % 2;
        bool log_entropy = cfg.entropy_every > 0 && step % cfg.entropy_every == 0;
        bool log_diag = cfg.diag_every > 0 && step % cfg.diag_every == 0;
        model.want_diag = log_diag;
        cudaCheck(cudaEventRecord(model.step_start[slot], g_stream));
        gpt2_step_begin(&model);
        for (int micro = 0; micro < grad_accum; micro++) {
            if (!cfg.overfit_single_batch) dataloader_next_batch(&train);
            gpt2_set_batch(&model, train.inputs, train.targets, B, T);
            // each rank's share of the global batch's mean loss: 1 / (micro-batches of all ranks)
            gpt2_forward(&model, true, log_entropy, 1.0f / (grad_accum * mp_size()), &model.d_header->loss_sum);
            gpt2_backward(&model, 1.0f / (grad_accum * mp_size()));
        }
        // the previous step has finished on the device by now (this one is queued behind it):
        // its outcome fixes AdamW's step count for this one
        int rc = finish_step(pending);
        if (rc >= 0) return rc;
        // FP16 (the paper's regime): the schedule follows the applied updates, as Hugging Face's
        // Trainer, which steps its LR scheduler only when GradScaler ran the optimizer step
        float lr = lr_at(schedule, USE_LOSS_SCALER ? state.adam_t : step);
        StepOptions opt = {lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, cfg.grad_clip, state.adam_t + 1,
                           grad_accum * mp_size(), cfg.on_nan == ON_NAN_LOG};
        gpt2_step_end(&model, opt, slot);
        model.want_diag = false;
        pending = {true, step, slot, lr, log_entropy, log_diag};
    }
    if (g_matmul_autotune)
        printf("matmul autotune: %d products timed, %d on a faster algorithm than the heuristic's first; one call of "
               "each %.3f ms -> %.3f ms\n", g_matmul_tune.problems, g_matmul_tune.changed, g_matmul_tune.first_ms,
               g_matmul_tune.chosen_ms);
    if (timed_steps > 0) {
        double ms = total_time / timed_steps * 1000;
        printf("average: %.2f ms/step, %.0f tok/s\n", ms, total_batch * timed_steps / total_time);
        printf("summary: ms_per_step=%.3f tok_per_s=%.1f peak_mem_mb=%.1f steps_timed=%d\n", ms,
               total_batch * timed_steps / total_time, g_device_peak_bytes / 1048576.0, timed_steps);
    }
    if (USE_LOSS_SCALER && overflow_skips > 0) printf("fp16 overflow steps skipped: %d\n", overflow_skips);
    logger_close(&logger);
    diag_log_close(diag_file);
    dataloader_free(&train);
    if (validating) dataloader_free(&val);
    gpt2_free(&model);
    return 0;
}
#endif
