# tests/test_lib.sh: the frame every shell test suite shares, sourced after `cd` to the repo
# root with W set to the suite's scratch folder: a fresh $W, the ok/bad/check counters, and
# test_summary, which prints the "N passed, M failed" line scripts/run_tests.sh adds up and
# returns non-zero if anything failed.
rm -rf "$W"
mkdir -p "$W"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok   $*"; }
bad() { failed=$((failed + 1)); echo "  FAIL $*"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
test_summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
