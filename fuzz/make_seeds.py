"""fuzz/make_seeds.py: writes the fixed seed corpora of the libFuzzer harnesses (fuzz/corpus/*),
small valid files of each format plus a few broken ones, with the standard library only.
The corpora are checked in; run this again only to change them: /usr/bin/python3 fuzz/make_seeds.py
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(corpus, name, data):
    os.makedirs(os.path.join(ROOT, corpus), exist_ok=True)
    with open(os.path.join(ROOT, corpus, name), "wb") as f:
        f.write(data)


def header(*ints):
    return struct.pack("<256i", *(list(ints) + [0] * (256 - len(ints))))


def num_params(maxT, Vp, L, C):  # the 16 llm.c tensors (config.h: fill_param_sizes)
    return Vp * C + maxT * C + L * (C * 2 + 3 * C * C + 3 * C + C * C + C + C * 2 + 4 * C * C + 4 * C + 4 * C * C + C) + 2 * C


def floats(n, value=0.01):
    return struct.pack(f"<{n}f", *([value] * n))


# model files: llm.c's record (slot 8 = 0) and the variant record with learnable slopes
n = num_params(8, 128, 1, 4)
put("model_file", "llmc_L1H1C4T8V100", header(20240326, 3, 8, 100, 1, 1, 4, 128) + floats(n))
put("model_file", "lrelu_layer_L2H2C4", header(20240326, 3, 8, 100, 2, 2, 4, 128, 1, 2, 5, struct.unpack("<i", struct.pack("<f", 0.1))[0], 2)
    + floats(num_params(8, 128, 2, 4)) + floats(2, 0.1))
put("model_file", "truncated", header(20240326, 3, 8, 100, 1, 1, 4, 128) + floats(10))
put("model_file", "bf16_version", header(20240326, 5, 8, 100, 1, 1, 4, 128))

# state files for 1200 parameters + 1 slope, marker step 3 (fuzz_state_file.cpp)
P = 1200
state = header(20240527, 1, 3, P, 1, 3, 0, 8, 0, 0, 11, 0, 12, 0, 13, 0, 14, 0)
put("state_file", "good_step3", state + floats(P + 1, 0.001) + floats(P + 1, 0.0001))
scaler = header(20240527, 1, 3, P, 1, 2, 1, 4, 2, 1, 11, 0, 12, 0, 13, 0, 14, 0, 1,
                struct.unpack("<i", struct.pack("<f", 1024.0))[0], 37, 4)
put("state_file", "scaler_step3", scaler + floats(P + 1, -0.001) + floats(P + 1, 0.0))
put("state_file", "wrong_step", header(20240527, 1, 2, P, 1, 2) + floats(2 * (P + 1)))

# token shards: enough for B 2, T 4 (9 tokens) in a vocabulary of 512
def shard(tokens, magic=20240520, version=1, count=None):
    count = len(tokens) if count is None else count
    return header(magic, version, count) + struct.pack(f"<{len(tokens)}H", *tokens)

put("shard", "counting_40", shard([(i * 3) % 512 for i in range(40)]))
put("shard", "one_batch", shard(list(range(9))))
put("shard", "id_past_vocab", shard([1, 2, 3, 512, 4, 5, 6, 7, 8, 9]))
put("shard", "count_lies", shard(list(range(20)), count=25))

# tokenizers: version 2 with an end-of-text id, version 1
def tokenizer(version, tokens, eot=None):
    h = header(20240328, version, len(tokens), eot if eot is not None else 0)
    return h + b"".join(bytes([len(t)]) + t for t in tokens)

toks = [bytes([97 + i % 26]) * (1 + i % 3) for i in range(30)]
put("tokenizer", "v2_eot29", tokenizer(2, toks, 29))
put("tokenizer", "v1", tokenizer(1, toks))
put("tokenizer", "count_lies", header(20240328, 2, 1 << 20, 5) + b"\x01a" * 10)

# descriptors, activations, norms, numbers
for i, s in enumerate(["d12", "d6", "L4H4C128", "L2H2C32T32V512", "L1H1C8T16V64", "lrelu:0.1", "lrelu-layer:0.01",
                       "gelu", "none-all", "1e-3", "-1", "0.5", "L2H3C32", "L4H4C128T65537"]):
    put("descriptor", f"seed_{i:02d}", s.encode())

# command lines (NUL between arguments) for fuzz_flags and fuzz_setup (which prepends
# -i train_*.bin -j val_*.bin -e model.bin -v 0 and works in its fixture directory)
lines = {
    "model_file": ["-b", "2", "-t", "8", "-x", "1"],
    "descriptor": ["-e", "L1H1C8T16V64", "-b", "2", "-t", "8", "-d", "32", "-x", "2", "--act", "relu"],
    "epoch": ["-b", "2", "-t", "8", "--shuffle", "1", "--norm", "ln"],
    "resume": ["-y", "1", "-o", "ckpt", "-b", "2", "-t", "8", "-x", "4"],
    "optimizer": ["-l", "1e-3", "-u", "2", "-q", "0.1", "-k", "linear", "-c", "0.1", "--beta1", "0.8", "--beta2", "0.95",
                  "--eps", "1e-6", "--grad-clip", "0.5", "--on-nan", "skip", "--seed", "7", "-b", "2", "-t", "4"],
    "validate": ["-v", "2", "-m", "1", "-n", "1", "-o", "out", "-s", "1", "-g", "4", "--entropy-every", "1", "-b", "2", "-t", "8"],
}
for name, args in lines.items():
    put("flags", name, "\0".join(args).encode())
    put("setup", name, "\0".join(args).encode())

# debug states for L1 NH2 C8 maxT 16 V 64 (Vp 128) with one slope (fuzz_debug_state.cpp)
B, T, steps = 1, 4, 2
grads = num_params(16, 128, 1, 8) + 1
put("debug_state", "B1T4", header(20240327, 3, B, T, steps) + struct.pack("<%di" % (2 * B * T), *([1] * (2 * B * T)))
    + floats(B * T * 64) + floats(1) + floats(grads) + floats(1 * 2) + floats(2 * steps))
put("debug_state", "short", header(20240327, 3, B, T, steps) + floats(10))
print("seed corpora written under", ROOT)
