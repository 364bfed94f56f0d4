#!/usr/bin/env bash
# run_tests.sh: every CPU test of the project, as `make test` runs it; with --ci (`make ci`) also
# the sanitizer build's suites (tests/test_sanitize.sh), every fuzz target (fuzz/run.sh) and the
# CUDA kernels' tests on the CPU emulator (tests/test_emu.sh).
# Each suite prints its own "N passed, M failed"; this adds them up into the final line.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
total_passed=0
total_failed=0
CI=0
if [ "${1:-}" = "--ci" ]; then CI=1; fi

run_suite() {
    local name="$1"; shift
    echo "== $name"
    local t0=$SECONDS
    local log
    log=$(mktemp)
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    echo "   ($((SECONDS - t0)) s)"
    local summary
    summary=$(grep -oE '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    rm -f "$log"
    if [ -z "$summary" ]; then
        echo "  FAIL $name printed no summary (exit $rc)"
        total_failed=$((total_failed + 1))
        return
    fi
    local p f
    p=$(echo "$summary" | cut -d' ' -f1)
    f=$(echo "$summary" | cut -d' ' -f3)
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # a crash after the summary still fails
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
}

run_suite "test_gpt2: CPU trainer vs the PyTorch reference" ./test_gpt2 out/ref
run_suite "test_fp16: the paper's fp16 regime (rounding, NaN rows, GradScaler) vs numpy" ./test_fp16 out/fp16case
run_suite "tests/test_cli.sh: command line, bad input, resume, NaN guard" env PYTHON="$PYTHON" bash tests/test_cli.sh
run_suite "tests/test_reliability.sh: hostile input, issue 12's classes 1-7" env PYTHON="$PYTHON" bash tests/test_reliability.sh
if [ -f dev/data/test_data.sh ]; then
    run_suite "dev/data/test_data.sh: corpus preparation (sample mode)" bash dev/data/test_data.sh
fi
run_suite "tests/test_diag.sh: --diag-every, diag.tsv, the entropic-overload page's commands (small)" \
    env PYTHON="$PYTHON" bash tests/test_diag.sh
run_suite "dev/data/test_codeparrot.sh: the paper's CodeParrot selection (prepare.sh --codeparrot)" \
    env PYTHON="$PYTHON" bash dev/data/test_codeparrot.sh
command -v mpirun >/dev/null && run_suite "tests/test_mpi.sh: data-parallel CPU training, 1-3 ranks under mpirun" bash tests/test_mpi.sh
run_suite "tests/test_cuda_build.sh: the CUDA trainer compiles for sm_90 (no GPU needed)" bash tests/test_cuda_build.sh
run_suite "tests/test_docs.sh: the tutorials' commands, numbers and links" env PYTHON="$PYTHON" bash tests/test_docs.sh
run_suite "tests/test_bench_torch_minimal.sh: the minimal PyTorch speed peer on the CPU" \
    env PYTHON="$PYTHON" bash tests/test_bench_torch_minimal.sh
run_suite "scripts/paper/test_paper.sh: paper runs, plots, table" \
    env PYTHON="$PYTHON" TRAINER=out/bin/train_gpt2_blas bash scripts/paper/test_paper.sh
if [ $CI -eq 1 ]; then
    run_suite "tests/test_sanitize.sh: test_gpt2 and the CLI suites under ASan + UBSan + LeakSanitizer" \
        env PYTHON="$PYTHON" bash tests/test_sanitize.sh
    run_suite "fuzz/run.sh: every libFuzzer harness, ${FUZZ_SECONDS:-25} s each from its seed corpus" bash fuzz/run.sh
    run_suite "tests/test_emu.sh: the CUDA kernels' unit tests and the attention lab on the CPU emulator" bash tests/test_emu.sh
fi
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
