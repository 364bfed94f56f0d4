#!/usr/bin/env bash
# fuzz/run.sh: runs every libFuzzer harness (built by `make fuzz-build` into out/fuzz/) from its
# checked-in seed corpus fuzz/corpus/<target> with a fixed seed, FUZZ_SECONDS each (default 25),
# FUZZ_JOBS targets at a time (default 2).
# New inputs go to out/fuzz/work/<target> (the checked-in corpus is never changed); a finding
# (crash, sanitizer report, hang over 10 s, broken invariant) is saved under out/fuzz/findings/
# and fails its target. Last line: "N passed, M failed".
#   FUZZ_SECONDS=600 bash fuzz/run.sh            a longer campaign
#   FUZZ_TARGETS="state_file setup" bash fuzz/run.sh   some targets only
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD  # absolute paths: fuzz_setup works inside its own scratch directory
SECONDS_EACH=${FUZZ_SECONDS:-25}
TARGETS=${FUZZ_TARGETS:-"model_file state_file shard tokenizer debug_state descriptor flags setup"}
mkdir -p out/fuzz/findings
passed=0
failed=0
# fuzz_one TARGET: one campaign, its log in out/fuzz/TARGET.log, its exit code in .rc
fuzz_one() {
    local t=$1
    rm -rf out/fuzz/work/$t
    mkdir -p out/fuzz/work/$t
    # -seed fixes the mutation sequence; time-limited runs still differ a little in how far they get
    out/fuzz/fuzz_$t -seed=1 -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$ROOT/out/fuzz/findings/$t-" "$ROOT/out/fuzz/work/$t" "$ROOT/fuzz/corpus/$t" >out/fuzz/$t.log 2>&1
    echo $? >out/fuzz/$t.rc
}
# FUZZ_JOBS campaigns at a time (default 2: one per core of the 2-core CI machine)
running=0
for t in $TARGETS; do
    if [ -x out/fuzz/fuzz_$t ]; then
        fuzz_one $t &
        running=$((running + 1))
        if [ $running -ge "${FUZZ_JOBS:-2}" ]; then wait -n; running=$((running - 1)); fi
    fi
done
wait
for t in $TARGETS; do
    log=out/fuzz/$t.log
    if [ ! -x out/fuzz/fuzz_$t ]; then echo "  FAIL $t: out/fuzz/fuzz_$t is not built (make fuzz-build)"; failed=$((failed + 1)); continue; fi
    rc=$(cat out/fuzz/$t.rc 2>/dev/null || echo "?")
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    if [ "$rc" = 0 ] && [ -n "$runs" ]; then
        echo "  ok   $t: ${runs} inputs in ${SECONDS_EACH} s, ${cov:-cov: ?}, no finding"
        passed=$((passed + 1))
    else
        echo "  FAIL $t: exit $rc; see $log and out/fuzz/findings/$t-*"
        grep -E 'ERROR|runtime error|invariant|SUMMARY' "$log" | head -5 | sed 's/^/       /'
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
