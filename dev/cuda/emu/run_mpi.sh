#!/usr/bin/env bash
# dev/cuda/emu/run_mpi.sh: the CUDA trainer's data-parallel build (USE_MPI: llmc/zero.cuh) on the
# emulator, N processes under mpirun, NCCL done by MPI (dev/cuda/emu/include/nccl.h).
#   dev/cuda/emu/run_mpi.sh PRECISION NP PROGRAM [ARGS...]     (PROGRAM: train_gpt2cu, test_gpt2cu)
# e.g. dev/cuda/emu/run_mpi.sh FP32 2 train_gpt2cu -e L2H2C32T32V512 -i ... -x 3
# Needs libopenmpi-dev. Builds under out/emu_mpi/.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PREC=${1:?precision}; NP=${2:?processes}; PROG=${3:?program}; shift 3
OUT=out/emu_mpi/$PREC
python3 dev/cuda/emu/transform.py "$PWD" $OUT/src
case $PROG in
    test_gpt2cu) SRC=$OUT/src/test_gpt2.cu ;;
    train_gpt2cu) SRC=$OUT/src/train_gpt2.cu ;;
    *) echo "unknown program $PROG" >&2; exit 1 ;;
esac
OMPI_CXX=${CXX:-g++} mpicxx -O1 -std=c++20 -w -I dev/cuda/emu/include -DUSE_MPI -DEMU_DEVICE_COUNT=$NP -DENABLE_$PREC -x c++ $SRC -o $OUT/$PROG
exec mpirun --oversubscribe --allow-run-as-root --bind-to none -np "$NP" $OUT/$PROG "$@"
