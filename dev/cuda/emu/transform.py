"""dev/cuda/emu/transform.py: copies the CUDA sources into a build directory in a form a host
C++ compiler takes with the headers of dev/cuda/emu/include: every kernel launch
`k<<<grid, block, smem, stream>>>(args);` becomes `emu_launch(grid, block, smem, [&] { k(args); });`
and shared memory becomes host statics (blocks run one at a time, so that is their semantics).

Usage: transform.py REPO_ROOT OUT_DIR
"""
import os
import shutil
import sys

SRC, DST = sys.argv[1], sys.argv[2]


def split_top(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{<":
            depth += 1
        if ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def transform(text):
    out, i = "", 0
    while True:
        j = text.find("<<<", i)
        if j < 0:
            return out + text[i:]
        k = j  # the kernel: an identifier, maybe with <template arguments>
        if text[k - 1] == ">":
            depth, k = 0, k - 1
            while True:
                depth += {">": 1, "<": -1}.get(text[k], 0)
                if depth == 0:
                    break
                k -= 1
        while k > 0 and (text[k - 1].isalnum() or text[k - 1] == "_"):
            k -= 1
        kernel = text[k:j]
        e = text.find(">>>", j)
        cfg = split_top(text[j + 3:e])
        assert text[e + 3] == "(", text[j - 60:e + 60]
        depth, p = 0, e + 3
        while True:
            depth += {"(": 1, ")": -1}.get(text[p], 0)
            if depth == 0:
                break
            p += 1
        smem = cfg[2] if len(cfg) > 2 else "0"
        out += text[i:k] + f"emu_launch({cfg[0]}, {cfg[1]}, {smem}, [&] {{ {kernel}({text[e + 4:p]}); }})"
        i = p + 1


shutil.rmtree(DST, ignore_errors=True)
os.makedirs(DST + "/llmc")
os.makedirs(DST + "/dev/cuda")
sources = ["train_gpt2.cu", "test_gpt2.cu", "entropy.cuh"]
sources += ["llmc/" + f for f in os.listdir(SRC + "/llmc") if f.endswith(".cuh")]
sources += ["dev/cuda/" + f for f in os.listdir(SRC + "/dev/cuda") if f.endswith(".cu")]
for rel in sources:
    t = open(f"{SRC}/{rel}").read()
    t = t.replace("extern __shared__ float smem[];", "float* smem = (float*)g_dyn_smem;")
    t = t.replace("extern __shared__ __align__(128) unsigned char smem_w[];", "unsigned char* smem_w = g_dyn_smem;")
    assert "extern __shared__" not in t, f"{rel}: an extern __shared__ declaration the emulator does not know"
    t = t.replace("__shared__ ", "static ")
    open(f"{DST}/{rel}", "w").write(transform(t))
for f in os.listdir(SRC):
    if f.endswith(".h"):
        shutil.copy(f"{SRC}/{f}", f"{DST}/{f}")
