#!/usr/bin/env bash
# test_emu.sh: the CUDA kernels' logic on the CPU, through the emulator (dev/cuda/emu), so that CI
# (no GPU) checks more than that they compile:
#   - test_gpt2cu's unit tests in BF16, FP16 and FP32: every attention path against double
#     precision, the entropy on hard rows, the qkv bias fold, column sums, the fused LayerNorm
#     backward, activation + bias, the classifier, --matmul-autotune, the NaN guard, checkpoint ->
#     resume, the loss scaler, the fp16 overflow model;
#   - in FP32 also the whole trainer against the 16 PyTorch reference variants of out/ref (logits,
#     loss, entropies, every gradient, 10 AdamW steps);
#   - the attention lab's nine versions at a ragged T = 40 (BF16).
# BF16 and FP16 run side by side (two cores). Needs out/ref and out/fp16case (make ci builds
# them). `make ci` only; a few minutes. Last line: "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
LOG=out/test_emu
mkdir -p $LOG
passed=0
failed=0

units() {  # PRECISION [STATES]: test_gpt2cu (--units, or STATES and the units) in its own build directory
    EMU_OUT=out/emu/ci_$1 bash dev/cuda/emu/run.sh $1 test_gpt2cu ${2:---units} out/fp16case >$LOG/units_$1.log 2>&1
}
count_units() {  # PRECISION: adds its "N passed, M failed" (a run without one counts as a failure)
    local line
    line=$(grep -oE 'test_gpt2cu: [0-9]+ passed, [0-9]+ failed' $LOG/units_$1.log | tail -1)
    if [ -z "$line" ]; then
        failed=$((failed + 1))
        echo "  FAIL test_gpt2cu $1 printed no summary: $(tail -3 $LOG/units_$1.log | tr '\n' ' ' | cut -c1-400)"
        return
    fi
    local p f
    p=$(echo "$line" | awk '{print $2}')
    f=$(echo "$line" | awk '{print $4}')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -eq 0 ]; then
        echo "  ok   test_gpt2cu $1 in the emulator: $p passed"
    else
        echo "  FAIL test_gpt2cu $1 in the emulator: $f failed:"
        grep "FAIL" $LOG/units_$1.log | head -10
    fi
}

units BF16 &
pid_bf16=$!
units FP16
wait $pid_bf16
count_units BF16
count_units FP16
units FP32 out/ref
count_units FP32

# the attention lab: every version (the trainer's is 9) against the double reference at T = 40
if EMU_OUT=out/emu/ci_BF16 bash dev/cuda/emu/run.sh BF16 attention_entropy 0 0 40 >$LOG/lab_attention.log 2>&1 &&
        grep -q "^all versions valid" $LOG/lab_attention.log; then
    passed=$((passed + 1))
    echo "  ok   attention lab, BF16, T = 40: all versions valid"
else
    failed=$((failed + 1))
    echo "  FAIL attention lab, BF16, T = 40: $(grep -v ': ok' $LOG/lab_attention.log | head -5 | tr '\n' ' ')"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
