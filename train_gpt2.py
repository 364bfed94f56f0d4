"""
train_gpt2.py: the PyTorch reference for normfree-gpt2.

normfree-gpt2 is a minimal llm.c-style GPT-2 trainer that reproduces "ReLU's Revival: On the
Entropic Overload in Normalization-Free LLMs" (Jha & Reagen, 2024): GPT-2 with and without
LayerNorm, with GELU, ReLU, leaky ReLU (fixed or learnable slope) or no activation, and the
per-head attention entropy the paper measures. doc/reference.md ("File formats") is the contract
shared with the C++ trainers; this file follows it.

This file does two jobs:
1. Reference values for the C++ trainer's tests (--write-debug-states DIR): for a tiny model and
   every variant, the initial weights (DIR/<tag>.bin) and a debug state (DIR/<tag>_debug_state.bin)
   holding a batch, its logits, loss, gradients, attention entropies and 10 AdamW steps.
2. A trainer with the same command line as train_gpt2.cpp (llm.c's flags plus ours). On a GPU it
   is the speed peer: bf16 autocast, torch.compile, fused AdamW, flash attention via SDPA.

Examples:
    python train_gpt2.py --write-debug-states dev/ref
    python train_gpt2.py --write-debug-states dev/ref -e d12 -t 64 --variants ln_gelu-tanh,none_relu
    python train_gpt2.py -i "data/code_train_*.bin" -j "data/code_val_*.bin" -e d12 -o out \\
        -b 64 -t 128 -d 65536 -l 1e-3 -u 1600 -q 0.0 -k linear -c 0.1 --norm none --act relu \\
        --entropy-every 100 --device cuda --dtype bfloat16 --compile

Runs on PyTorch 1.13 (CPU) and 2.x (CPU or CUDA); 2.x-only features are used only when present.
"""

import argparse
import glob
import inspect
import math
import os
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_MAGIC, MODEL_VERSION_FP32, MODEL_VERSION_BF16 = 20240326, 3, 5
DEBUG_MAGIC, DEBUG_VERSION = 20240327, 3
DEBUG_DIAG_SLOT = 14                    # header slot: 5 = (L, 5) diag.h columns follow the step norms
SHARD_MAGIC, SHARD_VERSION = 20240520, 1
HEADER_INTS = 256                       # every file starts with 256 little-endian int32
HEADER_BYTES = 4 * HEADER_INTS
NUM_DEBUG_STEPS = 10
HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")  # PyTorch >= 2.0


class InputError(Exception):
    """Bad input or usage: main() prints it as one line and exits with status 1."""


def f32(x):
    """Round a Python float to the nearest fp32 value (slopes live in fp32 files and tensors)."""
    return float(np.float32(x))


def f32_bits(x):
    """The int32 whose bits are the fp32 value x (how the headers store floats)."""
    return int(np.array([x], dtype="<f4").view("<i4")[0])


def bits_f32(i):
    return float(np.array([i], dtype="<i4").view("<f4")[0])


# -----------------------------------------------------------------------------
# Variants (doc/reference.md, "The model and its variants"): the --norm and --act values and their codes in the model file

NORMS = {"ln": 1, "none": 2, "none-all": 3}
ACTS = {"gelu": 1, "gelu-tanh": 2, "relu": 3, "lrelu": 4,
        "lrelu-layer": 5, "lrelu-global": 6, "identity": 7}
LEARNABLE = ("lrelu-layer", "lrelu-global")
DEFAULT_S0 = 0.01                       # initial learnable slope, as the paper's code


@dataclass(frozen=True)
class Act:
    name: str                           # a key of ACTS
    slope: float = 0.0                  # S for lrelu, S0 for the learnable ones, 0 otherwise

    @property
    def code(self):
        return ACTS[self.name]

    def num_slopes(self, L):
        return {"lrelu-layer": L, "lrelu-global": 1}.get(self.name, 0)

    @property
    def has_slope(self):
        return self.name == "lrelu" or self.name in LEARNABLE

    @property
    def tag(self):
        """The activation's part of a variant tag: the fixed slope is written (%g), S0 is not."""
        return f"lrelu{self.slope:g}" if self.name == "lrelu" else self.name

    def __str__(self):                  # the --act value that gives this activation
        return f"{self.name}:{self.slope:g}" if self.has_slope else self.name


def parse_act(spec):
    """'relu' -> Act('relu'); 'lrelu:0.1' -> Act('lrelu', 0.1); 'lrelu-layer' -> S0 = 0.01."""
    name, colon, arg = spec.partition(":")
    if name not in ACTS:
        raise InputError(f"unknown --act '{spec}' (expected one of: gelu, gelu-tanh, relu, "
                         "lrelu:S, lrelu-layer[:S0], lrelu-global[:S0], identity)")
    if name not in LEARNABLE and name != "lrelu":
        if colon:
            raise InputError(f"--act '{name}' takes no ':' value")
        return Act(name)
    if not colon:
        if name == "lrelu":
            raise InputError("--act lrelu needs a slope, e.g. lrelu:0.1")
        return Act(name, f32(DEFAULT_S0))
    try:
        slope = float(arg)
    except ValueError:
        raise InputError(f"bad slope in --act '{spec}'") from None
    if not math.isfinite(slope):
        raise InputError(f"bad slope in --act '{spec}'")
    return Act(name, f32(slope))


def parse_norm(spec):
    if spec not in NORMS:
        raise InputError(f"unknown --norm '{spec}' (expected ln, none or none-all)")
    return spec


def variant_tag(norm, act):
    return f"{norm}_{act.tag}"          # e.g. none_lrelu-layer, ln_lrelu0.1


def parse_variant(text):
    """A --variants item: '<norm>_<act>', the act as an --act value or as written in a tag
    ('none_lrelu:0.1' or 'none_lrelu0.1'; 'ln_lrelu-layer:0.1')."""
    norm, _, act = text.partition("_")
    m = re.fullmatch(r"lrelu(-?[0-9.]+(?:e-?[0-9]+)?)", act)
    if m:
        act = f"lrelu:{m.group(1)}"
    return parse_norm(norm), parse_act(act)


# The 16 variants of the debug states. The learnable slopes start at 0.1 rather than 0.01 so that
# their gradients are clearly non-zero.
DEBUG_VARIANTS = ([(n, parse_act(a)) for n in ("ln", "none")
                   for a in ("gelu", "gelu-tanh", "relu", "lrelu:0.1", "lrelu-layer:0.1",
                             "lrelu-global:0.1", "identity")]
                  + [("none-all", parse_act("gelu")), ("none-all", parse_act("relu"))])


# -----------------------------------------------------------------------------
# The model: GPT-2 as in llm.c (pre-LN, tied embeddings, all biases)

@dataclass(frozen=True)
class GPTConfig:
    L: int                              # layers
    NH: int                             # heads
    C: int                              # channels
    maxT: int                           # max sequence length (rows of wpe)
    V: int                              # vocabulary size
    Vp: int                             # padded vocabulary size: only the model file has the padding
    norm: str = "ln"
    act: Act = Act("gelu-tanh")


def padded_vocab(V):
    return (V + 127) // 128 * 128       # llm.c pads to a multiple of 128


def activation(h, act, slope=None):
    """f = act(h), elementwise. slope: the learnable slope tensor (learnable variants only)."""
    if act.name == "gelu":
        return F.gelu(h)                                    # exact, erf: the paper's
    if act.name == "gelu-tanh":
        return F.gelu(h, approximate="tanh")                # GPT-2's
    if act.name == "relu":
        return torch.relu(h)                                # derivative at 0 is 0
    if act.name == "identity":
        return h
    s = act.slope if act.name == "lrelu" else slope
    # Leaky ReLU written out rather than F.leaky_relu: we define the derivative as 1 at h == 0 (PyTorch's
    # is s there), and with s a tensor autograd gives dL/ds = sum over h < 0 of h * dL/df.
    return torch.where(h >= 0, h, h * s)


def materialised_attention(q, k, v, measure):
    """Causal attention with the (T, T) probabilities in memory, so that they can be measured.
    q, k, v: (B, NH, T, hd). Returns y (B, NH, T, hd) and, if measure, (entropy (NH,), number of
    non-finite scores, (std, max) of the scores over the causal entries (diag.h's score_std, score_max))."""
    T, hd = q.size(-2), q.size(-1)
    scores = q @ k.transpose(-2, -1)                                # (B, NH, T, T)
    if scores.dtype == torch.float16:
        # fp16 autocast (--dtype float16), as the paper's GPT-2: q.k^T is fp16 (inf above 65504),
        # divided by sqrt(hd) held in fp16 (doc/fp16-and-nans.md)
        scores = scores / torch.full([], math.sqrt(hd), dtype=scores.dtype, device=scores.device)
    else:
        scores = scores * (1.0 / math.sqrt(hd))
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    p = F.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)  # masked entries get p = 0
    y = p @ v                                                       # (B, NH, T, hd)
    if not measure:
        return y, None
    # The entropy is a measurement, not part of the loss: computed from detached fp32 scores.
    s = scores.detach().float()
    logp = F.log_softmax(s.masked_fill(~causal, float("-inf")), dim=-1)
    # H_t = -sum_j p_j ln p_j over the causal row; masked entries have logp = -inf and
    # exp(-inf) * -inf is NaN, so they are selected out (0 ln 0 = 0).
    plogp = torch.where(causal, logp.exp() * logp, torch.zeros_like(logp))
    entropy = -plogp.sum(dim=-1).mean(dim=(0, 2))                   # (NH,): mean over b and t
    nonfinite = (~torch.isfinite(s) & causal).sum()                 # scores that were computed
    s_causal = s.masked_select(causal).double()
    score_diag = torch.stack([s_causal.std(unbiased=False), s_causal.max()])
    return y, (entropy, nonfinite, score_diag)


class CausalSelfAttention(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        self.NH = cfg.NH
        self.c_attn = nn.Linear(cfg.C, 3 * cfg.C)   # qkvw (3C, C): rows q, then k, then v; qkvb
        self.c_proj = nn.Linear(cfg.C, cfg.C)       # attprojw (C, C), attprojb

    def forward(self, x, measure=False):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)                    # 3 x (B, T, C)
        hd = C // self.NH
        q = q.view(B, T, self.NH, hd).transpose(1, 2)               # (B, NH, T, hd)
        k = k.view(B, T, self.NH, hd).transpose(1, 2)
        v = v.view(B, T, self.NH, hd).transpose(1, 2)
        if HAVE_SDPA and x.is_cuda and not measure and q.dtype != torch.float16:
            # (not under fp16 autocast: flash attention never forms q.k^T in fp16, so it would hide
            # the overflow that the paper's regime is about)
            # fast path (flash attention); it never forms the probabilities, so it cannot measure
            y, stats = F.scaled_dot_product_attention(q, k, v, is_causal=True), None
        else:
            y, stats = materialised_attention(q, k, v, measure)
        y = y.transpose(1, 2).contiguous().view(B, T, C)           # heads side by side again
        return self.c_proj(y), stats


class MLP(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.C, 4 * cfg.C)     # fcw (4C, C), fcb
        self.c_proj = nn.Linear(4 * cfg.C, cfg.C)   # fcprojw (C, 4C), fcprojb
        self.act = cfg.act
        # lrelu-layer: this layer's own learnable slope (a 0-dim tensor)
        self.slope = nn.Parameter(torch.tensor(cfg.act.slope)) if cfg.act.name == "lrelu-layer" else None

    def forward(self, x, global_slope=None, measure=False):
        h = self.c_fc(x)                                            # (B, T, 4C)
        f = activation(h, self.act, self.slope if self.slope is not None else global_slope)
        if not measure:
            return self.c_proj(f), None
        nonfinite = (~torch.isfinite(f.detach())).sum()
        hd = h.detach().double()                                    # diag.h's ffn_rms, ffn_neg
        return self.c_proj(f), (nonfinite, torch.stack([hd.pow(2).mean().sqrt(), (hd < 0).double().mean()]))


def residual_add(x, y):
    """x + y. Under fp16 autocast y is fp16, and the paper's GPT-2 adds the skip branch into it in
    place (`h = attn_out; h += skip`), so its residual stream is fp16 (inf above 65504); we keep that.
    Under bf16 autocast or in fp32, type promotion keeps the stream fp32."""
    return (x + y).half() if y.dtype == torch.float16 else x + y


class Block(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        # The LayerNorms exist in every variant so that the file layout never changes; without
        # LayerNorm they are simply skipped (their gradients are then zero).
        self.ln_1 = nn.LayerNorm(cfg.C, eps=1e-5)   # ln1w, ln1b
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.C, eps=1e-5)   # ln2w, ln2b
        self.mlp = MLP(cfg)
        self.use_norm = cfg.norm == "ln"

    def forward(self, x, global_slope=None, measure=False):
        resid_rms = x.detach().double().pow(2).mean().sqrt() if measure else None  # diag.h's resid_rms
        a = self.ln_1(x) if self.use_norm else x                    # (B, T, C)
        y, att_stats = self.attn(a, measure)
        x = residual_add(x, y)
        m = self.ln_2(x) if self.use_norm else x
        f, ffn_stats = self.mlp(m, global_slope, measure)
        x = residual_add(x, f)
        if not measure:
            return x, None
        # diag: diag.tsv's columns resid_rms, score_std, score_max, ffn_rms, ffn_neg
        diag = torch.cat([resid_rms.view(1), att_stats[2], ffn_stats[1]])
        return x, (att_stats[:2], ffn_stats[0], diag)


class GPT(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.V, cfg.C)       # (V, C): token embedding and the LM head
        self.wpe = nn.Embedding(cfg.maxT, cfg.C)    # (maxT, C)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.L)])
        self.ln_f = nn.LayerNorm(cfg.C, eps=1e-5)   # lnfw, lnfb (skipped with --norm none-all)
        # lrelu-global: ONE slope tensor, shared by the MLPs of all layers
        self.slope = nn.Parameter(torch.tensor(cfg.act.slope)) if cfg.act.name == "lrelu-global" else None

    def param_layout(self):
        """The parameters in the model file's order as (name, tensors); the per-layer tensors
        are listed for layers 0..L-1, which is how the file stacks them (e.g. ln1w is (L, C))."""
        h = self.blocks
        return [
            ("wte", [self.wte.weight]), ("wpe", [self.wpe.weight]),
            ("ln1w", [b.ln_1.weight for b in h]), ("ln1b", [b.ln_1.bias for b in h]),
            ("qkvw", [b.attn.c_attn.weight for b in h]), ("qkvb", [b.attn.c_attn.bias for b in h]),
            ("attprojw", [b.attn.c_proj.weight for b in h]), ("attprojb", [b.attn.c_proj.bias for b in h]),
            ("ln2w", [b.ln_2.weight for b in h]), ("ln2b", [b.ln_2.bias for b in h]),
            ("fcw", [b.mlp.c_fc.weight for b in h]), ("fcb", [b.mlp.c_fc.bias for b in h]),
            ("fcprojw", [b.mlp.c_proj.weight for b in h]), ("fcprojb", [b.mlp.c_proj.bias for b in h]),
            ("lnfw", [self.ln_f.weight]), ("lnfb", [self.ln_f.bias]),
        ]

    def slope_params(self):
        """The learnable slopes in file order: L (per layer), 1 (global) or none."""
        if self.cfg.act.name == "lrelu-layer":
            return [b.mlp.slope for b in self.blocks]
        return [self.slope] if self.slope is not None else []

    def num_file_params(self):
        """Number of fp32 parameters in the model file, padded wte rows included, slopes not."""
        cfg = self.cfg
        return sum(p.numel() for _, ps in self.param_layout() for p in ps) + (cfg.Vp - cfg.V) * cfg.C

    def forward(self, idx, targets=None, measure=False):
        """idx, targets: (B, T) int64. Returns logits (B, T, V), the mean cross-entropy loss (or
        None) and, if measure, a dict of per-layer measurements (detached): entropy (L, NH),
        att_nonfinite (L,), ffn_nonfinite (L,) and diag (L, 5), diag.h's columns for this pass
        (written to the debug states; the trainer below does not log them)."""
        B, T = idx.shape
        assert T <= self.cfg.maxT, f"sequence length {T} > maxT {self.cfg.maxT}"
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)                           # (B, T, C)
        stats = []
        for block in self.blocks:
            x, s = block(x, self.slope, measure)
            stats.append(s)
        if self.cfg.norm != "none-all":
            x = self.ln_f(x)
        logits = F.linear(x, self.wte.weight)                       # (B, T, V): tied LM head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        measured = None
        if measure:
            measured = {
                "entropy": torch.stack([a[0] for a, _, _ in stats]),        # (L, NH)
                "att_nonfinite": torch.stack([a[1] for a, _, _ in stats]),  # (L,)
                "ffn_nonfinite": torch.stack([f for _, f, _ in stats]),     # (L,)
                "diag": torch.stack([d for _, _, d in stats]),              # (L, 5)
            }
        return logits, loss, measured


@torch.no_grad()
def init_weights(model, seed, std_scale=1.0):
    """llm.c's init: N(0, 0.02), the residual projections N(0, 0.02/sqrt(2L)), biases 0,
    LayerNorm weights 1, slopes S0. The normals are drawn from a generator seeded with seed, tensor
    by tensor in the file's order, so every variant gets the same shared weights.
    std_scale multiplies every standard deviation (the debug states use it, see below)."""
    g = torch.Generator().manual_seed(seed)
    std = 0.02 * std_scale
    proj_std = std / math.sqrt(2 * model.cfg.L)
    normal_std = {"wte": std, "wpe": std, "qkvw": std, "attprojw": proj_std, "fcw": std, "fcprojw": proj_std}
    for name, params in model.param_layout():
        for p in params:
            if name in normal_std:
                p.copy_(torch.randn(p.shape, generator=g) * normal_std[name])
            elif name in ("ln1w", "ln2w", "lnfw"):
                p.fill_(1.0)
            else:
                p.zero_()
    for s in model.slope_params():
        s.fill_(model.cfg.act.slope)


def parse_descriptor(spec):
    """-e descriptor -> GPTConfig (norm and act left at their defaults)."""
    shapes = {"d6": (6, 6, 384), "d12": (12, 12, 768), "d24": (24, 16, 1024),
              "d36": (36, 20, 1280), "d48": (48, 25, 1600)}       # llm.c's GPT-2 shapes
    if spec in shapes:
        L, NH, C = shapes[spec]
        maxT, V = 1024, 50257
    else:
        m = re.fullmatch(r"L(\d+)H(\d+)C(\d+)(?:T(\d+))?(?:V(\d+))?", spec)
        if not m:
            raise InputError(f"-e '{spec}' is neither a file nor a model descriptor "
                             "(d6, d12, d24, d36, d48 or L<layers>H<heads>C<channels>[T<maxT>][V<vocab>])")
        L, NH, C = int(m.group(1)), int(m.group(2)), int(m.group(3))
        maxT = int(m.group(4)) if m.group(4) else 1024
        V = int(m.group(5)) if m.group(5) else 50257
        if min(L, NH, C, maxT, V) < 1 or C % NH != 0:
            raise InputError(f"-e '{spec}': all sizes must be positive and C divisible by H")
    return GPTConfig(L=L, NH=NH, C=C, maxT=maxT, V=V, Vp=padded_vocab(V))


# -----------------------------------------------------------------------------
# Model files (llm.c's format, doc/reference.md, "File formats")

def flat_values(model, grads=False):
    """Everything the model file stores after its header, as one fp32 array: the parameters in
    file order (wte padded to Vp rows with zeros), then the slopes. With grads=True the same for
    the gradients, zeros where a tensor has none (the LayerNorms skipped by --norm none)."""
    cfg = model.cfg
    parts = []
    for name, params in model.param_layout() + [("slopes", model.slope_params())]:
        for p in params:
            t = p.grad if grads else p
            t = torch.zeros_like(p) if t is None else t
            parts.append(t.detach().float().cpu().reshape(-1))
        if name == "wte":
            parts.append(torch.zeros((cfg.Vp - cfg.V) * cfg.C))
    return torch.cat(parts).numpy().astype("<f4", copy=False)


def write_model(model, path):
    cfg = model.cfg
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0:8] = [MODEL_MAGIC, MODEL_VERSION_FP32, cfg.maxT, cfg.V, cfg.L, cfg.NH, cfg.C, cfg.Vp]
    header[8:13] = [1, NORMS[cfg.norm], cfg.act.code, f32_bits(cfg.act.slope), cfg.act.num_slopes(cfg.L)]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(flat_values(model).tobytes())


@torch.no_grad()
def load_flat(model, values, slopes=None):
    """Inverse of flat_values for the parameters: copy values (num_file_params fp32) in."""
    cfg = model.cfg
    off = 0
    for name, params in model.param_layout():
        for p in params:
            p.copy_(torch.from_numpy(values[off:off + p.numel()].copy()).view_as(p))
            off += p.numel()
        if name == "wte":
            off += (cfg.Vp - cfg.V) * cfg.C                         # skip the padded rows
    if slopes is not None:
        for p, s in zip(model.slope_params(), slopes):
            p.fill_(float(s))


def read_model(path, norm=None, act=None):
    """Load a model file: ours, or llm.c's (slot 8 == 0: ln + gelu-tanh; fp32 or bf16).
    norm/act, if given, replace the file's variant (e.g. to train GPT-2 weights without
    LayerNorm); the file's slopes are used only when the activation is unchanged."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < HEADER_BYTES:
        raise InputError(f"{path}: too short for a model file ({len(data)} bytes)")
    h = np.frombuffer(data[:HEADER_BYTES], dtype="<i4")
    if h[0] != MODEL_MAGIC:
        raise InputError(f"{path}: not a model file (magic {h[0]}, expected {MODEL_MAGIC})")
    if h[1] not in (MODEL_VERSION_FP32, MODEL_VERSION_BF16):
        raise InputError(f"{path}: unsupported model file version {h[1]}")
    maxT, V, L, NH, C, Vp = (int(v) for v in h[2:8])
    if min(maxT, V, L, NH, C) < 1 or C % NH != 0 or Vp < V:
        raise InputError(f"{path}: bad sizes in header (maxT {maxT} V {V} L {L} NH {NH} C {C} Vp {Vp})")
    if h[8] == 0:                                                   # llm.c's file
        file_norm, file_act, file_slopes = "ln", Act("gelu-tanh"), 0
    elif h[8] == 1:
        codes_n = {c: n for n, c in NORMS.items()}
        codes_a = {c: n for n, c in ACTS.items()}
        if h[9] not in codes_n or h[10] not in codes_a:
            raise InputError(f"{path}: bad variant codes (norm {h[9]}, act {h[10]})")
        file_norm = codes_n[int(h[9])]
        name = codes_a[int(h[10])]
        file_act = Act(name)
        if file_act.has_slope:
            file_act = Act(name, bits_f32(h[11]))
        file_slopes = int(h[12])
        if file_slopes != file_act.num_slopes(L):
            raise InputError(f"{path}: {file_slopes} slopes stored, {file_act} needs {file_act.num_slopes(L)}")
    else:
        raise InputError(f"{path}: bad variant record {h[8]} in header slot 8")
    cfg = GPTConfig(L=L, NH=NH, C=C, maxT=maxT, V=V, Vp=Vp,
                    norm=norm or file_norm, act=act or file_act)
    model = GPT(cfg)                    # its slopes start at S0: kept if the file's cannot be used
    n = model.num_file_params()
    width = 4 if h[1] == MODEL_VERSION_FP32 else 2
    if len(data) != HEADER_BYTES + width * (n + file_slopes):
        raise InputError(f"{path}: {len(data)} bytes, expected {HEADER_BYTES + width * (n + file_slopes)} "
                         f"for {n} parameters and {file_slopes} slopes")
    if width == 4:
        values = np.frombuffer(data, dtype="<f4", offset=HEADER_BYTES)
    else:                                                           # bf16: the top half of an fp32
        values = (np.frombuffer(data, dtype="<u2", offset=HEADER_BYTES).astype("<u4") << 16).view("<f4")
    same_act = cfg.act == file_act
    load_flat(model, values[:n], values[n:] if same_act else None)
    return model


def build_model(spec, norm, act, seed, std_scale=1.0):
    """-e: a model file, or a descriptor initialised with llm.c's init from seed."""
    if os.path.isfile(spec):
        return read_model(spec, norm, act)
    cfg = replace(parse_descriptor(spec), norm=norm or "ln", act=act or Act("gelu-tanh"))
    model = GPT(cfg)
    init_weights(model, seed, std_scale)
    return model


# -----------------------------------------------------------------------------
# Optimizer

def make_optimizer(model, lr, beta1, beta2, eps, weight_decay, fused=False):
    """AdamW with decoupled weight decay on the 2-D tensors only (wte, wpe, the four matrices);
    biases, LayerNorm parameters and slopes get none."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    extra = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps, **extra)


def lr_at(step, lr, warmup, steps, final_frac, schedule):
    """Learning rate of step s (0-based): linear warm-up, then the schedule down to final_frac*lr."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    lr_min = final_frac * lr
    if schedule == "cosine":
        return lr_min + 0.5 * (1.0 + math.cos(math.pi * p)) * (lr - lr_min)
    if schedule == "linear":
        return lr - p * (lr - lr_min)
    return lr


# -----------------------------------------------------------------------------
# Debug states (doc/reference.md, "File formats")

def write_debug_state(path, x, y, logits, loss, grads, entropy, losses, norms, hp, diag):
    """x, y: (B, T); logits: (B, T, V); grads: flat_values(grads=True); entropy: (L, NH);
    losses, norms: per step; hp: lr, beta1, beta2, eps, weight_decay, grad_clip; diag: (L, 5)."""
    B, T = x.shape
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0:5] = [DEBUG_MAGIC, DEBUG_VERSION, B, T, len(losses)]
    header[8:14] = [f32_bits(v) for v in hp]
    header[DEBUG_DIAG_SLOT] = diag.shape[1]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(x.numpy().astype("<i4").tobytes())
        f.write(y.numpy().astype("<i4").tobytes())
        f.write(logits.detach().cpu().numpy().astype("<f4").tobytes())
        f.write(np.array([loss], dtype="<f4").tobytes())
        f.write(grads.astype("<f4").tobytes())
        f.write(entropy.detach().cpu().numpy().astype("<f4").tobytes())
        f.write(np.array(losses, dtype="<f4").tobytes())
        f.write(np.array(norms, dtype="<f4").tobytes())
        f.write(diag.detach().cpu().numpy().astype("<f4").tobytes())


def debug_state_for_variant(args, norm, act, B, T, hp, outdir):
    """Write DIR/<tag>.bin (initial weights) and DIR/<tag>_debug_state.bin for one variant."""
    # At the tiny width (C = 32) llm.c's init (std 0.02) leaves the pre-activations at ~0.1 and
    # every attention row uniform: GELU and its tanh form then agree to ~1e-7 and the entropies
    # all equal their maximum, so the test could not tell right from wrong. Hence larger weights
    # (--debug-init-scale, default 12: std 0.24). Same seed, so all variants share the weights.
    model = build_model(args.e, norm, act, args.seed, args.debug_init_scale)
    cfg = model.cfg
    if T > cfg.maxT:
        raise InputError(f"-t {T} > maxT {cfg.maxT}")
    tag = variant_tag(norm, act)
    write_model(model, os.path.join(outdir, f"{tag}.bin"))

    # one batch, as the loader would cut it: B*T+1 consecutive tokens, y is x shifted by one
    g = torch.Generator().manual_seed(args.seed + 1)
    tokens = torch.randint(0, cfg.V, (B * T + 1,), generator=g)
    x, y = tokens[:-1].view(B, T), tokens[1:].view(B, T)

    lr, beta1, beta2, eps, weight_decay, grad_clip = hp
    opt = make_optimizer(model, lr, beta1, beta2, eps, weight_decay)
    losses, norms = [], []
    for step in range(NUM_DEBUG_STEPS):
        opt.zero_grad(set_to_none=True)
        logits, loss, measured = model(x, y, measure=True)
        loss.backward()
        if step == 0:                   # the reference values are those at the initial weights
            first = (logits.detach().clone(), loss.item(), flat_values(model, grads=True), measured["entropy"],
                     measured["diag"])
        clip = grad_clip if grad_clip > 0 else float("inf")              # 0: no clipping
        norm_ = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)  # pre-clip norm
        opt.step()
        losses.append(loss.item())
        norms.append(norm_.item())
    logits0, loss0, grads0, entropy0, diag0 = first
    write_debug_state(os.path.join(outdir, f"{tag}_debug_state.bin"), x, y, logits0, loss0, grads0,
                      entropy0, losses, norms, hp, diag0)
    print(f"{tag:<20} loss {loss0:.6f}  losses " + " ".join(f"{v:.6f}" for v in losses))


def write_debug_states(args):
    outdir = args.write_debug_states
    os.makedirs(outdir, exist_ok=True)
    if args.e is None:
        args.e = "L2H4C32T32V100"       # tiny: Vp = 128, so the padding is exercised
    B = 4 if args.b is None else args.b
    T = 16 if args.t is None else args.t  # T < maxT on purpose
    if B < 1 or T < 1:
        raise InputError("-b and -t must be positive")
    hp = (1e-3 if args.l is None else args.l, args.beta1, args.beta2, args.eps,
          0.1 if args.c is None else args.c, args.grad_clip)
    if args.variants:
        variants = [parse_variant(v) for v in args.variants.split(",") if v]
    elif args.norm or args.act:
        variants = [(parse_norm(args.norm or "ln"), parse_act(args.act or "gelu-tanh"))]
    else:
        variants = DEBUG_VARIANTS
    t0 = time.time()
    for norm, act in variants:
        debug_state_for_variant(args, norm, act, B, T, hp, outdir)
    print(f"wrote {2 * len(variants)} files to {outdir} in {time.time() - t0:.2f} s")


# -----------------------------------------------------------------------------
# Data: llm.c's token shards (doc/reference.md, "File formats")

def shard_size(path):
    """Validate a shard's header and size; return its number of tokens."""
    size = os.path.getsize(path)
    if size < HEADER_BYTES:
        raise InputError(f"{path}: too short for a token shard ({size} bytes)")
    with open(path, "rb") as f:
        h = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
    if h[0] != SHARD_MAGIC:
        raise InputError(f"{path}: not a token shard (magic {h[0]}, expected {SHARD_MAGIC})")
    if h[1] != SHARD_VERSION:
        raise InputError(f"{path}: unsupported token shard version {h[1]} (expected 1: uint16)")
    n = int(h[2])
    if n < 0 or size != HEADER_BYTES + 2 * n:
        raise InputError(f"{path}: {size} bytes, but the header says {n} tokens ({HEADER_BYTES + 2 * n} bytes)")
    return n


class DataLoader:
    """Sequential batches, as llm.c: each is B*T+1 consecutive tokens, x = tok[:-1], y = tok[1:],
    and the next starts B*T tokens later. A shard that cannot fill the next batch is left for the
    next shard (after the last one, the first again)."""

    def __init__(self, pattern, B, T, V, overfit=False):
        self.files = sorted(glob.glob(pattern))
        if not self.files:
            raise InputError(f"no files match '{pattern}'")
        self.sizes = [shard_size(f) for f in self.files]
        for f, n in zip(self.files, self.sizes):
            if n < B * T + 1:
                raise InputError(f"{f}: {n} tokens, fewer than B*T+1 = {B * T + 1}")
        self.B, self.T, self.V, self.overfit = B, T, V, overfit
        self.checked = set()
        self.reset()

    def num_batches(self):
        return sum((n - 1) // (self.B * self.T) for n in self.sizes)

    def reset(self):
        self.shard, self.pos = 0, 0
        self._open()

    def _open(self):
        path = self.files[self.shard]
        self.tokens = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(self.sizes[self.shard],))
        if path not in self.checked:    # an out-of-range id would crash the embedding lookup
            top = int(self.tokens.max())
            if top >= self.V:
                raise InputError(f"{path}: token id {top} >= vocab size {self.V}")
            self.checked.add(path)

    def next_batch(self):
        n = self.B * self.T
        if self.overfit:                # -a 1: the first batch, again and again
            self.pos = 0
        if self.pos + n + 1 > len(self.tokens):
            self.shard, self.pos = (self.shard + 1) % len(self.files), 0
            self._open()
        buf = torch.from_numpy(self.tokens[self.pos:self.pos + n + 1].astype(np.int64))
        self.pos += n
        return buf[:-1].view(self.B, self.T), buf[1:].view(self.B, self.T)


# -----------------------------------------------------------------------------
# Training

@torch.no_grad()
def evaluate(model, loader, max_batches, device, autocast):
    loader.reset()
    n = loader.num_batches() if max_batches < 0 else min(max_batches, loader.num_batches())
    total = torch.zeros((), device=device)
    for _ in range(n):
        x, y = loader.next_batch()
        with autocast:
            _, loss, _ = model(x.to(device), y.to(device))
        total += loss.float()
    return total.item() / max(1, n)


def measure_batches(model, batches, autocast):
    """Forward passes in measure mode (no gradient) over a step's micro-batches, to count the
    non-finite values of a step that produced a non-finite loss or gradient norm."""
    acc = None
    with torch.no_grad():
        for x, y in batches:
            with autocast:
                _, _, m = model(x, y, measure=True)
            acc = m if acc is None else {k: acc[k] + m[k] for k in m}
    return acc


def train(args):
    # ---- settings
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device available")
    else:
        device = torch.device(args.device)
    if args.compile and not hasattr(torch, "compile"):
        raise InputError("--compile needs PyTorch 2.x")
    if args.i is None:
        raise InputError("training needs -i (train shard pattern); see --help")
    torch.manual_seed(args.seed)
    norm = parse_norm(args.norm) if args.norm else None
    act = parse_act(args.act) if args.act else None
    model = build_model(args.e or "d12", norm, act, args.seed)
    cfg = model.cfg
    B = 4 if args.b is None else args.b
    T = cfg.maxT if args.t is None else args.t
    if B < 1 or T < 1 or T > cfg.maxT:
        raise InputError(f"need B >= 1 and 1 <= T <= maxT = {cfg.maxT} (got -b {B} -t {T})")
    total_tokens = B * T if args.d == -1 else args.d
    if total_tokens < 1 or total_tokens % (B * T) != 0:
        raise InputError(f"-d {args.d} must be a positive multiple of B*T = {B * T} (or -1)")
    grad_accum = total_tokens // (B * T)
    lr = 3e-4 if args.l is None else args.l
    weight_decay = 0.0 if args.c is None else args.c
    if args.entropy_every < 0 or args.u < 0:
        raise InputError("--entropy-every and -u must be >= 0")

    train_loader = DataLoader(args.i, B, T, cfg.V, overfit=bool(args.a))
    val_loader = DataLoader(args.j, B, T, cfg.V) if args.j else None
    steps = args.x if args.x >= 0 else train_loader.num_batches() // grad_accum  # -1: one epoch

    model.to(device)
    fused = device.type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    opt = make_optimizer(model, lr, args.beta1, args.beta2, args.eps, weight_decay, fused=fused)
    bf16, fp16 = args.dtype == "bfloat16", args.dtype == "float16"
    if fp16 and device.type != "cuda":
        raise InputError("--dtype float16 (the paper's fp16 autocast + GradScaler) needs --device cuda")
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else
                torch.autocast(device_type="cuda", dtype=torch.float16) if fp16 else nullcontext())
    # fp16: torch.cuda.amp.GradScaler's defaults (2**16, x2 every 2000 finite steps, /2 on inf/NaN)
    scaler = torch.cuda.amp.GradScaler() if fp16 else None
    applied = 0   # fp16: updates the scaler let through (Hugging Face's Trainer steps its LR schedule on those)
    run = torch.compile(model) if args.compile else model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    clip = args.grad_clip if args.grad_clip > 0 else float("inf")   # 0: no clipping, norm still logged

    print(f"model: L={cfg.L} NH={cfg.NH} C={cfg.C} maxT={cfg.maxT} V={cfg.V} (Vp {cfg.Vp}) "
          f"norm={cfg.norm} act={cfg.act} params={sum(p.numel() for p in model.parameters()):,}")
    print(f"device={device} dtype={args.dtype} compile={bool(args.compile)} fused_adamw={fused} "
          f"sdpa={HAVE_SDPA and device.type == 'cuda'}")
    print(f"B={B} T={T} grad_accum={grad_accum} tokens/step={total_tokens} steps={steps} "
          f"train batches/epoch={train_loader.num_batches()} lr={lr:g} warmup={args.u} "
          f"final={args.q:g} schedule={args.k} wd={weight_decay:g}")

    # ---- logs (doc/reference.md, "What a run writes")
    logs = {}
    if args.o:
        os.makedirs(args.o, exist_ok=True)
        def open_log(name, header=None):
            f = open(os.path.join(args.o, name), "w")
            if header:
                f.write(header + "\n")
            logs[name] = f
        open_log("main.log")
        open_log("nonfinite.tsv", "step\tlayer\tatt\tffn")
        if args.entropy_every > 0:
            open_log("entropy.tsv", "step\tlayer\thead\tentropy")
        if cfg.act.name in LEARNABLE:
            open_log("slopes.tsv", "step\tlayer\tslope")

    def log(name, line):
        if name in logs:
            logs[name].write(line + "\n")
            logs[name].flush()

    # ---- the loop: step s = 0..steps-1; validation before s = 0, every -v steps and at the end
    times, skipped = [], 0
    for step in range(steps + 1):
        last = step == steps
        if val_loader is not None and args.v > 0 and (step % args.v == 0 or last):
            val_loss = evaluate(run, val_loader, args.m, device, autocast)
            print(f"step {step:5d} | val loss {val_loss:.6f}", flush=True)
            log("main.log", f"s:{step} tel:{val_loss:.6f}")
        if last:
            break

        t0 = time.perf_counter()
        measure = args.entropy_every > 0 and step % args.entropy_every == 0
        step_lr = lr_at(applied if fp16 else step, lr, args.u, steps, args.q, args.k)
        for group in opt.param_groups:
            group["lr"] = step_lr
        slopes = model.slope_params()
        slopes_now = torch.stack(slopes).tolist() if slopes else []  # the slopes this step uses
        opt.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        measured, batches = None, []
        for _ in range(grad_accum):
            x, y = train_loader.next_batch()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            batches.append((x, y))
            with autocast:
                _, loss, m = run(x, y, measure=measure)
            if fp16:
                scaler.scale(loss / grad_accum).backward()
            else:
                (loss / grad_accum).backward()   # mean over the micro-batches
            loss_sum += loss.detach().float()
            if measure:
                measured = m if measured is None else {k: measured[k] + m[k] for k in m}
        if fp16:
            scaler.unscale_(opt)
        norm_ = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)  # pre-clip global norm
        train_loss, grad_norm = loss_sum.item() / grad_accum, norm_.item()
        finite = math.isfinite(train_loss) and math.isfinite(grad_norm)
        if not finite and not measure:
            measured = measure_batches(run, batches, autocast)
        if fp16:
            # GradScaler decides: it skips a step with inf/NaN gradients and halves the scale
            # (whatever --on-nan says, except stop, below)
            scale_before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            if scaler.get_scale() < scale_before:
                skipped += 1
            else:
                applied += 1
        elif finite or args.on_nan == "log":
            opt.step()
        elif args.on_nan == "skip":
            skipped += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        times.append(dt)

        print(f"step {step:5d}/{steps} | loss {train_loss:.6f} | lr {step_lr:.3e} | norm {grad_norm:.4f} "
              f"| {1000 * dt:.2f} ms | {total_tokens / dt:.0f} tok/s" + ("" if finite else " | NON-FINITE"),
              flush=True)
        log("main.log", f"s:{step} trl:{train_loss:.6f} lr:{step_lr:.6f} norm:{grad_norm:.6f}")
        for layer, s in enumerate(slopes_now):
            log("slopes.tsv", f"{step}\t{-1 if cfg.act.name == 'lrelu-global' else layer}\t{s:.6f}")
        if measured is not None:
            if measure:
                ent = (measured["entropy"] / grad_accum).tolist()        # (L, NH): mean over the step
                for layer, row in enumerate(ent):
                    for head, e in enumerate(row):
                        log("entropy.tsv", f"{step}\t{layer}\t{head}\t{e:.6f}")
            att, ffn = measured["att_nonfinite"].tolist(), measured["ffn_nonfinite"].tolist()
            if measure or sum(att) + sum(ffn) > 0:
                for layer in range(cfg.L):
                    log("nonfinite.tsv", f"{step}\t{layer}\t{att[layer]}\t{ffn[layer]}")
        if not finite and args.on_nan == "stop":
            print(f"stopped: non-finite loss or gradient norm at step {step} (--on-nan stop)", file=sys.stderr)
            sys.exit(3)

    # ---- summary: mean over the steps after the first few (compilation, allocator warm-up)
    timed = times[args.bench_skip:] if len(times) > args.bench_skip else times
    if timed:
        ms = 1000 * sum(timed) / len(timed)
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.1f}" if device.type == "cuda" else "na"
        if skipped:
            print(f"skipped updates: {skipped}")
        print(f"summary: ms_per_step={ms:.3f} tok_per_s={total_tokens / (ms / 1000):.1f} peak_mem_mb={peak} "
              f"steps_timed={len(timed)}")
    for f in logs.values():
        f.close()


# -----------------------------------------------------------------------------
# Command line

class Parser(argparse.ArgumentParser):
    def error(self, message):           # one line on stderr and exit 1 (argparse's own is 2)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(1)


def make_parser():
    p = Parser(description="GPT-2 with or without LayerNorm (normfree-gpt2, README.md):\n"
                           "the PyTorch reference trainer and the writer of the C++ tests' debug states.",
               epilog="examples:\n"
                      "  train_gpt2.py --write-debug-states dev/ref\n"
                      "  train_gpt2.py --write-debug-states /tmp/d12 -e d12 -t 64 --debug-init-scale 1 "
                      "--variants ln_gelu-tanh,none_relu\n"
                      "  train_gpt2.py -i 'data/x_train_*.bin' -j 'data/x_val_*.bin' -e d12 -o out -b 64 -t 128 "
                      "-d 65536 -l 1e-3 -u 1600 -q 0 -k linear -c 0.1 --norm none --act relu "
                      "--entropy-every 100 --dtype bfloat16 --compile",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data and model (llm.c's flags)")
    g.add_argument("-i", metavar="PATTERN", help="train token shards (glob, llm.c format); required for training")
    g.add_argument("-j", metavar="PATTERN", help="val token shards (glob); no validation without it")
    g.add_argument("-e", metavar="MODEL", help="model file (ours or llm.c's), or descriptor d6|d12|d24|d36|d48|"
                   "L<layers>H<heads>C<channels>[T<maxT>][V<vocab>] (maxT 1024, V 50257 unless given); "
                   "default d12, or L2H4C32T32V100 with --write-debug-states")
    g.add_argument("-o", metavar="DIR", help="output dir: main.log, nonfinite.tsv, entropy.tsv, slopes.tsv")
    g.add_argument("-b", type=int, metavar="B", help="micro batch size (default 4)")
    g.add_argument("-t", type=int, metavar="T", help="sequence length (default maxT; 16 with --write-debug-states)")
    g.add_argument("-d", type=int, default=-1, metavar="TOKENS",
                   help="tokens per optimizer step, a multiple of B*T (gradient accumulation); -1 = B*T (default)")
    g.add_argument("-x", type=int, default=-1, metavar="STEPS", help="steps; -1 = one epoch (default)")
    g.add_argument("-v", type=int, default=20, metavar="N", help="validate every N steps; 0 = never (default 20)")
    g.add_argument("-m", type=int, default=20, metavar="N", help="max validation batches; -1 = all (default 20)")
    g.add_argument("-a", type=int, default=0, choices=(0, 1), help="1 = overfit the first batch (default 0)")
    g = p.add_argument_group("optimizer")
    g.add_argument("-l", type=float, metavar="LR", help="learning rate (default 3e-4; 1e-3 with --write-debug-states)")
    g.add_argument("-u", type=int, default=0, metavar="STEPS", help="linear warm-up steps (default 0)")
    g.add_argument("-q", type=float, default=1.0, metavar="FRAC", help="final lr as a fraction of -l (default 1.0)")
    g.add_argument("-k", default="cosine", choices=("cosine", "linear", "constant"),
                   help="lr schedule after the warm-up (default cosine)")
    g.add_argument("-c", type=float, metavar="WD",
                   help="AdamW weight decay on the 2-D tensors (default 0; 0.1 with --write-debug-states)")
    g.add_argument("--beta1", type=float, default=0.9, help="(default 0.9)")
    g.add_argument("--beta2", type=float, default=0.999, help="(default 0.999)")
    g.add_argument("--eps", type=float, default=1e-8, help="(default 1e-8)")
    g.add_argument("--grad-clip", type=float, default=1.0, metavar="NORM",
                   help="clip the global gradient norm; 0 = off (default 1.0)")
    g.add_argument("--seed", type=int, default=1337, help="init seed; debug-state tokens use seed+1 (default 1337)")
    g = p.add_argument_group("variant and measurements")
    g.add_argument("--norm", help="ln | none | none-all (default: the model file's, else ln)")
    g.add_argument("--act", help="gelu | gelu-tanh | relu | lrelu:S | lrelu-layer[:S0] | lrelu-global[:S0] | "
                   "identity; S0 defaults to 0.01 (default: the model file's, else gelu-tanh)")
    g.add_argument("--entropy-every", type=int, default=0, metavar="N",
                   help="log per-head attention entropy every N steps, with materialised attention; 0 = off (default)")
    g.add_argument("--on-nan", default="stop", choices=("stop", "skip", "log"),
                   help="on a non-finite loss or gradient norm: stop (exit 3; default), skip the update, "
                        "or log it and update anyway")
    g = p.add_argument_group("speed (PyTorch 2.x on CUDA)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default auto)")
    g.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="bfloat16 = autocast; float16 = the paper's regime, fp16 autocast + GradScaler (CUDA only) (default float32)")
    g.add_argument("--compile", type=int, nargs="?", const=1, default=0, choices=(0, 1),
                   help="torch.compile the model (default 0)")
    g.add_argument("--bench-skip", type=int, default=3, metavar="N",
                   help="steps left out of the summary's timing, for warm-up and compilation (default 3)")
    g = p.add_argument_group("debug states (reference values for the C++ tests)")
    g.add_argument("--write-debug-states", metavar="DIR",
                   help="write DIR/<tag>.bin and DIR/<tag>_debug_state.bin per variant, then exit; "
                        "uses -e -b -t -l -c --beta1 --beta2 --eps --grad-clip --seed")
    g.add_argument("--variants", metavar="LIST",
                   help="comma-separated <norm>_<act>, e.g. ln_gelu-tanh,none_lrelu:0.1,none_lrelu-layer:0.1 "
                        "(default: the 16 test variants, learnable slopes starting at 0.1; or --norm/--act)")
    g.add_argument("--debug-init-scale", type=float, default=12.0, metavar="S",
                   help="-e descriptor: multiply llm.c's init standard deviations by S; 1 = llm.c's init (default 12, so that "
                        "the tiny model's activations and attention are not trivially small and uniform)")
    return p


def main(argv=None):
    args = make_parser().parse_args(argv)
    try:
        if args.write_debug_states:
            write_debug_states(args)
        else:
            train(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
