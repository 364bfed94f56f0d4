# normfree-gpt2 build. `make` builds the CPU trainer and its test; `make test` runs every test
# and ends with "N passed, M failed". CUDA targets: train_gpt2cu, test_gpt2cu.
CXX ?= g++
PYTHON ?= /usr/bin/python3
CFLAGS = -O3 -march=native -std=c++17 -Wall -Wextra -Wno-unused-parameter -fno-finite-math-only
LDLIBS = -lm
# OpenMP when the compiler has it (Debian's g++ does)
ifeq ($(NO_OMP),)
  CFLAGS += -fopenmp
endif
# glibc's vector math library: SIMD expf in the softmax (see train_gpt2.cpp)
ifneq ($(wildcard $(shell $(CXX) -print-file-name=libmvec.so)),)
  CFLAGS += -DUSE_LIBMVEC
  LDLIBS += -lmvec
endif
# USE_BLAS=1: matrix products through OpenBLAS (apt-get install libopenblas-dev)
ifeq ($(USE_BLAS),1)
  CFLAGS += -DUSE_BLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
  LDLIBS += -lopenblas
endif

HEADERS = common.h config.h model_file.h flags.h dataloader.h schedulers.h logger.h checkpoint.h rng.h tokenizer.h

.PHONY: all test clean refs deps data data-sample quickstart bench-cpu

all: train_gpt2 test_gpt2

train_gpt2: train_gpt2.cpp $(HEADERS)
	$(CXX) $(CFLAGS) $< -o $@ $(LDLIBS)

test_gpt2: test_gpt2.cpp train_gpt2.cpp $(HEADERS)
	$(CXX) $(CFLAGS) $< -o $@ $(LDLIBS)

# The PyTorch reference's debug states (one per variant) that test_gpt2 checks against.
REF_DIR = out/ref
refs: $(REF_DIR)/.stamp
$(REF_DIR)/.stamp: train_gpt2.py
	$(PYTHON) train_gpt2.py --write-debug-states $(REF_DIR)
	touch $@

test: deps train_gpt2 test_gpt2 refs
	PYTHON=$(PYTHON) bash scripts/run_tests.sh

# Debian packages and the pinned js-tiktoken; does nothing when all are present.
deps:
	bash scripts/install_deps.sh

# The default corpus (Python sources of pinned Debian packages -> GPT-2 BPE -> llm.c shards)
# under data/; a second run does no work. data-sample: a tiny corpus from dev/data/fixtures.
data:
	bash dev/data/prepare.sh
data-sample:
	bash dev/data/prepare.sh --sample

# Installs, builds, prepares the corpus and trains a small LN-free ReLU model on the CPU.
quickstart: deps
	bash scripts/quickstart.sh

bench-cpu:
	bash scripts/bench_cpu.sh

clean:
	rm -f train_gpt2 test_gpt2 train_gpt2cu test_gpt2cu
	rm -rf out/ref
