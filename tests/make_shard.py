"""make_shard.py: writes small llm.c token shards (and broken ones) for the CLI tests.

Usage: make_shard.py OUT.bin N VOCAB [--seed S] [--bad magic|truncated|empty|big-id]
The tokens are a noisy counting sequence (t[i+1] = t[i] + 1..3 mod VOCAB), which a small model
learns quickly, so a test can see the loss fall. Standard library only.
"""
import argparse
import random
import struct

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("n", type=int)
p.add_argument("vocab", type=int)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--bad", choices=["magic", "truncated", "empty", "big-id"])
a = p.parse_args()

rng = random.Random(a.seed)
tokens, t = [], 0
for _ in range(a.n):
    tokens.append(t)
    t = (t + rng.randint(1, 3)) % a.vocab
if a.bad == "big-id":
    tokens[a.n // 2] = a.vocab  # one id just past the vocabulary
header = [20240520, 1, a.n] + [0] * 253
if a.bad == "magic":
    header[0] = 12345
with open(a.out, "wb") as f:
    if a.bad == "empty":
        pass
    else:
        f.write(struct.pack("<256i", *header))
        body = struct.pack("<%dH" % a.n, *tokens)
        f.write(body[: len(body) // 2] if a.bad == "truncated" else body)
