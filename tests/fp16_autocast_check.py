"""tests/fp16_autocast_check.py: the paper's fp16 regime against PyTorch itself, on a GPU
(scripts/gpu_check.sh, stage fp16; PyTorch's fp16 autocast and GradScaler run only on CUDA).

  1. tests/fp16_case.py's hand-made model through train_gpt2.py's GPT-2 under
     torch.autocast("cuda", torch.float16): the softmax rows that come out NaN in layer 0 are the
     ones numpy float16 (and so test_fp16 and test_gpt2cu FP16) predicts. From layer 1 on,
     PyTorch's dense P @ V also multiplies masked p = 0 by a NaN v (0 * NaN = NaN), which our
     trainers never compute: there PyTorch's NaN rows must include ours (printed, both counts).
  2. torch.cuda.amp.GradScaler on a sequence of finite and inf gradients: its scale and growth
     tracker after every step equal scaler_ref.txt, the rule the trainers' loss scalers follow.

    python3 tests/fp16_autocast_check.py out/fp16case     (after tests/fp16_case.py out/fp16case)
Last line: "N passed, M failed".
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import train_gpt2 as tg  # noqa: E402

passed = failed = 0


def check(ok, text):
    global passed, failed
    print(("  ok   " if ok else "  FAIL ") + text)
    passed, failed = passed + bool(ok), failed + (not ok)


def nan_rows(block, x):
    """(B, NH, T) bool: the attention rows of this block that are NaN under fp16 autocast, formed
    as train_gpt2.py's materialised_attention forms them."""
    B, T, C = x.shape
    NH = block.attn.NH
    q, k, _ = block.attn.c_attn(x).split(C, dim=2)
    q = q.view(B, T, NH, C // NH).transpose(1, 2)
    k = k.view(B, T, NH, C // NH).transpose(1, 2)
    scores = q @ k.transpose(-2, -1)
    scores = scores / torch.full([], math.sqrt(C // NH), dtype=scores.dtype, device=scores.device)
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    p = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    return torch.isnan(p).any(dim=-1)


def check_forward(d):
    ref = open(os.path.join(d, "fp16_case_expected.bin"), "rb").read()
    B, T, L, NH = np.frombuffer(ref[:16], "<i4")
    mask = np.frombuffer(ref[16 + 8 * L:16 + 8 * L + L * B * NH * T], np.uint8).reshape(L, B, NH, T).astype(bool)
    tokens = np.fromfile(os.path.join(d, "fp16_case_tokens.bin"), "<i4")[:B * T].reshape(B, T)
    model = tg.read_model(os.path.join(d, "fp16_case_model.bin")).cuda()
    idx = torch.tensor(tokens, dtype=torch.long, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        x = model.wte(idx) + model.wpe(torch.arange(T, device="cuda"))
        for l, block in enumerate(model.blocks):
            got = nan_rows(block, x).cpu().numpy()
            if l == 0:
                check(np.array_equal(got, mask[0]), f"layer 0: PyTorch fp16 autocast has NaN rows at numpy's places "
                      f"({int(got.sum())} rows, {int((got != mask[0]).sum())} differ)")
            else:
                check(bool((got | ~mask[l]).all()), f"layer {l}: PyTorch's NaN rows ({int(got.sum())}, dense P V) include "
                      f"ours ({int(mask[l].sum())}, causal P V)")
            x, _ = block(x, model.slope, True)  # measure=True: the materialised attention, never SDPA


def check_scaler(d):
    rows = [line.split() for line in open(os.path.join(d, "scaler_ref.txt"))]
    p = torch.nn.Parameter(torch.zeros(1, device="cuda"))
    opt = torch.optim.SGD([p], lr=0.0)
    scaler = torch.cuda.amp.GradScaler()
    scaler.scale(torch.ones(1, device="cuda"))  # creates the scale tensor
    bad = 0
    for i, (finite, scale, tracker, _) in enumerate(rows):
        opt.zero_grad(set_to_none=False)
        p.grad = torch.full((1,), 1.0 if finite == "1" else float("inf"), device="cuda")
        scaler.step(opt)
        scaler.update()
        if scaler.get_scale() != float(scale) or scaler._get_growth_tracker() != int(tracker):
            if bad == 0:
                print(f"     step {i}: GradScaler scale {scaler.get_scale()} tracker {scaler._get_growth_tracker()}, "
                      f"reference {scale} {tracker}")
            bad += 1
    check(bad == 0, f"torch.cuda.amp.GradScaler follows scaler_ref.txt over {len(rows)} steps ({bad} differ)")


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "out/fp16case"
    if not torch.cuda.is_available():
        print("fp16_autocast_check.py: error: needs a CUDA device (PyTorch's fp16 autocast and GradScaler)")
        sys.exit(1)
    check_forward(d)
    check_scaler(d)
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
