#!/usr/bin/env bash
# test_mpi.sh: data-parallel training of the CPU trainer under mpirun (make USE_MPI=1; the binary
# out/bin/train_gpt2_mpi). N ranks of B sequences must train like one process of N*B:
# - 2 and 3 ranks against 1 rank with the same global batch, an LN model and an LN-free one
#   with learnable slopes (and gradient accumulation): losses, gradient norms, validation,
#   entropies, slopes and non-finite counts within fp32 summation-order tolerance, parameters
#   after 10 steps too; 1 rank of the MPI build is the plain build bit for bit;
# - a 2-rank checkpoint resumes on 1 rank exactly as the plain build resumes it, on 2 ranks
#   bit-identically to the uninterrupted 2-rank run, on 3 ranks within tolerance;
# - faults: bad input on one rank only, the same bad input on every rank, a NaN on one rank, a
#   kill of one rank, a launch of the plain build by mpirun: every rank ends within a time
#   limit with the error line and the documented exit code, and earlier checkpoints stay intact.
# Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
TRAINER=${TRAINER:-out/bin/train_gpt2_mpi}
PLAIN=${PLAIN:-./train_gpt2}
W=out/test_mpi
source tests/test_lib.sh
if [ ! -x $TRAINER ]; then
    bad "$TRAINER is missing: make out/bin/train_gpt2_mpi (needs libopenmpi-dev)"
    test_summary
    exit
fi
export OMP_NUM_THREADS=1  # up to 3 ranks share 2 cores; the results do not depend on threads
MPIRUN=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
ROOT=$(pwd)
RTOL=2e-5   # losses, norms, entropies, slopes: fp32 sums in another order (seen: <= 2e-6)
ATOL=1e-5   # parameters after 10 steps (seen: <= 6e-7; the weights are ~0.02-0.5)

$PYTHON tests/make_shard.py $W/train_000000.bin 6000 512 --seed 1
$PYTHON tests/make_shard.py $W/train_000001.bin 3000 512 --seed 2
$PYTHON tests/make_shard.py $W/val_000000.bin 2000 512 --seed 3
# --eps 1e-5: AdamW turns a gradient that is exactly zero in exact arithmetic (the key bias's:
# softmax ignores a constant added to a row) but ~1e-9 of rounding noise in fp32 into a step of
# ~lr with the noise's sign, which no two summation orders share; with eps above that noise such
# parameters stay put and the rest can be compared (with 1e-8: differences up to 2e-3).
DATA=(-i "$W/train_*.bin" -j "$W/val_*.bin" -t 16 -v 5 -m 3 -s 0 --entropy-every 1 --diag-every 2 -l 3e-3 --eps 1e-5 -x 10)
# the two models, their attention sharpened (tests/mpi_sharpen.py) so that entropies are not all
# the uniform maximum: an LN model with GELU, and an LN-free one with a learnable slope per layer
sharpened_model() {  # NAME NORM ACT FACTOR -> $W/model_NAME.bin
    $PLAIN -i "$W/train_*.bin" -v 0 -t 16 -b 2 -e L2H2C32T32V512 --norm $2 --act $3 -x 1 -l 0 -o $W/seed_$1 >/dev/null 2>&1
    $PYTHON tests/mpi_sharpen.py $W/seed_$1/model_00000001.bin $W/model_$1.bin $4
}
sharpened_model ln ln gelu 8
sharpened_model free none lrelu-layer:0.1 25
LN=(-e $W/model_ln.bin --shuffle 1)
FREE=(-e $W/model_free.bin -d 384)  # 384 = 2 micro-batches of 6x16

# run NAME NP B ARGS...: NP ranks of the MPI build, B sequences each, into $W/NAME
run() {
    local name=$1 np=$2 b=$3; shift 3
    "${MPIRUN[@]}" -np "$np" $TRAINER "$@" -b "$b" -o $W/$name >$W/$name.out 2>&1
    local rc=$?
    [ $rc -eq 0 ] || echo "  ($name exited $rc: $(grep -m1 error: $W/$name.out))"
}

# 1. N ranks == one process with the same global batch (6 sequences)
for model in LN FREE; do
    if [ $model = LN ]; then extra=("${LN[@]}"); else extra=("${FREE[@]}"); fi
    run ${model}_1 1 6 "${DATA[@]}" "${extra[@]}"
    run ${model}_2 2 3 "${DATA[@]}" "${extra[@]}"
    run ${model}_3 3 2 "${DATA[@]}" "${extra[@]}"
    $PLAIN "${DATA[@]}" "${extra[@]}" -b 6 -o $W/${model}_plain >$W/${model}_plain.out 2>&1
    check "$model: 1 rank of the MPI build equals the plain build bit for bit (logs, model)" \
        cmp -s $W/${model}_1/model_00000010.bin $W/${model}_plain/model_00000010.bin
    for np in 2 3; do
        check "$model: $np ranks x B=$((6 / np)) vs 1 rank x B=6, logs within $RTOL: $($PYTHON tests/mpi_compare.py logs $W/${model}_$np $W/${model}_1 $RTOL)" \
            $PYTHON tests/mpi_compare.py logs $W/${model}_$np $W/${model}_1 $RTOL
        check "$model: $np ranks, parameters after 10 steps within $ATOL: $($PYTHON tests/mpi_compare.py model $W/${model}_$np/model_00000010.bin $W/${model}_1/model_00000010.bin $ATOL)" \
            $PYTHON tests/mpi_compare.py model $W/${model}_$np/model_00000010.bin $W/${model}_1/model_00000010.bin $ATOL
    done
done
check "the learnable slopes moved (so their comparison means something)" \
    awk 'NR > 1 && $3 != 0.1 {moved=1} END {exit !moved}' $W/FREE_2/slopes.tsv
check "the entropies moved off the uniform value" \
    awk 'NR > 1 && ($4 < 1.9 || $4 > 1.93) {moved=1} END {exit !moved}' $W/LN_2/entropy.tsv
check "rank 0 alone wrote the console: one 'step 10/10' line" test "$(grep -c 'step    10/10' $W/LN_3.out)" -eq 1

# 2. resume: a 2-rank checkpoint at step 5, resumed on 1 (MPI build and plain), 2 and 3 ranks
run RES_full 2 3 "${DATA[@]}" "${FREE[@]}" -n 5
for d in r1 r2 r3 rplain; do
    rm -rf $W/$d
    cp -r $W/RES_full $W/$d
    rm -f $W/$d/*_00000010.bin $W/$d/DONE_00000010  # as if the run had been stopped after step 5
done
RESUME=("${DATA[@]}" "${FREE[@]}" -n 5 -y 1)
"${MPIRUN[@]}" -np 1 $TRAINER "${RESUME[@]}" -b 6 -o $W/r1 >$W/r1.out 2>&1
"${MPIRUN[@]}" -np 2 $TRAINER "${RESUME[@]}" -b 3 -o $W/r2 >$W/r2.out 2>&1
"${MPIRUN[@]}" -np 3 $TRAINER "${RESUME[@]}" -b 2 -o $W/r3 >$W/r3.out 2>&1
$PLAIN "${RESUME[@]}" -b 6 -o $W/rplain >$W/rplain.out 2>&1
check "2-rank checkpoint resumed on 1 rank == resumed by the plain build (model, state, logs bit-identical)" \
    bash -c "cmp -s $W/r1/model_00000010.bin $W/rplain/model_00000010.bin && cmp -s $W/r1/state_00000010.bin $W/rplain/state_00000010.bin && cmp -s $W/r1/main.log $W/rplain/main.log"
check "2-rank checkpoint resumed on 2 ranks == the uninterrupted 2-rank run (model, state, logs)" \
    bash -c "cmp -s $W/r2/model_00000010.bin $W/RES_full/model_00000010.bin && cmp -s $W/r2/state_00000010.bin $W/RES_full/state_00000010.bin && cmp -s $W/r2/main.log $W/RES_full/main.log"
check "2-rank checkpoint resumed on 3 ranks vs the plain resume, logs within $RTOL: $($PYTHON tests/mpi_compare.py logs $W/r3 $W/rplain $RTOL)" \
    $PYTHON tests/mpi_compare.py logs $W/r3 $W/rplain $RTOL
check "... and parameters within $ATOL: $($PYTHON tests/mpi_compare.py model $W/r3/model_00000010.bin $W/rplain/model_00000010.bin $ATOL)" \
    $PYTHON tests/mpi_compare.py model $W/r3/model_00000010.bin $W/rplain/model_00000010.bin $ATOL

# 3. faults. expect_fault NAME RC REGEX SECONDS CMD...: exit code RC, exactly one "error:" line on
# stderr, matching REGEX, within SECONDS.
expect_fault() {
    local name=$1 want_rc=$2 pattern=$3 limit=$4; shift 4
    local t0=$SECONDS
    timeout 60 "$@" >$W/fault.out 2>$W/fault.err
    local rc=$? took=$((SECONDS - t0)) lines
    lines=$(grep -c '^error:' $W/fault.err)
    if [ $rc -eq "$want_rc" ] && [ "$lines" -eq 1 ] && grep -qE "^error: .*$pattern" $W/fault.err && [ $took -le "$limit" ]; then
        ok "$name: exit $rc in ${took}s: $(grep '^error:' $W/fault.err | head -c 200)"
    else
        bad "$name: exit $rc in ${took}s, $lines error line(s): $(grep -m3 -v '^ *$' $W/fault.err | head -c 400)"
    fi
}
checkpoint_sums() { md5sum $W/$1/model_* $W/$1/state_* $W/$1/DONE_* 2>/dev/null; }

# bad input on one rank only: rank 1 runs in a folder whose second training file is truncated
# (Open MPI's MPMD form gives each rank its own working folder)
mkdir -p $W/node_a/data $W/node_b/data
cp $W/train_00000*.bin $W/val_000000.bin $W/node_a/data/
cp $W/train_000000.bin $W/val_000000.bin $W/node_b/data/
head -c 3000 $W/train_000001.bin >$W/node_b/data/train_000001.bin
rm -rf $W/bad_run && cp -r $W/r2 $W/bad_run
before=$(checkpoint_sums bad_run)
LOCAL=(-i "data/train_*.bin" -j "data/val_*.bin" -t 16 -v 5 -m 3 -s 0 "${FREE[@]}" -b 3 -x 20 -y 1 -o $ROOT/$W/bad_run)
expect_fault "bad data file on rank 1 only ends both ranks" 1 "rank 1 of 2: .*train_000001.bin.*truncated" 10 \
    "${MPIRUN[@]}" -np 1 -wdir $W/node_a $ROOT/$TRAINER "${LOCAL[@]}" : -np 1 -wdir $W/node_b $ROOT/$TRAINER "${LOCAL[@]}"
check "the run's checkpoints are untouched by the failed launch" test "$before" = "$(checkpoint_sums bad_run)"
# valid but different data on rank 1 (a node with other files): refused before training
mkdir -p $W/node_c/data
cp $W/train_000000.bin $W/val_000000.bin $W/node_c/data/
$PYTHON tests/make_shard.py $W/node_c/data/train_000001.bin 1500 512 --seed 9
expect_fault "other training files on rank 1 are refused" 1 "the ranks disagree on the training data's batches per epoch" 10 \
    "${MPIRUN[@]}" -np 1 -wdir $W/node_a $ROOT/$TRAINER "${LOCAL[@]}" -y 0 -e $ROOT/$W/model_free.bin -o $ROOT/$W/disagree : \
    -np 1 -wdir $W/node_c $ROOT/$TRAINER "${LOCAL[@]}" -y 0 -e $ROOT/$W/model_free.bin -o $ROOT/$W/disagree
expect_fault "the same bad flag on every rank prints one error line" 1 "unknown flag '-z'" 10 \
    "${MPIRUN[@]}" -np 3 $TRAINER "${DATA[@]}" "${FREE[@]}" -b 2 -z 1
expect_fault "a missing file on every rank prints one error line" 1 "no token files match -i" 10 \
    "${MPIRUN[@]}" -np 2 $TRAINER "${DATA[@]}" "${FREE[@]}" -b 2 -i "$W/none_*.bin"
expect_fault "-d that does not fit 2 ranks names B*T*ranks" 1 "not a multiple of B\\*T\\*ranks = 64" 10 \
    "${MPIRUN[@]}" -np 2 $TRAINER "${DATA[@]}" "${FREE[@]}" -b 2 -d 96

# the plain build launched as 2 processes: refused, naming the switch (each process says so)
timeout 60 "${MPIRUN[@]}" -np 2 $PLAIN "${DATA[@]}" "${FREE[@]}" -b 3 >$W/plain2.out 2>$W/plain2.err
rc=$?
check "the plain build under mpirun -np 2 exits $rc != 0 and names USE_MPI=1" \
    bash -c "[ $rc -ne 0 ] && grep -q '^error: launched as 2 processes .*USE_MPI=1' $W/plain2.err"

# a NaN on one rank: in an LN-free model, token 500 has an embedding row of 1e30 and occurs only
# in rank 1's first sequence, so only rank 1's attention scores overflow; every rank stops with
# exit code 3, and the logged counts are the sums over ranks
$PYTHON - $W <<'EOF'
import random, struct, sys
w = sys.argv[1]
rng = random.Random(7)
tokens = [rng.randrange(0, 500) for _ in range(4000)]
tokens[20] = 500  # sequence 1 (tokens 16..32) of the first global batch of 2 x 16
with open(f"{w}/nan_train.bin", "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, len(tokens), *([0] * 253)))
    f.write(struct.pack("<%dH" % len(tokens), *tokens))
EOF
$PLAIN -i $W/nan_train.bin -v 0 -t 16 -b 2 -e L2H2C32T32V512 --norm none --act relu -x 1 -l 0 -o $W/nan_seed >/dev/null 2>&1
$PYTHON - $W <<'EOF'
import numpy as np, sys
w = sys.argv[1]
d = np.fromfile(f"{w}/nan_seed/model_00000001.bin", dtype=np.int32)
C = int(d[6])
p = d[256:].view(np.float32)
p[500 * C:501 * C] = 1e30  # wte comes first in the file
d.tofile(f"{w}/nan_model.bin")
EOF
NAN=(-i $W/nan_train.bin -v 0 -t 16 -e $W/nan_model.bin -x 3 --on-nan stop)
$PLAIN "${NAN[@]}" -b 2 -o $W/nan_plain >/dev/null 2>$W/nan_plain.err
expect_fault "a NaN on rank 1 only stops both ranks with exit code 3" 3 "non-finite value at step 0, first in layer 0 attention" 10 \
    "${MPIRUN[@]}" -np 2 $TRAINER "${NAN[@]}" -b 1 -o $W/nan_mpi
check "the summed non-finite counts equal one process's of B=2 (and are not 0): $(head -c 100 $W/nan_plain.err)" \
    bash -c "cmp -s $W/nan_plain/nonfinite.tsv $W/nan_mpi/nonfinite.tsv && awk 'NR > 1 && \$3 > 0 {n=1} END {exit !n}' $W/nan_mpi/nonfinite.tsv"
check "and no checkpoint was written for the failed step" bash -c "! ls $W/nan_mpi | grep -q DONE_"

# a kill of one rank mid-run: the job ends within seconds, the checkpoints before stay
# complete, and -y 1 resumes
KILL=("${DATA[@]}" -e L2H2C64T32V512 --norm none --act relu -v 0 --entropy-every 0 -b 4 -n 2 -x 100000)
rm -rf $W/killed
"${MPIRUN[@]}" -np 2 $TRAINER "${KILL[@]}" -o $W/killed >$W/killed.out 2>&1 &
mpirun_pid=$!
for _ in $(seq 1 300); do [ -f $W/killed/DONE_00000004 ] && break; sleep 0.1; done
rank_pid=$(pgrep -P $mpirun_pid | tail -1)
t0=$SECONDS
kill -9 "$rank_pid" 2>/dev/null
wait $mpirun_pid
rc=$?
took=$((SECONDS - t0))
check "killing rank pid $rank_pid ends the job within 10 s (exit $rc after ${took}s)" test $rc -ne 0 -a $took -le 10
newest=$(ls $W/killed | grep '^DONE_' | sort | tail -1 | sed 's/DONE_//')
"${MPIRUN[@]}" -np 2 $TRAINER "${KILL[@]}" -x $((10#${newest:-0} + 2)) -y 1 -o $W/killed >$W/killed2.out 2>&1
rc=$?
check "-y 1 resumes the killed job from its newest checkpoint (step $((10#${newest:-0})), exit $rc)" \
    bash -c "[ $rc -eq 0 ] && grep -q 'resumed from .*state_${newest:-none}.bin' $W/killed2.out"

test_summary
