#!/usr/bin/env bash
# scripts/paper/run.sh: the experiments of "ReLU's Revival: On the Entropic Overload in
# Normalization-Free LLMs" (Jha & Reagen, 2024), one trainer run per model, at three scales.
#
#   bash scripts/paper/run.sh [--dry-run] SCALE EXPERIMENT...
#
#   SCALE       full   the paper's recipe: GPT-2 124M (d12), T = 128, 65,536 tokens per step,
#                      AdamW (0.9, 0.999, 1e-8), weight decay 0.1, LR 1e-3 with a 5% linear
#                      warm-up then linear decay to 0, clip 1.0, eval every 500 steps on the
#                      whole validation set, per-head entropy every 100 steps, and the paper's
#                      length: the whole number of epochs closest to its ~32K steps (16 on the
#                      default corpus: 32,592 steps, 1,630 warm-up; 1 on CodeParrot), reshuffled
#                      every epoch when more than one (doc/fp16-and-nans.md, "The full recipe")
#               small  one H100/H200: 6 layers, 6 heads, 384 wide, T = 128, 32,768 tokens per
#                      step, 2,000 steps (65.5M tokens), LR 3e-4 with a 10% warm-up (LN-free
#                      GPT-2 diverged at 1e-3 with a short warm-up in a small-scale trial)
#               tiny   the CPU, seconds per model: 2 layers, 2 heads, 64 wide, T = 128, 512
#                      tokens per step, 60 steps, LR 3e-3 (the pipeline test behind
#                      `make paper-tiny`; too small to show the paper's effects)
#   EXPERIMENT  main          ln+gelu, ln+relu, none+gelu, none+relu
#               slopes        LN-free learnable leaky ReLU: one slope per layer, one global slope
#                             (both start at 0.01, no weight decay on the slopes)
#               fixed-slopes  LN-free leaky ReLU with fixed slopes 0.01 0.05 0.1 0.2 in the paper's
#                             regime (Figure 5): fp16 autocast rounding with GradScaler loss
#                             scaling, --fp16-autocast 1 --on-nan skip (doc/fp16-and-nans.md)
#               all           the three above
#   --dry-run   print the commands, run nothing
#
# Each run goes to OUT_ROOT/<experiment>/<tag>/ (OUT_ROOT: out/paper-<scale>, or
# out/paper-<scale>-<corpus> for a corpus other than the default): the trainer's logs
# (main.log, entropy.tsv, slopes.tsv, nonfinite.tsv), its console output (train.out), run.info
# (the settings, trainer, device and commit, read by plots.py) and status (complete / stopped /
# nonfinite / failed, with the wall time; nonfinite: it ran all its steps under --on-nan log, but
# some were non-finite and their updates applied, so its parameters may be too). A second
# invocation skips runs whose status is complete, stopped or nonfinite,
# resumes (-y 1) runs that have a checkpoint, and moves a run that died before its first
# checkpoint aside (<tag>.partial-DATE) and starts it again.
#
# Settings (environment; the scale's value when unset):
#   TRAINER          the binary; default ./train_gpt2cu when it exists and nvidia-smi sees a GPU,
#                    else ./train_gpt2 (tiny: always ./train_gpt2)
#   DATA_TRAIN, DATA_VAL   token shard patterns; default data/pycode_{train,val}_*.bin. CodeParrot:
#                    bash dev/data/prepare.sh --source jsonl:FILE --name codeparrot, then
#                    DATA_TRAIN='data/codeparrot_train_*.bin' DATA_VAL='data/codeparrot_val_*.bin'
#   OUT_ROOT         where the runs go (see above)
#   STEPS            optimizer steps (full: EPOCHS epochs of DATA_TRAIN)
#   EPOCHS           full: epochs (default: the whole number closest to PAPER_STEPS, 32000, at
#                    least 1); more than one adds --shuffle 1
#   LR, WARMUP_FRAC, WARMUP   peak LR; warm-up as a fraction of STEPS, or WARMUP steps exactly
#   MODEL, MICRO_B, TOKENS_PER_STEP, SEQ_LEN   model descriptor, -b, -d, -t
#   EVAL_EVERY, VAL_BATCHES, ENTROPY_EVERY, CKPT_EVERY   -v, -m, --entropy-every, -n
#   ON_NAN           --on-nan for main and slopes (default stop)
#   FIXED_REGIME     fixed-slopes: paper (default; --fp16-autocast 1 --on-nan skip: a non-finite
#                    step is skipped and the loss scale halves, as the authors' fp16 runs) or fp32
#                    (--on-nan log: fp32 values, non-finite updates applied, the older behaviour)
#   PAPER_TRAINER    the trainer of paper-regime runs: the CUDA FP16 build on a GPU (default
#                    out/bin/train_gpt2cu_fp16: make -f cuda.mk out/bin/train_gpt2cu_fp16
#                    CUDA_BIN=out/bin), else TRAINER
#   FIXED_SLOPES     the fixed slopes (default "0.01 0.05 0.1 0.2")
#   ONLY             run only these tags, e.g. ONLY="none-gelu none-relu"
#   KEEP_CKPT        after a completed run keep the newest checkpoint (last, default for full and
#                    small), none (default for tiny) or all
#   EXTRA_FLAGS      appended to every trainer command
#   COMMIT           the commit to label runs with (default: git's, "-dirty" if changed)
#   VERBOSE=1        show the trainer's output (always written to <run>/train.out)
# Exit status: 0 when every run completed or stopped as expected, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }

DRY=0
if [ "${1:-}" = "--dry-run" ] || [ "${1:-}" = "-n" ]; then DRY=1; shift; fi
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then usage 0; fi
[ $# -ge 2 ] || usage 1
SCALE=$1; shift
EXPERIMENTS=("$@")
if [ "${EXPERIMENTS[0]}" = "all" ]; then EXPERIMENTS=(main slopes fixed-slopes); fi
for e in "${EXPERIMENTS[@]}"; do
    case $e in main|slopes|fixed-slopes) ;; *) echo "run.sh: error: unknown experiment '$e' (main, slopes, fixed-slopes, all)" >&2; exit 1 ;; esac
done

# ---- the scales -------------------------------------------------------------------------------
# d_X: the scale's default for setting X (an environment variable of the same name wins).
case $SCALE in
    full)
        d_MODEL=d12; d_MICRO_B=64; d_TOKENS_PER_STEP=65536; d_STEPS=paper; d_LR=1e-3; d_WARMUP_FRAC=0.05
        d_EVAL_EVERY=500; d_VAL_BATCHES=-1; d_ENTROPY_EVERY=100; d_CKPT_EVERY=2000; d_KEEP_CKPT=last ;;
    small)
        d_MODEL=L6H6C384T128; d_MICRO_B=64; d_TOKENS_PER_STEP=32768; d_STEPS=2000; d_LR=3e-4; d_WARMUP_FRAC=0.10
        d_EVAL_EVERY=250; d_VAL_BATCHES=-1; d_ENTROPY_EVERY=50; d_CKPT_EVERY=500; d_KEEP_CKPT=last ;;
    tiny)
        d_MODEL=L2H2C64T128; d_MICRO_B=4; d_TOKENS_PER_STEP=512; d_STEPS=60; d_LR=3e-3; d_WARMUP_FRAC=0.10
        d_EVAL_EVERY=20; d_VAL_BATCHES=4; d_ENTROPY_EVERY=5; d_CKPT_EVERY=0; d_KEEP_CKPT=none ;;
    *) echo "run.sh: error: unknown scale '$SCALE' (full, small, tiny)" >&2; exit 1 ;;
esac
MODEL=${MODEL:-$d_MODEL}
MICRO_B=${MICRO_B:-$d_MICRO_B}
TOKENS_PER_STEP=${TOKENS_PER_STEP:-$d_TOKENS_PER_STEP}
SEQ_LEN=${SEQ_LEN:-128}
STEPS=${STEPS:-$d_STEPS}
LR=${LR:-$d_LR}
WARMUP_FRAC=${WARMUP_FRAC:-$d_WARMUP_FRAC}
EVAL_EVERY=${EVAL_EVERY:-$d_EVAL_EVERY}
VAL_BATCHES=${VAL_BATCHES:-$d_VAL_BATCHES}
ENTROPY_EVERY=${ENTROPY_EVERY:-$d_ENTROPY_EVERY}
CKPT_EVERY=${CKPT_EVERY:-$d_CKPT_EVERY}
KEEP_CKPT=${KEEP_CKPT:-$d_KEEP_CKPT}
ON_NAN=${ON_NAN:-stop}
FIXED_SLOPES=${FIXED_SLOPES:-0.01 0.05 0.1 0.2}
FIXED_REGIME=${FIXED_REGIME:-paper}
case $FIXED_REGIME in paper|fp32) ;; *) echo "run.sh: error: FIXED_REGIME must be paper or fp32, got '$FIXED_REGIME'" >&2; exit 1 ;; esac
ONLY=${ONLY:-}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
VERBOSE=${VERBOSE:-0}
DATA_TRAIN=${DATA_TRAIN:-data/pycode_train_*.bin}
DATA_VAL=${DATA_VAL:-data/pycode_val_*.bin}

# The corpus name is the shard pattern's prefix before "_train_" (pycode for the default).
CORPUS=$(basename "$DATA_TRAIN"); CORPUS=${CORPUS%%_train_*}
if [ "$CORPUS" = pycode ]; then OUT_ROOT=${OUT_ROOT:-out/paper-$SCALE}; else OUT_ROOT=${OUT_ROOT:-out/paper-$SCALE-$CORPUS}; fi

# ---- the trainer and the machine ------------------------------------------------------------------
gpu_visible() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }
if [ -z "${TRAINER:-}" ]; then
    if [ "$SCALE" != tiny ] && [ -x ./train_gpt2cu ] && gpu_visible; then TRAINER=./train_gpt2cu; else TRAINER=./train_gpt2; fi
fi
if [ "$DRY" = 0 ] && [ ! -x "$TRAINER" ]; then
    echo "run.sh: error: trainer '$TRAINER' not found: build it (make train_gpt2 USE_BLAS=1, or make train_gpt2cu)" >&2
    exit 1
fi
# a CUDA trainer is any build of train_gpt2cu (./train_gpt2cu, out/bin/train_gpt2cu_bf16, ...)
case $TRAINER in *gpt2cu*) ON_GPU=1 ;; *) ON_GPU=0 ;; esac
# the paper's fp16 regime needs the FP16 build of the CUDA trainer (the CPU trainer has it as an option)
if [ $ON_GPU = 1 ]; then PAPER_TRAINER=${PAPER_TRAINER:-out/bin/train_gpt2cu_fp16}; else PAPER_TRAINER=${PAPER_TRAINER:-$TRAINER}; fi
if [ "$DRY" = 0 ] && [ "$FIXED_REGIME" = paper ] && [[ " ${EXPERIMENTS[*]} " == *" fixed-slopes "* ]] && [ ! -x "$PAPER_TRAINER" ]; then
    echo "run.sh: error: the paper's fp16 regime needs '$PAPER_TRAINER': make -f cuda.mk out/bin/train_gpt2cu_fp16 CUDA_BIN=out/bin (or set PAPER_TRAINER)" >&2
    exit 1
fi
if [ $ON_GPU = 1 ]; then
    DEVICE="GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo unknown)"
else
    DEVICE="CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores"
fi
# On a shared CPU, OpenMP threads that spin while OpenBLAS works (or while another process runs)
# cost up to 2x: let idle threads sleep (measured on 2 cores: 290 -> 190 ms per tiny step).
if [ $ON_GPU = 0 ]; then export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}; fi
if [ "$DRY" = 0 ] && [ $ON_GPU = 0 ] && command -v ldd >/dev/null && ! ldd "$TRAINER" 2>/dev/null | grep openblas >/dev/null; then
    echo "run.sh: warning: $TRAINER is the loops-only build, ~4x slower here: make -B train_gpt2 USE_BLAS=1" >&2
fi
if [ "$SCALE" = full ] && [ "$TRAINER" = ./train_gpt2 ] && [ "$DRY" = 0 ]; then
    echo "run.sh: warning: the full recipe on the CPU trainer takes weeks per model" >&2
fi
# COMMIT may be given where the tree has no .git (a copy sent to a GPU machine)
if [ -z "${COMMIT:-}" ]; then
    COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo uncommitted)
    if [ "$COMMIT" != uncommitted ] && ! git diff --quiet HEAD -- 2>/dev/null; then COMMIT="$COMMIT-dirty"; fi
fi

# ---- steps and warm-up ----------------------------------------------------------------------------
# One epoch as the trainer counts it: per shard of N tokens, (N-1)/T sequences, in micro-batches
# of B, then micro-batches / (tokens per step / (B*T)) optimizer steps.
epoch_steps() {
    local micro=0 f n
    for f in $DATA_TRAIN; do
        [ -f "$f" ] || { echo "run.sh: error: no training shards match '$DATA_TRAIN' (make data?)" >&2; exit 1; }
        n=$((($(stat -c %s "$f") - 1024) / 2))
        micro=$((micro + (n - 1) / SEQ_LEN / MICRO_B))
    done
    echo $((micro / (TOKENS_PER_STEP / (MICRO_B * SEQ_LEN))))
}
if [ "$STEPS" = epoch ]; then STEPS=$(epoch_steps); fi
# full: the paper's schedule needs its length; a small corpus is repeated (whole epochs)
SHUFFLE_FLAGS=()
if [ "$STEPS" = paper ]; then
    e=$(epoch_steps)
    [ "$e" -gt 0 ] || { echo "run.sh: error: '$DATA_TRAIN' holds less than one optimizer step" >&2; exit 1; }
    EPOCHS=${EPOCHS:-$(( (${PAPER_STEPS:-32000} + e / 2) / e ))}
    [ "$EPOCHS" -ge 1 ] || EPOCHS=1
    STEPS=$((e * EPOCHS))
    if [ "$EPOCHS" -gt 1 ]; then SHUFFLE_FLAGS=(--shuffle 1); fi
fi
if [ -n "${WARMUP:-}" ]; then WARMUP_STEPS=$WARMUP; else WARMUP_STEPS=$(awk -v f="$WARMUP_FRAC" -v s="$STEPS" 'BEGIN { printf "%d", f * s + 0.5 }'); fi

# The flags every run of this scale shares (doc/reference.md, "Command line").
COMMON=(-i "$DATA_TRAIN" -j "$DATA_VAL" -e "$MODEL" -b "$MICRO_B" -t "$SEQ_LEN" -d "$TOKENS_PER_STEP"
        -x "$STEPS" -l "$LR" -u "$WARMUP_STEPS" -k linear -q 0 -c 0.1
        --beta1 0.9 --beta2 0.999 --eps 1e-8 --grad-clip 1.0
        -v "$EVAL_EVERY" -m "$VAL_BATCHES" --entropy-every "$ENTROPY_EVERY" -n "$CKPT_EVERY" -s 0 --seed 1337
        ${SHUFFLE_FLAGS[@]+"${SHUFFLE_FLAGS[@]}"})

# ---- one run ----------------------------------------------------------------------------------------
FAILED_RUNS=()
run_one() {  # run_one EXPERIMENT TAG NORM ACT ON_NAN [REGIME]   (REGIME: fp32, the default, or fp16-autocast)
    local exp=$1 tag=$2 norm=$3 act=$4 on_nan=$5 regime=${6:-fp32}
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $tag "* ]]; then return; fi
    local dir=$OUT_ROOT/$exp/$tag trainer=$TRAINER regime_flags=()
    if [ "$regime" = fp16-autocast ]; then trainer=$PAPER_TRAINER; regime_flags=(--fp16-autocast 1); fi
    # shellcheck disable=SC2206  # EXTRA_FLAGS is split on purpose
    local cmd=("$trainer" "${COMMON[@]}" --norm "$norm" --act "$act" --on-nan "$on_nan" "${regime_flags[@]}" -o "$dir" $EXTRA_FLAGS)
    if [ "$DRY" = 1 ]; then printf '%q ' "${cmd[@]}"; echo; return; fi
    # a run made in the other precision regime (run.info without regime= is an fp32 run) is not
    # this experiment: say so instead of skipping or resuming it
    local had
    had=$( { sed -n 's/^regime=//p' "$dir/run.info" 2>/dev/null || true; } | tail -1)
    if [ -f "$dir/run.info" ] && [ "${had:-fp32}" != "$regime" ]; then
        echo "== $exp/$tag: error: $dir holds a ${had:-fp32} run, this one is $regime: move it aside to run it"
        FAILED_RUNS+=("$exp/$tag")
        return
    fi
    if [ -f "$dir/status" ] && grep -qE '^(complete|stopped|nonfinite)' "$dir/status"; then
        echo "== $exp/$tag: $(head -1 "$dir/status") (skipped; delete $dir to run it again)"
        return
    fi
    if compgen -G "$dir/DONE_*" >/dev/null; then
        cmd+=(-y 1)
        echo "== $exp/$tag: resuming from its latest checkpoint"
    elif [ -f "$dir/main.log" ]; then
        local aside
        aside="$dir.partial-$(date +%Y%m%d-%H%M%S)"
        mv "$dir" "$aside"
        echo "== $exp/$tag: an unfinished run without a checkpoint moved to $aside; starting again"
    fi
    mkdir -p "$dir"
    if [ -f "$dir/run.info" ]; then  # a resume: the latest command wins when plots.py reads it
        { echo "resumed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "on_nan=$on_nan"; echo "command=$(printf '%q ' "${cmd[@]}")"; } >> "$dir/run.info"
    else
        {
            echo "scale=$SCALE"; echo "experiment=$exp"; echo "tag=$tag"; echo "norm=$norm"; echo "act=$act"
            echo "model=$MODEL"; echo "T=$SEQ_LEN"; echo "micro_batch=$MICRO_B"; echo "tokens_per_step=$TOKENS_PER_STEP"
            echo "steps=$STEPS"; echo "epochs=${EPOCHS:-1}"; echo "lr=$LR"; echo "warmup=$WARMUP_STEPS"; echo "on_nan=$on_nan"; echo "regime=$regime"
            echo "corpus=$DATA_TRAIN"; echo "trainer=$trainer"; echo "device=$DEVICE"; echo "commit=$COMMIT"
            echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "command=$(printf '%q ' "${cmd[@]}")"
        } > "$dir/run.info"
    fi
    echo "== $exp/$tag: --norm $norm --act $act, $STEPS steps of $TOKENS_PER_STEP tokens -> $dir"
    echo "\$ $(printf '%q ' "${cmd[@]}")" >> "$dir/train.out"
    # The trainer runs in the background so that older checkpoints can be pruned while it runs
    # (the full recipe writes 1.5 GB per checkpoint); Ctrl-C stops it too.
    local t0 t1 rc=0 pid tail_pid="" next_prune=$((SECONDS + 60)) size
    size=$(stat -c %s "$dir/train.out")
    t0=$(date +%s.%N)
    "${cmd[@]}" >> "$dir/train.out" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null; exit 130' INT TERM
    if [ "$VERBOSE" = 1 ]; then tail -c +$((size + 1)) -f --pid="$pid" "$dir/train.out" & tail_pid=$!; fi
    while kill -0 "$pid" 2>/dev/null; do
        sleep 0.5
        if [ "$KEEP_CKPT" != all ] && [ "$SECONDS" -ge "$next_prune" ]; then
            prune_checkpoints "$dir" newest; next_prune=$((SECONDS + 60))
        fi
    done
    wait "$pid" || rc=$?
    trap - INT TERM
    if [ -n "$tail_pid" ]; then wait "$tail_pid" || true; fi
    t1=$(date +%s.%N)
    local wall
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    local last_val
    last_val=$(grep -E '^s:[0-9]+ tel:' "$dir/main.log" 2>/dev/null | tail -1 || true)
    local bad
    bad=$(nonfinite_steps "$dir")
    case $rc in
        0) if [ "$on_nan" = log ] && [ "$bad" -gt 0 ]; then
               echo "nonfinite wall_s=$wall device=$DEVICE non-finite values in $bad steps, their updates applied (--on-nan log; see nonfinite.tsv)" > "$dir/status"
           elif [ "$bad" -gt 0 ]; then
               echo "complete wall_s=$wall device=$DEVICE skipped=$bad (non-finite steps, --on-nan $on_nan)" > "$dir/status"
           else
               echo "complete wall_s=$wall device=$DEVICE" > "$dir/status"
           fi ;;
        3) echo "stopped wall_s=$wall non-finite value under --on-nan stop (see train.out)" > "$dir/status" ;;
        *) echo "failed wall_s=$wall exit=$rc (see train.out)" > "$dir/status"; FAILED_RUNS+=("$exp/$tag") ;;
    esac
    echo "   $(head -1 "$dir/status" | cut -d' ' -f1-2); last validation: ${last_val:-none}"
    if [ "$rc" != 0 ]; then tail -3 "$dir/train.out" | sed 's/^/   | /'; fi
    case $KEEP_CKPT in
        last) prune_checkpoints "$dir" newest ;;
        none) if [ "$rc" = 0 ]; then prune_checkpoints "$dir" all; else prune_checkpoints "$dir" newest; fi ;;
    esac
}

# nonfinite_steps DIR: how many steps the run's logs show a non-finite value in (a nan/inf loss or
# gradient norm in main.log, a non-zero count in nonfinite.tsv). The trainer exits 0 under
# --on-nan log and skip whatever happened, so the status is decided from the logs.
nonfinite_steps() {
    { awk '/^s:[0-9]+ trl:/ && /(nan|inf)/ { sub(/^s:/, "", $1); print $1 }' "$1/main.log"
      awk 'NR > 1 && ($3 > 0 || $4 > 0) { print $1 }' "$1/nonfinite.tsv"; } 2>/dev/null | sort -un | wc -l
}

# prune_checkpoints DIR newest|all: deletes the checkpoints (DONE_, model_, state_ files) older than
# the newest complete one (DONE_ marker), or all of them. A checkpoint being written has no DONE_
# marker yet and a higher step, so it is never touched.
prune_checkpoints() {
    local dir=$1 mode=$2 newest f step
    newest=$(find "$dir" -maxdepth 1 -name 'DONE_*' -printf '%f\n' | sort | tail -1)
    newest=${newest#DONE_}
    [ -n "$newest" ] || return 0
    for f in "$dir"/DONE_* "$dir"/model_*.bin "$dir"/state_*.bin; do
        [ -e "$f" ] || continue
        step=$(basename "$f"); step=${step#*_}; step=${step%.bin}
        if [ "$mode" = all ] || [ "$((10#$step))" -lt "$((10#$newest))" ]; then rm -f "$f"; fi
    done
}

# ---- the experiments ----------------------------------------------------------------------------------
echo "run.sh: scale $SCALE, $MODEL, T $SEQ_LEN, $STEPS steps x $TOKENS_PER_STEP tokens, LR $LR, warm-up $WARMUP_STEPS;"
echo "        $TRAINER on $DEVICE; data $DATA_TRAIN; out $OUT_ROOT; commit $COMMIT"
T_START=$(date +%s)
for exp in "${EXPERIMENTS[@]}"; do
    case $exp in
        main)
            run_one main ln-gelu ln gelu "$ON_NAN"
            run_one main ln-relu ln relu "$ON_NAN"
            run_one main none-gelu none gelu "$ON_NAN"
            run_one main none-relu none relu "$ON_NAN" ;;
        slopes)
            run_one slopes none-lrelu-layer none lrelu-layer "$ON_NAN"
            run_one slopes none-lrelu-global none lrelu-global "$ON_NAN" ;;
        fixed-slopes)
            for s in $FIXED_SLOPES; do
                if [ "$FIXED_REGIME" = paper ]; then run_one fixed-slopes "none-lrelu-$s" none "lrelu:$s" skip fp16-autocast
                else run_one fixed-slopes "none-lrelu-$s" none "lrelu:$s" log; fi
            done ;;
    esac
done
if [ "$DRY" = 1 ]; then exit 0; fi
echo "run.sh: done in $(($(date +%s) - T_START)) s; plots: \${PYTHON:-/usr/bin/python3} scripts/paper/plots.py $OUT_ROOT"
if [ ${#FAILED_RUNS[@]} -gt 0 ]; then
    echo "run.sh: error: failed: ${FAILED_RUNS[*]}" >&2
    exit 1
fi
