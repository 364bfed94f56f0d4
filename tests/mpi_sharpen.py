"""mpi_sharpen.py: multiplies a model file's embeddings and attention weights, for tests/test_mpi.sh.

Usage: mpi_sharpen.py IN.bin OUT.bin FACTOR
At llm.c's initialisation (weights ~N(0, 0.02)) attention scores are ~0, every head's entropy is
the uniform ln-sum maximum and a comparison of entropies tests nothing; scaling wte, wpe and
the qkv weights by FACTOR makes the scores O(1), so the heads' entropies differ and move.
"""
import sys

import numpy as np

src, out, factor = sys.argv[1], sys.argv[2], float(sys.argv[3])
d = np.fromfile(src, dtype=np.int32)
maxT, L, C, Vp = int(d[2]), int(d[4]), int(d[6]), int(d[7])
p = d[256:].view(np.float32)
embeddings = (Vp + maxT) * C            # wte, wpe
qkvw = embeddings + 2 * L * C           # after ln1w, ln1b
p[:embeddings] *= factor
p[qkvw:qkvw + L * 3 * C * C] *= factor
d.tofile(out)
