#!/usr/bin/env bash
# quickstart.sh: from a fresh clone to a trained LN-free ReLU model in about 10 minutes on a
# CPU: builds the trainer (with OpenBLAS), prepares the default Python corpus (`make data`),
# then trains a 4-layer, 128-wide GPT-2 without LayerNorm, with ReLU and T = 128. It prints a
# line per step, the validation loss and perplexity and the per-layer attention entropy every
# 50 steps, and ends with a sample of generated Python. Run it as `make quickstart` (which
# installs the dependencies first). Each run writes a new directory under out/.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-400}
OUT=out/quickstart-$(date +%Y%m%d-%H%M%S)

echo "== building the CPU trainer (USE_BLAS=1)"
make -s -B train_gpt2 USE_BLAS=1
echo "== preparing the default corpus (data/pycode_*)"
make -s data
# OpenMP's idle threads sleep rather than spin while OpenBLAS's threads work (2x faster on a
# busy machine)
export OMP_WAIT_POLICY=passive
echo "== training: L4H4C128T128, --norm none --act relu, $STEPS steps -> $OUT"
./train_gpt2 -i "data/pycode_train_*.bin" -j "data/pycode_val_*.bin" \
    -e L4H4C128T128 --norm none --act relu -b 8 -t 128 \
    -l 1e-3 -u 30 -k linear -q 0.1 -c 0.1 -x "$STEPS" \
    -v 50 -m 10 --entropy-every 50 -s "$STEPS" -g 96 -o "$OUT"
echo "== done: logs and the final checkpoint are in $OUT"
