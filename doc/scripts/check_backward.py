"""doc/scripts/check_backward.py: the backward formulas of doc/backward.md (the ones
train_gpt2.cpp implements) against PyTorch autograd, layer by layer, in float64.

Each check builds the layer's forward in PyTorch, takes autograd's gradient of a random linear
function of its output (sum(out * dout)), and compares it with the hand formula.
Prints one line per check and "N passed, M failed"; exits 1 if any check fails.
Run: /usr/bin/python3 doc/scripts/check_backward.py
"""
import math
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(1337)
torch.set_default_dtype(torch.float64)
passed = failed = 0
TOL = 1e-12  # relative to the largest |gradient|: float64 rounding only


def check(name, formula, autograd):
    global passed, failed
    err = (formula - autograd).abs().max().item() / max(autograd.abs().max().item(), 1e-300)
    ok = err < TOL
    passed += ok
    failed += not ok
    print(f"  {'ok  ' if ok else 'FAIL'} {name}: max relative difference {err:.1e}")


def grads(f, *inputs):
    """autograd's gradients of sum(f(inputs) * dout) for a random dout; returns (dout, grads)."""
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = f(*xs)
    dout = torch.randn_like(out)
    g = torch.autograd.grad((out * dout).sum(), xs)
    return dout, g


B, T, C, NH, V = 2, 5, 8, 2, 11
N = B * T

print("cross-entropy + softmax: dlogits = (p - onehot(y)) / N")
logits, y = torch.randn(N, V), torch.randint(0, V, (N,))
lg = logits.clone().requires_grad_(True)
(g_auto,) = torch.autograd.grad(F.cross_entropy(lg, y), lg)
p = torch.softmax(logits, -1)
check("dlogits", (p - F.one_hot(y, V)) / N, g_auto)

print("matmul y = x W^T + b: dx = dy W, dW = dy^T x, db = sum_rows dy")
x, W, b = torch.randn(N, C), torch.randn(3 * C, C), torch.randn(3 * C)
dy, (dx, dW, db) = grads(lambda x, W, b: x @ W.T + b, x, W, b)
check("dx", dy @ W, dx)
check("dW", dy.T @ x, dW)
check("db", dy.sum(0), db)

print("LayerNorm: dx = rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)), dnorm = w dy")
x, w, bb = torch.randn(N, C) * 3 + 1, torch.randn(C), torch.randn(C)
dy, (dx, dw, dbb) = grads(lambda x, w, b: F.layer_norm(x, (C,), w, b, 1e-5), x, w, bb)
mean = x.mean(-1, keepdim=True)
rstd = 1 / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + 1e-5)
norm = (x - mean) * rstd
dnorm = w * dy
dx_formula = rstd * (dnorm - dnorm.mean(-1, keepdim=True) - norm * (dnorm * norm).mean(-1, keepdim=True))
check("dx (the two reductions)", dx_formula, dx)
check("dw = sum norm dy", (norm * dy).sum(0), dw)
check("db = sum dy", dy.sum(0), dbb)

print("causal attention: ds = p (dp - D), D_t = sum_j p_tj dp_tj = dO_t . O_t")
hs = C // NH
q, k, v = torch.randn(B, NH, T, hs) * 2, torch.randn(B, NH, T, hs) * 2, torch.randn(B, NH, T, hs)
mask = torch.ones(T, T).tril().bool()
scale = 1 / math.sqrt(hs)


def attention(q, k, v):
    s = (q @ k.transpose(-1, -2)) * scale
    return torch.softmax(s.masked_fill(~mask, -math.inf), -1) @ v


dO, (dq, dk, dv) = grads(attention, q, k, v)
P = torch.softmax(((q @ k.transpose(-1, -2)) * scale).masked_fill(~mask, -math.inf), -1)
O = P @ v
dP = dO @ v.transpose(-1, -2)                       # dp_tj = dO_t . v_j
D = (P * dP).sum(-1, keepdim=True)                  # the softmax's correction term
dS = P * (dP - D)
check("dv = P^T dO", P.transpose(-1, -2) @ dO, dv)
check("dq = scale dS K", scale * dS @ k, dq)
check("dk = scale dS^T Q", scale * dS.transpose(-1, -2) @ q, dk)
check("D = dO . O (the form a fused kernel uses)", (dO * O).sum(-1, keepdim=True), D)
row_sums = dS.sum(-1).abs().max().item()
ok = row_sums < 1e-12
passed += ok
failed += not ok
print(f"  {'ok  ' if ok else 'FAIL'} each row of dS sums to 0 (largest |sum| {row_sums:.1e}): scores' common shift has no gradient")

print("activations: f'(h)")
h = torch.randn(1000) * 3
h[:3] = torch.tensor([0.0, -0.0, 1e-3])
dy, (dh,) = grads(lambda h: F.gelu(h), h)
Phi = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
phi = torch.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)
check("GELU exact: Phi(h) + h phi(h)", (Phi + h * phi) * dy, dh)
dy, (dh,) = grads(lambda h: F.gelu(h, approximate="tanh"), h)
c = math.sqrt(2 / math.pi)
th = torch.tanh(c * (h + 0.044715 * h ** 3))
d_tanh = 0.5 * (1 + th) + 0.5 * h * (1 - th * th) * c * (1 + 3 * 0.044715 * h * h)
check("GELU tanh: 0.5 (1 + th) + 0.5 h (1 - th^2) c (1 + 0.134145 h^2)", d_tanh * dy, dh)
dy, (dh,) = grads(F.relu, h)
check("ReLU: 1 if h > 0 else 0 (0 at h = 0)", (h > 0).double() * dy, dh)
slope = torch.tensor(0.05)
dy, (dh, dslope) = grads(lambda h, s: torch.where(h >= 0, h, s * h), h, slope)
check("leaky ReLU: 1 if h >= 0 else s", torch.where(h >= 0, torch.ones_like(h), slope) * dy, dh)
check("learnable slope: dL/ds = sum over h < 0 of h dL/df", (h * dy)[h < 0].sum(), dslope)

print("residual x + F(x): the gradient reaches x twice")
x, W = torch.randn(N, C), torch.randn(C, C)
dy, (dx,) = grads(lambda x: x + torch.relu(x @ W.T), x)
check("dx = dy + W^T (relu'(xW^T) dy)", dy + ((x @ W.T > 0).double() * dy) @ W, dx)

print("embeddings: dwte[token] += dx, dwpe[t] += sum over the batch")
wte, wpe = torch.randn(V, C), torch.randn(T, C)
tok = torch.randint(0, V, (B, T))
dx, (dwte, dwpe) = grads(lambda wte, wpe: wte[tok] + wpe[torch.arange(T)], wte, wpe)
check("dwte (index_add over the tokens)", torch.zeros(V, C).index_add_(0, tok.flatten(), dx.reshape(-1, C)), dwte)
check("dwpe", dx.sum(0), dwpe)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
