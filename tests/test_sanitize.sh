#!/usr/bin/env bash
# test_sanitize.sh: the CPU test suite on the sanitizer build (make out/san/train_gpt2
# out/san/test_gpt2: clang, ASan + UBSan + LeakSanitizer, -O1): test_gpt2 against the PyTorch
# reference, then test_cli.sh and test_reliability.sh with the sanitized trainer. A sanitizer
# report exits 86 (ASan, LSan and UBSan share the code), never 1 or 3, so every expected exit code in those
# suites also asserts "no report". Last line: "N passed, M failed" (the three suites and this
# file's own checks added up).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
SAN=${SAN:-out/san}
W=out/test_sanitize
source tests/test_lib.sh
export ASAN_OPTIONS=detect_leaks=1:exitcode=86:allocator_may_return_null=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:exitcode=86
export LSAN_OPTIONS=exitcode=86

# sub_suite NAME CMD...: runs a suite, adds its "N passed, M failed" to this one's counts
sub_suite() {
    local name="$1"; shift
    "$@" >$W/suite.log 2>&1
    local rc=$?
    local summary
    summary=$(grep -oE '[0-9]+ passed, [0-9]+ failed' $W/suite.log | tail -1)
    grep -E 'FAIL|Sanitizer|runtime error' $W/suite.log | head -20
    if [ -z "$summary" ]; then bad "$name printed no summary (exit $rc)"; return; fi
    local p=${summary%% passed*} f
    f=${summary#*passed, }
    f=${f%% failed*}
    passed=$((passed + p))
    failed=$((failed + f))
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then bad "$name exited $rc after its summary"; fi
    echo "  $name: $summary (sanitized)"
}

sub_suite "test_gpt2" $SAN/test_gpt2 out/ref
sub_suite "tests/test_cli.sh" env TRAINER=$SAN/train_gpt2 PYTHON="$PYTHON" bash tests/test_cli.sh
sub_suite "tests/test_reliability.sh" env TRAINER=$SAN/train_gpt2 PYTHON="$PYTHON" bash tests/test_reliability.sh

# --on-nan stop leaves main() early: exit 3 with no leak report (LeakSanitizer would make it 86)
$PYTHON tests/make_shard.py $W/train_000000.bin 6000 512 --seed 1
$SAN/train_gpt2 -i "$W/train_*.bin" -v 0 -s 0 -b 4 -t 16 -e L2H2C32T32V512 --norm none --act relu -l 1e6 -x 8 \
    --grad-clip 0 --on-nan stop -o $W/nan >$W/nan.out 2>$W/nan.err
rc=$?
check "--on-nan stop under LeakSanitizer: exit 3 (got $rc), one error line, no leak report" \
    test $rc -eq 3 -a "$(wc -l <$W/nan.err)" -eq 1 -a -z "$(grep -l Sanitizer $W/nan.err)"
# and the sanitizers are live in this build: a leak planted on purpose is reported
cat >$W/leak.cpp <<'CPP'
#include <cstdlib>
void* volatile keep;
int main() { keep = malloc(64); keep = nullptr; return 0; }
CPP
${SAN_CXX:-clang++} -fsanitize=address,undefined -g $W/leak.cpp -o $W/leak 2>/dev/null && $W/leak 2>$W/leak.err
rc=$?
check "the sanitizer options in force catch a planted leak (exit $rc, want 86)" test $rc -eq 86
test_summary
