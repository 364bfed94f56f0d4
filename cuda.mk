# cuda.mk: the CUDA trainer and its test. Included by the Makefile, or standalone:
#   make -f cuda.mk train_gpt2cu test_gpt2cu [PRECISION=BF16|FP32|FP16] [GPU_ARCH=sm_90]
# PRECISION: BF16 (default: bf16 activations and weights, fp32 master weights and optimizer),
# FP32 (everything fp32: the exact test build), FP16 (fp16 with dynamic loss scaling).
# Builds need only the CUDA Toolkit (nvcc, cuBLAS, cuBLASLt); running them needs a GPU.
NVCC ?= /usr/local/cuda/bin/nvcc
GPU_ARCH ?= sm_90
PRECISION ?= BF16
NVCC_FLAGS ?= -O3 -std=c++17 -arch=$(GPU_ARCH) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter \
              --expt-relaxed-constexpr -Werror all-warnings
NVCC_LDLIBS = -lcublas -lcublasLt
ifeq ($(PRECISION),FP32)
  NVCC_PRECISION = -DENABLE_FP32
else ifeq ($(PRECISION),FP16)
  NVCC_PRECISION = -DENABLE_FP16
else ifeq ($(PRECISION),BF16)
  NVCC_PRECISION = -DENABLE_BF16
else
  $(error PRECISION must be BF16, FP32 or FP16, not $(PRECISION))
endif

CUDA_HEADERS = common.h config.h model_file.h flags.h dataloader.h schedulers.h logger.h checkpoint.h rng.h \
               tokenizer.h entropy.cuh $(wildcard llmc/*.cuh)

.PHONY: cuda cuda-labs

cuda: train_gpt2cu test_gpt2cu

train_gpt2cu: train_gpt2.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_PRECISION) $< -o $@ $(NVCC_LDLIBS)

test_gpt2cu: test_gpt2.cu train_gpt2.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_PRECISION) $< -o $@ $(NVCC_LDLIBS)

# The kernel labs (dev/cuda/README.md): each a standalone program with a CPU reference.
CUDA_LABS = dev/cuda/attention_entropy.out dev/cuda/activation.out
cuda-labs: $(CUDA_LABS)
dev/cuda/%.out: dev/cuda/%.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(NVCC_PRECISION) $< -o $@ $(NVCC_LDLIBS)
