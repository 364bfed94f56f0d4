#!/usr/bin/env bash
# test_diag.sh: the training diagnostics (--diag-every, diag.tsv; diag.h) end to end, and the
# commands of doc/entropic-overload.md in a small mode (~1 minute on 2 cores):
#   - a bad --diag-every ends with one error line; diag.tsv has a row per layer on every N-th step
#   - step 0's score std matches the init-scale derivation 0.02^2 * C * r^2 (with and without LN)
#   - resuming from a checkpoint rewrites diag.tsv exactly as an uninterrupted run writes it
#   - scripts/explain/overload.sh --small and plot_overload.py: five runs, figure, table; a second
#     invocation keeps the finished runs; the plot script refuses a folder without runs
# The values themselves are checked against PyTorch by test_gpt2 (and test_gpt2cu).
# Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
TRAINER=${TRAINER:-./train_gpt2}
PYTHON=${PYTHON:-/usr/bin/python3}
W=out/test_diag
source tests/test_lib.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# synthetic shards (tests/make_shard.py); -s 0: no samples, so no tokenizer is needed
for s in 1 2; do $PYTHON tests/make_shard.py $W/syn_train_00000$s.bin 8000 512 --seed $s; done
$PYTHON tests/make_shard.py $W/syn_val_000000.bin 4000 512 --seed 3
BASE=(-i "$W/syn_train_*.bin" -j "$W/syn_val_*.bin" -b 4 -t 32 -v 0 -s 0 -l 1e-3)

# bad input
$TRAINER "${BASE[@]}" -e L2H2C32T32V512 -x 1 --diag-every -1 >$W/bad.out 2>$W/bad.err
rc=$?
check "--diag-every -1: exit 1 with one error line ($(head -c 120 $W/bad.err))" \
    test $rc -eq 1 -a "$(wc -l <$W/bad.err)" -eq 1 -a -n "$(grep '^error: .*--diag-every' $W/bad.err)"

# rows and columns: L = 3, steps 0, 2, 4 of 6
$TRAINER "${BASE[@]}" -e L3H2C32T32V512 -x 6 --diag-every 2 -o $W/rows >$W/rows.out 2>&1
check "a run with --diag-every 2 exits 0" test $? -eq 0
rows_ok() {
    [ "$(head -1 $W/rows/diag.tsv)" = "$(printf 'step\tlayer\tresid_rms\tscore_std\tscore_max\tffn_rms\tffn_neg')" ] || return 1
    [ "$(tail -n +2 $W/rows/diag.tsv | cut -f1,2 | tr '\t\n' ': ')" = "0:0 0:1 0:2 2:0 2:1 2:2 4:0 4:1 4:2 " ] || return 1
    # every value finite and positive, the negative share in (0, 1)
    awk -F'\t' 'NR > 1 { for (i = 3; i <= 7; i++) if (!($i > 0) || $i == "inf") exit 1; if ($7 >= 1) exit 1 }' $W/rows/diag.tsv
}
check "diag.tsv: header, one row per layer on steps 0, 2, 4, finite values" rows_ok
check "the console shows a diag/layer line on diagnostic steps (3 of them)" test "$(grep -c 'diag/layer' $W/rows.out)" -eq 3

# step 0 against the derivation: std(s) = sigma^2 C r^2, r = RMS of the attention's input
# (LN: 1; LN-free: the residual's own RMS); 4 heads of 16 over B*T*(T+1)/2 scores: within 15%
for norm in none ln; do
    $TRAINER "${BASE[@]}" -e L2H4C64T32V512 --norm $norm --act gelu -x 1 --diag-every 1 -o $W/init-$norm >/dev/null 2>&1
    read -r r s < <(awk -F'\t' 'NR == 2 { print $3, $4 }' $W/init-$norm/diag.tsv)
    [ $norm = ln ] && r=1  # LayerNorm's output has RMS 1 whatever the residual's
    pred=$(awk -v r="$r" 'BEGIN { printf "%.4g", 0.02 * 0.02 * 64 * r * r }')
    check "init, norm $norm, layer 0: score std $s vs 0.02^2 * 64 * r^2 = $pred (r = $r), within 15%" \
        awk -v s="$s" -v p="$pred" 'BEGIN { exit !(s > 0.85 * p && s < 1.15 * p) }'
done

# resume: checkpoint at step 3 of 6, then -y 1 from a copy of what the run had at step 3
RUN=("${BASE[@]}" -e L2H2C32T32V512 --norm none --act relu -x 6 -n 3 --diag-every 1)
$TRAINER "${RUN[@]}" -o $W/full >/dev/null 2>&1
mkdir -p $W/resumed
cp $W/full/model_00000003.bin $W/full/state_00000003.bin $W/full/DONE_00000003 $W/resumed/
for f in main.log diag.tsv; do cp $W/full/$f $W/resumed/$f; done  # later rows too: resume must drop them
$TRAINER "${RUN[@]}" -o $W/resumed -y 1 >/dev/null 2>&1
check "resumed at step 3: diag.tsv identical to the uninterrupted run's" cmp -s $W/full/diag.tsv $W/resumed/diag.tsv

# the page's commands, small mode
export DATA_TRAIN="$W/syn_train_*.bin" DATA_VAL="$W/syn_val_*.bin" TRAINER
bash scripts/explain/overload.sh --small $W/explain >$W/explain.out 2>&1
check "overload.sh --small exits 0" test $? -eq 0
runs_ok() {
    for r in ln-gelu ln-relu none-gelu none-relu none-lrelu0.1; do
        [ -f $W/explain/$r/complete ] && [ "$(tail -n +2 $W/explain/$r/diag.tsv | wc -l)" -eq 4 ] || return 1
    done
}
check "five runs complete, each with diag rows for steps 0 and 4 x 2 layers" runs_ok
check "overload.png written (> 20 kB)" test "$(stat -c %s $W/explain/overload.png 2>/dev/null || echo 0)" -gt 20000
check "overload.md: a summary row and a table per run, 4 rows each (2 steps x 2 layers)" \
    test "$(grep -c '^## [a-z]' $W/explain/overload.md)" -eq 5 -a "$(grep -c '^| [a-z].* (step 4) |' $W/explain/overload.md)" -eq 5 -a "$(grep -cE '^\| [0-9]+ \| [0-9] \|' $W/explain/overload.md)" -eq 20
before=$(stat -c %Y $W/explain/none-gelu/diag.tsv)
bash scripts/explain/overload.sh --small $W/explain >$W/explain2.out 2>&1
check "a second overload.sh keeps the finished runs" test $? -eq 0 -a "$(grep -c 'complete, kept' $W/explain2.out)" -eq 5 \
    -a "$(stat -c %Y $W/explain/none-gelu/diag.tsv)" = "$before"
# scales.py: the closed forms of the page against their Monte Carlo draws
$PYTHON scripts/explain/scales.py >$W/scales.out 2>&1
check "scales.py exits 0" test $? -eq 0
scales_ok() {
    [ "$(grep -c 'predicted std' $W/scales.out)" -eq 4 ] || return 1
    # "C = 128 LayerNorm: predicted std 0.0512, sampled 0.0517; deficit std^2/2 = 0.0013 nats, sampled 0.0012"
    sed -n 's/.*predicted std \([^,]*\), sampled \([^;]*\); deficit std^2\/2 = \([^ ]*\) nats, sampled \(.*\)/\1 \2 \3 \4/p' \
        $W/scales.out | awk '{ if ($2 < 0.95 * $1 || $2 > 1.05 * $1 || $4 < 0.85 * $3 || $4 > 1.05 * $3) bad = 1 } END { exit bad }'
}
check "scales.py: sampled score std within 5% of sigma^2 C r^2, entropy deficit within 15% of std^2/2" scales_ok
page_numbers() { grep -q "T =   64: M = 3.2058" $W/scales.out && grep -q "rho = 0.0066: 0.0091 " $W/scales.out; }
check "scales.py: M = 3.2058 at T = 64, GELU's even/odd RMS 0.0091 at rho = 0.0066 (the page's numbers)" page_numbers
mkdir -p $W/empty
$PYTHON scripts/explain/plot_overload.py $W/empty >/dev/null 2>$W/empty.err
check "plot_overload.py on a folder without runs: exit 1, one error line" test $? -eq 1 -a "$(grep -c '^error:' $W/empty.err)" -eq 1

test_summary
