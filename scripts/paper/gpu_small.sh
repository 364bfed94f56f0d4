#!/usr/bin/env bash
# scripts/paper/gpu_small.sh: the small-scale reproduction on one GPU machine, in one command,
# within a deadline, leaving everything that matters in one archive.
#
#   bash scripts/paper/gpu_small.sh          env: DEADLINE (seconds, 570), EXPERIMENTS
#                                                 ("main slopes fixed-slopes"), PYTHON (python3),
#                                                 SCALE (small), TRAINER (./train_gpt2cu)
#
# 1. the corpus: data/pycode_* as they are, else unpacked from .gpudata/ (written on a machine
#    that has the corpus by scripts/paper/pack_gpu_data.sh, for machines that cannot build it)
# 2. builds ./train_gpt2cu (bf16) unless it is there; copies the runs committed under
#    results/<scale>/ into out/paper-<scale>/ (never over a run already there)
# 3. `scripts/paper/run.sh small EXPERIMENT` for each experiment in turn while time is left
#    (run.sh skips finished runs and resumes from checkpoints, so a second call carries on
#    where a first one was cut off)
# 4. the figures and results.md (plots.py), then out/paper-small.tar.gz: the figures, the table
#    and every run's logs, no checkpoints. With $OUT set (the device tool's machine), the archive
#    and this script's log go to $OUT.
set -u
cd "$(dirname "$0")/../.."
DEADLINE=${DEADLINE:-570}
EXPERIMENTS=${EXPERIMENTS:-"main slopes fixed-slopes"}
PYTHON=${PYTHON:-python3}
SCALE=${SCALE:-small}
ROOT=out/paper-$SCALE
START=$(date +%s)
left() { echo $((DEADLINE - ($(date +%s) - START))); }
mkdir -p out data
LOG=out/gpu_$SCALE.log
exec > >(tee -a $LOG) 2>&1

echo "gpu_small: $(date -u +%FT%TZ), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
if ! ls data/pycode_train_*.bin >/dev/null 2>&1; then
    [ -f .gpudata/pycode_train_000000.bin.xz ] || {
        echo "gpu_small.sh: error: no corpus in data/ and no .gpudata/ (make data, or scripts/paper/pack_gpu_data.sh)"
        exit 1
    }
    for f in .gpudata/*.xz; do
        $PYTHON -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2] + '.tmp', 'wb'), 1 << 24)" \
            "$f" "data/$(basename "$f" .xz)" && mv "data/$(basename "$f" .xz).tmp" "data/$(basename "$f" .xz)" || exit 1
    done
    cp .gpudata/gpt2_tokenizer.bin data/
    echo "corpus unpacked from .gpudata/ ($(( ($(stat -c %s data/pycode_train_000000.bin) - 1024) / 2 )) training tokens)"
fi
export TRAINER=${TRAINER:-./train_gpt2cu} PYTHON
if [ "$TRAINER" = ./train_gpt2cu ] && [ ! -x ./train_gpt2cu ]; then
    make -s -f cuda.mk train_gpt2cu PRECISION=BF16 || { echo "gpu_small.sh: error: the CUDA build failed"; exit 1; }
fi
# fixed-slopes run in the paper's fp16 regime: the FP16 build (run.sh's PAPER_TRAINER)
if [[ " $EXPERIMENTS " == *" fixed-slopes "* ]] && [ "${FIXED_REGIME:-paper}" = paper ] && [ ! -x out/bin/train_gpt2cu_fp16 ]; then
    make -s -f cuda.mk out/bin/train_gpt2cu_fp16 CUDA_BIN=out/bin || { echo "gpu_small.sh: error: the FP16 build failed"; exit 1; }
fi

# runs committed from earlier sessions (results/<scale>/<experiment>/<tag>/: logs and status, no
# checkpoints): copied in without overwriting, so run.sh skips the finished ones
if [ -d results/$SCALE ]; then
    for d in results/$SCALE/*/*/; do
        [ -f "$d/run.info" ] || continue
        # fixed-slope runs from before the paper's fp16 regime (bf16, --on-nan log) are not copied
        if [[ $d == */fixed-slopes/* ]] && [ "${FIXED_REGIME:-paper}" = paper ] && ! grep -q '^regime=fp16-autocast$' "$d/run.info"; then
            continue
        fi
        dst=$ROOT/${d#results/$SCALE/}
        [ -e "$dst" ] || { mkdir -p "$(dirname "$dst")" && cp -r "$d" "$dst"; }
    done
fi
export CKPT_EVERY=${CKPT_EVERY:-500}
for exp in $EXPERIMENTS; do
    t=$(left)
    if [ "$t" -le 60 ]; then echo "== $exp: not started ($t s left)"; continue; fi
    echo "== run.sh $SCALE $exp (at most $((t - 40)) s)"
    timeout --kill-after=5 $((t - 40)) bash scripts/paper/run.sh $SCALE $exp
    echo "   run.sh exit $? at $(($(date +%s) - START)) s"
done
for s in $ROOT/*/*/status; do [ -f "$s" ] && echo "$(dirname "$s" | sed "s|$ROOT/||"): $(head -1 "$s")"; done

$PYTHON scripts/paper/plots.py $ROOT || echo "plots.py failed (exit $?)"
tar -czf out/paper-$SCALE.tar.gz --exclude='model_*' --exclude='state_*' --exclude='DONE_*' $ROOT $LOG 2>/dev/null
echo "archive: out/paper-$SCALE.tar.gz ($(du -h out/paper-$SCALE.tar.gz | cut -f1)), $(($(date +%s) - START)) s in all"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    cp out/paper-$SCALE.tar.gz "$OUT/"
    [ -f $ROOT/results.md ] && cp $ROOT/results.md "$OUT/"
fi
[ -f $ROOT/results.md ] && cat $ROOT/results.md
