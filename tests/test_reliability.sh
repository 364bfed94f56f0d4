#!/usr/bin/env bash
# test_reliability.sh: hostile input to the train_gpt2 binary (or $TRAINER), one case per class
# of issue 12: an empty flag value, flag arithmetic past int range, a corrupted training-state
# field, a setting that would write non-finite parameters, a lying tokenizer, stray DONE_
# markers, lax number syntax and -x below a checkpoint. Each must end within seconds with one
# "error:" line and exit 1 (or, where the input is legal, the right behaviour), and no complete
# checkpoint may change. Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
TRAINER=${TRAINER:-./train_gpt2}
PYTHON=${PYTHON:-/usr/bin/python3}
W=out/test_reliability
source tests/test_lib.sh

MODEL_DESC=L2H2C32T32V512
mkdir -p $W/data
$PYTHON tests/make_shard.py $W/data/train_000000.bin 6000 512 --seed 1
$PYTHON tests/make_shard.py $W/data/val_000000.bin 2000 512 --seed 3
BASE=(-i "$W/data/train_*.bin" -j "$W/data/val_*.bin" -b 4 -t 16 -v 0 -s 0 -e $MODEL_DESC)

# expect_error NAME REGEX ARGS...: exit 1, exactly one stderr line "error: ..." matching REGEX,
# and done within CASE_TIMEOUT s (10; a hang or a runaway loop is a failure, not a wait; more
# under a slow wrapper such as scripts/gpu_check.sh's memcheck stage).
CASE_TIMEOUT=${CASE_TIMEOUT:-10}
expect_error() {
    local name="$1" pattern="$2"; shift 2
    timeout $CASE_TIMEOUT $TRAINER "$@" >$W/stdout 2>$W/stderr
    local rc=$?
    local lines
    lines=$(wc -l <$W/stderr)
    if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -qE "^error: .*$pattern" $W/stderr; then
        ok "$name: $(cat $W/stderr)"
    else
        bad "$name: exit $rc, $lines stderr line(s): $(head -c 300 $W/stderr)"
    fi
}

# A run with checkpoints at steps 1, 2 and 3 to resume from and to corrupt copies of.
$TRAINER "${BASE[@]}" -x 3 -n 1 -o $W/run >$W/run.out 2>&1
check "the seed run writes three checkpoints" test -f $W/run/DONE_00000001 -a -f $W/run/DONE_00000003
sums() { md5sum $W/run/*_0000000[123]* | sort; }
sums_before=$(sums)

# 1. an empty value must not mean "build a random model from nothing"
expect_error "class 1: -e ''" "flag -e wants a model file or descriptor" "${BASE[@]}" -x 1 -e ''
expect_error "class 1: -o ''" "flag -o wants a directory" "${BASE[@]}" -x 1 -o ''
expect_error "class 1: -i ''" "flag -i wants a file pattern" "${BASE[@]}" -x 1 -i ''

# 2. arithmetic on flag values: 64-bit and bounded
expect_error "class 2: -d 2^40 micro-batches" "asks for 17179869184 micro-batches.*more than 65536" "${BASE[@]}" -x 1 -d 1099511627776
expect_error "class 2: -d past int64" "flag -d wants an integer" "${BASE[@]}" -x 1 -d 99999999999999999999
expect_error "class 2: -d of 65537 micro-batches" "asks for 65537 micro-batches" "${BASE[@]}" -x 1 -d $((65537 * 64))

# 3. training-state fields checked against the marker and each other; moments finite, v >= 0
# corrupt_state NAME SLOT VALUE|m-nan|v-neg: a copy of the step-3 checkpoint with one field changed
corrupt_state() {
    local dir=$W/state_$1
    mkdir -p $dir
    cp $W/run/model_00000003.bin $W/run/state_00000003.bin $W/run/DONE_00000003 $dir/
    $PYTHON - $dir/state_00000003.bin "$2" "$3" <<'EOF'
import struct, sys
path, slot, value = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = bytearray(open(path, "rb").read())
n = struct.unpack_from("<i", d, 12)[0] + struct.unpack_from("<i", d, 16)[0]  # parameters + slopes
if value == "m-nan":
    struct.pack_into("<f", d, 1024 + 4 * 5, float("nan"))
elif value == "v-neg":
    struct.pack_into("<f", d, 1024 + 4 * (n + 7), -1.0)
elif value == "m-big":  # wpe row 16 (unused at -t 16: no gradient, v stays 0)
    struct.pack_into("<f", d, 1024 + 4 * (512 * 32 + 16 * 32), 1e30)
elif value == "scale-inf":
    struct.pack_into("<i", d, 4 * 18, 1)
    struct.pack_into("<f", d, 4 * 19, float("inf"))
else:
    struct.pack_into("<i", d, 4 * slot, int(value))
open(path, "wb").write(d)
EOF
    echo $dir
}
expect_error "class 3: state step below its marker" "records step 1, but its DONE_ marker says 3" \
    "${BASE[@]}" -x 5 -n 1 -y 1 -o $(corrupt_state step 2 1)
check "class 3: the corrupted-step resume overwrote no checkpoint (no model_00000002.bin written)" \
    test ! -e $W/state_step/model_00000002.bin
expect_error "class 3: AdamW step past the steps done" "AdamW step 2147483647" \
    "${BASE[@]}" -x 5 -y 1 -o $(corrupt_state adam 5 2147483647)
expect_error "class 3: negative skipped count" "impossible after 3 steps" \
    "${BASE[@]}" -x 5 -y 1 -o $(corrupt_state skipped 9 -5)
expect_error "class 3: negative data position" "negative data position" \
    "${BASE[@]}" -x 5 -y 1 -o $(corrupt_state position 7 -64)
expect_error "class 3: NaN first moment" "state_00000003.bin' holds an impossible AdamW moment at index 5" \
    "${BASE[@]}" -x 5 -y 1 -o $(corrupt_state mnan 0 m-nan)
expect_error "class 3: negative second moment" "impossible AdamW moment at index 7 \\(m .*, v -1\\)" \
    "${BASE[@]}" -x 5 -y 1 -o $(corrupt_state vneg 0 v-neg)
expect_error "class 3: infinite loss scale" "impossible loss-scaler record" \
    "${BASE[@]}" -x 5 -y 1 -o $(corrupt_state scale 0 scale-inf)

# 4. no setting may write non-finite parameters as a checkpoint: --eps 0 made the never-updated
# rows of wpe 0/0 = NaN, written as a complete checkpoint that its own resume refused
expect_error "class 4: --eps 0 refused" "--eps must be at least 1e-30" "${BASE[@]}" -x 1 --eps 0
BIGM=$(corrupt_state bigm 0 m-big)
timeout $CASE_TIMEOUT $TRAINER "${BASE[@]}" -x 4 -n 1 --eps 1e-30 -y 1 -o $BIGM >$W/bigm.out 2>$W/bigm.err
rc=$?
check "class 4: parameters made infinite by a step (loss finite) stop --on-nan stop: exit 3 (got $rc), one error line" \
    test $rc -eq 3 -a "$(grep -c '^error: non-finite parameters at step 4; .*last good checkpoint: .*model_00000003.bin' $W/bigm.err)" -eq 1
check "class 4: ... and no checkpoint of step 4 is written" test ! -e $BIGM/DONE_00000004 -a ! -e $BIGM/model_00000004.bin
rm -rf $BIGM && BIGM=$(corrupt_state bigm 0 m-big)
timeout $CASE_TIMEOUT $TRAINER "${BASE[@]}" -x 4 -n 1 --eps 1e-30 --on-nan skip -y 1 -o $BIGM >$W/bigm.out 2>&1
check "class 4: under --on-nan skip the run ends (exit $?) and says the checkpoint was not written" \
    grep -q "checkpoint at step 4 not written: the parameters are non-finite" $W/bigm.out
$TRAINER "${BASE[@]}" -x 2 -n 1 --eps 1e-30 -o $W/eps_tiny >/dev/null 2>&1
$TRAINER "${BASE[@]}" -x 3 -y 1 -o $W/eps_tiny >$W/eps_tiny.out 2>&1
check "class 4: a run at --eps 1e-30 writes checkpoints its resume accepts (exit $?)" grep -q "resumed from" $W/eps_tiny.out

# 5. the tokenizer: its count checked against its length before allocation; end-of-text id at load
mkdir -p $W/tok
cp $W/data/train_000000.bin $W/tok/train_000000.bin
write_tokenizer() {  # VERSION COUNT EOT TOKENS_WRITTEN
    $PYTHON - $W/tok/gpt2_tokenizer.bin "$@" <<'EOF'
import struct, sys
path, version, count, eot, written = sys.argv[1], *map(int, sys.argv[2:])
header = [20240328, version, count, eot] + [0] * 252
with open(path, "wb") as f:
    f.write(struct.pack("<256i", *header))
    for i in range(written):
        f.write(bytes([1]) + bytes([97 + i % 26]))
EOF
}
TOK=(-i "$W/tok/train_*.bin" -j "$W/data/val_*.bin" -b 4 -t 16 -v 0 -s 1 -g 4 -e $MODEL_DESC -x 1)
write_tokenizer 2 16000000 0 100
/usr/bin/time -f "%M" -o $W/tok.rss timeout $CASE_TIMEOUT $TRAINER "${TOK[@]}" >$W/stdout 2>$W/stderr
rc=$?
rss=$(tail -1 $W/tok.rss)
named=$(grep -cE "^error: tokenizer '.*gpt2_tokenizer.bin' has an impossible vocabulary size 16000000" $W/stderr)
check "class 5: a 1 KB tokenizer claiming 16M tokens: exit 1 (got $rc) and one error naming the file" \
    test "$rc" -eq 1 -a "$named" -eq 1
check "class 5: ... and its peak memory stays below 100 MB (${rss} KB)" test "${rss:-999999}" -lt 102400
write_tokenizer 2 512 9999 512
expect_error "class 5: end-of-text id past the tokenizer, at load" "tokenizer '.*gpt2_tokenizer.bin' has end-of-text id 9999" "${TOK[@]}"
check "class 5: ... found before any training step" test -z "$(grep '^step' $W/stdout)"
write_tokenizer 2 512 511 512
timeout $((2 * CASE_TIMEOUT)) $TRAINER "${TOK[@]}" >$W/stdout 2>$W/stderr
check "class 5: a good tokenizer decodes the sample (exit $?)" grep -qE '^sample: [a-z]{4}$' $W/stdout

# 6. stray and malformed DONE_ markers: -y 1 falls back to the newest complete checkpoint
mkdir -p $W/stray
cp $W/run/model_00000002.bin $W/run/state_00000002.bin $W/run/DONE_00000002 $W/stray/
cp $W/run/main.log $W/stray/
: >$W/stray/DONE_00000099            # a marker without its files
: >"$W/stray/DONE_ 0000005"          # malformed names
: >$W/stray/DONE_abc
mkdir -p $W/stray/DONE_00000050      # a directory, with its files missing
timeout $((2 * CASE_TIMEOUT)) $TRAINER "${BASE[@]}" -x 3 -n 1 -y 1 -o $W/stray >$W/stray.out 2>&1
rc=$?
check "class 6: stray markers: -y 1 resumes from the newest complete checkpoint, step 2 (exit $rc)" \
    grep -q "resumed from .*state_00000002.bin (step 2)" $W/stray.out
check "class 6: ... naming each marker it passes over (4 notes)" test "$(grep -c "^note: ignoring '.*DONE_" $W/stray.out)" -eq 4
check "class 6: ... and the resumed run's step-3 checkpoint equals the uninterrupted one" \
    cmp -s $W/run/model_00000003.bin $W/stray/model_00000003.bin
mkdir -p $W/only_stray
: >$W/only_stray/DONE_00000004
expect_error "class 6: only a stray marker" "no complete checkpoint" "${BASE[@]}" -x 5 -y 1 -o $W/only_stray

# 7. number syntax is plain decimal; -x below the checkpoint's step is an error, not exit 0
expect_error "class 7: leading blank in an integer" "flag -x wants an integer.*' 1'" "${BASE[@]}" -x ' 1'
expect_error "class 7: '+5'" "flag -g wants an integer.*'\\+5'" "${BASE[@]}" -x 1 -g +5
expect_error "class 7: hex float" "flag -l wants a number.*'0x1p-10'" "${BASE[@]}" -x 1 -l 0x1p-10
expect_error "class 7: hex integer" "flag -b wants an integer.*'0x4'" "${BASE[@]}" -x 1 -b 0x4
expect_error "class 7: trailing blank in a float" "flag -l wants a number" "${BASE[@]}" -x 1 -l '1e-3 '
expect_error "class 7: blank inside a descriptor" "cannot open 'L2H2C 32T32V512'" "${BASE[@]}" -x 1 -e 'L2H2C 32T32V512'
expect_error "class 7: -x below the checkpoint's step" "-x 2 is below the step 3 of the checkpoint" \
    "${BASE[@]}" -x 2 -y 1 -o $W/run
timeout $((2 * CASE_TIMEOUT)) $TRAINER "${BASE[@]}" -x 1 -l 1.5e-3 >/dev/null 2>&1
check "class 7: plain decimals still parse (-l 1.5e-3, exit $?)" test $? -eq 0

sums_after=$(sums)
check "no complete checkpoint of the seed run was changed" test "$sums_before" = "$sums_after"
test_summary
