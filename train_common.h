// train_common.h: host-side pieces of the training loop that the CPU trainer (train_gpt2.cpp)
// and the CUDA trainer (train_gpt2.cu) share: gradient clipping's factor, finding the
// tokenizer, the console's entropy summary and the --on-nan report.
#pragma once

#include <cmath>
#include <string>
#include "common.h"

// The clipping factor of torch.nn.utils.clip_grad_norm_: clip / (norm + 1e-6) when below 1.
inline float clip_scale(float norm, float clip) {
    if (clip <= 0.0f) return 1.0f;
    float coef = clip / (norm + 1e-6f);
    return coef < 1.0f ? coef : 1.0f;
}

// The tokenizer beside the training data, else in the working directory.
inline std::string find_tokenizer(const std::string& train_pattern) {
    size_t slash = train_pattern.rfind('/');
    std::string beside = (slash == std::string::npos ? std::string(".") : train_pattern.substr(0, slash)) + "/gpt2_tokenizer.bin";
    return path_exists(beside.c_str()) ? beside : std::string("gpt2_tokenizer.bin");
}

// One console line: the mean entropy of each layer's heads, beside the largest possible
// per-head mean ln(T!)/T. entropy: (L, NH).
inline void print_entropy_summary(int L, int NH, const float* entropy, int T) {
    double max_entropy = 0.0;
    for (int t = 1; t <= T; t++) max_entropy += log((double)t);
    max_entropy /= T;
    printf("  entropy/layer (nats, max %.3f):", max_entropy);
    for (int l = 0; l < L; l++) {
        double mean = 0.0;
        for (int h = 0; h < NH; h++) mean += entropy[l * NH + h];
        printf(" %.3f", mean / NH);
    }
    printf("\n");
}

// The first place that went non-finite, in forward order, for the --on-nan report.
// att, ffn: (L) per-layer counts of non-finite attention scores and FFN activations.
inline std::string first_nonfinite(int L, const long* att, const long* ffn, float loss, float norm) {
    char buf[128];
    for (int l = 0; l < L; l++) {
        if (att[l] > 0) {
            snprintf(buf, sizeof(buf), "layer %d attention scores (%ld values)", l, att[l]);
            return buf;
        }
        if (ffn[l] > 0) {
            snprintf(buf, sizeof(buf), "layer %d FFN activations (%ld values)", l, ffn[l]);
            return buf;
        }
    }
    if (!std::isfinite(loss)) return "the loss (logits or residual stream)";
    if (!std::isfinite(norm)) return "the gradient norm (backward pass)";
    return "nothing";
}
