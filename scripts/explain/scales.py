#!/usr/bin/env python3
"""scales.py: the numbers behind the derivations of doc/entropic-overload.md, each computed two
ways (closed form and a seeded Monte Carlo), in a few seconds on the CPU:

  1. M = ln(T!)/T, the largest mean entropy of a causal attention row
  2. the score spread at llm.c's init, std(s) = sigma^2 C r^2, and the entropy it costs,
     M - H ~ std^2 / 2, for LayerNorm (r = 1) and LN-free (r = RMS of wte + wpe) models
  3. how linear GELU is at pre-activation scale rho: the RMS of its even part x (Phi(x) - 1/2)
     over its odd part x / 2 (ReLU: 1 at every scale; leaky ReLU with slope a: (1 - a) / (1 + a))

    /usr/bin/python3 scripts/explain/scales.py
"""
import math

import torch

torch.manual_seed(0)
SIGMA = 0.02  # llm.c's init std for every weight matrix and both embeddings


def max_entropy(T):
    return sum(math.log(t) for t in range(1, T + 1)) / T


def sampled_entropy(T, std, rows=400):
    """Mean entropy of causal rows 1..T whose scores are N(0, std^2)."""
    total = 0.0
    for t in range(1, T + 1):
        p = torch.softmax(torch.randn(rows, t, dtype=torch.float64) * std, dim=-1)
        total += (-(p * p.log()).sum(-1)).mean().item()
    return total / T


def sampled_score_std(C, NH, r, T=64):
    """std of q.k/sqrt(hs) with q, k = W x, W ~ N(0, SIGMA^2) (C, C), x ~ N(0, r^2): one draw."""
    hs = C // NH
    x = torch.randn(T, C, dtype=torch.float64) * r
    wq, wk = (torch.randn(C, C, dtype=torch.float64) * SIGMA for _ in range(2))
    q, k = (x @ wq.T).view(T, NH, hs).transpose(0, 1), (x @ wk.T).view(T, NH, hs).transpose(0, 1)
    s = q @ k.transpose(-1, -2) / math.sqrt(hs)
    return s.masked_select(torch.ones(T, T, dtype=torch.bool).tril()).std().item()


print("1. M = ln(T!)/T (nats)")
for T in (32, 64, 128, 1024):
    print(f"   T = {T:4d}: M = {max_entropy(T):.4f}")

print("2. score std at init, sigma^2 C r^2, and the entropy deficit M - H at T = 64")
r_free = math.sqrt(2) * SIGMA  # wte + wpe: two independent N(0, sigma^2) entries
print(f"   LN-free input RMS r = sqrt(2) * {SIGMA} = {r_free:.4f}")
M64 = max_entropy(64)
for C, NH in ((128, 4), (768, 12)):
    for name, r in (("LayerNorm", 1.0), ("LN-free", r_free)):
        pred = SIGMA ** 2 * C * r ** 2
        got = sampled_score_std(C, NH, r)
        deficit = M64 - sampled_entropy(64, pred)
        print(f"   C = {C:3d} {name:9s}: predicted std {pred:.3g}, sampled {got:.3g}; "
              f"deficit std^2/2 = {pred ** 2 / 2:.2g} nats, sampled {deficit:.2g}")

print("3. RMS of GELU's even part / its odd part, pre-activations N(0, rho^2)")
for rho in (0.0066, 0.05, 0.226, 0.5, 1.0, 2.0):
    h = torch.randn(1_000_000, dtype=torch.float64) * rho
    even = torch.nn.functional.gelu(h) - h / 2
    ratio = (even.pow(2).mean() / (h / 2).pow(2).mean()).sqrt().item()
    print(f"   rho = {rho:6.4f}: {ratio:.4f}   (small-rho form 2 sqrt(3) rho / sqrt(2 pi) = "
          f"{2 * math.sqrt(3) * rho / math.sqrt(2 * math.pi):.4f})")
for a in (0.0, 0.01, 0.1, 0.2):
    print(f"   leaky ReLU, slope {a}: (1 - a) / (1 + a) = {(1 - a) / (1 + a):.4f} at every rho")
