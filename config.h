// config.h: the model configuration shared by both trainers: GPT-2 shapes, the variant
// (normalization and FFN activation), llm.c's model descriptors, the parameter layout (the
// tensors' sizes and the ParameterTensors views into one block), and llm.c's random
// initialisation of it, drawn on the host so that both trainers start from the same weights.
#pragma once

#include <cmath>
#include "common.h"
#include "rng.h"

// Normalization inside the blocks. Codes are stored in model files (slot 9): never renumber.
enum Norm {
    NORM_LN = 1,        // GPT-2 pre-LN: LayerNorm before attention and before the MLP, final LayerNorm
    NORM_NONE = 2,      // the paper's LN-free model: block LayerNorms are identity, final LayerNorm kept
    NORM_NONE_ALL = 3,  // LN-free and the final LayerNorm removed too
};

// FFN activation. Codes are stored in model files (slot 10): never renumber.
enum Act {
    ACT_GELU = 1,          // exact GELU with erf (the paper's)
    ACT_GELU_TANH = 2,     // GPT-2's tanh approximation
    ACT_RELU = 3,
    ACT_LRELU = 4,         // leaky ReLU with a fixed negative slope
    ACT_LRELU_LAYER = 5,   // leaky ReLU, one learnable slope per layer
    ACT_LRELU_GLOBAL = 6,  // leaky ReLU, one learnable slope shared by all layers
    ACT_IDENTITY = 7,
};

#define DEFAULT_LEARNABLE_SLOPE 0.01f

struct Variant {
    int norm;
    int act;
    float slope;  // the fixed slope (ACT_LRELU) or the initial one (learnable); 0 otherwise
};

inline bool act_is_leaky(int act) { return act == ACT_LRELU || act == ACT_LRELU_LAYER || act == ACT_LRELU_GLOBAL; }
inline bool act_is_learnable(int act) { return act == ACT_LRELU_LAYER || act == ACT_LRELU_GLOBAL; }

inline int num_slopes_for(int act, int num_layers) {
    if (act == ACT_LRELU_LAYER) return num_layers;
    if (act == ACT_LRELU_GLOBAL) return 1;
    return 0;
}

inline bool parse_norm(const char* s, int* norm) {
    if (strcmp(s, "ln") == 0) { *norm = NORM_LN; return true; }
    if (strcmp(s, "none") == 0) { *norm = NORM_NONE; return true; }
    if (strcmp(s, "none-all") == 0) { *norm = NORM_NONE_ALL; return true; }
    return false;
}

inline const char* norm_name(int norm) {
    switch (norm) {
        case NORM_LN: return "ln";
        case NORM_NONE: return "none";
        case NORM_NONE_ALL: return "none-all";
        default: return "?";
    }
}

// Parses --act: gelu | gelu-tanh | relu | lrelu:S | lrelu-layer[:S0] | lrelu-global[:S0] | identity.
inline bool parse_act(const char* s, int* act, float* slope) {
    const char* colon = strchr(s, ':');
    std::string name = colon ? std::string(s, colon - s) : std::string(s);
    const char* arg = colon ? colon + 1 : NULL;
    struct { const char* name; int act; } table[] = {
        {"gelu", ACT_GELU}, {"gelu-tanh", ACT_GELU_TANH}, {"relu", ACT_RELU}, {"lrelu", ACT_LRELU},
        {"lrelu-layer", ACT_LRELU_LAYER}, {"lrelu-global", ACT_LRELU_GLOBAL}, {"identity", ACT_IDENTITY},
    };
    for (auto& entry : table) {
        if (name != entry.name) continue;
        if (!act_is_leaky(entry.act)) {
            if (arg != NULL) return false;  // only the leaky variants take a slope
            *act = entry.act;
            *slope = 0.0f;
            return true;
        }
        if (arg == NULL) {
            if (entry.act == ACT_LRELU) return false;  // a fixed slope has no default
            *act = entry.act;
            *slope = DEFAULT_LEARNABLE_SLOPE;
            return true;
        }
        float v;
        if (!parse_float(arg, &v)) return false;
        *act = entry.act;
        *slope = v;
        return true;
    }
    return false;
}

// The --act spelling of a variant's activation, e.g. "lrelu:0.1" or "lrelu-layer:0.01".
inline std::string act_name(int act, float slope) {
    char buf[64];
    switch (act) {
        case ACT_GELU: return "gelu";
        case ACT_GELU_TANH: return "gelu-tanh";
        case ACT_RELU: return "relu";
        case ACT_IDENTITY: return "identity";
        case ACT_LRELU: snprintf(buf, sizeof(buf), "lrelu:%g", slope); return buf;
        case ACT_LRELU_LAYER: snprintf(buf, sizeof(buf), "lrelu-layer:%g", slope); return buf;
        case ACT_LRELU_GLOBAL: snprintf(buf, sizeof(buf), "lrelu-global:%g", slope); return buf;
        default: return "?";
    }
}

// The file-name tag of a variant, "<norm>_<act>", as train_gpt2.py names its debug states.
inline std::string variant_tag(const Variant& v) {
    char buf[64];
    std::string act;
    if (v.act == ACT_LRELU) { snprintf(buf, sizeof(buf), "lrelu%g", v.slope); act = buf; }
    else if (v.act == ACT_LRELU_LAYER) act = "lrelu-layer";
    else if (v.act == ACT_LRELU_GLOBAL) act = "lrelu-global";
    else act = act_name(v.act, v.slope);
    return std::string(norm_name(v.norm)) + "_" + act;
}

struct GPT2Config {
    int max_seq_len;        // maxT: rows of the position embedding
    int vocab_size;         // V: real tokens
    int padded_vocab_size;  // Vp: V rounded up (llm.c pads to a multiple of 128); padded rows are zero
    int num_layers;         // L
    int num_heads;          // NH
    int channels;           // C
    Variant variant;
};

inline int pad_vocab(int vocab_size) { return ((vocab_size + 127) / 128) * 128; }

// Rejects shapes that cannot form a model; `source` names where they came from.
inline void validate_config_or_fail(const GPT2Config& c, const char* source) {
    if (c.max_seq_len < 1 || c.vocab_size < 1 || c.num_layers < 1 || c.num_heads < 1 || c.channels < 1)
        fail("%s: impossible model shape (maxT %d, V %d, L %d, NH %d, C %d): every size must be positive",
             source, c.max_seq_len, c.vocab_size, c.num_layers, c.num_heads, c.channels);
    if (c.padded_vocab_size < c.vocab_size)
        fail("%s: padded vocab %d is smaller than vocab %d", source, c.padded_vocab_size, c.vocab_size);
    if (c.channels % c.num_heads != 0)
        fail("%s: channels %d are not divisible by heads %d", source, c.channels, c.num_heads);
    // Keep every tensor well inside what the int-indexed loops address.
    double biggest = fmax(fmax((double)c.padded_vocab_size * c.channels, (double)c.max_seq_len * c.channels),
                          (double)c.num_layers * 4.0 * c.channels * c.channels);
    if (c.max_seq_len > 65536 || c.padded_vocab_size > 1 << 24 || c.num_layers > 1024 || biggest > 1.0e10)
        fail("%s: model shape too large (maxT %d, Vp %d, L %d, C %d)", source, c.max_seq_len,
             c.padded_vocab_size, c.num_layers, c.channels);
    if (c.variant.norm < NORM_LN || c.variant.norm > NORM_NONE_ALL)
        fail("%s: unknown norm code %d", source, c.variant.norm);
    if (c.variant.act < ACT_GELU || c.variant.act > ACT_IDENTITY)
        fail("%s: unknown activation code %d", source, c.variant.act);
    if (!std::isfinite(c.variant.slope)) fail("%s: slope is not a finite number", source);
}

// Model descriptors for -e: llm.c's "d12" family, or "L4H4C128[T256][V50257]" for small models.
// Returns false if `s` is not a descriptor (then -e names a file).
inline bool parse_descriptor(const char* s, GPT2Config* c) {
    if (s == NULL || s[0] == '\0') return false;
    c->max_seq_len = 1024;
    c->vocab_size = 50257;
    c->variant = {NORM_LN, ACT_GELU_TANH, 0.0f};
    if (s[0] == 'd') {  // llm.c's GPT-2 family: depth -> (channels, heads)
        long depth;
        if (!parse_int(s + 1, &depth)) return false;
        const int table[][3] = {{6, 384, 6}, {12, 768, 12}, {24, 1024, 16}, {36, 1280, 20}, {48, 1600, 25}};
        for (auto& row : table) {
            if (row[0] != depth) continue;
            c->num_layers = row[0];
            c->channels = row[1];
            c->num_heads = row[2];
            c->padded_vocab_size = pad_vocab(c->vocab_size);
            return true;
        }
        fail("unknown model descriptor '%s' (known: d6 d12 d24 d36 d48, or L<n>H<n>C<n>[T<n>][V<n>])", s);
    }
    if (s[0] != 'L') return false;
    long L = -1, H = -1, C = -1, T = c->max_seq_len, V = c->vocab_size;
    const char* p = s;
    while (*p) {
        char key = *p++;
        if (!isdigit((unsigned char)*p)) return false;  // plain digits only: no sign, blank or hex
        char* end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0) return false;
        p = end;
        switch (key) {
            case 'L': L = v; break;
            case 'H': H = v; break;
            case 'C': C = v; break;
            case 'T': T = v; break;
            case 'V': V = v; break;
            default: return false;
        }
    }
    if (L < 0 || H < 0 || C < 0)
        fail("model descriptor '%s' needs L, H and C, e.g. L4H4C128 (optional T<maxT>, V<vocab>)", s);
    if (L > 1 << 20 || H > 1 << 20 || C > 1 << 20 || T > 1 << 20 || V > 1 << 24)
        fail("model descriptor '%s' is too large", s);
    c->num_layers = (int)L;
    c->num_heads = (int)H;
    c->channels = (int)C;
    c->max_seq_len = (int)T;
    c->vocab_size = (int)V;
    c->padded_vocab_size = pad_vocab(c->vocab_size);
    return true;
}

// The parameter layout of llm.c's model file; the slopes follow as a 17th tensor.
#define NUM_PARAM_TENSORS 16
#define NUM_ALL_TENSORS 17
#define SLOPE_TENSOR 16

inline void fill_param_sizes(size_t sizes[NUM_ALL_TENSORS], const GPT2Config& c) {
    size_t Vp = c.padded_vocab_size, C = c.channels, maxT = c.max_seq_len, L = c.num_layers;
    sizes[0] = Vp * C;            // wte
    sizes[1] = maxT * C;          // wpe
    sizes[2] = L * C;             // ln1w
    sizes[3] = L * C;             // ln1b
    sizes[4] = L * (3 * C) * C;   // qkvw
    sizes[5] = L * (3 * C);       // qkvb
    sizes[6] = L * C * C;         // attprojw
    sizes[7] = L * C;             // attprojb
    sizes[8] = L * C;             // ln2w
    sizes[9] = L * C;             // ln2b
    sizes[10] = L * (4 * C) * C;  // fcw
    sizes[11] = L * (4 * C);      // fcb
    sizes[12] = L * C * (4 * C);  // fcprojw
    sizes[13] = L * C;            // fcprojb
    sizes[14] = C;                // lnfw
    sizes[15] = C;                // lnfb
    sizes[16] = (size_t)num_slopes_for(c.variant.act, c.num_layers);  // slopes
}

inline const char* param_tensor_name(int i) {
    static const char* names[NUM_ALL_TENSORS] = {
        "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b",
        "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb", "slopes"};
    return names[i];
}

// AdamW's weight decay goes to the matrices and embeddings only: not to biases, LayerNorm
// parameters or slopes.
inline bool param_tensor_decays(int i) {
    return i == 0 || i == 1 || i == 4 || i == 6 || i == 10 || i == 12;
}

// The 16 tensors of llm.c's file plus the learnable slopes, views into one block laid out
// exactly as the model file. T: float (the CPU trainer; the CUDA trainer's master weights and
// gradients) or floatX (the CUDA trainer's working copy).
template <typename T>
struct ParameterTensors {
    T* wte;       // (Vp, C)
    T* wpe;       // (maxT, C)
    T* ln1w;      // (L, C)
    T* ln1b;      // (L, C)
    T* qkvw;      // (L, 3C, C)
    T* qkvb;      // (L, 3C)
    T* attprojw;  // (L, C, C)
    T* attprojb;  // (L, C)
    T* ln2w;      // (L, C)
    T* ln2b;      // (L, C)
    T* fcw;       // (L, 4C, C)
    T* fcb;       // (L, 4C)
    T* fcprojw;   // (L, C, 4C)
    T* fcprojb;   // (L, C)
    T* lnfw;      // (C)
    T* lnfb;      // (C)
    T* slopes;    // (L) per layer, (1) global, or empty
};

// Points p's tensors into memory (sizes: fill_param_sizes), one after the other.
template <typename T>
void point_parameters(ParameterTensors<T>* p, T* memory, const size_t sizes[NUM_ALL_TENSORS]) {
    T** ptrs[NUM_ALL_TENSORS] = {
        &p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb, &p->attprojw, &p->attprojb, &p->ln2w,
        &p->ln2b, &p->fcw, &p->fcb, &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb, &p->slopes};
    for (int i = 0; i < NUM_ALL_TENSORS; i++) {
        *ptrs[i] = memory;
        memory += sizes[i];
    }
}

// llm.c's initialisation of the parameters of c (params: one block laid out as the model file,
// sizes from fill_param_sizes): N(0, 0.02) weights, residual projections (attprojw, fcprojw)
// scaled by 1/sqrt(2L), zero biases, unit LayerNorm weights; learnable slopes start at
// c.variant.slope. The draws run tensor by tensor in file order from one Rng seeded with `seed`,
// so a seed means the same weights in every trainer.
inline void init_params_random(float* params, const size_t sizes[NUM_ALL_TENSORS], const GPT2Config& c, uint64_t seed) {
    ParameterTensors<float> p;
    point_parameters(&p, params, sizes);
    Rng rng;
    rng_seed(&rng, seed);
    float residual_std = 0.02f / sqrtf(2.0f * c.num_layers);
    float* t = params;
    for (int i = 0; i < NUM_ALL_TENSORS; i++) {
        size_t n = sizes[i];
        bool is_weight = param_tensor_decays(i);  // the matrices and embeddings
        float std = (i == 6 || i == 12) ? residual_std : 0.02f;
        for (size_t k = 0; k < n; k++) t[k] = is_weight ? std * rng_normal(&rng) : 0.0f;
        t += n;
    }
    for (size_t i = 0; i < (size_t)c.num_layers * c.channels; i++) p.ln1w[i] = p.ln2w[i] = 1.0f;
    for (int i = 0; i < c.channels; i++) p.lnfw[i] = 1.0f;
    for (int i = 0; i < (int)sizes[SLOPE_TENSOR]; i++) p.slopes[i] = c.variant.slope;
    // padded vocabulary rows stay zero so they never change the logits
    for (size_t i = (size_t)c.vocab_size * c.channels; i < (size_t)c.padded_vocab_size * c.channels; i++) p.wte[i] = 0.0f;
}
