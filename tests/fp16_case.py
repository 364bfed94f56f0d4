"""tests/fp16_case.py: the reference side of the fp16 regime tests (tests/test_fp16.cpp, and the
FP16 CUDA build's test_gpt2.cu). Writes into OUTDIR:

  fp16_case_model.bin     a hand-made 2-layer LN-free ReLU GPT-2 (model file, version 3) whose
                          attention scores q.k exceed 65504 for some pairs of tokens and whose
                          FFN pre-activation exceeds it for one token: finite in fp32, inf in fp16
  fp16_case_tokens.bin    int32 (B, T) inputs, then int32 (B, T) targets
  fp16_case_expected.bin  int32 [B, T, L, NH], then for each layer: the non-finite attention
                          scores (causal ones), the non-finite FFN activations, then uint8
                          (L, B, NH, T): 1 where the row's softmax is NaN; then the same three
                          for the fp32 forward (no rounding): all zero
  fp16_values.bin         int32 n, float32 x (n), float32 numpy.float16(x) (n): the rounding table
  scaler_ref.txt          one line per step: finite(0/1) scale growth_tracker skipped, GradScaler's
                          update rule re-implemented in float64 from PyTorch's documentation
                          (torch.cuda.amp.GradScaler: init 2**16, growth 2 every 2000 finite steps,
                          backoff 0.5 on an inf/NaN step), since torch 1.13 runs it only on CUDA

The expected NaN places come from an independent numpy forward that rounds, with numpy.float16,
exactly the tensors the authors' GPT-2 holds in fp16 under autocast (doc/fp16-and-nans.md):
qkv, q.k^T, the score divided by sqrt(hs) in fp16, P cast for P V, every linear output, the
residual stream and the logits. The weights are small integers and powers of two, so every value
that decides an overflow is exact in both programs.

    /usr/bin/python3 tests/fp16_case.py OUTDIR
"""
import os
import struct
import sys

import numpy as np

L, NH, C, T, B, V = 2, 2, 16, 8, 2, 16
HS = C // NH
VP = ((V + 127) // 128) * 128
NORM_NONE, ACT_RELU = 2, 3

# token -> (channel 0, channel 1): ch0 drives head 0's q and k in layer 0, ch1 the FFN unit 0.
# 300^2 = 90000 -> inf; 255.875^2 = 65472 (finite, and 255.875 is exact in fp16);
# 256^2 = 65536 -> inf; 255.875 * 256 = 65504 (the largest fp16, finite); 250 * 300 = 75000 -> inf
# in the FFN; 218 * 300 = 65400 -> 65408 (finite). Token 10 has 300 in ch3, which drives head 1
# with k = -q: its own score is -90000 -> -inf, so p = 0 there and the row stays finite.
SPECIAL = {7: (300.0, 1.0), 5: (255.875, 2.0), 8: (256.0, 3.0), 9: (4.0, 250.0), 6: (5.0, 218.0)}
TOKENS = [[1, 7, 2, 10, 7, 4, 6, 2],
          [5, 5, 8, 2, 9, 5, 3, 8]]


def make_params():
    wte = np.zeros((VP, C), np.float32)
    for tok in range(V):
        wte[tok, 0], wte[tok, 1] = SPECIAL.get(tok, (float(tok % 4), float(tok % 3)))
        wte[tok, 2:] = ((np.arange(2, C) + tok) % 5 - 2) * 0.25
    wte[10, 3] = 300.0
    p = {
        "wte": wte, "wpe": np.zeros((128, C), np.float32),
        "ln1w": np.ones((L, C), np.float32), "ln1b": np.zeros((L, C), np.float32),
        "qkvw": np.zeros((L, 3 * C, C), np.float32), "qkvb": np.zeros((L, 3 * C), np.float32),
        "attprojw": np.zeros((L, C, C), np.float32), "attprojb": np.zeros((L, C), np.float32),
        "ln2w": np.ones((L, C), np.float32), "ln2b": np.zeros((L, C), np.float32),
        "fcw": np.zeros((L, 4 * C, C), np.float32), "fcb": np.zeros((L, 4 * C), np.float32),
        "fcprojw": np.zeros((L, C, 4 * C), np.float32), "fcprojb": np.zeros((L, C), np.float32),
        "lnfw": np.ones(C, np.float32), "lnfb": np.zeros(C, np.float32),
    }
    for l in range(L):
        qk = 1.0 if l == 0 else 0.25                 # layer 1's scores stay far below 65504
        p["qkvw"][l, 0, 0] = qk                      # head 0: q_0 = k_0 = ch0
        p["qkvw"][l, C, 0] = qk
        p["qkvw"][l, HS, 3], p["qkvw"][l, C + HS, 3] = 1.0, -1.0  # head 1: q = ch3, k = -ch3
        for i in range(2, C):                        # v carries ch2.. only: attention leaves ch0, ch1 exact
            p["qkvw"][l, 2 * C + i, i] = 0.25
        p["attprojw"][l] = 0.5 * np.eye(C, dtype=np.float32)
        p["fcw"][l, 0, 1] = 300.0                    # FFN unit 0 = 300 * ch1
        p["fcw"][l, 1:, 2:] = 0.125
        p["fcprojw"][l, 2:, 1:] = 0.0078125          # FFN output into ch2.. only
    return p


ORDER = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b",
         "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]


def write_model(path, p):
    h = np.zeros(256, np.int32)
    h[:13] = [20240326, 3, 128, V, L, NH, C, VP, 1, NORM_NONE, ACT_RELU, 0, 0]
    with open(path, "wb") as f:
        f.write(h.tobytes())
        for name in ORDER:
            f.write(p[name].astype(np.float32).tobytes())


def f16(x, on):
    """x rounded to fp16 (overflow -> inf) when on, else unchanged; float32 either way."""
    if not on:
        return x.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(np.float16).astype(np.float32)


def forward(p, tokens, fp16):
    """Returns the NaN-row mask (L, B, NH, T), non-finite causal scores (L,) and FFN activations (L,)."""
    x = p["wte"][tokens] + p["wpe"][:T]               # (B, T, C) fp32: autocast leaves the embedding
    causal = np.tril(np.ones((T, T), bool))
    masks, bad_att, bad_ffn = [], [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for l in range(L):
            qkv = f16(x @ p["qkvw"][l].T + p["qkvb"][l], fp16)                      # (B, T, 3C)
            q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, NH, HS).transpose(0, 2, 1, 3) for i in range(3))
            dot = f16(q @ k.transpose(0, 1, 3, 2), fp16)                             # (B, NH, T, T)
            if fp16:
                s = f16(dot / np.float32(np.float16(np.sqrt(np.float32(HS)))), True)  # fp16 / fp16
            else:
                s = dot * np.float32(1.0 / np.sqrt(np.float32(HS)))
            bad_att.append(int((~np.isfinite(s) & causal).sum()))
            s = np.where(causal, s, -np.inf)
            m = s.max(-1, keepdims=True)
            e = np.exp(s - m)
            prob = e / e.sum(-1, keepdims=True)                                      # fp32 softmax
            masks.append(np.isnan(prob).any(-1).astype(np.uint8))                    # (B, NH, T)
            # P V over the causal keys only, as both trainers compute it. (PyTorch's dense P @ V also
            # multiplies the masked p = 0 by v_j, and 0 * NaN = NaN: there a NaN at position j
            # reaches rows t < j as well; doc/fp16-and-nans.md.)
            pq = f16(prob, fp16)
            pv = np.concatenate([pq[:, :, t:t + 1, :t + 1] @ v[:, :, :t + 1] for t in range(T)], axis=2)
            y = f16(pv, fp16).transpose(0, 2, 1, 3).reshape(B, T, C)
            x = f16(x + f16(y @ p["attprojw"][l].T + p["attprojb"][l], fp16), fp16)
            h = f16(x @ p["fcw"][l].T + p["fcb"][l], fp16)
            a = np.maximum(h, 0) + np.where(np.isnan(h), h, 0)                      # ReLU keeps NaN
            bad_ffn.append(int((~np.isfinite(a)).sum()))
            x = f16(x + f16(a @ p["fcprojw"][l].T + p["fcprojb"][l], fp16), fp16)
    return np.stack(masks), bad_att, bad_ffn


def rounding_table():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.standard_normal(20000) * 10.0 ** rng.integers(-9, 6, 20000),
        np.float32([65504, 65505, 65519, 65519.996, 65520, 65521, 65536, 1e6, -65520, -65519,
                    2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 1.5 * 2.0 ** -25, 2.0 ** -26, 3 * 2.0 ** -25,
                    1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 2048 + 1, 2048 + 3, 0.0, -0.0]),
        (np.arange(-3000, 3000) * 0.25).astype(np.float32) + 60000,  # ties near the top
    ]).astype(np.float32)
    with np.errstate(over="ignore"):
        return x, x.astype(np.float16).astype(np.float32)


def scaler_reference(n=9000):
    """GradScaler.update() as documented: on inf/NaN scale *= 0.5 and the tracker resets; else
    tracker += 1 and at growth_interval scale *= 2, tracker = 0. Runs of finite steps long
    enough to grow twice, with skipped steps scattered before and between."""
    rng = np.random.default_rng(1)
    finite = np.ones(n, bool)
    finite[rng.integers(0, 1500, 12)] = False
    finite[rng.integers(6200, 6300, 3)] = False
    scale, tracker, skipped, rows = 65536.0, 0, 0, []
    for f in finite:
        if not f:
            scale, tracker, skipped = scale * 0.5, 0, skipped + 1
        else:
            tracker += 1
            if tracker == 2000:
                scale, tracker = scale * 2.0, 0
        rows.append(f"{int(f)} {scale:.17g} {tracker} {skipped}")
    return rows


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "out/fp16case"
    os.makedirs(out, exist_ok=True)
    p = make_params()
    write_model(os.path.join(out, "fp16_case_model.bin"), p)
    tokens = np.array(TOKENS, np.int32)
    targets = np.roll(tokens, -1, axis=1)
    with open(os.path.join(out, "fp16_case_tokens.bin"), "wb") as f:
        f.write(tokens.tobytes() + targets.tobytes())
    with open(os.path.join(out, "fp16_case_expected.bin"), "wb") as f:
        f.write(np.int32([B, T, L, NH]).tobytes())
        for fp16 in (True, False):
            masks, bad_att, bad_ffn = forward(p, tokens, fp16)
            f.write(np.int32(bad_att + bad_ffn).tobytes() + masks.tobytes())
            print(f"fp16={int(fp16)}: NaN rows per layer {masks.sum(axis=(1, 2, 3)).tolist()}, "
                  f"non-finite scores {bad_att}, FFN activations {bad_ffn}")
    x, r = rounding_table()
    with open(os.path.join(out, "fp16_values.bin"), "wb") as f:
        f.write(struct.pack("i", len(x)) + x.tobytes() + r.tobytes())
    with open(os.path.join(out, "scaler_ref.txt"), "w") as f:
        f.write("\n".join(scaler_reference()) + "\n")


if __name__ == "__main__":
    main()
