#!/usr/bin/env bash
# test_cuda_build.sh: the CUDA trainer and its test compile for sm_90 in every precision, with
# warnings as errors (host and device), on a machine without a GPU. Running them needs a GPU:
# scripts/gpu_check.sh. Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
passed=0
failed=0
if [ ! -x "$NVCC" ]; then
    echo "  FAIL no nvcc at $NVCC (install the CUDA Toolkit, or set NVCC=)"
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p out/cuda_build
for precision in BF16 FP32 FP16; do
    for target in train_gpt2cu test_gpt2cu; do
        log=out/cuda_build/${target}_${precision}.log
        if make -s -f cuda.mk CUDA_BIN=out/cuda_build "out/cuda_build/${target}_$(echo $precision | tr A-Z a-z)" \
                NVCC="$NVCC" >"$log" 2>&1 && ! grep -qi "warning" "$log"; then
            passed=$((passed + 1)); echo "  ok   $target PRECISION=$precision compiles for sm_90 without warnings"
        else
            failed=$((failed + 1)); echo "  FAIL $target PRECISION=$precision: $(head -c 600 "$log")"
        fi
    done
done
# the data-parallel build (USE_MPI=1: llmc/zero.cuh, NCCL), where Open MPI is installed
if command -v mpicxx >/dev/null; then
    log=out/cuda_build/mpi/train_gpt2cu_bf16.log
    mkdir -p out/cuda_build/mpi
    if make -s -f cuda.mk CUDA_BIN=out/cuda_build/mpi out/cuda_build/mpi/train_gpt2cu_bf16 USE_MPI=1 NVCC="$NVCC" >"$log" 2>&1 \
            && ! grep -qi "warning" "$log"; then
        passed=$((passed + 1)); echo "  ok   train_gpt2cu PRECISION=BF16 USE_MPI=1 compiles without warnings"
    else
        failed=$((failed + 1)); echo "  FAIL train_gpt2cu PRECISION=BF16 USE_MPI=1: $(head -c 600 "$log")"
    fi
fi
log=out/cuda_build/labs.log
if make -s -B -f cuda.mk cuda-labs out/cuda_build/attention_entropy_syncloads.out CUDA_BIN=out/cuda_build NVCC="$NVCC" \
        >"$log" 2>&1; then
    passed=$((passed + 1)); echo "  ok   the dev/cuda kernel labs compile (and the attention lab's load-then-store A/B)"
else
    failed=$((failed + 1)); echo "  FAIL dev/cuda kernel labs: $(head -c 600 "$log")"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
