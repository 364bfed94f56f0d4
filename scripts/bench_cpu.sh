#!/usr/bin/env bash
# bench_cpu.sh: ms per training step of the CPU trainer (plain loops, and with OpenBLAS) beside
# the PyTorch reference on the CPU (OpenBLAS underneath, 1 thread and all cores), on the same
# small model and data, in one run. Ours logs the entropy of every head on every step; PyTorch
# computes none. The ratio is PyTorch's best ms/step over ours: above 1.0 means we are faster.
#
# Usage: scripts/bench_cpu.sh [STEPS]     (env: MODEL, B, T, NORM, ACT, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-10}
PYTHON=${PYTHON:-/usr/bin/python3}
MODEL=${MODEL:-L4H4C128T128}   # 4 layers, 4 heads, 128 channels, GPT-2's vocabulary of 50257
B=${B:-8}
T=${T:-128}
NORM=${NORM:-none}
ACT=${ACT:-relu}
W=out/bench_cpu
mkdir -p $W
make -s train_gpt2
cp train_gpt2 $W/train_gpt2_plain
make -s -B train_gpt2 USE_BLAS=1
cp train_gpt2 $W/train_gpt2_blas
make -s -B train_gpt2   # leave the default build in place
[ -f $W/bench_train_000000.bin ] || $PYTHON tests/make_shard.py $W/bench_train_000000.bin 400000 50257
DATA=(-i "$W/bench_train_*.bin" -e $MODEL -b $B -t $T -x $STEPS -v 0 --norm $NORM --act $ACT)
CORES=$(nproc)

ours() {  # mean ms/step over the steps after the first
    "$@" "${DATA[@]}" -s 0 --entropy-every 1 | sed -n 's/^average: \([0-9.]*\) ms\/step.*/\1/p'
}
torch_ms() {  # mean ms/step after train_gpt2.py's warm-up steps
    env OMP_NUM_THREADS=$1 $PYTHON train_gpt2.py "${DATA[@]}" --bench-skip 2 | sed -n 's/^summary: ms_per_step=\([0-9.]*\).*/\1/p'
}
echo "model $MODEL, B=$B, T=$T, --norm $NORM --act $ACT, $STEPS steps, $CORES cores, $(date -u +%F)"
plain=$(OMP_NUM_THREADS=$CORES ours $W/train_gpt2_plain)
# passive: OpenMP's idle threads sleep instead of spinning while OpenBLAS's own threads work
blas=$(OMP_NUM_THREADS=$CORES OMP_WAIT_POLICY=passive ours $W/train_gpt2_blas)
torch1=$(torch_ms 1)
torchn=$(torch_ms $CORES)
best=$(awk -v a="$torch1" -v b="$torchn" 'BEGIN {print (a < b) ? a : b}')
tok=$((B * T))
printf "%-44s %10s %10s %8s\n" "trainer" "ms/step" "tok/s" "ratio"
row() { printf "%-44s %10.1f %10.0f %8.2f\n" "$1" "$2" "$(awk -v m="$2" -v t=$tok 'BEGIN {print t * 1000 / m}')" "$(awk -v m="$2" -v b="$best" 'BEGIN {print b / m}')"; }
row "train_gpt2 (plain loops, entropy every step)" "$plain"
row "train_gpt2 USE_BLAS=1 (entropy every step)" "$blas"
row "train_gpt2.py, PyTorch $($PYTHON -c 'import torch; print(torch.__version__)'), 1 thread" "$torch1"
row "train_gpt2.py, PyTorch, $CORES threads" "$torchn"
