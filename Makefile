# coldstart build.
#
#   make               the trainer ./train_gpt2 (nvcc where it exists, else pure C++) and the tools
#   make cpu           ./train_gpt2_cpu: the same trainer built by the C++ compiler alone (no CUDA Toolkit)
#   make test          the README's test command: the CPU suite and, on the emulated CUDA device, the GPU suite
#   make test-gpu      the GPU suite (needs a GPU and nvcc); the GPU targets are in the GPU section at the end
#   make train         the README's quickstart: a small GPT-2 on tinyshakespeare (GPU if present, else CPU)
#   make deps          installs the Debian packages the build and tests need
#   make check-includes  the layout's floors: no #include goes up a floor or sideways (tools/check_includes.py)
#   make check-sass    the hot CUDA kernels compiled for sm_90: no spills, no stack frames, 128-bit accesses
#                      (tools/check_sass.py; needs nvcc, says skipped without it)
#   make roofline      the speed of light of one training step of GPT-2 124M at B=64, T=1024 (a model)
#
# Variables: DATA (folder with gpt2/ and tinyshakespeare/, default ../shared/data), NVCC, CXX,
# ARCH_FLAGS (host CPU flags, default -march=native), NO_CUDA=1 (never use nvcc).

CXX        ?= g++
ARCH_FLAGS ?= -march=native
CXXSTD     := -std=c++17
# -Wno-maybe-uninitialized: GCC 12 reports false positives inside nlohmann/json after inlining.
WARNINGS   := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-maybe-uninitialized
CXXFLAGS   ?= -O3 $(ARCH_FLAGS)
# Headers copied by `make vendor-headers` (for machines without the Debian packages) come after the system's.
VENDOR_INCLUDE := $(if $(wildcard .deps/include),-idirafter .deps/include)
ALL_CXXFLAGS := $(CXXSTD) $(CXXFLAGS) $(WARNINGS) -fopenmp -I. $(VENDOR_INCLUDE) -MMD -MP
LDLIBS     := -fopenmp -lm
DATA       ?= ../shared/data
PYTHON     ?= /usr/bin/python3

NVCC ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
ifeq ($(NO_CUDA),1)
  NVCC :=
endif

BUILD := build

# The source's commit, recorded in every run's log; the trainer is rebuilt when it changes.
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
VERSION_FILE := $(BUILD)/.version
$(shell mkdir -p $(BUILD) && (echo '$(VERSION)' | cmp -s - $(VERSION_FILE) || echo '$(VERSION)' > $(VERSION_FILE)))
VERSION_FLAG := -DCOLDSTART_VERSION='"$(VERSION)"'
LIB_SRCS  := $(wildcard common/*.cpp model/*.cpp config/*.cpp layers/*.cpp optim/*.cpp data/*.cpp dist/*.cpp backend/*.cpp)
LIB_OBJS  := $(LIB_SRCS:%.cpp=$(BUILD)/%.o)
TEST_SRCS := $(wildcard test/*.cpp)
TEST_OBJS := $(TEST_SRCS:%.cpp=$(BUILD)/%.o)
TOOL_SRCS := $(wildcard tools/*.cpp)
TOOL_BINS := $(TOOL_SRCS:tools/%.cpp=$(BUILD)/tools/%)

.PHONY: all cpu test train deps check-deps check-test-deps check-data check-includes check-sass roofline clean bench-cpu study-cpu
all: train_gpt2 $(TOOL_BINS)

# ---- dependencies: found by compiling a probe; installed from Debian when we are root ----
DEPS_STAMP := $(BUILD)/.deps-ok
check-deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@mkdir -p $(BUILD)
	@./tools/check_deps.sh "$(CXX) $(VENDOR_INCLUDE)"
	@touch $@

deps:
	@./tools/check_deps.sh "$(CXX)" --install --with-test-tools

check-test-deps:
	@./tools/check_test_deps.sh "$(PYTHON)"

# The floors of the layout (README, "Layout"): every #include goes down a floor or stays in its folder.
check-includes:
	@$(PYTHON) tools/check_includes.py

# The hot kernels' static performance checks (issue 13): ptxas's spills and stack frames, and the
# 128-bit (and tensor-core) instructions of the sm_90 code; the table of kernels is in the script.
check-sass:
	@$(PYTHON) tools/check_sass.py

# Per kernel of one bf16 training step: bytes, FLOPs, bound and least time on an H100 SXM and an H200,
# the sums and the tokens/s they allow (model/roofline.h). A model, never a measurement.
roofline: $(BUILD)/tools/roofline
	@./$(BUILD)/tools/roofline d12 64 1024

# ---- objects ----
$(BUILD)/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -c $< -o $@

$(BUILD)/libcoldstart.a: $(LIB_OBJS)
	ar rcs $@ $^

# ---- the trainer: nvcc with the CUDA backend where the CUDA Toolkit and cuBLASLt exist, otherwise the
# C++ compiler on the same source: both rules are in the GPU section at the end ----

cpu: train_gpt2_cpu
train_gpt2_cpu: train_gpt2.cu $(BUILD)/libcoldstart.a $(VERSION_FILE) | $(DEPS_STAMP)
	$(CXX) $(ALL_CXXFLAGS) $(VERSION_FLAG) -x c++ $< -x none $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)

$(BUILD)/tools/%: tools/%.cpp $(BUILD)/libcoldstart.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) $< $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)

# ---- tests ----
# The test files at -O1: a third less compile time (CI builds them on two cores), and the same results
# (ISO C++ mode contracts no float operations at any level); the library they test stays at -O3.
$(TEST_OBJS): ALL_CXXFLAGS := $(CXXSTD) -O1 $(ARCH_FLAGS) $(WARNINGS) -fopenmp -I. $(VENDOR_INCLUDE) -MMD -MP
$(BUILD)/test_cpu: $(TEST_OBJS) $(BUILD)/libcoldstart.a
	$(CXX) $(TEST_OBJS) $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)

# The suite runs from the repository root; it also drives the trainer binary and the tools end to end.
# The CPU suite, then the GPU suite and the emulator's own suite on the emulated device (the emulated-device
# section below adds their binaries to the prerequisites); one "N passed, M failed" line for all.
# check-test-deps goes first: the tests' Python packages are installed (as root) or named, so that no
# test fails for a missing package.
CPU_SUITE := COLDSTART_DATA=$(DATA) COLDSTART_PYTHON=$(PYTHON) OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/test_cpu
test: check-test-deps $(BUILD)/test_cpu train_gpt2_cpu $(TOOL_BINS)
	@./tools/run_suites.sh "CPU suite" "$(CPU_SUITE)" $(EMU_SUITES)

# ---- the README's quickstart ----
# -y 1: a second `make train` continues an interrupted run (Ctrl-C writes a checkpoint) or says it is done.
TRAIN_FLAGS ?= -e d4 -b 16 -t 64 -x 200 -l 2e-3 -u 20 -k cosine -q 0.1 -v 50 -m 16 -s 100 -g 48 -o out/quickstart -y 1
# The data is checked before minutes of building (the sub-make builds the trainer only after that).
train: check-data
	@$(MAKE) --no-print-directory train_gpt2
	./train_gpt2 -i $(DATA)/tinyshakespeare/tiny_shakespeare_train.bin \
	             -j $(DATA)/tinyshakespeare/tiny_shakespeare_val.bin \
	             --tokenizer $(DATA)/gpt2/gpt2_tokenizer.bin $(TRAIN_FLAGS)

check-data:
	@./tools/check_data.sh "$(DATA)"

# ---- the warmup study on the CPU (issues 6 and 15; docs/REPRODUCTION.md): the Gutenberg books as bytes
# (every 25th book is validation), the learning-rate probes of tools/grids/cpu_study_probe.json, then the
# grid of tools/grids/cpu_study.json (which reuses the probes' runs), its figures (out/sweeps/cpu_study/plots) ----
STUDY_SHARDS := out/data/gutenberg_bytes_train.bin
$(STUDY_SHARDS): $(BUILD)/tools/make_shards
	mkdir -p out/data/gutenberg
	tar -xJf $(DATA)/gutenberg/gutenberg_en_books.tar.xz -C out/data/gutenberg
	$(BUILD)/tools/make_shards --tokenizer bytes --val-every 25 --out-prefix out/data/gutenberg_bytes \
	    out/data/gutenberg/gutenberg_en/books/*.txt
study-cpu: train_gpt2_cpu $(STUDY_SHARDS)
	DATA=$(DATA) $(PYTHON) tools/sweep.py tools/grids/cpu_study_probe.json --gpus 0
	DATA=$(DATA) $(PYTHON) tools/sweep.py tools/grids/cpu_study.json --gpus 0
	$(PYTHON) tools/plot_study.py out/sweeps/cpu_study

# CPU step time of GPT-2 124M at B=4, T=64; set LLMC_DIR to an llm.c CPU build to get the ratio.
bench-cpu: train_gpt2_cpu $(BUILD)/tools/bench_cpu_matmul
	DATA=$(DATA) ./tools/bench_cpu.sh
	./$(BUILD)/tools/bench_cpu_matmul

clean:
	rm -rf $(BUILD) train_gpt2 train_gpt2_cpu train_gpt2_emu

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d)

# =====================================================================================================
# ---- hostile inputs: fuzzing and the sanitized suite (issue 7) ----
#   make fuzz        builds one libFuzzer target per reader of untrusted files (fuzz/<target>.cpp, bodies in
#                    fuzz/fuzz_bodies.h) with clang++, ASan and UBSan into build/fuzz/, then runs each for
#                    FUZZ_SECONDS on a copy of its corpus, one target per core at a time (fuzz/run_fuzzers.sh);
#                    fails if any target crashes
#   make test-asan   the CPU suite built with g++ -fsanitize=address,undefined into build/asan/, run like
#                    `make test` (the trainer binary and the tools it drives stay the normal build), but for
#                    the cases that only drive other programs (ASAN_SKIP_TESTS)
# Variables: FUZZ_CXX (clang++), FUZZ_SECONDS (20), FUZZ_TARGETS (all of fuzz/*.cpp but make_seeds).
FUZZ_CXX     ?= clang++
FUZZ_SECONDS ?= 20
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_FLAGS   := -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.
FUZZ_TARGETS ?= $(filter-out make_seeds,$(patsubst fuzz/%.cpp,%,$(wildcard fuzz/*.cpp)))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
# The readers and what they use, compiled with the fuzz flags (not the g++ objects). The layers and the
# backends are left out (OpenMP, and no reader needs them); the archive lets each target take what it uses.
FUZZ_LIB_SRCS := $(wildcard common/*.cpp model/*.cpp config/*.cpp data/*.cpp optim/*.cpp)
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.cpp=$(FUZZ_BUILD)/obj/%.o)
FUZZ_PROBE   := $(FUZZ_BUILD)/.clang-fuzzer-ok

.PHONY: fuzz test-asan
fuzz: $(FUZZ_BINS) $(FUZZ_BUILD)/make_seeds
	@COLDSTART_DATA=$(DATA) ./fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

$(FUZZ_PROBE):
	@mkdir -p $(dir $@)
	@printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
	  | $(FUZZ_CXX) $(FUZZ_FLAGS) -x c++ - -o $(FUZZ_BUILD)/probe >/dev/null 2>&1 \
	  || { echo "make fuzz: $(FUZZ_CXX) cannot build a libFuzzer target; install clang and its runtime (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
	@rm -f $(FUZZ_BUILD)/probe && touch $@

$(FUZZ_BUILD)/obj/%.o: %.cpp | $(DEPS_STAMP) $(FUZZ_PROBE)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libcoldstart_fuzz.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BINS): $(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/fuzz/%.o $(FUZZ_BUILD)/libcoldstart_fuzz.a
	$(FUZZ_CXX) $(FUZZ_FLAGS) $^ -o $@

# Writes valid seed files with the project's own writers (build/fuzz/make_seeds fuzz/corpus refreshes
# the committed seeds); a plain g++ build against the library.
$(FUZZ_BUILD)/make_seeds: fuzz/make_seeds.cpp $(BUILD)/libcoldstart.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) $< $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)

ASAN_BUILD    := $(BUILD)/asan
# float-cast-overflow: part of clang's "undefined" but not of GCC's (a float beyond an int's range, as
# nlohmann's get<int64_t>() of a JSON float, is undefined behaviour).
ASAN_FLAGS    := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer -g
ASAN_CXXFLAGS := $(CXXSTD) -O1 $(ARCH_FLAGS) $(ASAN_FLAGS) $(WARNINGS) -fopenmp -I. -MMD -MP
ASAN_OBJS     := $(LIB_SRCS:%.cpp=$(ASAN_BUILD)/%.o) $(TEST_SRCS:%.cpp=$(ASAN_BUILD)/%.o)
# detect_leaks: LeakSanitizer runs at exit (it works on this machine; where ptrace is restricted it dies
# with "LeakSanitizer has encountered a fatal error": set detect_leaks=0 there). max_allocation_size_mb:
# a reader that sizes a buffer from an unchecked header field is reported at the malloc, before touching
# gigabytes (the suite itself never asks for more than ~1 GB at once).
ASAN_ENV      := ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:max_allocation_size_mb=4096 \
                 UBSAN_OPTIONS=print_stacktrace=1

$(ASAN_BUILD)/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(ASAN_CXXFLAGS) -c $< -o $@

$(ASAN_BUILD)/test_cpu: $(ASAN_OBJS)
	$(CXX) $(ASAN_FLAGS) $^ -o $@ $(LDLIBS)

# The cases whose work is in other programs (the trainer binary, the Python tools, the device scripts,
# ptxas), which the sanitizers do not see into: four fifths of the suite's time, run by `make test` anyway.
ASAN_SKIP_TESTS := sweep:*,plots:*,recipes:*,signals:*,resume:*,gpu_check*,sanitize_gpu.sh*,bench_gpu.sh*,static checks*

test-asan: $(ASAN_BUILD)/test_cpu train_gpt2_cpu $(TOOL_BINS)
	$(ASAN_ENV) COLDSTART_DATA=$(DATA) COLDSTART_PYTHON=$(PYTHON) OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} \
	  ./$(ASAN_BUILD)/test_cpu --test-case-exclude='$(ASAN_SKIP_TESTS)'

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:$(FUZZ_BUILD)/%=$(FUZZ_BUILD)/obj/fuzz/%.d) $(ASAN_OBJS:.o=.d)

# =====================================================================================================
# ---- GPU: the CUDA path (issue 3) ----
#   make                 with nvcc, ./train_gpt2 has the CUDA backend (--device auto picks a GPU if present)
#   make test-gpu        the GPU suite (test/gpu/); with no GPU it prints why and fails, unless ALLOW_NO_GPU=1
#   make gpu-build       the trainer, the GPU suite and the GPU bench tool, without running anything (CI)
#   make sanitize-gpu    compute-sanitizer memcheck, racecheck and synccheck on a few steps of a tiny model
#   make bench           GPT-2 124M tokens/s and MFU, the PyTorch reference, per-kernel times (tools/bench_gpu.sh)
#   make vendor-headers  copies nlohmann/json and doctest into .deps/include, for machines without them
#   make gpu-check-emu   tools/gpu_check.sh's short dry run on the emulated device (what CI runs); logs in
#                        out/gpu_check_emu
# Variables: GPU_ARCHS (compute capabilities, e.g. "80 90"; default: the GPUs present, else 80 90),
#   USE_CUDNN (default 1: use cuDNN where the probe finds it; 0: never), CUDNN_PATH and NCCL_PATH (a folder
#   with include/ and lib/, e.g. a pip wheel's: see the README), ALLOW_NO_GPU=1 (test-gpu passes without a GPU).
# tools/probe_cuda.sh finds cuBLASLt, cuDNN and NCCL by compiling probes; its result is cached in
# build/cuda.mk and redone when the probe's inputs (the variables above, the host) change.
.PHONY: test-gpu gpu-build sanitize-gpu bench vendor-headers gpu-check-emu
vendor-headers:
	mkdir -p .deps/include
	cp -r /usr/include/nlohmann /usr/include/doctest .deps/include/
	@echo "vendor-headers: .deps/include has nlohmann/ and doctest/ (carry .deps/ to a machine without them)"

gpu-check-emu:
	GPU_CHECK_EMULATED=1 GPU_CHECK_SHORT=1 OUT=out/gpu_check_emu DATA=$(DATA) ./tools/gpu_check.sh

ifeq ($(NVCC),)
  GPU_UNAVAILABLE := nvcc not found; the GPU targets need the CUDA Toolkit (set NVCC=/path/to/nvcc)
else
USE_CUDNN ?= 1
CUDA_MK := $(BUILD)/cuda.mk
CUDA_PROBE_KEY := $(NVCC)|$(CUDNN_PATH)|$(NCCL_PATH)|$(USE_CUDNN)|$(PYTHON)|$(shell hostname)
CUDA_PROBE_KEY_FILE := $(BUILD)/.cuda-probe-key
ifeq ($(filter clean vendor-headers,$(MAKECMDGOALS)),)
$(shell mkdir -p $(BUILD) && (printf '%s\n' '$(CUDA_PROBE_KEY)' | cmp -s - $(CUDA_PROBE_KEY_FILE) || printf '%s\n' '$(CUDA_PROBE_KEY)' > $(CUDA_PROBE_KEY_FILE)))
$(CUDA_MK): tools/probe_cuda.sh $(CUDA_PROBE_KEY_FILE)
	@CUDNN_PATH="$(CUDNN_PATH)" NCCL_PATH="$(NCCL_PATH)" USE_CUDNN="$(USE_CUDNN)" PYTHON="$(PYTHON)" ./tools/probe_cuda.sh "$(NVCC)" $@.tmp
	@mv $@.tmp $@
include $(CUDA_MK)
endif
ifneq ($(CUBLASLT_FOUND),1)
  GPU_UNAVAILABLE := $(NVCC) has no cuBLASLt (tools/probe_cuda.sh said why); the trainer is built without CUDA
endif
endif

ifneq ($(GPU_UNAVAILABLE),)
train_gpt2: train_gpt2.cu $(BUILD)/libcoldstart.a $(VERSION_FILE) | $(DEPS_STAMP)
	$(CXX) $(ALL_CXXFLAGS) $(VERSION_FLAG) -x c++ $< -x none $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)

test-gpu gpu-build sanitize-gpu bench:
	@echo "$@: $(GPU_UNAVAILABLE)"
	@if [ "$@" = test-gpu ] && [ "$(ALLOW_NO_GPU)" = 1 ]; then echo "0 passed, 0 failed"; else exit 1; fi
else
GPU_ARCHS ?= $(DETECTED_GPU_ARCHS)
ifeq ($(strip $(GPU_ARCHS)),)
  override GPU_ARCHS := 80 90
endif
# Machine code for each architecture, and PTX of the newest so that later GPUs can still run it.
GPU_GENCODE := $(foreach a,$(GPU_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
               -gencode arch=compute_$(lastword $(GPU_ARCHS)),code=compute_$(lastword $(GPU_ARCHS))
CUDNN_ON := $(if $(filter 1,$(USE_CUDNN)),$(CUDNN_FOUND),0)
NCCL_ON := $(NCCL_FOUND)
CUDA_DEFINES := -DCOLDSTART_CUDA $(if $(filter 1,$(CUDNN_ON)),-DCOLDSTART_CUDNN $(CUDNN_CFLAGS)) \
                $(if $(filter 1,$(NCCL_ON)),-DCOLDSTART_NCCL $(NCCL_CFLAGS))
NVCC_FLAGS := $(CXXSTD) -O3 -lineinfo -I. $(if $(wildcard .deps/include),-isystem .deps/include) $(GPU_GENCODE) $(CUDA_DEFINES) \
              -Xcompiler "$(ARCH_FLAGS) -fopenmp -Wall -Wno-unused-parameter"
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublasLt -Xlinker -rpath,$(CUDA_HOME)/lib64 $(if $(filter 1,$(CUDNN_ON)),$(CUDNN_LIBS)) \
             $(if $(filter 1,$(NCCL_ON)),$(NCCL_LIBS)) -lgomp -ldl

CUDA_BUILD := $(BUILD)/cuda
CUDA_SRCS := $(wildcard common/cuda/*.cu layers/cuda/*.cu optim/cuda/*.cu) backend/cuda_backend.cu
ifneq ($(CUDNN_ON),1)
  CUDA_SRCS := $(filter-out layers/cuda/attention_cudnn.cu,$(CUDA_SRCS))
endif
ifeq ($(NCCL_ON),1)
  CUDA_SRCS += dist/nccl_communicator.cu
endif
CUDA_OBJS := $(CUDA_SRCS:%.cu=$(CUDA_BUILD)/%.o)
GPU_TEST_OBJS := $(patsubst %.cu,$(CUDA_BUILD)/%.o,$(wildcard test/gpu/*.cu))
GPU_TOOL_BINS := $(patsubst tools/%.cu,$(BUILD)/tools/%,$(wildcard tools/*.cu))

# The flags are part of every object's recipe: a new GPU_ARCHS or cuDNN setting rebuilds them.
CUDA_FLAGS_FILE := $(CUDA_BUILD)/.flags
ifeq ($(filter clean vendor-headers,$(MAKECMDGOALS)),)
$(shell mkdir -p $(CUDA_BUILD) && (printf '%s\n' '$(NVCC_FLAGS) $(CUDA_LIBS)' | cmp -s - $(CUDA_FLAGS_FILE) || printf '%s\n' '$(NVCC_FLAGS) $(CUDA_LIBS)' > $(CUDA_FLAGS_FILE)))
endif

$(CUDA_BUILD)/%.o: %.cu $(CUDA_FLAGS_FILE) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libcoldstart_cuda.a: $(CUDA_OBJS)
	@rm -f $@
	ar rcs $@ $^

train_gpt2: train_gpt2.cu $(BUILD)/libcoldstart_cuda.a $(BUILD)/libcoldstart.a $(CUDA_FLAGS_FILE) $(VERSION_FILE) | $(DEPS_STAMP)
	@echo "train_gpt2: CUDA for sm_$(subst $() ,/sm_,$(GPU_ARCHS)), cuDNN attention $(if $(filter 1,$(CUDNN_ON)),on,off), NCCL $(if $(filter 1,$(NCCL_ON)),on,off)"
	$(NVCC) $(NVCC_FLAGS) $(VERSION_FLAG) $< $(BUILD)/libcoldstart_cuda.a $(BUILD)/libcoldstart.a -o $@ $(CUDA_LIBS)

$(BUILD)/test_gpu: $(GPU_TEST_OBJS) $(BUILD)/test/test_util.o $(BUILD)/libcoldstart_cuda.a $(BUILD)/libcoldstart.a
	$(NVCC) $(NVCC_FLAGS) $(GPU_TEST_OBJS) $(BUILD)/test/test_util.o $(BUILD)/libcoldstart_cuda.a $(BUILD)/libcoldstart.a \
	    -o $@ $(CUDA_LIBS)

$(BUILD)/tools/%: tools/%.cu $(BUILD)/libcoldstart_cuda.a $(BUILD)/libcoldstart.a $(CUDA_FLAGS_FILE) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) $< $(BUILD)/libcoldstart_cuda.a $(BUILD)/libcoldstart.a -o $@ $(CUDA_LIBS)

all: $(GPU_TOOL_BINS)
gpu-build: train_gpt2 $(BUILD)/test_gpu $(GPU_TOOL_BINS)

# The suite runs from the repository root (it drives ./train_gpt2 for the end-to-end checks).
test-gpu: $(BUILD)/test_gpu train_gpt2 train_gpt2_cpu
	COLDSTART_DATA=$(DATA) COLDSTART_ALLOW_NO_GPU=$(ALLOW_NO_GPU) ./$(BUILD)/test_gpu

sanitize-gpu: train_gpt2
	DATA=$(DATA) ./tools/sanitize_gpu.sh

bench: train_gpt2 $(GPU_TOOL_BINS)
	DATA=$(DATA) PYTHON=$(PYTHON) ./tools/bench_gpu.sh

-include $(CUDA_OBJS:.o=.d) $(GPU_TEST_OBJS:.o=.d)
endif

# =====================================================================================================
# ---- the emulated CUDA device (issue 12): the CUDA sources, unmodified, on the CPU ----
#   make emu-build        build/emu/test_gpu (the GPU suite), build/emu/test_emulator (the emulator's own
#                         tests) and ./train_gpt2_emu (the CUDA trainer), for the emulated device (emu/)
#   make test-emu         runs both suites on the emulated device (strict barriers); part of `make test`
#   make test-emu-checks  the checks a GPU run is otherwise needed for: the kernel tests under AddressSanitizer,
#                         then with the schedule check and deferred streams (see the README, "CUDA without a GPU")
# Each .cu/.cuh is rewritten by emu/rewrite.py into build/emu/src/ (launches and __shared__ declarations,
# with #line so that every message points at the original line), then compiled by the C++ compiler with
# emu/prelude.h force-included. cuDNN is not emulated: this build has no cuDNN attention.
# Variables: CUDA_INCLUDE (the CUDA Toolkit's headers: types and declarations only), EMU_OPT (default -O2;
# -O0 to step through kernels in gdb), EMU_TEST_ARGS (doctest options for the GPU suite, e.g. -tc='cuda attention*').
CUDA_INCLUDE ?= $(firstword $(wildcard /usr/local/cuda/include /usr/include/cuda))
EMU_OPT      ?= -O2
EMU_BUILD    := $(BUILD)/emu
EMU_SRC      := $(EMU_BUILD)/src
EMU_CUDA_SRCS := $(filter-out layers/cuda/attention_cudnn.cu,$(wildcard common/cuda/*.cu layers/cuda/*.cu optim/cuda/*.cu)) \
                 backend/cuda_backend.cu dist/nccl_communicator.cu
EMU_HEADERS  := $(patsubst %,$(EMU_SRC)/%,$(wildcard common/cuda/*.cuh layers/cuda/*.cuh optim/cuda/*.cuh dist/*.cuh test/gpu/*.cuh))
EMU_TEST_SRCS := $(wildcard test/gpu/*.cu)
EMU_SELF_TEST_SRCS := $(wildcard emu/test/*.cu)
EMU_RUNTIME_SRCS := $(wildcard emu/*.cpp)
EMU_FLAGS    := $(CXXSTD) $(EMU_OPT) -g $(ARCH_FLAGS) -fopenmp -I$(EMU_SRC) -I. $(VENDOR_INCLUDE) -isystem $(CUDA_INCLUDE) \
                -Wall -Wno-unused-parameter -Wno-unknown-pragmas -MMD -MP
EMU_CUDA_FLAGS := $(EMU_FLAGS) -DCOLDSTART_CUDA -DCOLDSTART_NCCL -include emu/prelude.h
EMU_LIBS     := -lboost_context -fopenmp -ldl -lpthread -lm
# The kernel tests that the checks run: AddressSanitizer slows the fibers about 8x, so the Lion family's
# many one-block-per-row launches get the schedule check only.
EMU_KERNEL_TESTS := cuda encoder*,cuda layernorm*,cuda attention*,cuda matmul*,cuda gelu*,cuda classifier*,cuda AdamW*,cuda gradient*,cuda RRC*
EMU_ASAN_TESTS   := --test-case='$(EMU_KERNEL_TESTS)'
EMU_SCHEDULE_TESTS := --test-case='$(EMU_KERNEL_TESTS),cuda Lion*'

.PHONY: emu-build test-emu test-emu-checks

# The build that the checks of `make test-emu-checks` use: the same sources with AddressSanitizer and UBSan.
# The rewritten sources are kept: as intermediate files make would delete them after a build, and the next
# build, finding them named in the objects' dependency files, would rewrite and recompile everything.
define emu_build
.PRECIOUS: $(1)/src/%.cu $(1)/src/%.cuh
$(1)/src/%.cu: %.cu emu/rewrite.py
	@mkdir -p $$(dir $$@)
	@$(PYTHON) emu/rewrite.py $$< $$@ $$<
$(1)/src/%.cuh: %.cuh emu/rewrite.py
	@mkdir -p $$(dir $$@)
	@$(PYTHON) emu/rewrite.py $$< $$@ $$<
$(1)/obj/%.o: $(1)/src/%.cu $(patsubst $(EMU_SRC)/%,$(1)/src/%,$(EMU_HEADERS)) emu/prelude.h emu/device.h | $(DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	$(CXX) $(subst $(EMU_SRC),$(1)/src,$(EMU_CUDA_FLAGS)) $(2) $$(EMU_OBJ_FLAGS) -x c++ -c $$< -o $$@
$(1)/runtime/%.o: emu/%.cpp emu/internal.h emu/device.h emu/block.h | $(DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	$(CXX) $(EMU_FLAGS) $(2) -c $$< -o $$@
$(1)/libcoldstart_emu.a: $(EMU_RUNTIME_SRCS:emu/%.cpp=$(1)/runtime/%.o) $(EMU_CUDA_SRCS:%.cu=$(1)/obj/%.o)
	@rm -f $$@
	ar rcs $$@ $$^
$(1)/test_gpu: $(EMU_TEST_SRCS:%.cu=$(1)/obj/%.o) $(BUILD)/test/test_util.o $(1)/libcoldstart_emu.a $(BUILD)/libcoldstart.a
	$(CXX) $(2) $$^ -o $$@ $(EMU_LIBS)
$(1)/test_emulator: $(EMU_SELF_TEST_SRCS:%.cu=$(1)/obj/%.o) $(BUILD)/test/processes.o $(1)/libcoldstart_emu.a $(BUILD)/libcoldstart.a
	$(CXX) $(2) $$^ -o $$@ $(EMU_LIBS)
endef
$(eval $(call emu_build,$(EMU_BUILD),))
# In a variable: a comma written in $(call)'s arguments would split them (and drop UBSan, as it did before).
# -fno-sanitize=null: GCC 12's null check reports the load of the extern thread_local that names the
# running fiber (emu/device.h, tls_thread) as a load through a null pointer, though it is set; others have
# met the same false report of GCC's UBSan on an extern thread_local (nim-lang/Nim#22641, Galois PR 165).
# ASan still reports any null access.
EMU_ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize=null -fno-sanitize-recover=undefined -fno-omit-frame-pointer
$(eval $(call emu_build,$(BUILD)/emu-asan,$(EMU_ASAN_FLAGS)))

$(EMU_BUILD)/obj/train_gpt2.o: EMU_OBJ_FLAGS = $(VERSION_FLAG)
train_gpt2_emu: $(EMU_BUILD)/obj/train_gpt2.o $(EMU_BUILD)/libcoldstart_emu.a $(BUILD)/libcoldstart.a
	$(CXX) $^ -o $@ $(EMU_LIBS)

emu-build: $(EMU_BUILD)/test_gpu $(EMU_BUILD)/test_emulator train_gpt2_emu

# Strict: a barrier that some threads have left is an error (the kernels never rely on exited threads).
EMU_SELF_SUITE := COLDSTART_EMU_STRICT=1 ./$(EMU_BUILD)/test_emulator
EMU_GPU_SUITE  := COLDSTART_EMU_STRICT=1 COLDSTART_DATA=$(DATA) COLDSTART_TRAINER=./train_gpt2_emu ./$(EMU_BUILD)/test_gpu $(EMU_TEST_ARGS)
ifneq ($(CUDA_INCLUDE),)
EMU_SUITES := "emulator's own suite" "$(EMU_SELF_SUITE)" "GPU suite on the emulated device" "$(EMU_GPU_SUITE)"
test: $(EMU_BUILD)/test_gpu $(EMU_BUILD)/test_emulator train_gpt2_emu
else
EMU_SUITES := "GPU suite on the emulated device" "echo 'skipped: no CUDA Toolkit headers (set CUDA_INCLUDE, or install the CUDA Toolkit)'; echo '0 passed, 0 failed'"
endif
test-emu: $(EMU_BUILD)/test_gpu $(EMU_BUILD)/test_emulator train_gpt2_emu train_gpt2_cpu
	@./tools/run_suites.sh "emulator's own suite" "$(EMU_SELF_SUITE)" "GPU suite on the emulated device" "$(EMU_GPU_SUITE)"

test-emu-checks: $(BUILD)/emu-asan/test_gpu $(BUILD)/emu-asan/test_emulator $(EMU_BUILD)/test_gpu
	ASAN_OPTIONS=detect_leaks=0 COLDSTART_EMU_STRICT=1 ./$(BUILD)/emu-asan/test_emulator
	ASAN_OPTIONS=detect_leaks=0 COLDSTART_EMU_STRICT=1 ./$(BUILD)/emu-asan/test_gpu $(or $(EMU_TEST_ARGS),$(EMU_ASAN_TESTS))
	COLDSTART_EMU_STRICT=1 COLDSTART_EMU_SCHEDULE=1 COLDSTART_EMU_DEFERRED=1 ./$(EMU_BUILD)/test_gpu $(or $(EMU_TEST_ARGS),$(EMU_SCHEDULE_TESTS))

-include $(shell find $(BUILD)/emu $(BUILD)/emu-asan -name '*.d' 2>/dev/null)
