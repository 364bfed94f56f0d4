# cuda.mk: the CUDA trainer and its test. Included by the Makefile, or standalone:
#   make -f cuda.mk train_gpt2cu test_gpt2cu [PRECISION=BF16|FP32|FP16] [GPU_ARCH=sm_90]
# PRECISION: BF16 (default: bf16 activations and weights, fp32 master weights and optimizer),
# FP32 (everything fp32: the exact test build), FP16 (fp16 with dynamic loss scaling).
# Side-by-side builds of every precision (scripts/gpu_check.sh uses them):
#   make -f cuda.mk out/bin/test_gpt2cu_fp32 out/bin/train_gpt2cu_bf16 ...   (CUDA_BIN=out/bin)
# Builds need only the CUDA Toolkit (nvcc, cuBLAS, cuBLASLt); running them needs a GPU.
# Warnings are errors, host and device side.
# Included anywhere in the Makefile, this file leaves the Makefile's default goal alone.
_CUDA_MK_SAVED_GOAL := $(.DEFAULT_GOAL)
NVCC ?= /usr/local/cuda/bin/nvcc
GPU_ARCH ?= sm_90
PRECISION ?= BF16
CUDA_BIN ?= out/bin
NVCC_FLAGS ?= -O3 -std=c++17 -arch=$(GPU_ARCH) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -Werror all-warnings
NVCC_EXTRA ?=   # e.g. -DRECOMPUTE_FFN_ACT (train_gpt2.cu: recompute f = act(h) in the backward)
NVCC_LDLIBS = -lcublas -lcublasLt
PRECISION_FLAG_BF16 = -DENABLE_BF16
PRECISION_FLAG_FP32 = -DENABLE_FP32
PRECISION_FLAG_FP16 = -DENABLE_FP16
PRECISION_FLAG_bf16 = -DENABLE_BF16
PRECISION_FLAG_fp32 = -DENABLE_FP32
PRECISION_FLAG_fp16 = -DENABLE_FP16
# USE_MPI=1: one process per GPU under mpirun, NCCL for the collectives (doc/multi-gpu.md).
# Open MPI's wrapper says where its headers and libraries are; NCCL comes with the CUDA Toolkit
# here (elsewhere: libnccl-dev).
ifeq ($(USE_MPI),1)
  NVCC_EXTRA += -DUSE_MPI $(addprefix -I,$(shell mpicxx --showme:incdirs 2>/dev/null))
  NVCC_LDLIBS += -lnccl $(addprefix -L,$(shell mpicxx --showme:libdirs 2>/dev/null)) \
                 $(addprefix -l,$(shell mpicxx --showme:libs 2>/dev/null))
endif
ifeq ($(PRECISION_FLAG_$(PRECISION)),)
  $(error PRECISION must be BF16, FP32 or FP16, not $(PRECISION))
endif

CUDA_HEADERS = common.h config.h model_file.h flags.h dataloader.h schedulers.h logger.h checkpoint.h rng.h train_common.h debug_state.h diag.h test_util.h fp16.h multiproc.h \
               tokenizer.h entropy.cuh $(wildcard llmc/*.cuh)

.PHONY: cuda cuda-labs

cuda: train_gpt2cu test_gpt2cu

train_gpt2cu: train_gpt2.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) $(PRECISION_FLAG_$(PRECISION)) $< -o $@ $(NVCC_LDLIBS)

test_gpt2cu: test_gpt2.cu train_gpt2.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) $(PRECISION_FLAG_$(PRECISION)) $< -o $@ $(NVCC_LDLIBS)

# one binary per precision, named by suffix: train_gpt2cu_bf16, test_gpt2cu_fp32, ...
$(CUDA_BIN)/train_gpt2cu_%: train_gpt2.cu $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) $(PRECISION_FLAG_$*) $< -o $@ $(NVCC_LDLIBS)

$(CUDA_BIN)/test_gpt2cu_%: test_gpt2.cu train_gpt2.cu $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) $(PRECISION_FLAG_$*) $< -o $@ $(NVCC_LDLIBS)

# The kernel labs (dev/cuda/README.md): standalone programs with a CPU reference.
CUDA_LABS = dev/cuda/matmul.out dev/cuda/attention_entropy.out dev/cuda/softmax_entropy.out dev/cuda/activation.out dev/cuda/adamw.out dev/cuda/layernorm.out dev/cuda/classifier.out dev/cuda/step_profile.out
cuda-labs: $(CUDA_LABS)
dev/cuda/%.out: dev/cuda/%.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) $(PRECISION_FLAG_$(PRECISION)) $< -o $@ $(NVCC_LDLIBS)

# The attention lab built with another way of loading entropy.cuh's tiles, for scripts/gpu_check.sh:
#   attention_entropy_syncloads.out  a load-then-store loop instead of cp.async (the timing A/B)
#   attention_entropy_nowait.out     cp.async WITHOUT the wait before the barrier: a planted race,
#                                    the negative control that racecheck must flag
#   attention_entropy_uncentred.out  the tiled and mma forwards (versions 5-7) with an uncentred entropy
#                                    sum (H = lse - sum p s): the negative control their hard rows must fail
#   attention_entropy_mma3blocks.out the mma forward at head size 128 with registers for 3 blocks per
#                                    SM (some spills) instead of 2: the occupancy A/B
ATTW_VARIANT_FLAG_syncloads = -DATTW_SYNC_LOADS
ATTW_VARIANT_FLAG_nowait = -DATTW_NO_LOAD_WAIT
ATTW_VARIANT_FLAG_uncentred = -DATTT_UNCENTRED
ATTW_VARIANT_FLAG_mma3blocks = -DATTM_MIN_BLOCKS_HS128=3
$(CUDA_BIN)/attention_entropy_%.out: dev/cuda/attention_entropy.cu $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) $(ATTW_VARIANT_FLAG_$*) $(PRECISION_FLAG_$(PRECISION)) $< -o $@ $(NVCC_LDLIBS)

# The attention lab in the FP16 build whatever PRECISION says (the paper's regime: scores rounded
# to fp16 as the reference rounds them), for scripts/gpu_check.sh's labs stage
$(CUDA_BIN)/attention_entropy_fp16.out: dev/cuda/attention_entropy.cu $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) $(PRECISION_FLAG_FP16) $< -o $@ $(NVCC_LDLIBS)

# The LayerNorm lab with the fused backward held to 128 registers (2 blocks per SM, spilling):
# the occupancy A/B for scripts/gpu_check.sh
$(CUDA_BIN)/layernorm_2blocks.out: dev/cuda/layernorm.cu $(CUDA_HEADERS)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_EXTRA) -DLN_BWD_MIN_BLOCKS=2 $(PRECISION_FLAG_$(PRECISION)) $< -o $@ $(NVCC_LDLIBS)

ifneq ($(firstword $(MAKEFILE_LIST)),cuda.mk)
.DEFAULT_GOAL := $(_CUDA_MK_SAVED_GOAL)
endif
