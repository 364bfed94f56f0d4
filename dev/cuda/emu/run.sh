#!/usr/bin/env bash
# dev/cuda/emu/run.sh: builds a CUDA program of the trainer for the CPU emulator and runs it.
#   dev/cuda/emu/run.sh PRECISION PROGRAM [ARGS...]
# PRECISION: FP32, BF16 or FP16; PROGRAM: test_gpt2cu, train_gpt2cu, step_profile or a lab
# (attention_entropy, softmax_entropy, activation, adamw, layernorm, classifier). E.g.
# `dev/cuda/emu/run.sh FP32 test_gpt2cu out/ref` (the 16 reference variants, then the unit
# tests). Builds under out/emu/PRECISION, or EMU_OUT (each run rewrites its sources
# and binary there: give a second concurrent run of the same precision its own EMU_OUT).
set -euo pipefail
cd "$(dirname "$0")/../../.."
PREC=${1:?precision}; PROG=${2:?program}; shift 2
OUT=${EMU_OUT:-out/emu/$PREC}
python3 dev/cuda/emu/transform.py "$PWD" $OUT/src
case $PROG in
    test_gpt2cu) SRC=$OUT/src/test_gpt2.cu ;;
    train_gpt2cu) SRC=$OUT/src/train_gpt2.cu ;;
    attention_entropy|softmax_entropy|activation|adamw|matmul|layernorm|classifier|step_profile) SRC=$OUT/src/dev/cuda/$PROG.cu ;;
    *) echo "unknown program $PROG" >&2; exit 1 ;;
esac
${CXX:-g++} -O1 -std=c++20 -w -I dev/cuda/emu/include -DENABLE_$PREC -x c++ $SRC -o $OUT/$PROG
exec $OUT/$PROG "$@"
