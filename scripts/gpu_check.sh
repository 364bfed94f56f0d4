#!/usr/bin/env bash
# gpu_check.sh: everything that needs a GPU, in one command, for a machine with an NVIDIA GPU
# (written for one H100/H200; on 2026-11-30 stages build..profile took 243 s and sanitize + labs
# 36 s; the minimal PyTorch peer since adds four runs to the benchmark, ~25 s each if they
# take what the train_gpt2.py runs took, 22-28 s):
#   1. build the CUDA trainer and its test in every precision (cuda.mk, in parallel)
#   2. the PyTorch reference states (out/ref: the 16 tiny variants; out/gpu_check/ref64: head
#      size 64 at T = 128, the shapes of the tensor-core attention)
#   3. test_gpt2cu in FP32, BF16 and FP16 against them
#   4. the same small training run through the CPU trainer and the CUDA trainer (FP32): losses,
#      validation losses and entropies must agree (schedule, data order, accumulation, clipping,
#      decay, slopes: the host logic)
#   5. a short real training run (GPT-2 124M on synthetic shards, V = 50257) with a checkpoint,
#      then a resume from it that must end bit-identical
#   6. the benchmark: tokens/s and peak memory of GPT-2 124M, T = 128, B = 128 for ln+gelu,
#      ln+relu, none+gelu and none+relu, ours with the entropy of every head on every step,
#      beside two PyTorch peers measured in the same run (PyTorch 2, flash attention, no
#      entropy): `train_gpt2.py --compile --dtype bfloat16` and dev/bench_torch_minimal.py (the
#      same model in the fastest loop we can write: compiled, fused AdamW, no clipping, nothing
#      read back per step); the ratio is ours / the faster of the two (>= 1 is the goal); then
#      ln+gelu once more with --matmul-autotune 1 (row "ln+gelu at", against the same PyTorch runs)
#   7. where the time goes: dev/cuda/step_profile.out splits one step of each benchmark config
#      by kind of work (matrix products, attention, LayerNorm, activation, classifier, AdamW...)
#   8. the kernel labs (dev/cuda): every version validated on random inputs, then timed
#   9. compute-sanitizer: memcheck over test_gpt2cu (BF16, the head-size-64 states); racecheck,
#      synccheck and initcheck over the attention lab (whole and ragged tiles), and a negative
#      control (a build with a planted cp.async race) that racecheck must flag
#  10. (if time is left) tests/test_cli.sh against the CUDA trainer: bad input, resume, NaN guard
#  11. reliability (not in the default STAGES; STAGES=reliability): tests/test_reliability.sh's
#      hostile inputs (issue 12) against the CUDA trainer (BF16) under compute-sanitizer memcheck
#      (CUDA API errors and device memory access): every case must end as on the CPU
#  11. fp16 (fp16_autocast_check): the paper's fp16 regime against PyTorch itself, which runs fp16
#      autocast and GradScaler only on CUDA: tests/fp16_autocast_check.py (NaN rows of the
#      hand-made overflow model under torch.autocast float16 where numpy float16 puts them;
#      GradScaler's scale sequence = the trainers' rule), then train_gpt2.py --dtype float16 and
#      train_gpt2cu_fp16 on the same short LN-free run in the paper's regime (a few seconds)
#  13. (STAGES=mpi; not in the default list) the data-parallel build (USE_MPI=1: NCCL, ZeRO-1) at
#      N = 1, the one GPU here: test_gpt2cu through the sharded path (FP32, BF16), a short
#      training run that must match the plain build's bit for bit, and the benchmark of one
#      config, plain vs USE_MPI=1 at N = 1 (mpi_stage below; needs libopenmpi-dev)
#  14. (STAGES=long; not in the default list, ~5-7 min) long sequences, issue 13 (long_t_stage
#      below): test_gpt2cu in every precision against the long-T states (make refs-long: T = 256
#      and 1024, head sizes 64 and 128; the tiled tensor-core attention), the attention lab's
#      timings that dev/cuda/PERF.md predicts (B = 16, T = 1024; T = 128 side by side), GPT-2
#      124M at B = 16, T = 1024 with the entropy every step beside train_gpt2.py --compile and
#      dev/bench_torch_minimal.py, and racecheck over the lab's version 9 (the trainer's) at T = 256. Run
#      it alone: STAGES=long DEADLINE=600 scripts/gpu_check.sh (env LONG_CONFIGS="none:relu ln:gelu"
#      for more benchmark configs, LONG_B, LONG_STEPS; REUSE_REFS=1 keeps out/ref_long)
# PyTorch's compilation is warmed in the background while the builds and tests run (its cache
# makes the timed runs start in seconds); nothing else uses the GPU while anything is timed.
# Every stage has a time limit and the whole script a deadline; a summary table is printed at
# the end whatever failed. Exit status 0 only if every stage passed. On the device tool's machine
# ($OUT set), every stage's log goes to $OUT/gpu_check_logs.tar.gz, and the summary beside it.
#
# Usage: scripts/gpu_check.sh        env: PYTHON (python3), STEPS (25), STAGES (all),
#        DEADLINE (seconds, 540), B (128), REUSE_REFS (keep debug states already in place)
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-25}
STAGES=${STAGES:-"build refs test cross train bench profile labs sanitize cli fp16"}
DEADLINE=${DEADLINE:-540}
BENCH_B=${B:-128}
W=out/gpu_check
BIN=$W/bin
mkdir -p $W $W/data
export TORCHINDUCTOR_CACHE_DIR=$PWD/$W/inductor_cache
export TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1
START=$(date +%s)
SUMMARY=()
BENCH_ROWS=()
WARM_PIDS=()
FAILED=0

elapsed() { echo $(($(date +%s) - START)); }
want() { [[ " $STAGES " == *" $1 "* ]]; }

print_summary() {
    for pid in ${WARM_PIDS[@]+"${WARM_PIDS[@]}"}; do kill $pid 2>/dev/null; done
    echo
    echo "==================== gpu_check summary ($(elapsed) s) ===================="
    for line in ${SUMMARY[@]+"${SUMMARY[@]}"}; do echo "  $line"; done
    if [ ${#BENCH_ROWS[@]} -gt 0 ]; then
        echo
        printf "  %-10s %11s %9s %11s %9s %11s %9s %6s  %s\n" "config" "ours tok/s" "ours MiB" "ref tok/s" "ref MiB" \
            "min tok/s" "min MiB" "ratio" "vs"
        for row in ${BENCH_ROWS[@]+"${BENCH_ROWS[@]}"}; do echo "  $row"; done
        echo "  (ours: train_gpt2cu bf16, entropy of every head every step; ref: train_gpt2.py --compile bf16;"
        echo "   min: dev/bench_torch_minimal.py, compiled bf16, fused AdamW, no clipping; ratio: ours / the faster"
        echo "   PyTorch of the two, named under vs; \"ln+gelu at\": ours with --matmul-autotune 1)"
    fi
    echo "  failed stages: $FAILED"
}
finish() {
    print_summary 2>&1 | tee $W/summary.txt
    if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then  # few files come back: one archive and the summary
        tar -czf "$OUT/gpu_check_logs.tar.gz" -C $W $(cd $W && ls *.log summary.txt 2>/dev/null)
        cp $W/summary.txt "$OUT/"
    fi
}
trap finish EXIT

# run NAME LIMIT CMD...: runs CMD with a time limit (cut to the deadline), output in $W/NAME.log
run() {
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - $(elapsed)))
    if [ $left -le 5 ]; then
        SUMMARY+=("SKIP $name (deadline)")
        FAILED=$((FAILED + 1))
        return 1
    fi
    [ $limit -gt $left ] && limit=$left
    local t0=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=5 $limit "$@" >$W/$name.log 2>&1
    local rc=$?
    local dt=$(($(date +%s) - t0))
    local counts
    counts=$(grep -oE '[0-9]+ passed, [0-9]+ failed' $W/$name.log | tail -1)
    if [ $rc -eq 0 ]; then
        SUMMARY+=("ok   $name (${dt}s)${counts:+: $counts}")
    else
        [ $rc -eq 124 ] && what="TIMEOUT" || what="FAIL (exit $rc)"
        SUMMARY+=("$what $name (${dt}s)${counts:+: $counts}")
        FAILED=$((FAILED + 1))
        grep -E "FAIL|error" $W/$name.log | head -20
        tail -5 $W/$name.log
    fi
    return $rc
}

echo "gpu_check: $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
${NVCC:-/usr/local/cuda/bin/nvcc} --version | tail -1
TORCH_OK=0
if $PYTHON -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    TORCH_OK=1
    echo "torch $($PYTHON -c 'import torch; print(torch.__version__)')"
else
    echo "no PyTorch with CUDA for $PYTHON: refs and the PyTorch benchmark are skipped"
fi

# data: synthetic shards with GPT-2's vocabulary (tests/make_shard.py: a noisy counting sequence)
BENCH_TOKENS=$((BENCH_B * 128 * (STEPS + 2) + 1))
[ -f $W/data/bench_train_000000.bin ] || $PYTHON tests/make_shard.py $W/data/bench_train_000000.bin $BENCH_TOKENS 50257 --seed 1
[ -f $W/data/syn_train_000000.bin ] || $PYTHON tests/make_shard.py $W/data/syn_train_000000.bin 1000000 50257 --seed 2
[ -f $W/data/syn_val_000000.bin ] || $PYTHON tests/make_shard.py $W/data/syn_val_000000.bin 100000 50257 --seed 3

CONFIGS=("ln gelu" "ln relu" "none gelu" "none relu")
torch_cmd() {  # NORM ACT STEPS: sets TORCH_CMD
    TORCH_CMD=($PYTHON train_gpt2.py -i "$W/data/bench_train_*.bin" -e d12 -b $BENCH_B -t 128 -x $3 -v 0 --norm $1 --act $2
               --compile --dtype bfloat16 --device cuda --bench-skip 5)
}
torch_run() { torch_cmd "$@"; "${TORCH_CMD[@]}"; }
torchmin_cmd() {  # NORM ACT STEPS: sets TORCHMIN_CMD (the minimal loop; untimed steps: 5, fewer in a short warm-up)
    local skip=5
    [ $3 -le $skip ] && skip=$(($3 - 1))
    TORCHMIN_CMD=($PYTHON dev/bench_torch_minimal.py -i "$W/data/bench_train_*.bin" -e d12 -b $BENCH_B -t 128 -x $3
                  --bench-skip $skip --norm $1 --act $2 --compile 1 --dtype bfloat16 --device cuda)
}
torchmin_run() { torchmin_cmd "$@"; "${TORCHMIN_CMD[@]}"; }
# warm PyTorch's compile cache in the background (two at a time: the minimal loop's model is the
# same, so its compilation may well be found in the cache already), while nothing is timed
if want bench && [ $TORCH_OK -eq 1 ]; then
    (torch_run ln gelu 2; torch_run ln relu 2; torchmin_run ln gelu 2; torchmin_run ln relu 2) >$W/torch_warm1.log 2>&1 &
    WARM_PIDS+=($!)
    (torch_run none gelu 2; torch_run none relu 2; torchmin_run none gelu 2; torchmin_run none relu 2) >$W/torch_warm2.log 2>&1 &
    WARM_PIDS+=($!)
fi

if want build; then
    run build 300 make -f cuda.mk -j8 CUDA_BIN=$BIN $BIN/test_gpt2cu_fp32 $BIN/test_gpt2cu_bf16 $BIN/test_gpt2cu_fp16 \
        $BIN/train_gpt2cu_bf16 $BIN/train_gpt2cu_fp32 $BIN/attention_entropy_syncloads.out $BIN/attention_entropy_nowait.out \
        $BIN/attention_entropy_fp16.out $BIN/layernorm_2blocks.out cuda-labs
    want cross && run build_cpu 120 make -s train_gpt2
fi

# The head-size-64 states use AdamW eps 1e-6: at eps 1e-8 the leaky-ReLU variants have many
# gradients of ~1e-8 (units at the kink), where Adam's first steps turn fp32 rounding of the
# gradient into ~4% of a step, so any two correct fp32 implementations drift ~3e-4 apart in
# 10 steps (the CPU trainer as much as this one); eps 1e-6 keeps the test about the kernels.
# REUSE_REFS=1: keep states already there (e.g. carried from the machine that made them).
has_states() { ls $1/*_debug_state.bin >/dev/null 2>&1; }
if want refs && [ $TORCH_OK -eq 1 ]; then
    if [ -n "${REUSE_REFS:-}" ] && has_states out/ref; then SUMMARY+=("ok   refs_tiny (reused)")
    # few threads: the states are tiny, and PyTorch's compile warm-up holds the other cores (with
    # all 16 threads this stage took 69 s on an H200 machine, against ~1 s on 2 idle cores)
    else run refs_tiny 120 env OMP_NUM_THREADS=2 $PYTHON train_gpt2.py --write-debug-states out/ref; fi
    if [ -n "${REUSE_REFS:-}" ] && has_states $W/ref64; then SUMMARY+=("ok   refs_hs64 (reused)")
    else run refs_hs64 120 env OMP_NUM_THREADS=2 $PYTHON train_gpt2.py --write-debug-states $W/ref64 -e L2H2C128T128V512 -t 128 -b 2 \
        --debug-init-scale 4 --eps 1e-6 --variants ln_gelu,none_relu,none_lrelu-layer,ln_lrelu-global; fi
fi

# the hand-made fp16 overflow model (tests/fp16_case.py) that test_gpt2cu and stage fp16 read
[ -f out/fp16case/fp16_case_expected.bin ] || $PYTHON tests/fp16_case.py out/fp16case > $W/fp16case.log 2>&1

if want test; then
    run test_fp32 150 $BIN/test_gpt2cu_fp32 out/ref
    run test_bf16 150 $BIN/test_gpt2cu_bf16 out/ref
    run test_fp16 150 $BIN/test_gpt2cu_fp16 out/ref
    run test_fp32_hs64 150 $BIN/test_gpt2cu_fp32 $W/ref64
    run test_bf16_hs64 150 $BIN/test_gpt2cu_bf16 $W/ref64
fi

if want cross; then
    # CPU trainer vs CUDA trainer (FP32) on the same run: same initial weights (same RNG), data,
    # schedule; they must agree to rounding
    $PYTHON tests/make_shard.py $W/data/small_train_000000.bin 6000 512 --seed 1
    $PYTHON tests/make_shard.py $W/data/small_val_000000.bin 2000 512 --seed 3
    CR=(-e L2H2C32T32V512 -i "$W/data/small_train_*.bin" -j "$W/data/small_val_*.bin" -b 4 -t 16 -d 128 -x 20 -v 5 -m 2
        -s 0 --norm none --act lrelu-layer:0.1 -l 1e-3 -u 2 -k cosine -q 0.1 -c 0.1 --shuffle 1 --entropy-every 5)
    rm -rf $W/cross_cpu $W/cross_gpu
    run cross_cpu 120 env OMP_NUM_THREADS=4 ./train_gpt2 "${CR[@]}" -o $W/cross_cpu
    run cross_gpu 120 $BIN/train_gpt2cu_fp32 "${CR[@]}" -o $W/cross_gpu
    run cross_compare 30 $PYTHON - $W/cross_cpu $W/cross_gpu <<'PYEOF'
import re, sys
a, b = sys.argv[1], sys.argv[2]
def nums(path):
    vals = []
    for line in open(path):
        vals += [float(x) for x in re.findall(r"(?<=[:\t])-?[0-9]+\.[0-9]+", line)]
    return vals
worst = 0.0
for name, tol in (("main.log", 1e-3), ("entropy.tsv", 1e-4), ("slopes.tsv", 1e-4)):
    x, y = nums(f"{a}/{name}"), nums(f"{b}/{name}")
    assert len(x) == len(y) and len(x) > 0, f"{name}: {len(x)} vs {len(y)} values"
    d = max(abs(p - q) / max(1.0, abs(p)) for p, q in zip(x, y))
    print(f"{name}: {len(x)} values, max relative difference {d:.2e} (tol {tol:.0e})")
    assert d <= tol, f"{name} differs"
print("1 passed, 0 failed")
PYEOF
fi

if want train; then
    TR=(-e d12 -i "$W/data/syn_train_*.bin" -j "$W/data/syn_val_*.bin" -b 64 -t 128 -x 60 -n 30 -v 30 -m 4 -s 30 -g 16
        --norm none --act relu -l 3e-4 -u 20 --entropy-every 10)
    rm -rf $W/run_full $W/run_resumed
    if run train_full 180 $BIN/train_gpt2cu_bf16 "${TR[@]}" -o $W/run_full; then
        first=$(grep -m1 'trl:' $W/run_full/main.log | sed 's/.*trl:\([0-9.]*\).*/\1/')
        last=$(grep 'trl:' $W/run_full/main.log | tail -1 | sed 's/.*trl:\([0-9.]*\).*/\1/')
        if awk -v a="$first" -v b="$last" 'BEGIN {exit !(b < a - 0.3)}'; then
            SUMMARY+=("ok   training loss falls: $first -> $last")
        else
            SUMMARY+=("FAIL training loss does not fall: $first -> $last")
            FAILED=$((FAILED + 1))
        fi
        mkdir -p $W/run_resumed
        cp $W/run_full/model_00000030.bin $W/run_full/state_00000030.bin $W/run_full/DONE_00000030 \
           $W/run_full/*.log $W/run_full/*.tsv $W/run_resumed/
        if run train_resume 150 $BIN/train_gpt2cu_bf16 "${TR[@]}" -o $W/run_resumed -y 1; then
            for f in model_00000060.bin state_00000060.bin main.log entropy.tsv; do
                if cmp -s $W/run_full/$f $W/run_resumed/$f; then
                    SUMMARY+=("ok   resume: $f bit-identical")
                else
                    SUMMARY+=("FAIL resume: $f differs")
                    FAILED=$((FAILED + 1))
                fi
            done
        fi
    fi
fi

if want bench; then
    for pid in ${WARM_PIDS[@]+"${WARM_PIDS[@]}"}; do  # the GPU must be ours alone while timing
        left=$((DEADLINE - $(elapsed)))
        while kill -0 $pid 2>/dev/null && [ $left -gt 0 ]; do sleep 1; left=$((DEADLINE - $(elapsed))); done
        kill $pid 2>/dev/null
    done
    field() { sed -n "s/^summary: .*$1=\([0-9.]*\).*/\1/p" "$2" | tail -1; }
    # a row: whole numbers ("-" where a run gave none); the ratio against the faster PyTorch
    bench_row() {
        BENCH_ROWS+=("$(awk -v n="$1" -v a="$2" -v am="$3" -v r="$4" -v rm="$5" -v m="$6" -v mm="$7" \
            'function num(x) {return x == "" ? "-" : sprintf("%.0f", x)}
            BEGIN {
                best = r + 0; vs = "ref"
                if (m + 0 > best) { best = m + 0; vs = "min" }
                ratio = (a + 0 > 0 && best > 0) ? sprintf("%.2f", a / best) : "-"
                if (best <= 0) vs = "-"
                printf "%-10s %11s %9s %11s %9s %11s %9s %6s  %s", n, num(a), num(am), num(r), num(rm), num(m), num(mm), ratio, vs
            }')")
    }
    for cfg in "${CONFIGS[@]}"; do
        set -- $cfg
        name="$1+$2"
        run bench_ours_$1_$2 120 $BIN/train_gpt2cu_bf16 -i "$W/data/bench_train_*.bin" -e d12 -b $BENCH_B -t 128 -x $STEPS \
            -v 0 -s 0 --entropy-every 1 --norm $1 --act $2
        ours_tok=$(field tok_per_s $W/bench_ours_$1_$2.log)
        ours_mem=$(field peak_mem_mb $W/bench_ours_$1_$2.log)
        torch_tok=""
        torch_mem=""
        min_tok=""
        min_mem=""
        if [ $TORCH_OK -eq 1 ]; then
            torch_cmd $1 $2 $STEPS
            run bench_torch_$1_$2 150 "${TORCH_CMD[@]}"
            torch_tok=$(field tok_per_s $W/bench_torch_$1_$2.log)
            torch_mem=$(field peak_mem_mb $W/bench_torch_$1_$2.log)
            torchmin_cmd $1 $2 $STEPS
            run bench_torchmin_$1_$2 150 "${TORCHMIN_CMD[@]}"
            min_tok=$(field tok_per_s $W/bench_torchmin_$1_$2.log)
            min_mem=$(field peak_mem_mb $W/bench_torchmin_$1_$2.log)
        fi
        bench_row "$name" "$ours_tok" "$ours_mem" "$torch_tok" "$torch_mem" "$min_tok" "$min_mem"
        if [ "$name" = "ln+gelu" ]; then  # the slowest config again with --matmul-autotune 1, same PyTorch runs
            run bench_ours_ln_gelu_autotune 120 $BIN/train_gpt2cu_bf16 -i "$W/data/bench_train_*.bin" -e d12 -b $BENCH_B \
                -t 128 -x $STEPS -v 0 -s 0 --entropy-every 1 --norm ln --act gelu --matmul-autotune 1
            bench_row "ln+gelu at" "$(field tok_per_s $W/bench_ours_ln_gelu_autotune.log)" \
                "$(field peak_mem_mb $W/bench_ours_ln_gelu_autotune.log)" "$torch_tok" "$torch_mem" "$min_tok" "$min_mem"
            line=$(grep "^matmul autotune:" $W/bench_ours_ln_gelu_autotune.log | tail -1)
            [ -n "$line" ] && SUMMARY+=("info ln+gelu $line")
        fi
    done
fi

if want profile; then
    for cfg in "${CONFIGS[@]}"; do
        set -- $cfg
        run profile_$1_$2 60 dev/cuda/step_profile.out -e d12 -b $BENCH_B -t 128 --norm $1 --act $2 --entropy 1
        sed -n '/^plain step/,/^(everything else)/p' $W/profile_$1_$2.log
    done
    run profile_ln_gelu_noentropy 60 dev/cuda/step_profile.out -e d12 -b $BENCH_B -t 128 --norm ln --act gelu --entropy 0
    grep '^plain step' $W/profile_ln_gelu_noentropy.log
    # the issue's bar: logging every head's entropy on every step costs under 2% of a step
    with=$(sed -n 's/^summary: ms_per_step=\([0-9.]*\).*/\1/p' $W/profile_ln_gelu.log 2>/dev/null)
    without=$(sed -n 's/^summary: ms_per_step=\([0-9.]*\).*/\1/p' $W/profile_ln_gelu_noentropy.log 2>/dev/null)
    if [ -n "$with" ] && [ -n "$without" ]; then
        cost=$(awk -v a="$with" -v b="$without" 'BEGIN {printf "%.2f", 100 * (a - b) / b}')
        SUMMARY+=("$(awk -v c="$cost" 'BEGIN {print (c < 2.0) ? "ok  " : "FAIL"}') entropy every step costs $cost% of a step (ln+gelu: $with vs $without ms; bar < 2%)")
    fi
fi

if want labs; then
    run lab_attention 90 dev/cuda/attention_entropy.out
    # every version in the FP16 build (the paper's regime), validation only (B = 0): T = 128 and a ragged 200
    run lab_attention_fp16 60 $BIN/attention_entropy_fp16.out 0 0
    run lab_attention_fp16_T200 60 $BIN/attention_entropy_fp16.out 0 0 200
    run lab_activation 60 dev/cuda/activation.out
    run lab_adamw 60 dev/cuda/adamw.out
    # every algorithm cuBLASLt offers for each of the step's products, against the trainer's first choice
    run lab_matmul 90 dev/cuda/matmul.out
    line=$(grep "^step (N" $W/lab_matmul.log)
    [ -n "$line" ] && SUMMARY+=("info matmul lab: ${line}")
    run lab_layernorm 60 dev/cuda/layernorm.out
    for v in 1 2; do  # the two-kernel LayerNorm backward vs the fused one, at 16,384 rows of 768
        line=$(grep "^version $v:" $W/lab_layernorm.log)
        [ -n "$line" ] && SUMMARY+=("info layernorm bwd v$v: ${line#*| }")
    done
    run lab_layernorm_2blocks 60 $BIN/layernorm_2blocks.out 2  # the fused kernel held to 128 registers
    line=$(grep "^version 2:" $W/lab_layernorm_2blocks.log)
    [ -n "$line" ] && SUMMARY+=("info layernorm bwd v2 at 2 blocks per SM (spilling): ${line#*| }")
    run lab_classifier 60 dev/cuda/classifier.out
    for v in 1 2; do  # the row re-read from memory vs staged in shared memory, 16,384 rows
        line=$(grep "^version $v:" $W/lab_classifier.log)
        [ -n "$line" ] && SUMMARY+=("info classifier v$v: ${line#*| }")
    done
    for v in 1 2; do
        line=$(grep "^version $v:" $W/lab_adamw.log)
        [ -n "$line" ] && SUMMARY+=("info adamw v$v (124M parameters): ${line#*| }")
    done
    # the two tensor-core attention backwards (4 and 8 warps), forward + backward per layer
    v3=$(sed -n 's/^version 3 forward+backward .*: \([0-9.]*\) ms per layer.*/\1/p' $W/lab_attention.log)
    v4=$(sed -n 's/^version 4 forward+backward .*: \([0-9.]*\) ms per layer.*/\1/p' $W/lab_attention.log)
    [ -n "$v3" ] && [ -n "$v4" ] && SUMMARY+=("info attention fwd+bwd per layer: 4-warp backward $v3 ms, 8-warp $v4 ms")
    # the register-resident kernels (the trainer's: version 9) against the whole-row ones they replaced (version 4)
    f4=$(sed -n 's/^version 4 forward  .*: \([0-9.]*\) ms per layer.*/\1/p' $W/lab_attention.log)
    f7=$(sed -n 's/^version 7 forward  .*: \([0-9.]*\) ms per layer.*/\1/p' $W/lab_attention.log)
    v9=$(sed -n 's/^version 9 forward+backward .*: \([0-9.]*\) ms per layer.*/\1/p' $W/lab_attention.log)
    [ -n "$f7" ] && [ -n "$v9" ] && SUMMARY+=("info attention per layer (B = 128, T = 128): forward mma $f7 vs whole-row $f4 ms; fwd+bwd mma $v9 vs whole-row $v4 ms")
    # the same lab with the tiles loaded by a load-then-store loop instead of cp.async
    run lab_attention_syncloads 90 $BIN/attention_entropy_syncloads.out 4
    f3=$(sed -n 's/^version 4 forward  .*: \([0-9.]*\) ms per layer.*/\1/p' $W/lab_attention.log)
    s3=$(sed -n 's/^version 4 forward  .*: \([0-9.]*\) ms per layer.*/\1/p' $W/lab_attention_syncloads.log)
    s4=$(sed -n 's/^version 4 forward+backward .*: \([0-9.]*\) ms per layer.*/\1/p' $W/lab_attention_syncloads.log)
    [ -n "$f3" ] && [ -n "$s3" ] && SUMMARY+=("info attention per layer, cp.async vs load-then-store tiles: forward $f3 vs $s3 ms, fwd+bwd $v4 vs $s4 ms")
    cat $W/lab_attention.log $W/lab_activation.log $W/lab_adamw.log $W/lab_layernorm.log $W/lab_classifier.log $W/lab_matmul.log | tail -70
fi

if want sanitize; then
    SANITIZER=${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
    if [ -x "$SANITIZER" ]; then
        run sanitize 100 "$SANITIZER" --tool memcheck --error-exitcode 9 --print-limit 20 $BIN/test_gpt2cu_bf16 $W/ref64
        # shared-memory races, barrier misuse and reads of unwritten memory in the attention
        # kernels (validation only: B = 2, no timing): every version at T = 64 (whole 16-row
        # tiles) and at T = 40 (ragged: the tile rows past T are zero-filled, not copied), so both
        # tensor-core backwards (4 and 8 warps) and the cp.async edge cases are covered
        for T in 64 40; do
            run racecheck_T$T 60 "$SANITIZER" --tool racecheck --error-exitcode 9 --print-limit 20 dev/cuda/attention_entropy.out 0 0 $T
        done
        run synccheck 60 "$SANITIZER" --tool synccheck --error-exitcode 9 --print-limit 20 dev/cuda/attention_entropy.out 0 0 40
        run initcheck 60 "$SANITIZER" --tool initcheck --error-exitcode 9 --print-limit 20 dev/cuda/attention_entropy.out 0 0 40
        # negative control: the same lab with the cp.async wait left out (a planted race). A clean
        # racecheck above means something only if racecheck flags this one.
        left=$((DEADLINE - $(elapsed)))
        [ $left -gt 60 ] && left=60
        echo "== racecheck_nowait (negative control: must be flagged; limit ${left}s)"
        timeout --kill-after=5 $left "$SANITIZER" --tool racecheck --print-limit 5 $BIN/attention_entropy_nowait.out 4 0 64 \
            >$W/racecheck_nowait.log 2>&1
        if grep -qiE "race reported|hazard" $W/racecheck_nowait.log && ! grep -qE "RACECHECK SUMMARY: 0 hazards" $W/racecheck_nowait.log; then
            SUMMARY+=("ok   racecheck flags the planted cp.async race (negative control): $(grep -m1 'RACECHECK SUMMARY' $W/racecheck_nowait.log)")
        else
            SUMMARY+=("FAIL racecheck did not flag the planted cp.async race: its clean runs say nothing about cp.async")
            FAILED=$((FAILED + 1))
        fi
    else
        SUMMARY+=("SKIP sanitize (no compute-sanitizer)")
    fi
fi

# Stage fp16: the paper's regime against PyTorch's own fp16 autocast and GradScaler (CUDA only),
# then one short LN-free fixed-slope run in that regime through train_gpt2.py --dtype float16 and
# through the FP16 build (both must run to the end; their final losses are printed side by side)
fp16_autocast_check() {
    run fp16_autocast 90 $PYTHON tests/fp16_autocast_check.py out/fp16case
    [ -f $W/data/small_train_000000.bin ] || $PYTHON tests/make_shard.py $W/data/small_train_000000.bin 6000 512 --seed 1
    [ -f $W/data/small_val_000000.bin ] || $PYTHON tests/make_shard.py $W/data/small_val_000000.bin 2000 512 --seed 3
    local FR=(-e L2H2C64T64V512 -i "$W/data/small_train_*.bin" -j "$W/data/small_val_*.bin" -b 4 -t 64 -x 20 -v 10 -m 2
              --norm none --act lrelu:0.2 -l 3e-3 -u 2 -k linear -q 0 --entropy-every 5 --on-nan skip)
    rm -rf $W/fp16_torch $W/fp16_ours
    run fp16_torch 120 $PYTHON train_gpt2.py "${FR[@]}" --device cuda --dtype float16 -o $W/fp16_torch
    run fp16_ours 60 $BIN/train_gpt2cu_fp16 "${FR[@]}" -s 0 --fp16-autocast 1 -o $W/fp16_ours
    echo "fp16 regime, last train losses: PyTorch $(grep trl: $W/fp16_torch/main.log | tail -1), ours $(grep trl: $W/fp16_ours/main.log | tail -1)" \
        | tee -a $W/fp16_ours.log
}
if want fp16 && [ $TORCH_OK -eq 1 ]; then fp16_autocast_check; fi

if want cli; then
    run cli 240 env TRAINER=$BIN/train_gpt2cu_bf16 PYTHON=$PYTHON bash tests/test_cli.sh
fi

# Stage 11: the CUDA trainer's host paths (its own setup, the shared readers) under memcheck with
# the bad inputs of tests/test_reliability.sh. The trainer is wrapped so that a memcheck error
# turns the case's exit code into 86, which every expectation of that suite rejects; memcheck's
# own report goes to a log file, keeping the trainer's stderr to its one "error:" line.
stage_reliability() {
    local sanitizer=${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
    if [ ! -x "$sanitizer" ] || [ ! -x $BIN/train_gpt2cu_bf16 ]; then
        SUMMARY+=("SKIP reliability (no compute-sanitizer or no $BIN/train_gpt2cu_bf16)")
        return
    fi
    mkdir -p $W/memcheck
    cat >$W/memcheck_trainer.sh <<WRAP
#!/usr/bin/env bash
exec "$sanitizer" --tool memcheck --error-exitcode 86 \\
    --log-file "$PWD/$W/memcheck/run_%p.log" "$PWD/$BIN/train_gpt2cu_bf16" "\$@"
WRAP
    chmod +x $W/memcheck_trainer.sh
    rm -f $W/memcheck/run_*.log
    run reliability 400 env TRAINER=$PWD/$W/memcheck_trainer.sh PYTHON=$PYTHON CASE_TIMEOUT=120 bash tests/test_reliability.sh
    local dirty
    dirty=$(grep -lE "ERROR SUMMARY: [1-9]" $W/memcheck/run_*.log 2>/dev/null | wc -l)
    SUMMARY+=("info reliability: $(ls $W/memcheck/run_*.log 2>/dev/null | wc -l) trainer runs under memcheck, $dirty with errors")
}
if want reliability; then stage_reliability; fi
# Stage 13: the multi-GPU code path on one GPU. At N = 1 every collective is a copy or a sum of
# one, the slice is the whole array and the AdamW launches are the plain build's, so the
# training run must be bit-identical to the plain build's and the speed the same (what NCCL
# costs at N = 1: the calls themselves). More than one GPU is not tested here.
mpi_stage() {
    if ! command -v mpicxx >/dev/null; then
        SUMMARY+=("SKIP mpi (no Open MPI: apt-get install libopenmpi-dev openmpi-bin)")
        return
    fi
    local MB=$W/bin_mpi MPI1=(mpirun --allow-run-as-root -np 1)
    run mpi_build 300 make -f cuda.mk -j4 CUDA_BIN=$MB USE_MPI=1 $MB/test_gpt2cu_fp32 $MB/test_gpt2cu_bf16 $MB/train_gpt2cu_bf16 \
        || return
    [ -x $BIN/train_gpt2cu_bf16 ] || run mpi_build_plain 300 make -f cuda.mk CUDA_BIN=$BIN $BIN/train_gpt2cu_bf16 || return
    run mpi_test_fp32 150 "${MPI1[@]}" $MB/test_gpt2cu_fp32 out/ref
    run mpi_test_bf16 150 "${MPI1[@]}" $MB/test_gpt2cu_bf16 out/ref
    local TR=(-e d12 -i "$W/data/syn_train_*.bin" -j "$W/data/syn_val_*.bin" -b 32 -t 128 -x 20 -n 20 -v 10 -m 2 -s 0
              --norm none --act lrelu-layer:0.1 -l 3e-4 --entropy-every 5)
    rm -rf $W/mpi_plain $W/mpi_zero
    run mpi_train_plain 120 $BIN/train_gpt2cu_bf16 "${TR[@]}" -o $W/mpi_plain
    run mpi_train_zero 120 "${MPI1[@]}" $MB/train_gpt2cu_bf16 "${TR[@]}" -o $W/mpi_zero
    for f in model_00000020.bin state_00000020.bin main.log entropy.tsv slopes.tsv; do
        if cmp -s $W/mpi_plain/$f $W/mpi_zero/$f; then SUMMARY+=("ok   mpi N=1: $f bit-identical to the plain build")
        else SUMMARY+=("FAIL mpi N=1: $f differs from the plain build"); FAILED=$((FAILED + 1)); fi
    done
    local BENCH=(-i "$W/data/bench_train_*.bin" -e d12 -b $BENCH_B -t 128 -x $STEPS -v 0 -s 0 --entropy-every 1 --norm none --act relu)
    run mpi_bench_plain 120 $BIN/train_gpt2cu_bf16 "${BENCH[@]}"
    run mpi_bench_zero 120 "${MPI1[@]}" $MB/train_gpt2cu_bf16 "${BENCH[@]}"
    local a b
    a=$(sed -n 's/^summary: .*tok_per_s=\([0-9.]*\).*/\1/p' $W/mpi_bench_plain.log | tail -1)
    b=$(sed -n 's/^summary: .*tok_per_s=\([0-9.]*\).*/\1/p' $W/mpi_bench_zero.log | tail -1)
    if [ -n "$a" ] && [ -n "$b" ]; then
        local line
        line=$(awk -v a="$a" -v b="$b" 'BEGIN {r = b / a; printf "%s mpi N=1 speed: %.0f vs plain %.0f tok/s (x%.3f; bar >= 0.98)", (r >= 0.98) ? "ok  " : "FAIL", b, a, r}')
        SUMMARY+=("$line")
        [[ $line == FAIL* ]] && FAILED=$((FAILED + 1))
    fi
}
want mpi && mpi_stage

# Stage 14: long sequences (issue 13). Every number it prints is a first measurement of the tiled
# attention; dev/cuda/PERF.md's table of predictions is where they go.
long_t_stage() {
    local LB=${LONG_B:-16} LT=1024 LSTEPS=${LONG_STEPS:-15} LCONFIGS=${LONG_CONFIGS:-"none:relu"}
    local need=()
    for f in test_gpt2cu_fp32 test_gpt2cu_bf16 test_gpt2cu_fp16 train_gpt2cu_bf16; do [ -x $BIN/$f ] || need+=($BIN/$f); done
    [ ${#need[@]} -gt 0 ] && { run long_build 300 make -f cuda.mk -j8 CUDA_BIN=$BIN "${need[@]}" || return; }
    [ -x dev/cuda/attention_entropy.out ] || { run long_build_lab 120 make -f cuda.mk dev/cuda/attention_entropy.out || return; }
    local dirs=(out/ref_long/t256 out/ref_long/t1024 out/ref_long/t256_hs128 out/ref_long/t1024_hs128)
    if [ $TORCH_OK -eq 1 ] && [ "${REUSE_REFS:-0}" != 1 ]; then run long_refs 120 make refs-long PYTHON=$PYTHON; fi
    if has_states ${dirs[0]}; then
        for p in fp32 bf16 fp16; do run long_test_$p 150 $BIN/test_gpt2cu_$p --states "${dirs[@]}"; done
        grep -h "attention forward" $W/long_test_bf16.log | sort | uniq -c
    else
        SUMMARY+=("SKIP long_test (no out/ref_long states: make refs-long needs PyTorch)")
    fi
    # the lab: validation at B = 2 then timing at B = 16 (PERF.md, "Predictions: the tiled ...")
    # v9: the trainer's register-resident pair; v6: the tiled wmma pair it replaced; v2: SIMT
    run long_lab_v9 90 dev/cuda/attention_entropy.out 9 16 1024
    run long_lab_v9_hs128 90 dev/cuda/attention_entropy.out 9 16 1024 128
    run long_lab_v6 120 dev/cuda/attention_entropy.out 6 16 1024
    run long_lab_v6_hs128 120 dev/cuda/attention_entropy.out 6 16 1024 128
    run long_lab_v2 120 dev/cuda/attention_entropy.out 2 16 1024
    run long_lab_T128 90 dev/cuda/attention_entropy.out 0 128 128
    for n in v9 v9_hs128 v6 v6_hs128 v2 T128; do grep -hE "ms per layer" $W/long_lab_$n.log 2>/dev/null | sed "s/^/  lab $n: /"; done
    for n in v9 v9_hs128 v6 v6_hs128 v2; do
        line=$(grep -hE "forward.*ms per layer" $W/long_lab_$n.log 2>/dev/null | tr '\n' ';' | tr -s ' ')
        [ -n "$line" ] && SUMMARY+=("info lab $n (B = 16, T = 1024): $line")
    done
    line=$(grep -hE "forward.*ms per layer" $W/long_lab_T128.log 2>/dev/null | tr '\n' ';' | tr -s ' ')
    [ -n "$line" ] && SUMMARY+=("info lab T = 128, B = 128: $line")
    # GPT-2 124M at B = 16, T = 1024: ours (entropy every step) vs the two PyTorch peers
    local tokens=$((LB * LT * (LSTEPS + 2) + 1))
    [ -f $W/data/long_train_000000.bin ] || $PYTHON tests/make_shard.py $W/data/long_train_000000.bin $tokens 50257 --seed 4
    long_field() { sed -n "s/^summary: .*$1=\([0-9.]*\).*/\1/p" "$2" 2>/dev/null | tail -1; }
    for cfg in $LCONFIGS; do
        local norm=${cfg%%:*} act=${cfg#*:} tag=${cfg/:/_}
        local common=(-i "$W/data/long_train_*.bin" -e d12 -b $LB -t $LT -x $LSTEPS --norm $norm --act $act)
        run long_bench_ours_$tag 150 $BIN/train_gpt2cu_bf16 "${common[@]}" -v 0 -s 0 --entropy-every 1
        if [ $TORCH_OK -eq 1 ]; then
            run long_bench_torch_$tag 240 $PYTHON train_gpt2.py "${common[@]}" -v 0 --compile --dtype bfloat16 --device cuda --bench-skip 5
            run long_bench_torchmin_$tag 240 $PYTHON dev/bench_torch_minimal.py "${common[@]}" --bench-skip 5 --compile 1 \
                --dtype bfloat16 --device cuda
        fi
        local row=""
        for who in ours torch torchmin; do
            local tok mem
            tok=$(long_field tok_per_s $W/long_bench_${who}_$tag.log)
            mem=$(long_field peak_mem_mb $W/long_bench_${who}_$tag.log)
            row+=" $who ${tok:--} tok/s ${mem:--} MiB;"
        done
        SUMMARY+=("info B=$LB T=$LT $norm+$act:$row (ours: entropy of every head every step; bar: ours >= the faster PyTorch)")
    done
    # shared-memory races in the register-resident kernels (validation only, B = 2): head size 64 and 128
    local sanitizer=${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
    if [ -x "$sanitizer" ]; then
        run long_racecheck_v9 150 "$sanitizer" --tool racecheck --error-exitcode 9 --print-limit 20 dev/cuda/attention_entropy.out 9 0 256
        run long_racecheck_v9_hs128 150 "$sanitizer" --tool racecheck --error-exitcode 9 --print-limit 20 \
            dev/cuda/attention_entropy.out 9 0 256 128
    else
        SUMMARY+=("SKIP long racecheck (no compute-sanitizer)")
    fi
}
want long && long_t_stage

[ $FAILED -eq 0 ]
