"""doc/scripts/check_entropy.py: checks, step by step, the fused attention entropy that
doc/attention-entropy.md derives (and entropy.cuh computes), against float64 references.

  1. H = ln l - u'/l equals -sum p ln p (float64, random rows)
  2. the online form (key tiles of 32, l and u' rescaled when the max moves) equals it
  3. in fp32 at large scores, the uncentred sum cancels and the centred one does not
  4. a causal row at query t has at most ln(t+1) nats; the mean bound is M = ln(T!)/T

Prints one line per check and "N passed, M failed"; exits 1 if any check fails.
Run: /usr/bin/python3 doc/scripts/check_entropy.py
"""
import math
import sys

import numpy as np

passed = failed = 0


def check(ok, what):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    print(("  ok   " if ok else "  FAIL ") + what)


def entropy_direct(s):
    """-sum p ln p in float64 from the probabilities themselves (the definition)."""
    s = np.asarray(s, dtype=np.float64)
    p = np.exp(s - s.max())
    p /= p.sum()
    nz = p > 0
    return float(-(p[nz] * np.log(p[nz])).sum())


def entropy_two_pass(s, dtype, centred=True):
    """m first, then l = sum e^(s-m) and u' = sum e^(s-m)(s-m) (centred) or u = sum e^(s-m) s."""
    s = np.asarray(s, dtype=dtype)
    m = s.max()
    e = np.exp(s - m)
    l = e.sum(dtype=dtype)
    if centred:
        u = (e * (s - m)).sum(dtype=dtype)
        return float(np.log(l) - u / l)
    u = (e * s).sum(dtype=dtype)
    return float(m + np.log(l) - u / l)


def entropy_online(s, dtype, tile=32, centred=True):
    """One pass over tiles of keys, as entropy.cuh's forward: running m, l, u (its update rules)."""
    s = np.asarray(s, dtype=dtype)
    m, l, u = dtype(-np.inf), dtype(0), dtype(0)
    for k0 in range(0, len(s), tile):
        st = s[k0:k0 + tile]
        m_new = max(m, st.max())
        alpha = dtype(0) if m == -np.inf else np.exp(m - m_new)
        e = np.exp(st - m_new)
        if centred:
            u_tile = (e * (st - m_new)).sum(dtype=dtype)
            # u' = sum e^(s-m0)(s-m0) becomes sum e^(s-m1)(s-m1) = alpha (u' + (m0-m1) l)
            u = u_tile if m == -np.inf else alpha * (u + (m - m_new) * l) + u_tile
        else:
            u = alpha * u + (e * st).sum(dtype=dtype)
        l = alpha * l + e.sum(dtype=dtype)
        m = m_new
    if centred:
        return float(np.log(l) - u / l)
    return float(m + np.log(l) - u / l)


rng = np.random.default_rng(1337)

print("1. H = ln l - u'/l, float64")
worst = 0.0
for n in (1, 2, 7, 100, 1000):
    for sigma in (0.1, 1.0, 10.0):
        s = rng.normal(0, sigma, n)
        worst = max(worst, abs(entropy_two_pass(s, np.float64) - entropy_direct(s)))
check(worst < 1e-12, f"largest |ln l - u'/l - (-sum p ln p)| over 15 random rows: {worst:.1e} (< 1e-12)")

print("2. online over 32-key tiles, with the rescaling, float64")
worst = 0.0
for n in (1, 31, 32, 33, 100, 1000):
    s = rng.normal(0, 3.0, n)
    s_rising = np.sort(s)  # the max moves at every tile: every rescaling is exercised
    for row in (s, s_rising):
        worst = max(worst, abs(entropy_online(row, np.float64) - entropy_direct(row)))
check(worst < 1e-12, f"largest |online - direct| (random and ascending rows, 1-1000 keys): {worst:.1e} (< 1e-12)")
# without the (m0 - m1) l shift the rescaled u' is wrong whenever the max moves
s = np.sort(rng.normal(0, 3.0, 100))
m, l, u = -np.inf, 0.0, 0.0
for k0 in range(0, 100, 32):
    st = s[k0:k0 + 32]
    m_new = max(m, st.max())
    alpha = 0.0 if m == -np.inf else math.exp(m - m_new)
    e = np.exp(st - m_new)
    u = alpha * u + (e * (st - m_new)).sum()  # the shift term left out
    l = alpha * l + e.sum()
    m = m_new
err_noshift = abs(math.log(l) - u / l - entropy_direct(s))
check(err_noshift > 1e-3, f"leaving out the (m0 - m1) l term breaks it: error {err_noshift:.3f} nats on an ascending row")

print("3. fp32 at large scores: the uncentred sum cancels, the centred one does not")
T = 128
rows = {
    "near-uniform, scores 1e4 + N(0, 0.1)": 1e4 + rng.normal(0, 0.1, T),
    "peaked, scores 1e4 + N(0, 3)": 1e4 + rng.normal(0, 3.0, T),
    "one-hot-ish, scores 1e4 + N(0, 30)": 1e4 + rng.normal(0, 30.0, T),
}
for name, s in rows.items():
    s32 = s.astype(np.float32)
    ref = entropy_direct(s32.astype(np.float64))  # the exact entropy of the fp32 scores
    err_c = abs(entropy_online(s32, np.float32) - ref)
    err_u = abs(entropy_online(s32, np.float32, centred=False) - ref)
    print(f"     {name}: H = {ref:.6f}; fp32 error centred {err_c:.1e}, uncentred {err_u:.1e}")
    check(err_c < 1e-5, f"centred fp32 within 1e-5 nats ({name})")
    check(err_u > 100 * max(err_c, 1e-7), f"uncentred fp32 error at least 100x the centred ({name})")
# at small scores both are fine: the cancellation needs a large m
s32 = rng.normal(0, 1.0, T).astype(np.float32)
ref = entropy_direct(s32.astype(np.float64))
err_u = abs(entropy_online(s32, np.float32, centred=False) - ref)
check(err_u < 1e-5, f"at scores ~N(0, 1) the uncentred fp32 sum is fine too: error {err_u:.1e}")

print("4. the causal bound ln(t+1) and the mean bound M = ln(T!)/T")
worst_excess = -np.inf
for t in range(0, 128):
    s = rng.normal(0, 2.0, t + 1)
    worst_excess = max(worst_excess, entropy_direct(s) - math.log(t + 1))
check(worst_excess <= 1e-12, f"random causal rows t = 0..127 never exceed ln(t+1) (largest excess {worst_excess:.2e})")
check(abs(entropy_direct(np.zeros(57)) - math.log(57)) < 1e-12, "a uniform row of 57 keys has exactly ln 57 nats")
for T in (32, 64, 128, 1024):
    M_sum = sum(math.log(t + 1) for t in range(T)) / T
    M_gamma = math.lgamma(T + 1) / T
    check(abs(M_sum - M_gamma) < 1e-12, f"T = {T}: mean of ln(t+1) = ln(T!)/T = {M_gamma:.4f} nats")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
