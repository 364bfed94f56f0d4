"""mpi_compare.py: compares two training runs within a tolerance, for tests/test_mpi.sh.

Usage:
  mpi_compare.py logs DIR_A DIR_B RTOL   main.log, entropy.tsv, slopes.tsv, nonfinite.tsv, paper.tsv,
                                         diag.tsv: the same
                                         lines, every number within RTOL relative (+1e-7 absolute)
  mpi_compare.py model FILE_A FILE_B ATOL  two llm.c model files: the same header, every
                                         parameter within ATOL absolute
Prints the largest difference seen; exit 0 when within tolerance, 1 otherwise.
"""
import os
import re
import sys

import numpy as np

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|nan|-?inf")


def compare_logs(a, b, rtol):
    worst, where = 0.0, ""
    for name in ["main.log", "entropy.tsv", "slopes.tsv", "nonfinite.tsv", "paper.tsv", "diag.tsv"]:
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if not os.path.exists(pa) and not os.path.exists(pb):
            continue
        la, lb = open(pa).read().splitlines(), open(pb).read().splitlines()
        if len(la) != len(lb):
            print(f"{name}: {len(la)} vs {len(lb)} lines")
            return 1
        for i, (x, y) in enumerate(zip(la, lb)):
            if NUMBER.sub("#", x) != NUMBER.sub("#", y):
                print(f"{name} line {i + 1} differs in shape: '{x}' vs '{y}'")
                return 1
            for u, v in zip(NUMBER.findall(x), NUMBER.findall(y)):
                u, v = float(u), float(v)
                diff = abs(u - v) / (abs(v) + 1e-7 / rtol) if u != v else 0.0
                if not diff <= worst:
                    worst, where = diff, f"{name} line {i + 1}: {u} vs {v}"
    print(f"largest relative difference {worst:.2e} ({where or 'none'})")
    return 0 if worst <= rtol else 1


def compare_models(a, b, atol):
    da, db = np.fromfile(a, dtype=np.int32), np.fromfile(b, dtype=np.int32)
    if da.size != db.size or not np.array_equal(da[:256], db[:256]):
        print("the model files differ in size or header")
        return 1
    pa, pb = da[256:].view(np.float32), db[256:].view(np.float32)
    diff = float(np.max(np.abs(pa - pb)))
    print(f"largest parameter difference {diff:.2e} over {pa.size} parameters")
    return 0 if diff <= atol else 1


if __name__ == "__main__":
    mode, x, y, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    sys.exit(compare_logs(x, y, tol) if mode == "logs" else compare_models(x, y, tol))
