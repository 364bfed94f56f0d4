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
BLAS_CFLAGS = -DUSE_BLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
BLAS_LDLIBS = -lopenblas
ifeq ($(USE_BLAS),1)
  CFLAGS += $(BLAS_CFLAGS)
  LDLIBS += $(BLAS_LDLIBS)
endif
# USE_MPI=1: data-parallel training under mpirun (apt-get install libopenmpi-dev openmpi-bin);
# see doc/multi-gpu.md. The flags come from Open MPI's compiler wrapper, asked only when needed.
MPI_CFLAGS = -DUSE_MPI $(shell mpicxx --showme:compile 2>/dev/null)
MPI_LDLIBS = $(shell mpicxx --showme:link 2>/dev/null)
ifeq ($(USE_MPI),1)
  CFLAGS += $(MPI_CFLAGS)
  LDLIBS += $(MPI_LDLIBS)
endif

HEADERS = common.h config.h model_file.h flags.h dataloader.h schedulers.h logger.h checkpoint.h rng.h tokenizer.h \
          train_common.h debug_state.h diag.h test_util.h fp16.h multiproc.h

.PHONY: all test clean refs refs-long deps data data-sample quickstart bench-cpu paper-tiny fuzz fuzz-build test-sanitize ci

all: train_gpt2 test_gpt2 test_fp16

train_gpt2: train_gpt2.cpp $(HEADERS)
	$(CXX) $(CFLAGS) $< -o $@ $(LDLIBS)

# The OpenBLAS build under its own name, for scripts that want speed (paper-tiny, its test)
out/bin/train_gpt2_blas: train_gpt2.cpp $(HEADERS)
	@mkdir -p out/bin
	$(CXX) $(CFLAGS) $(BLAS_CFLAGS) $< -o $@ $(LDLIBS) $(BLAS_LDLIBS)

# The MPI build under its own name, for tests/test_mpi.sh (same loops as ./train_gpt2, so that one
# rank of it matches the plain build bit for bit)
out/bin/train_gpt2_mpi: train_gpt2.cpp $(HEADERS)
	@mkdir -p out/bin
	$(CXX) $(CFLAGS) $(MPI_CFLAGS) $< -o $@ $(LDLIBS) $(MPI_LDLIBS)

test_gpt2: test_gpt2.cpp train_gpt2.cpp $(HEADERS)
	$(CXX) $(CFLAGS) $< -o $@ $(LDLIBS)

# The fp16 regime's test (test_fp16.cpp) and its numpy references (tests/fp16_case.py)
test_fp16: test_fp16.cpp train_gpt2.cpp $(HEADERS)
	$(CXX) $(CFLAGS) $< -o $@ $(LDLIBS)
FP16_CASE = out/fp16case/.stamp
$(FP16_CASE): tests/fp16_case.py
	$(PYTHON) tests/fp16_case.py out/fp16case
	touch $@

# The PyTorch reference's debug states (one per variant) that test_gpt2 checks against.
REF_DIR = out/ref
refs: $(REF_DIR)/.stamp
$(REF_DIR)/.stamp: train_gpt2.py
	$(PYTHON) train_gpt2.py --write-debug-states $(REF_DIR)
	touch $@

# Long-T debug states for the CUDA trainer's tiled attention (test_gpt2cu --states DIR...;
# doc/reference.md, "CUDA"): head size 64 at T = 256 (B = 2, two variants) and T = 1024, head
# size 128 at T = 256 and 1024. Small models, one batch each: ~30 MB, ~10 s on a CPU. The init
# scale is 6-6.5, not the tiny variants' 12: at 12 the LN-free C = 256 model's layer-1 scores have
# std ~1.3e3, and the FP16 build (the paper's regime: q.k rounded to fp16) rightly overflows them
# into NaN rows (54464 non-finite scores), which an fp32 PyTorch state cannot be compared with.
REF_LONG = out/ref_long
REF_LONG_DIRS = $(REF_LONG)/t256 $(REF_LONG)/t1024 $(REF_LONG)/t256_hs128 $(REF_LONG)/t1024_hs128
refs-long: $(REF_LONG)/.stamp
$(REF_LONG)/.stamp: train_gpt2.py
	$(PYTHON) train_gpt2.py --write-debug-states $(REF_LONG)/t256 -e L2H2C128T256V100 -b 2 -t 256 --debug-init-scale 6 --variants none_relu,ln_gelu
	$(PYTHON) train_gpt2.py --write-debug-states $(REF_LONG)/t1024 -e L2H2C128T1024V100 -b 1 -t 1024 --debug-init-scale 6 --variants ln_gelu
	$(PYTHON) train_gpt2.py --write-debug-states $(REF_LONG)/t256_hs128 -e L2H2C256T256V100 -b 1 -t 256 --debug-init-scale 6.5 --variants none_relu
	$(PYTHON) train_gpt2.py --write-debug-states $(REF_LONG)/t1024_hs128 -e L1H1C128T1024V100 -b 1 -t 1024 --debug-init-scale 6 --variants ln_gelu
	touch $@

test: deps train_gpt2 test_gpt2 test_fp16 $(FP16_CASE) out/bin/train_gpt2_blas refs
	@if command -v mpicxx >/dev/null; then $(MAKE) --no-print-directory out/bin/train_gpt2_mpi; fi
	PYTHON=$(PYTHON) bash scripts/run_tests.sh

# Reliability (doc/reliability.md). fuzz: every libFuzzer harness in fuzz/ for FUZZ_SECONDS
# (default 25) each from its seed corpus. test-sanitize: test_gpt2 and the CLI suites on an
# ASan + UBSan + LeakSanitizer build. ci: test, test-sanitize and fuzz, with one final total.
FUZZ_CXX ?= clang++
FUZZ_FLAGS = -g -O1 -std=c++17 -DFUZZING -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
             -Wall -Wextra -Wno-unused-parameter -Werror
FUZZ_TARGETS = model_file state_file shard tokenizer debug_state descriptor flags setup
FUZZ_BINS = $(addprefix out/fuzz/fuzz_,$(FUZZ_TARGETS))
fuzz-build: $(FUZZ_BINS)
out/fuzz/fuzz_%: fuzz/fuzz_%.cpp fuzz/fuzz_util.h fuzz/fuzz_flags.cpp $(HEADERS)
	@mkdir -p out/fuzz
	$(FUZZ_CXX) $(FUZZ_FLAGS) $< -o $@
fuzz: deps fuzz-build
	bash fuzz/run.sh

SAN_CXX ?= clang++
SAN_FLAGS = -g -O1 -std=c++17 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-finite-math-only -Wall -Wextra -Wno-unused-parameter
out/san/train_gpt2: train_gpt2.cpp $(HEADERS)
	@mkdir -p out/san
	$(SAN_CXX) $(SAN_FLAGS) $< -o $@ -lm
out/san/test_gpt2: test_gpt2.cpp train_gpt2.cpp $(HEADERS)
	@mkdir -p out/san
	$(SAN_CXX) $(SAN_FLAGS) $< -o $@ -lm
test-sanitize: deps out/san/train_gpt2 out/san/test_gpt2 refs
	PYTHON=$(PYTHON) bash tests/test_sanitize.sh

ci: deps train_gpt2 test_gpt2 test_fp16 $(FP16_CASE) out/bin/train_gpt2_blas refs fuzz-build out/san/train_gpt2 out/san/test_gpt2
	@if command -v mpicxx >/dev/null; then $(MAKE) --no-print-directory out/bin/train_gpt2_mpi; fi
	PYTHON=$(PYTHON) bash scripts/run_tests.sh --ci

# The CUDA trainer and its test (train_gpt2cu, test_gpt2cu, PRECISION=BF16|FP32|FP16): cuda.mk
include cuda.mk

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

# The paper's experiments at toy scale on the CPU (10 runs), then every figure and the table,
# in out/paper-tiny/ (~3 min on 2 cores). A second run only redraws the plots.
paper-tiny: deps data out/bin/train_gpt2_blas
	TRAINER=out/bin/train_gpt2_blas bash scripts/paper/run.sh tiny all
	$(PYTHON) scripts/paper/plots.py out/paper-tiny

clean:
	rm -f train_gpt2 test_gpt2 test_fp16 train_gpt2cu test_gpt2cu
	rm -rf out/ref out/ref_long out/fp16case out/bin out/cuda_build out/fuzz out/san
