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
# USE_BLAS=1: matrix products through OpenBLAS (apt-get install libopenblas-dev)
ifeq ($(USE_BLAS),1)
  CFLAGS += -DUSE_BLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
  LDLIBS += -lopenblas
endif

HEADERS = common.h config.h model_file.h flags.h dataloader.h schedulers.h logger.h checkpoint.h rng.h tokenizer.h

.PHONY: all test clean refs

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

test: train_gpt2 test_gpt2 refs
	PYTHON=$(PYTHON) bash scripts/run_tests.sh

clean:
	rm -f train_gpt2 test_gpt2 train_gpt2cu test_gpt2cu
	rm -rf out/ref
