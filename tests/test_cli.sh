#!/usr/bin/env bash
# test_cli.sh: end-to-end tests of the train_gpt2 binary (or the one named by $TRAINER):
# bad input of every kind ends with one "error:" line on stderr and exit code 1, never a crash,
# and never touches an input file; checkpoint -> resume is bit-identical to an uninterrupted
# run; a kill mid-run leaves resumable checkpoints; a diverging run (LR 1e6) stops cleanly under
# --on-nan stop (exit 3) and goes on under skip and log; and the loss falls on learnable data.
# Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
TRAINER=${TRAINER:-./train_gpt2}
PYTHON=${PYTHON:-/usr/bin/python3}
W=out/test_cli
source tests/test_lib.sh

# Small model and data: vocabulary 512, maxT 32.
MODEL_DESC=L2H2C32T32V512
$PYTHON tests/make_shard.py $W/good_train_000000.bin 6000 512 --seed 1
$PYTHON tests/make_shard.py $W/good_train_000001.bin 3000 512 --seed 2
$PYTHON tests/make_shard.py $W/good_val_000000.bin 2000 512 --seed 3
TRAIN="$W/good_train_*.bin"
VAL="$W/good_val_*.bin"
BASE=(-i "$TRAIN" -j "$VAL" -b 4 -t 16 -v 5 -m 2 -s 0)

# A model file to corrupt, written by the trainer itself.
$TRAINER "${BASE[@]}" -e $MODEL_DESC -x 1 -o $W/seed >/dev/null 2>&1
GOOD_MODEL=$W/seed/model_00000001.bin
check "the trainer writes a model file" test -s $GOOD_MODEL

# expect_error NAME REGEX ARGS...: exit code 1 and exactly one stderr line, "error: ..." matching
# REGEX (so each case fails for its own reason, not an earlier one).
expect_error() {
    local name="$1" pattern="$2"; shift 2
    $TRAINER "$@" >$W/stdout 2>$W/stderr
    local rc=$?
    local lines
    lines=$(wc -l <$W/stderr)
    if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -qE "^error: .*$pattern" $W/stderr; then
        ok "$name: $(cat $W/stderr)"
    else
        bad "$name: exit $rc, $lines stderr line(s): $(head -c 300 $W/stderr)"
    fi
}

# broken data and model files
$PYTHON tests/make_shard.py $W/empty_train.bin 0 512 --bad empty
$PYTHON tests/make_shard.py $W/trunc_train.bin 3000 512 --bad truncated
$PYTHON tests/make_shard.py $W/magic_train.bin 3000 512 --bad magic
$PYTHON tests/make_shard.py $W/bigid_train.bin 3000 512 --bad big-id
$PYTHON tests/make_shard.py $W/short_train.bin 20 512
: >$W/empty_model.bin
head -c 5000 $GOOD_MODEL >$W/trunc_model.bin
$PYTHON - "$GOOD_MODEL" "$W" <<'EOF'
import struct, sys
src, out = sys.argv[1], sys.argv[2]
data = bytearray(open(src, "rb").read())
def patch(name, slot, value):
    d = bytearray(data)
    struct.pack_into("<i", d, 4 * slot, value)
    open(f"{out}/{name}", "wb").write(d)
patch("magic_model.bin", 0, 777)
patch("shape_model.bin", 5, 3)      # 3 heads do not divide 32 channels
patch("negative_model.bin", 6, -32)  # negative channels
patch("act_model.bin", 10, 99)       # unknown activation code
EOF
mkdir -p $W/inputs_before
sums_before=$(md5sum $W/*.bin $GOOD_MODEL | sort)

expect_error "missing data file" "no token files match -i" -i "$W/nothing_*.bin" -j "$VAL" -b 4 -t 16 -e $MODEL_DESC -x 1
expect_error "empty data file" "empty_train.bin.*truncated" -i $W/empty_train.bin -j "$VAL" -b 4 -t 16 -e $MODEL_DESC -x 1
expect_error "truncated data file" "trunc_train.bin.*truncated" -i $W/trunc_train.bin -j "$VAL" -b 4 -t 16 -e $MODEL_DESC -x 1
expect_error "wrong-magic data file" "not a token shard" -i $W/magic_train.bin -j "$VAL" -b 4 -t 16 -e $MODEL_DESC -x 1
expect_error "token id past the vocabulary" "token id 512 .*vocabulary of 512" -i $W/bigid_train.bin -j "$VAL" -b 4 -t 16 -e $MODEL_DESC -x 1
expect_error "data file shorter than one batch" "fewer than one batch" -i $W/short_train.bin -j "$VAL" -b 4 -t 16 -e $MODEL_DESC -x 1
expect_error "missing validation files" "no token files match -j" -i "$TRAIN" -j "$W/none_val_*.bin" -b 4 -t 16 -e $MODEL_DESC -x 1
expect_error "missing model file" "cannot open .*no_model.bin" "${BASE[@]}" -e $W/no_model.bin -x 1
expect_error "empty model file" "empty_model.bin.*truncated" "${BASE[@]}" -e $W/empty_model.bin -x 1
expect_error "truncated model file" "trunc_model.bin.*truncated" "${BASE[@]}" -e $W/trunc_model.bin -x 1
expect_error "wrong-magic model file" "not a GPT-2 model file" "${BASE[@]}" -e $W/magic_model.bin -x 1
expect_error "model header: heads do not divide channels" "not divisible by heads 3" "${BASE[@]}" -e $W/shape_model.bin -x 1
expect_error "model header: negative channels" "impossible model shape" "${BASE[@]}" -e $W/negative_model.bin -x 1
expect_error "model header: unknown activation code" "unknown activation code 99" "${BASE[@]}" -e $W/act_model.bin -x 1
expect_error "impossible descriptor" "not divisible" "${BASE[@]}" -e L2H3C32T32V512 -x 1
expect_error "unknown descriptor" "unknown model descriptor" "${BASE[@]}" -e d7 -x 1
expect_error "unknown flag" "unknown flag '-z'" "${BASE[@]}" -e $MODEL_DESC -z 1
expect_error "flag without a value" "needs a value" "${BASE[@]}" -e $MODEL_DESC -x
expect_error "unknown norm" "--norm wants" "${BASE[@]}" -e $MODEL_DESC --norm rms
expect_error "unknown activation" "--act wants.*swish" "${BASE[@]}" -e $MODEL_DESC --act swish
expect_error "slope that does not parse" "--act wants.*lrelu:0.1x" "${BASE[@]}" -e $MODEL_DESC --act lrelu:0.1x
expect_error "fixed lrelu without a slope" "--act wants.*got 'lrelu'" "${BASE[@]}" -e $MODEL_DESC --act lrelu
expect_error "learning rate that does not parse" "flag -l wants" "${BASE[@]}" -e $MODEL_DESC -l abc
expect_error "zero batch" "flag -b wants" "${BASE[@]}" -e $MODEL_DESC -b 0
expect_error "-d not a multiple of B*T" "not a multiple of B\\*T" "${BASE[@]}" -e $MODEL_DESC -d 100
expect_error "sequence longer than the model's" "longer than the model" "${BASE[@]}" -e $MODEL_DESC -t 64
expect_error "bad --on-nan" "--on-nan wants" "${BASE[@]}" -e $MODEL_DESC --on-nan ignore
touch $W/a_file
expect_error "output path that is a file" "is a file" "${BASE[@]}" -e $MODEL_DESC -x 1 -o $W/a_file
expect_error "output path under a file" "is a file" "${BASE[@]}" -e $MODEL_DESC -x 1 -o $W/a_file/run
expect_error "resume without a checkpoint" "no complete checkpoint" "${BASE[@]}" -e $MODEL_DESC -x 2 -y 1 -o $W/empty_run
expect_error "fresh run into an existing run dir" "already holds a run" "${BASE[@]}" -e $MODEL_DESC -x 1 -o $W/seed
sums_after=$(md5sum $W/*.bin $GOOD_MODEL | sort)
check "no input file or earlier checkpoint was changed by the bad runs" test "$sums_before" = "$sums_after"

# help lists every flag
$TRAINER -h >$W/help 2>&1
rc=$?
missing=""
for f in -i -j -e -o -b -t -d -x -l -u -q -k -c -v -m -n -y -a -s -g --norm --act --beta1 --beta2 --eps \
         --grad-clip --entropy-every --on-nan --seed; do
    grep -q -- " $f " $W/help || missing="$missing $f"
done
check "-h exits 0 and lists every flag${missing:+ (missing:$missing)}" test $rc -eq 0 -a -z "$missing"

# checkpoint -> resume is bit-identical. Shuffling, gradient accumulation, a learnable slope,
# sampling and a cosine schedule all carry state across the checkpoint.
RUN=("${BASE[@]}" -e $MODEL_DESC --norm none --act lrelu-layer:0.1 -x 6 -n 3 -d 128 --shuffle 1 -s 2 -g 4
     -l 1e-3 -u 2 -q 0.1 -k cosine --entropy-every 1)
$TRAINER "${RUN[@]}" -o $W/full >$W/full.out 2>&1
check "uninterrupted run writes checkpoints at steps 3 and 6" test -f $W/full/DONE_00000003 -a -f $W/full/DONE_00000006
mkdir -p $W/resumed
cp $W/full/model_00000003.bin $W/full/state_00000003.bin $W/full/DONE_00000003 $W/resumed/
for f in main.log entropy.tsv slopes.tsv nonfinite.tsv; do
    # what an interrupted run had logged: everything before step 3, plus a stray later line
    awk -v f=$f 'NR==1 && f!="main.log" {print; next} {split($0, a, /[:\t ]/); s=(f=="main.log")?a[2]:a[1]; if (s+0 < 3) print}' \
        $W/full/$f >$W/resumed/$f
    if [ $f = main.log ]; then echo "s:4 trl:9.999999 lr:0.000000 norm:0.000000" >>$W/resumed/$f; fi
done
$TRAINER "${RUN[@]}" -o $W/resumed -y 1 >$W/resumed.out 2>&1
check "resume exits 0" test $? -eq 0
check "resumed model at step 6 is bit-identical" cmp -s $W/full/model_00000006.bin $W/resumed/model_00000006.bin
check "resumed optimizer state at step 6 is bit-identical" cmp -s $W/full/state_00000006.bin $W/resumed/state_00000006.bin
for f in main.log entropy.tsv slopes.tsv; do
    check "resumed $f equals the uninterrupted one (stale rows dropped)" cmp -s $W/full/$f $W/resumed/$f
done
grep '^sample:' $W/full.out | tail -2 >$W/full.samples
grep '^sample:' $W/resumed.out | tail -2 >$W/resumed.samples
check "samples after the resume are the same" cmp -s $W/full.samples $W/resumed.samples

# a kill in the middle of a run leaves the last complete checkpoint resumable
$TRAINER "${BASE[@]}" -e L2H2C64T32V512 -b 8 -x 100000 -n 2 -o $W/killed >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -f $W/killed/DONE_00000004 ] && break; sleep 0.1; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
last=$(ls $W/killed | grep -c '^DONE_')
# a slow machine may get past step 4 before the kill lands: resume from whatever is newest
newest=$(ls $W/killed | grep '^DONE_' | sort | tail -1 | sed 's/DONE_//')
$TRAINER "${BASE[@]}" -e L2H2C64T32V512 -b 8 -n 2 -o $W/killed -y 1 -x $((10#${newest:-0} + 3)) >$W/killed.out 2>&1
rc=$?
check "a run killed after $last checkpoint(s) resumes and finishes (exit $rc)" test $rc -eq 0 -a "$last" -ge 2
check "the resumed run starts from the newest complete checkpoint (step $((10#${newest:-0})))" \
    grep -q "resumed from .*state_${newest:-none}.bin (step $((10#${newest:-0})))" $W/killed.out

# a diverging run: LR 1e6
DIVERGE=("${BASE[@]}" -e $MODEL_DESC --norm none --act relu -l 1e6 -x 8 -n 1 --grad-clip 0)
$TRAINER "${DIVERGE[@]}" --on-nan stop -o $W/nan_stop >$W/nan.out 2>$W/nan.err
rc=$?
check "--on-nan stop exits with code 3 (got $rc)" test $rc -eq 3
check "--on-nan stop names the step and the first non-finite tensor: $(head -c 200 $W/nan.err)" \
    grep -qE "^error: non-finite value at step [0-9]+, first in " $W/nan.err
good=$(ls $W/nan_stop | grep '^DONE_' | tail -1 | sed 's/DONE_//')
if [ -n "$good" ]; then
    # loading rejects a model file with any non-finite parameter
    $TRAINER "${BASE[@]}" -e $W/nan_stop/model_$good.bin -x 1 --on-nan log >/dev/null 2>&1
    check "the last checkpoint before the failure (step $((10#$good))) loads and is finite" test $? -eq 0
else
    bad "no checkpoint was kept before the failure"
fi
check "the non-finite counts are logged" awk 'NR>1 && ($3>0 || $4>0) {found=1} END {exit !found}' $W/nan_stop/nonfinite.tsv
$TRAINER "${DIVERGE[@]}" --on-nan skip -o $W/nan_skip >$W/skip.out 2>&1
check "--on-nan skip finishes (exit $?) and reports skipped updates" grep -q "skipped" $W/skip.out
$TRAINER "${DIVERGE[@]}" --on-nan log -o $W/nan_log >$W/log.out 2>&1
rc=$?
check "--on-nan log finishes (exit $rc) and logs per-layer non-finite counts" \
    awk -v rc=$rc 'NR>1 && ($3>0 || $4>0) {found=1} END {exit !(found && rc==0)}' $W/nan_log/nonfinite.tsv

# the loss falls on learnable data, and entropy is logged for every layer and head
$TRAINER "${BASE[@]}" -e L2H2C64T32V512 --norm none --act relu -x 40 -l 3e-3 -u 5 --entropy-every 10 -o $W/learn >$W/learn.out 2>&1
first=$(grep -m1 'trl:' $W/learn/main.log | sed 's/.*trl:\([0-9.]*\).*/\1/')
lastl=$(grep 'trl:' $W/learn/main.log | tail -1 | sed 's/.*trl:\([0-9.]*\).*/\1/')
check "training loss falls over 40 steps ($first -> $lastl)" awk -v a="$first" -v b="$lastl" 'BEGIN {exit !(b < a - 1.0)}'
rows=$(($(wc -l <$W/learn/entropy.tsv) - 1))
check "entropy.tsv has 4 logged steps x 2 layers x 2 heads = 16 rows ($rows)" test "$rows" -eq 16
check "main.log has validation lines" grep -q '^s:40 tel:' $W/learn/main.log

test_summary
