#!/usr/bin/env bash
# test_paper.sh: tests of the paper-reproduction scripts (scripts/paper/), for CI, in about a
# minute on 2 cores: the unit tests of plots.py (test_plots.py: bins, perplexity, log reading on
# hand-made logs with known answers); a shortened tiny set (every experiment, 12 steps per run)
# through run.sh, then plots.py: every figure as a non-empty PNG and PDF, a results.md row with
# a finite perplexity per model, head shares summing to 100%; a second run.sh skips finished
# runs; forced failures (LR 50 under --on-nan stop and log, a run killed mid-way): their status
# and how results.md reports them (banner, empty change cells, states); resume from a checkpoint
# (logs identical to an uninterrupted run); a run that died before its first checkpoint is moved
# aside; plots.py with experiments missing; the full recipe's flags (dry run). Uses the default corpus when it is built (make data), else the
# sample corpus (dev/data/prepare.sh --sample; TEST_DATA=sample forces it). Last line:
# "N passed, M failed".
set -u
cd "$(dirname "$0")/../.." || exit 1
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHON
W=out/test_paper
source tests/test_lib.sh
T0=$(date +%s)

echo "== plots.py unit tests (test_plots.py)"
$PYTHON scripts/paper/test_plots.py > "$W/unit.log" 2>&1
summary=$(grep -oE '^[0-9]+ passed, [0-9]+ failed' "$W/unit.log" | tail -1)
if [ -n "$summary" ]; then
    passed=$((passed + $(echo "$summary" | cut -d' ' -f1)))
    failed=$((failed + $(echo "$summary" | cut -d' ' -f3)))
    grep -E '^  FAIL' "$W/unit.log" || true
    echo "  $summary"
else
    bad "test_plots.py printed no summary:"; tail -5 "$W/unit.log"
fi

# ---- data: the default corpus if built, else the sample corpus -----------------------------
if [ "${TEST_DATA:-}" != sample ] && compgen -G "data/pycode_train_*.bin" >/dev/null && compgen -G "data/pycode_val_*.bin" >/dev/null; then
    export DATA_TRAIN="data/pycode_train_*.bin" DATA_VAL="data/pycode_val_*.bin"
else
    echo "== using the sample corpus (TEST_DATA=sample, or the default corpus is not built)"
    bash dev/data/prepare.sh --sample --out "$W/data" > "$W/data.log" 2>&1 || { bad "prepare.sh --sample"; tail -3 "$W/data.log"; }
    export DATA_TRAIN="$W/data/pysample_train_*.bin" DATA_VAL="$W/data/pysample_val_*.bin"
fi
echo "   data: $DATA_TRAIN"

# ---- the tiny set, shortened ----------------------------------------------------------------------
echo "== run.sh tiny all (12 steps per run)"
SHORT=(STEPS=12 EVAL_EVERY=6 ENTROPY_EVERY=3 VAL_BATCHES=2)
ROOT=$W/tiny
env "${SHORT[@]}" OUT_ROOT=$ROOT bash scripts/paper/run.sh tiny all > "$W/run1.log" 2>&1
rc=$?
check "run.sh tiny all exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -5 "$W/run1.log"
TAGS="main/ln-gelu main/ln-relu main/none-gelu main/none-relu slopes/none-lrelu-layer slopes/none-lrelu-global
      fixed-slopes/none-lrelu-0.01 fixed-slopes/none-lrelu-0.05 fixed-slopes/none-lrelu-0.1 fixed-slopes/none-lrelu-0.2"
all_complete() { for t in $TAGS; do grep -q '^complete' "$ROOT/$t/status" 2>/dev/null || return 1; done; }
check "all 10 runs complete (status)" all_complete
logs_ok() {
    for t in $TAGS; do
        grep -q '^s:12 tel:' "$ROOT/$t/main.log" || return 1
        [ "$(grep -v '^step' "$ROOT/$t/entropy.tsv" | cut -f1 | sort -un | tr '\n' ' ')" = "0 3 6 9 " ] || return 1
        grep -q '^T=128$' "$ROOT/$t/run.info" || return 1
    done
}
check "each run logged the final validation, entropy at 4 steps, and run.info" logs_ok
check "learnable-slope runs log slopes.tsv" test -s "$ROOT/slopes/none-lrelu-layer/slopes.tsv" -a -s "$ROOT/slopes/none-lrelu-global/slopes.tsv"
fixed_regime() { grep -q -- '--on-nan skip --fp16-autocast 1 ' "$1" && grep -q '^regime=fp16-autocast$' "$1"; }
check "fixed-slope runs in the paper's fp16 regime (--on-nan skip --fp16-autocast 1, run.info regime=)" \
    fixed_regime "$ROOT/fixed-slopes/none-lrelu-0.2/run.info"
check "... and log the paper's metrics (paper.tsv: 4 steps x 2 layers x 2 heads)" \
    test "$(grep -vc '^step' "$ROOT/fixed-slopes/none-lrelu-0.2/paper.tsv")" = 16
check "tiny keeps no checkpoints" test -z "$(find "$ROOT" -name 'model_*.bin' -o -name 'state_*.bin')"

sum_before=$(cat "$ROOT"/*/*/main.log | md5sum)
env "${SHORT[@]}" OUT_ROOT=$ROOT bash scripts/paper/run.sh tiny all > "$W/run2.log" 2>&1
check "a second run.sh skips all 10 finished runs" test "$(grep -c 'skipped' "$W/run2.log")" = 10
check "... and leaves their logs alone" test "$(cat "$ROOT"/*/*/main.log | md5sum)" = "$sum_before"

# ---- plots and the table --------------------------------------------------------------------------
echo "== plots.py"
$PYTHON scripts/paper/plots.py "$ROOT" > "$W/plots.log" 2>&1
check "plots.py exits 0" test $? -eq 0
FIGS="fig1_entropy_heatmaps fig2_entropy_bins_eval fig3_learnable_slopes fig4_layer_entropy fig5_fixed_slopes"
figs_ok() {
    local f
    for f in $FIGS; do
        if [ ! -s "$1/$f.png" ] || [ ! -s "$1/$f.pdf" ]; then echo "     missing $1/$f"; return 1; fi
        [ "$(head -c 4 "$1/$f.png" | od -An -c | tr -d ' ')" = '211PNG' ] || { echo "     not a PNG: $f"; return 1; }
        [ "$(head -c 4 "$1/$f.pdf")" = '%PDF' ] || { echo "     not a PDF: $f"; return 1; }
    done
}
check "every figure as a non-empty PNG and PDF" figs_ok "$ROOT"
# results.md rows: | model | tokens | eval loss | PPL | ...; head shares: | model | step | heads | M bins | paper | ln T bins |
table_check() {
    $PYTHON - "$ROOT/results.md" <<'EOF'
import math, re, sys
text = open(sys.argv[1]).read()
sections = text.split("\n## ")
def rows(title):
    sec = next((s for s in sections if s.startswith(title)), "")
    return [[c.strip() for c in l.strip().strip("|").split("|")] for l in sec.splitlines()[1:] if l.startswith("| ") and not l.startswith("| model") and not l.startswith("| run")]
ppl = {r[0]: r[3] for r in rows("Eval perplexity")}
models = ["LN + GELU", "LN + ReLU", "LN-free GELU", "LN-free ReLU", "LN-free, learnable slope per layer", "LN-free, learnable global slope"]
bad = [m for m in models if m not in ppl or not math.isfinite(float(ppl[m]))]
fixed = rows("Fixed slopes")
if len(fixed) != 4 or any(not math.isfinite(float(r[6])) for r in fixed):
    bad.append("fixed slopes")
for r in rows("Head share"):
    for col in (3, 5):
        s = sum(float(v) for v in r[col].split("/"))
        if abs(s - 100) > 0.15:
            bad.append(f"{r[0]} shares sum to {s}")
if len(rows("Head share")) != 6:
    bad.append("head-share rows")
print("     " + ("; ".join(bad) if bad else "all rows finite, shares sum to 100"))
sys.exit(1 if bad else 0)
EOF
}
check "results.md: a finite perplexity per model (4 main, 2 slopes, 4 fixed slopes), shares sum to 100%" table_check
check "figures are labelled with scale, tokens, trainer and commit" grep -q "scale tiny | L2H2C64T128, T=128 | 6.14K tokens per run" "$ROOT/results.md"

echo "== forced failures: LR 50 under --on-nan stop and log, a run killed after a few steps"
F=$W/failures
mkdir -p "$F/main" "$F/fixed-slopes"
cp -r "$ROOT/main/ln-gelu" "$ROOT/main/none-relu" "$F/main/"
cp -r "$ROOT/fixed-slopes/none-lrelu-0.01" "$F/fixed-slopes/"
env "${SHORT[@]}" OUT_ROOT=$F LR=50 ONLY=none-gelu bash scripts/paper/run.sh tiny main > "$W/fail_stop.log" 2>&1
check "LR 50 under --on-nan stop: run.sh exits 0, status stopped" test $? -eq 0 -a "$(cut -d' ' -f1 "$F/main/none-gelu/status")" = stopped
env "${SHORT[@]}" OUT_ROOT=$F LR=50 FIXED_SLOPES=0.2 FIXED_REGIME=fp32 bash scripts/paper/run.sh tiny fixed-slopes > "$W/fail_log.log" 2>&1
D=$F/fixed-slopes/none-lrelu-0.2
check "LR 50 under --on-nan log: the trainer ran all 12 steps (exit 0) with NaN losses" \
    test $? -eq 0 -a -n "$(grep -m1 'trl:nan' "$D/main.log")" -a -n "$(grep '^s:12 tel:' "$D/main.log")"
check "... and run.sh's status says nonfinite, not complete" grep -q '^nonfinite wall_s=.* non-finite values in [0-9]* steps' "$D/status"
# the paper's regime at LR 50: steps overflow fp16, GradScaler skips them and halves the scale;
# the parameters stay finite (the final checkpoint is written) while the overflows go on being
# counted, and the LR schedule stands still (it follows applied updates, as Hugging Face's Trainer)
P=$W/paper_regime
rm -rf "$P"
env "${SHORT[@]}" OUT_ROOT=$P LR=50 FIXED_SLOPES=0.2 KEEP_CKPT=last bash scripts/paper/run.sh tiny fixed-slopes > "$W/fail_paper.log" 2>&1
rc=$?
D=$P/fixed-slopes/none-lrelu-0.2
check "LR 50 in the paper's regime: exit 0, status complete with skipped steps" \
    test $rc -eq 0 -a -n "$(grep -E '^complete .*skipped=[1-9]' "$D/status")"
check "... the loss scale halves at the first skipped step (train.out)" grep -q 'update skipped, loss scale -> 32768$' "$D/train.out"
paper_regime_ok() {
    $PYTHON - "$D" <<'EOF'
import math, sys
d = sys.argv[1]
import numpy as np
params = np.fromfile(d + "/model_00000012.bin", dtype=np.float32)[256:]
rows = [l.split("\t") for l in open(d + "/paper.tsv")][1:]
nan_steps = sorted({int(r[0]) for r in rows if float(r[3]) > 0})
lrs = {l.split("|")[2].split()[1] for l in open(d + "/train.out") if l.startswith("step ") and "| skipped" in l}
ok = params.size > 0 and bool(np.isfinite(params).all()) and len(nan_steps) >= 2 and len(lrs) == 1
print(f"     {params.size} parameters, all finite: {bool(np.isfinite(params).all())}; steps with NaN probabilities"
      f" (paper.tsv): {nan_steps}; LR of the skipped steps: {sorted(lrs)}")
sys.exit(0 if ok else 1)
EOF
}
check "... the final parameters are finite, NaN probabilities logged at 2+ steps, the LR stands still" paper_regime_ok
# the loss scale is part of the checkpoint: a resume from step 3 goes on as the uninterrupted run
RS=(-i "$DATA_TRAIN" -e L2H2C64T128 --norm none --act lrelu:0.2 -b 2 -t 64 -x 6 -l 0.5 -v 0 -s 0 --entropy-every 2
    --fp16-autocast 1 --on-nan skip)
"${TRAINER:-./train_gpt2}" "${RS[@]}" -o "$P/whole" > "$P/whole.txt" 2>&1
"${TRAINER:-./train_gpt2}" "${RS[@]}" -n 3 -o "$P/cut" > "$P/cut1.txt" 2>&1
rm -f "$P/cut/DONE_00000006"
"${TRAINER:-./train_gpt2}" "${RS[@]}" -n 3 -y 1 -o "$P/cut" > "$P/cut2.txt" 2>&1
resume_same() { for f in main.log paper.tsv nonfinite.tsv entropy.tsv; do cmp -s "$P/whole/$f" "$P/cut/$f" || return 1; done; }
check "paper regime: a resume restores the loss scale ($(grep -m1 -o 'dynamic loss scale [0-9]*' "$P/cut2.txt")), logs identical" \
    resume_same
# a run killed (TERM to run.sh, which stops the trainer) once a few steps are logged: no status
env "${SHORT[@]}" OUT_ROOT=$F ONLY=ln-relu bash scripts/paper/run.sh tiny main > "$W/fail_kill.log" 2>&1 &
kpid=$!
for _ in $(seq 300); do grep -q '^s:2 trl:' "$F/main/ln-relu/main.log" 2>/dev/null && break; sleep 0.1; done
kill "$kpid"; wait "$kpid"
check "a run killed after step 2: no status, fewer than 12 steps logged" \
    test ! -e "$F/main/ln-relu/status" -a -z "$(grep '^s:11 trl:' "$F/main/ln-relu/main.log")"
$PYTHON scripts/paper/plots.py "$F" > "$W/plots_fail.log" 2>&1
check "plots.py on the failures exits 0, figures 1, 2, 4, 5 drawn" test $? -eq 0 -a -s "$F/fig1_entropy_heatmaps.png" \
    -a -s "$F/fig2_entropy_bins_eval.png" -a -s "$F/fig4_layer_entropy.png" -a -s "$F/fig5_fixed_slopes.png"
failures_table() {
    $PYTHON - "$F/results.md" <<'EOF'
import sys
md = open(sys.argv[1]).read()
sec = lambda t: next((s for s in md.split("\n## ") if s.startswith(t)), "")
rows = lambda t: {c[0]: c for c in ([x.strip() for x in l.strip().strip("|").split("|")] for l in sec(t).splitlines()
                                    if l.startswith("| ") and not l.startswith("| model"))}
ppl, fixed, bad = rows("Eval perplexity"), rows("Fixed slopes"), []
want = {"LN-free GELU": ("", "stopped"), "LN + ReLU": ("", "unfinished")}
for name, (change, state) in want.items():
    if (ppl[name][4], ppl[name][7]) != (change, state):
        bad.append(f"{name}: change '{ppl[name][4]}', run '{ppl[name][7]}'")
if not ppl["LN-free ReLU"][4].endswith("%") or ppl["LN-free ReLU"][7] != "complete":
    bad.append("LN-free ReLU lost its change")
if fixed["LN-free, fixed slope 0.2"][7] != "non-finite" or not fixed["LN-free, fixed slope 0.2"][2].isdigit():
    bad.append("fixed slope 0.2: " + " | ".join(fixed["LN-free, fixed slope 0.2"]))
if "versus LN-free GELU's: not computed (LN-free GELU: stopped)" not in md:
    bad.append("the ReLU vs GELU line")
if not md.split("\n")[2].startswith("> **Scale tiny: a pipeline test only.**") or "3 of 6 runs did not finish cleanly" not in md:
    bad.append("banner: " + md.split("\n")[2][:120])
print("     " + ("; ".join(bad) if bad else "banner; stopped, unfinished: empty change; non-finite run marked"))
sys.exit(1 if bad else 0)
EOF
}
check "results.md: the tiny banner; no change for the stopped and unfinished runs; the log run non-finite" failures_table

echo "== plots.py with experiments missing"
mkdir -p "$W/partial"
cp -r "$ROOT/main" "$W/partial/"
$PYTHON scripts/paper/plots.py "$W/partial" > "$W/partial.log" 2>&1
check "plots.py exits 0 with only main runs" test $? -eq 0
check "... draws figures 1, 2, 4" test -s "$W/partial/fig1_entropy_heatmaps.png" -a -s "$W/partial/fig2_entropy_bins_eval.pdf" -a -s "$W/partial/fig4_layer_entropy.png"
check "... skips figures 3 and 5" test ! -e "$W/partial/fig3_learnable_slopes.png" -a ! -e "$W/partial/fig5_fixed_slopes.png"
both_note() { grep -q "Figure 5 skipped" "$W/partial.log" && grep -q "Figure 5 skipped" "$W/partial/results.md"; }
check "... with a note on stdout and in results.md" both_note
mkdir -p "$W/empty"
$PYTHON scripts/paper/plots.py "$W/empty" > "$W/empty.log" 2>&1
check "plots.py on a directory without runs: exit 1 and an error line" test $? -eq 1 -a "$(grep -c '^plots.py: error:' "$W/empty.log")" = 1

# ---- resume and restart -----------------------------------------------------------------------------
echo "== resume from a checkpoint; restart a run that died before its first checkpoint"
R=$W/resume
RUN=(env "${SHORT[@]}" "OUT_ROOT=$R" ONLY=none-relu CKPT_EVERY=6 bash scripts/paper/run.sh tiny main)
KEEP_CKPT=all "${RUN[@]}" > "$W/resume1.log" 2>&1
D=$R/main/none-relu
check "a run with checkpoints every 6 steps completes, keeping them (KEEP_CKPT=all)" test -e "$D/DONE_00000006" -a -e "$D/DONE_00000012"
cp "$D/main.log" "$W/uninterrupted.log"; cp "$D/entropy.tsv" "$W/uninterrupted.tsv"
rm -f "$D/status" "$D/DONE_00000012"   # as if killed after the checkpoint of step 6
KEEP_CKPT=last "${RUN[@]}" > "$W/resume2.log" 2>&1
check "run.sh resumes an unfinished run from its checkpoint (-y 1)" grep -q "resuming from its latest checkpoint" "$W/resume2.log"
check "... completes it" grep -q '^complete' "$D/status"
check "... with logs identical to the uninterrupted run's" cmp -s "$D/main.log" "$W/uninterrupted.log"
check "... entropy too" cmp -s "$D/entropy.tsv" "$W/uninterrupted.tsv"
check "KEEP_CKPT=last keeps only the newest checkpoint" test -e "$D/model_00000012.bin" -a -e "$D/DONE_00000012" -a ! -e "$D/model_00000006.bin" -a ! -e "$D/state_00000006.bin"
rm -f "$D"/status "$D"/DONE_* "$D"/model_* "$D"/state_*   # as if killed before any checkpoint
KEEP_CKPT=none "${RUN[@]}" > "$W/resume3.log" 2>&1
check "a run without a checkpoint is moved aside and started again" grep -q "moved to" "$W/resume3.log"
check "... the old one kept as <tag>.partial-DATE" test -n "$(find "$R/main" -maxdepth 1 -name 'none-relu.partial-*')"
check "... the new one completes" grep -q '^complete' "$D/status"
$PYTHON scripts/paper/plots.py "$R" > "$W/plots_resume.log" 2>&1
check "plots.py ignores the .partial directory" test "$(grep -c '^| LN-free ReLU |' "$R/results.md")" = 3

# ---- the full recipe, dry run ---------------------------------------------------------------------
echo "== run.sh --dry-run full all (synthetic shards: only their sizes matter)"
mkdir -p "$W/fake"
$PYTHON tests/make_shard.py "$W/fake/fake_train_000000.bin" 600000 50257 --seed 1
$PYTHON tests/make_shard.py "$W/fake/fake_train_000001.bin" 300001 50257 --seed 2
$PYTHON tests/make_shard.py "$W/fake/fake_val_000000.bin" 20000 50257 --seed 3
DATA_TRAIN="$W/fake/fake_train_*.bin" DATA_VAL="$W/fake/fake_val_*.bin" TRAINER=./train_gpt2cu \
    bash scripts/paper/run.sh --dry-run full all > "$W/dry.log" 2>&1
check "the dry run prints 10 commands: 6 for ./train_gpt2cu, 4 (fixed slopes) for the FP16 build" \
    test "$(grep -c '^./train_gpt2cu ' "$W/dry.log")" = 6 -a "$(grep -c '^out/bin/train_gpt2cu_fp16 ' "$W/dry.log")" = 4
# one epoch: per shard (N-1)//128 sequences // 64, then // 8 micro-batches per step
epoch=$($PYTHON -c "
import struct, glob
micro = sum(((struct.unpack('<3i', open(f, 'rb').read(12))[2] - 1) // 128) // 64 for f in glob.glob('$W/fake/fake_train_*.bin'))
print(micro // 8)")
# the paper's length: the whole number of epochs closest to 32,000 steps
steps=$($PYTHON -c "print($epoch * max(1, (32000 + $epoch // 2) // $epoch))")
warm=$($PYTHON -c "print(int($steps * 0.05 + 0.5))")
recipe_ok() {
    local line
    line=$(grep -m1 '^./train_gpt2cu ' "$W/dry.log")
    for f in "-e d12 " "-b 64 " "-t 128 " "-d 65536 " "-x $steps " "-l 1e-3 " "-u $warm " "-k linear " "-q 0 " "-c 0.1 " \
             "--beta1 0.9 " "--beta2 0.999 " "--eps 1e-8 " "--grad-clip 1.0 " "-v 500 " "-m -1 " "--entropy-every 100 " \
             "--shuffle 1 "; do
        [[ "$line " == *" $f"* ]] || { echo "     missing '$f' in: $line"; return 1; }
    done
}
check "full: the paper's recipe and length, whole epochs of $epoch steps closest to 32K ($steps), 5% warm-up ($warm), reshuffled" recipe_ok
DATA_TRAIN="$W/fake/fake_train_*.bin" DATA_VAL="$W/fake/fake_val_*.bin" TRAINER=./train_gpt2cu EPOCHS=1 \
    bash scripts/paper/run.sh --dry-run full main > "$W/dry1.log" 2>&1
check "full with EPOCHS=1: one epoch ($epoch steps), no reshuffling" \
    test -n "$(grep -m1 -- "-x $epoch " "$W/dry1.log")" -a -z "$(grep -- '--shuffle' "$W/dry1.log")"
check "full: the output goes to out/paper-full-fake/ for a non-default corpus" grep -q -- "-o out/paper-full-fake/main/ln-gelu" "$W/dry.log"
check "fixed slopes 0.01 0.05 0.1 0.2 in the paper's regime" \
    test "$(grep -cE -- '--act lrelu:0\.(01|05|1|2) --on-nan skip --fp16-autocast 1 ' "$W/dry.log")" = 4
check "learnable slopes: lrelu-layer and lrelu-global, LN-free" test "$(grep -cE -- '--norm none --act lrelu-(layer|global) ' "$W/dry.log")" = 2
bash scripts/paper/run.sh tiny nonsense > /dev/null 2>&1
check "an unknown experiment is an error" test $? -eq 1

echo "   ($(($(date +%s) - T0)) s)"
test_summary
