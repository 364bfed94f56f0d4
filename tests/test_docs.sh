#!/usr/bin/env bash
# tests/test_docs.sh: the tutorials' commands run as written, and the docs' links and numbers.
# Every ```sh block of the pages below runs, line by line, in a scratch tree (the repository's
# files linked in, a data/ and an out/ of its own, out/ref linked from `make refs`), so the
# commands write nothing into the repository. ```bash blocks (GPU, or minutes) are not run.
# Then: the check scripts and the lab print the numbers the pages quote; every relative link of
# README.md and doc/*.md resolves; nothing refers to files outside the repository.
# Last line: "N passed, M failed". Needs the built CPU trainer, test_gpt2 and out/ref (make test).
set -u
export OMP_WAIT_POLICY=passive  # idle OpenMP threads sleep: the suite shares a loaded machine
cd "$(dirname "$0")/.."
ROOT=$PWD
W=$ROOT/out/test_docs
source tests/test_lib.sh
PAGES="doc/start-here.md doc/attention-entropy.md doc/backward.md doc/fp16-and-nans.md"
# Pages other branches write; links to them count as resolved until they arrive.
EXPECTED="doc/entropic-overload.md doc/fp16-and-nans.md doc/reliability.md doc/multi-gpu.md"

# the scratch tree
for f in * .[!.]*; do
    case $f in data|out|.git|.|..) ;; *) ln -s "$ROOT/$f" "$W/$f" ;; esac
done
mkdir -p "$W/data" "$W/out"
[ -d "$ROOT/out/ref" ] && ln -s "$ROOT/out/ref" "$W/out/ref"

# Lines of a page's ```sh blocks, continuation lines joined.
sh_commands() {
    awk '/^```sh$/ { on = 1; next } /^```/ { on = 0; next } on' "$1" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta'
}

log_name() { echo "cmd_$(echo "$1" | md5sum | cut -c1-12).log"; }

for page in $PAGES; do
    while IFS= read -r cmd; do
        [ -z "$cmd" ] && continue
        log=$W/last.log
        t0=$SECONDS
        if (cd "$W" && timeout 300 bash -c "$cmd") >"$log" 2>&1; then
            ok "$page ($((SECONDS - t0)) s): $cmd"
        else
            bad "$page: $cmd (exit $?): $(tail -c 600 "$log" | tr '\n' ' ')"
        fi
        cp "$log" "$W/$(log_name "$cmd")"
    done < <(sh_commands "$page")
done

# The numbers the pages quote come from these outputs.
out_of() { cat "$W/$(log_name "$1")" 2>/dev/null; }
check "check_entropy.py: 16 passed, 0 failed" grep -q "^16 passed, 0 failed" <(out_of "/usr/bin/python3 doc/scripts/check_entropy.py")
check "check_backward.py: 20 passed, 0 failed" grep -q "^20 passed, 0 failed" <(out_of "/usr/bin/python3 doc/scripts/check_backward.py")
lab=$(out_of "dev/cuda/emu/run.sh FP32 softmax_entropy 0 0 64")
check "softmax_entropy lab: all versions valid" grep -q "^all versions valid" <(echo "$lab")
check "softmax_entropy lab: version 2 fails at large scores, as the page says" \
    grep -q "^version 2: ok .*<- cancellation (expected)" <(echo "$lab")
for v in 3 4; do
    e=$(echo "$lab" | sed -n "s/^version $v: ok .*at scores ~1e4: \([0-9.e+-]*\) nats.*/\1/p")
    check "softmax_entropy lab: version $v's error at scores ~1e4 ($e) below 1e-6" \
        awk -v e="${e:-1}" 'BEGIN { exit !(e < 1e-6) }'
done
check "the overfitting run's loss is below 1 at step 40 (start-here, stop 2: 0.65 here)" \
    awk '/^step +40\/40/ { found = 1; exit !($5 < 1.0) } END { if (!found) exit 1 }' \
        <(out_of "./train_gpt2 -e L2H2C64T64 --norm none --act relu -i 'data/pysample_train_*.bin' -j 'data/pysample_val_*.bin' -b 2 -t 32 -x 40 -l 3e-3 -a 1 -v 0 -s 0")
check "the entropy run prints the bound ln(T!)/T = 2.549 at T = 32" grep -q "max 2.549" \
    <(out_of "./train_gpt2 -e L2H2C64T64 --norm none --act relu -i 'data/pysample_train_*.bin' -j 'data/pysample_val_*.bin' -b 4 -t 32 -x 10 -v 0 -s 0 --entropy-every 5 -o out/start-here-entropy")

check "fp16-and-nans: the paper regime skips steps 2-20 and keeps the scale's last value 0.125" \
    grep -q "step 19: non-finite forward, update skipped, loss scale -> 0.125" \
        <(out_of "./train_gpt2 -e L2H2C64T128 --norm none --act lrelu:0.2 -i 'data/pysample_train_*.bin' -j 'data/pysample_val_*.bin' -b 4 -t 128 -x 20 -l 0.5 -v 10 -m 2 -s 0 --entropy-every 5 --fp16-autocast 1 --on-nan skip -o out/fp16demo/paper")
check "fp16-and-nans: the paper regime's checkpoint is written, the fp32 log run's is not" \
    bash -c "test -f '$W/out/fp16demo/paper/DONE_00000020' && test ! -e '$W/out/fp16demo/fp32log/DONE_00000020'"

# Every relative link resolves (anchors dropped), except the pages other branches bring.
broken=""
for page in README.md doc/*.md dev/cuda/README.md; do
    dir=$(dirname "$page")
    for link in $(grep -oE '\]\([^)#]+[)#]' "$page" | sed -E 's/^\]\(//; s/[)#]$//' | grep -vE '^[a-z]+:'); do
        target=$(realpath -m "$dir/$link" --relative-to="$ROOT")
        [ -e "$target" ] && continue
        case " $EXPECTED " in *" $target "*) continue ;; esac
        broken="$broken $page->$link"
    done
done
check "every relative link in README.md, doc/ and dev/cuda/README.md resolves${broken:+ (broken:$broken)}" test -z "$broken"

# Nothing refers to files outside the repository.
outside=$(git grep -n -I -e 'design-notes' -e 'shared/paper' -e '\.\./shared' -- . ':!tests/test_docs.sh' 2>/dev/null)
check "no reference to files outside the repository${outside:+: $outside}" test -z "$outside"

test_summary
