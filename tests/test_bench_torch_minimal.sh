#!/usr/bin/env bash
# test_bench_torch_minimal.sh: a smoke test of dev/bench_torch_minimal.py (the minimal PyTorch
# speed peer) on the CPU: a tiny model in fp32 without compilation, from token shards and from
# random tokens. Each run must end with a summary line whose numbers agree with each other, so
# that scripts/gpu_check.sh can read the GPU runs' lines the same way. A few seconds.
# Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
W=out/test_bench_torch_minimal
source tests/test_lib.sh

$PYTHON tests/make_shard.py $W/tiny_train_000000.bin 3000 512 --seed 1
B=4
T=16
STEPS=4
SKIP=1
TINY=(-e L2H2C32T32V512 -b $B -t $T -x $STEPS --bench-skip $SKIP --device cpu --dtype float32 --compile 0)

# check_run NAME ARGS...: exit 0; a summary line with ms > 0, tok/s = B*T/ms (to its printed
# rounding), peak memory "na" (CPU), STEPS - SKIP steps timed; finite losses
check_run() {
    local name=$1
    shift
    if ! $PYTHON dev/bench_torch_minimal.py "${TINY[@]}" "$@" >$W/$name.log 2>&1; then
        bad "$name: exit status $?: $(tail -c 300 $W/$name.log)"
        return
    fi
    local line
    line=$(grep '^summary: ' $W/$name.log | tail -1)
    if awk -v line="$line" -v bt=$((B * T)) -v timed=$((STEPS - SKIP)) 'BEGIN {
            n = split(line, kv, /[ =]/)
            for (i = 2; i < n; i += 2) v[kv[i]] = kv[i + 1]
            ms = v["ms_per_step"] + 0; tok = v["tok_per_s"] + 0
            sane = ms > 0 && tok > 0 && (tok * ms / 1000 - bt) ^ 2 < (0.01 * bt) ^ 2
            exit !(sane && v["peak_mem_mb"] == "na" && v["steps_timed"] == timed)
        }' && grep -qE '^loss [0-9]+\.[0-9]+ -> [0-9]+\.[0-9]+' $W/$name.log; then
        ok "$name: $line"
    else
        bad "$name: summary line missing or not sane: '$line'"
    fi
}

check_run shards_none_relu -i "$W/tiny_train_*.bin" --norm none --act relu
check_run random_ln_gelu --norm ln --act gelu
test_summary
