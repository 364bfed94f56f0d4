#!/usr/bin/env bash
# scripts/explain/overload.sh: the runs behind doc/entropic-overload.md. Five CPU trainings of the
# same 4-layer GPT-2 (4 heads, 128 wide), with per-layer diagnostics (--diag-every, diag.tsv) and
# per-head entropy (entropy.tsv), then the figure and the table:
#   ln-gelu, ln-relu, none-gelu, none-relu, none-lrelu0.1 (fixed leaky slope 0.1)
# All five start from the same weights (same seed) and see the same batches.
#
#   bash scripts/explain/overload.sh [--small] [OUT]
#
#   OUT       where the runs, overload.png and overload.md go (default out/explain; with --small
#             out/explain-small)
#   --small   a 2-layer, 64-wide model for 8 steps: checks the pipeline in seconds (CI), shows nothing
# Default: 120 steps of 8 x 64 tokens, LR 1e-3 with 12 warm-up steps, diagnostics and entropy
# every 20 steps, validation every 40 (4-10 minutes per run on a 2-core machine shared with other jobs).
# A run whose folder holds `complete` is kept; an unfinished one is moved aside (<tag>.partial-N).
# Settings (environment): TRAINER (default out/bin/train_gpt2_blas if built, else ./train_gpt2),
# DATA_TRAIN, DATA_VAL (default data/pycode_{train,val}_*.bin: `make data`), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/../.."
SMALL=0
if [ "${1:-}" = "--small" ]; then SMALL=1; shift; fi
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0; fi
PYTHON=${PYTHON:-/usr/bin/python3}
DATA_TRAIN=${DATA_TRAIN:-data/pycode_train_*.bin}
DATA_VAL=${DATA_VAL:-data/pycode_val_*.bin}
if [ -z "${TRAINER:-}" ]; then
    if [ -x out/bin/train_gpt2_blas ]; then TRAINER=out/bin/train_gpt2_blas; else TRAINER=./train_gpt2; fi
fi
[ -x "$TRAINER" ] || { echo "overload.sh: error: trainer '$TRAINER' not found: make out/bin/train_gpt2_blas (or make train_gpt2)" >&2; exit 1; }
compgen -G "$DATA_TRAIN" >/dev/null || { echo "overload.sh: error: no shards match '$DATA_TRAIN': run 'make data' or set DATA_TRAIN" >&2; exit 1; }

if [ $SMALL = 1 ]; then
    OUT=${1:-out/explain-small}
    T=32; C=64
    ARGS=(-e L2H2C${C}T64 -b 4 -t $T -x 8 -u 2 -v 4 -m 2 --entropy-every 4 --diag-every 4)
else
    OUT=${1:-out/explain}
    T=64; C=128
    ARGS=(-e L4H4C${C}T128 -b 8 -t $T -x 120 -u 12 -v 40 -m 8 --entropy-every 20 --diag-every 20)
fi
# llm.c's init and AdamW as the paper's runs (LR 1e-3, clip 1); no checkpoints, no samples
COMMON=(-i "$DATA_TRAIN" -j "$DATA_VAL" -l 1e-3 -k cosine -q 0.1 -c 0.1 --seed 1337 -s 0 -n 0)
# OpenMP threads that spin beside OpenBLAS's cost up to 2x on a shared CPU
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$OUT"

run() {  # tag, norm, act
    local dir=$OUT/$1
    if [ -f "$dir/complete" ]; then echo "$1: complete, kept"; return; fi
    if [ -e "$dir" ]; then
        local n=1
        while [ -e "$dir.partial-$n" ]; do n=$((n + 1)); done
        mv "$dir" "$dir.partial-$n"
        echo "$1: unfinished run moved to $dir.partial-$n"
    fi
    local t0=$SECONDS
    mkdir -p "$dir"
    printf 'T=%s\nC=%s\ncommand=%s\n' "$T" "$C" "$TRAINER ${ARGS[*]} ${COMMON[*]} --norm $2 --act $3 -o $dir" > "$dir/run.info.tmp"
    "$TRAINER" "${ARGS[@]}" "${COMMON[@]}" --norm "$2" --act "$3" -o "$dir" > "$OUT/$1.out" 2>&1 ||
        { echo "overload.sh: error: run $1 failed, see $OUT/$1.out:" >&2; tail -3 "$OUT/$1.out" >&2; exit 1; }
    rm -f "$dir"/model_*.bin "$dir"/state_*.bin "$dir"/DONE_*  # the final checkpoint: not needed here
    mv "$dir/run.info.tmp" "$dir/run.info"
    echo "$((SECONDS - t0)) s" > "$dir/complete"
    echo "$1: $((SECONDS - t0)) s ($(grep 'val loss' "$OUT/$1.out" | tail -1))"
}

run ln-gelu ln gelu
run ln-relu ln relu
run none-gelu none gelu
run none-relu none relu
run none-lrelu0.1 none lrelu:0.1
"$PYTHON" scripts/explain/plot_overload.py "$OUT"
