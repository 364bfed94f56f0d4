"""
dev/bench_torch_minimal.py: the fastest PyTorch training loop we can write for the model of
train_gpt2.py: the CUDA trainer's second speed peer (scripts/gpu_check.sh, stage bench).

train_gpt2.py --compile is a whole trainer: every step it sets the learning rate, clips the
gradients (a global norm), reads the loss and the norm back to the host (two waits for the GPU)
and logs. This loop keeps only what training needs: the same model (train_gpt2.GPT, imported, so
the architecture and the --norm/--act variants cannot drift apart), bf16 autocast, flash
attention (the model calls F.scaled_dot_product_attention(is_causal=True) on CUDA), torch.compile,
fused AdamW (train_gpt2's parameter groups) at a constant learning rate, no clipping, no
entropy, and nothing read back while timed, so the host queues steps ahead of the GPU.

Tokens: with -i, the trainers' own llm.c shards through train_gpt2.DataLoader (consecutive
batches), staged in pinned memory and copied without blocking; without -i, random tokens drawn
on the device. The step's time hardly depends on the token values (only the embedding
backward's handling of repeated tokens does, a tiny part of a step), so either measures the same.

Time: CUDA events around the steps after the first --bench-skip (compilation, allocator and
cuBLAS warm-up), as the CUDA trainer times its steps; on the CPU the wall clock. Peak memory:
torch.cuda.max_memory_allocated() since the first step, as train_gpt2.py ("na" on the CPU).
The last line has the other trainers' form:
    summary: ms_per_step=... tok_per_s=... peak_mem_mb=... steps_timed=...

GPU:  python dev/bench_torch_minimal.py -i "data/x_train_*.bin" -e d12 -b 128 -t 128 --norm none --act relu
CPU smoke test (tiny model, fp32, no compile; PyTorch 1.13 is enough):
      python dev/bench_torch_minimal.py -e L2H2C32T32V512 -b 4 -t 16 -x 4 --bench-skip 1 \\
          --device cpu --dtype float32 --compile 0
"""

import argparse
import os
import sys
import time
from contextlib import nullcontext

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import train_gpt2 as ref  # noqa: E402  (the repository root, wherever this is run from)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="minimal compiled PyTorch training loop: ms per step, tokens/s, peak memory")
    p.add_argument("-i", metavar="PATTERN", help="train token shards (llm.c format); default: random tokens")
    p.add_argument("-e", default="d12", metavar="MODEL", help="model file or descriptor (default d12)")
    p.add_argument("-b", type=int, default=128, metavar="B", help="batch size (default 128)")
    p.add_argument("-t", type=int, default=128, metavar="T", help="sequence length (default 128)")
    p.add_argument("-x", type=int, default=25, metavar="STEPS", help="steps, the untimed ones included (default 25)")
    p.add_argument("--bench-skip", type=int, default=5, metavar="N", help="untimed first steps (default 5)")
    p.add_argument("-l", type=float, default=3e-4, metavar="LR", help="constant learning rate (default 3e-4)")
    p.add_argument("-c", type=float, default=0.0, metavar="WD", help="weight decay (default 0, as train_gpt2.py)")
    p.add_argument("--norm", help="ln | none | none-all (default: as train_gpt2.py, the model file's, else ln)")
    p.add_argument("--act", help="as train_gpt2.py's --act (default: the model file's, else gelu-tanh)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"), help="bfloat16 = autocast (default)")
    p.add_argument("--compile", type=int, default=1, choices=(0, 1), help="torch.compile the model (default 1)")
    args = p.parse_args(argv)
    if args.b < 1 or args.t < 1 or args.bench_skip < 0 or args.x <= args.bench_skip:
        p.error("need -b, -t >= 1 and -x > --bench-skip >= 0")
    return args


def batch_source(args, B, T, V, device):
    """A function returning the next (inputs, targets) pair, (B, T) int64 on the device."""
    if args.i is None:
        def random_batch():  # two contiguous tensors, as the shards' batches after their copy
            return torch.randint(0, V, (B, T), device=device), torch.randint(0, V, (B, T), device=device)
        return random_batch
    loader = ref.DataLoader(args.i, B, T, V)
    pin = device.type == "cuda"

    def shard_batch():
        x, y = loader.next_batch()
        if pin:  # pinned, so that the copy is queued on the stream instead of waiting for it
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return shard_batch


def main(argv=None):
    args = parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device available")
    if args.compile and not hasattr(torch, "compile"):
        raise SystemExit("error: --compile 1 needs PyTorch 2.x")
    torch.manual_seed(args.seed)

    norm = ref.parse_norm(args.norm) if args.norm else None
    act = ref.parse_act(args.act) if args.act else None
    model = ref.build_model(args.e, norm, act, args.seed).to(device)
    cfg, B, T = model.cfg, args.b, args.t
    if T > cfg.maxT:
        raise SystemExit(f"error: -t {T} is longer than the model's maximum sequence length {cfg.maxT}")
    opt = ref.make_optimizer(model, args.l, 0.9, 0.999, 1e-8, args.c, fused=cuda)  # fused: one kernel family per step
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if args.dtype == "bfloat16" else nullcontext()
    run = torch.compile(model) if args.compile else model
    next_batch = batch_source(args, B, T, cfg.V, device)
    print(f"bench_torch_minimal: L={cfg.L} NH={cfg.NH} C={cfg.C} V={cfg.V} norm={cfg.norm} act={cfg.act} "
          f"B={B} T={T} device={device} dtype={args.dtype} compile={args.compile} fused_adamw={cuda} "
          f"sdpa={ref.HAVE_SDPA and cuda} tokens={'shards' if args.i else 'random'}", flush=True)

    def step():
        x, y = next_batch()
        with autocast:
            _, loss, _ = run(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.bench_skip):
        step()
    timed = args.x - args.bench_skip
    if cuda:  # events on the stream: no wait here, the timed steps queue behind the warm-up
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        losses = [step() for _ in range(timed)]
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end) / timed
    else:
        t0 = time.perf_counter()
        losses = [step() for _ in range(timed)]
        ms = 1000 * (time.perf_counter() - t0) / timed
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:.1f}" if cuda else "na"
    print(f"loss {losses[0].item():.4f} -> {losses[-1].item():.4f} over the timed steps")
    print(f"summary: ms_per_step={ms:.3f} tok_per_s={B * T / (ms / 1000):.1f} peak_mem_mb={peak} steps_timed={timed}")


if __name__ == "__main__":
    try:
        main()
    except ref.InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
