# coldstart build.
#
#   make               the trainer ./train_gpt2 (nvcc where it exists, else pure C++) and the tools
#   make cpu           ./train_gpt2_cpu: the same trainer built by the C++ compiler alone (no CUDA Toolkit)
#   make test          the CPU doctest suite (the README's test command)
#   make test-gpu      the GPU suite (needs a GPU and nvcc)
#   make train         the README's quickstart: a small GPT-2 on tinyshakespeare (GPU if present, else CPU)
#   make deps          installs the Debian packages the build and tests need
#
# Variables: DATA (folder with gpt2/ and tinyshakespeare/, default ../shared/data), NVCC, CXX,
# ARCH_FLAGS (host CPU flags, default -march=native), NO_CUDA=1 (never use nvcc).

CXX        ?= g++
ARCH_FLAGS ?= -march=native
CXXSTD     := -std=c++17
# -Wno-maybe-uninitialized: GCC 12 reports false positives inside nlohmann/json after inlining.
WARNINGS   := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-maybe-uninitialized
CXXFLAGS   ?= -O3 $(ARCH_FLAGS)
ALL_CXXFLAGS := $(CXXSTD) $(CXXFLAGS) $(WARNINGS) -fopenmp -I. -MMD -MP
LDLIBS     := -fopenmp -lm
DATA       ?= ../shared/data
PYTHON     ?= /usr/bin/python3

NVCC ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
ifeq ($(NO_CUDA),1)
  NVCC :=
endif

BUILD := build
LIB_SRCS  := $(wildcard common/*.cpp config/*.cpp layers/*.cpp optim/*.cpp data/*.cpp dist/*.cpp)
LIB_OBJS  := $(LIB_SRCS:%.cpp=$(BUILD)/%.o)
TEST_SRCS := $(wildcard test/*.cpp)
TEST_OBJS := $(TEST_SRCS:%.cpp=$(BUILD)/%.o)
TOOL_SRCS := $(wildcard tools/*.cpp)
TOOL_BINS := $(TOOL_SRCS:tools/%.cpp=$(BUILD)/tools/%)

.PHONY: all cpu test test-gpu train deps check-deps clean bench-cpu
all: train_gpt2 $(TOOL_BINS)

# ---- dependencies: found by compiling a probe; installed from Debian when we are root ----
DEPS_STAMP := $(BUILD)/.deps-ok
check-deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@mkdir -p $(BUILD)
	@./tools/check_deps.sh "$(CXX)"
	@touch $@

deps:
	@./tools/check_deps.sh "$(CXX)" --install --with-test-tools

# ---- objects ----
$(BUILD)/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -c $< -o $@

$(BUILD)/libcoldstart.a: $(LIB_OBJS)
	ar rcs $@ $^

# ---- the trainer: nvcc where it exists, otherwise the C++ compiler on the same source ----
ifneq ($(NVCC),)
train_gpt2: train_gpt2.cu $(BUILD)/libcoldstart.a | $(DEPS_STAMP)
	$(NVCC) $(CXXSTD) -O3 -I. -DCOLDSTART_CUDA -Xcompiler "$(ARCH_FLAGS) -fopenmp -Wall" \
	    $< $(BUILD)/libcoldstart.a -o $@ -lgomp
else
train_gpt2: train_gpt2.cu $(BUILD)/libcoldstart.a | $(DEPS_STAMP)
	$(CXX) $(ALL_CXXFLAGS) -x c++ $< -x none $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)
endif

cpu: train_gpt2_cpu
train_gpt2_cpu: train_gpt2.cu $(BUILD)/libcoldstart.a | $(DEPS_STAMP)
	$(CXX) $(ALL_CXXFLAGS) -x c++ $< -x none $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)

$(BUILD)/tools/%: tools/%.cpp $(BUILD)/libcoldstart.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) $< $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)

# ---- tests ----
$(BUILD)/test_cpu: $(TEST_OBJS) $(BUILD)/libcoldstart.a
	$(CXX) $(TEST_OBJS) $(BUILD)/libcoldstart.a -o $@ $(LDLIBS)

# The suite runs from the repository root; it also drives the trainer binary and the tools end to end.
test: $(BUILD)/test_cpu train_gpt2_cpu $(TOOL_BINS)
	COLDSTART_DATA=$(DATA) COLDSTART_PYTHON=$(PYTHON) OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/test_cpu

test-gpu:
	@if [ -z "$(NVCC)" ]; then echo "test-gpu: nvcc not found; the GPU suite needs the CUDA Toolkit"; exit 1; fi
	@echo "test-gpu: the GPU suite has no tests yet (the CUDA path is issue 3)"; echo "0 passed, 0 failed"

# ---- the README's quickstart ----
TRAIN_FLAGS ?= -e d4 -b 16 -t 64 -x 200 -l 2e-3 -u 20 -k cosine -q 0.1 -v 50 -m 16 -s 100 -g 48 -o out/quickstart
train: train_gpt2
	./train_gpt2 -i $(DATA)/tinyshakespeare/tiny_shakespeare_train.bin \
	             -j $(DATA)/tinyshakespeare/tiny_shakespeare_val.bin \
	             --tokenizer $(DATA)/gpt2/gpt2_tokenizer.bin $(TRAIN_FLAGS)

# CPU step time of GPT-2 124M at B=4, T=64; set LLMC_DIR to an llm.c CPU build to get the ratio.
bench-cpu: train_gpt2_cpu $(BUILD)/tools/bench_cpu_matmul
	DATA=$(DATA) ./tools/bench_cpu.sh
	./$(BUILD)/tools/bench_cpu_matmul

clean:
	rm -rf $(BUILD) train_gpt2 train_gpt2_cpu

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d)

# =====================================================================================================
# ---- hostile inputs: fuzzing and the sanitized suite (issue 7) ----
#   make fuzz        builds one libFuzzer target per reader of untrusted files (fuzz/<target>.cpp, bodies in
#                    fuzz/fuzz_bodies.h) with clang++, ASan and UBSan into build/fuzz/, then runs each for
#                    FUZZ_SECONDS on a copy of its corpus (fuzz/run_fuzzers.sh); fails if any target crashes
#   make test-asan   the CPU suite built with g++ -fsanitize=address,undefined into build/asan/, run like
#                    `make test` (the trainer binary and the tools it drives stay the normal build)
# Variables: FUZZ_CXX (clang++), FUZZ_SECONDS (20), FUZZ_TARGETS (all of fuzz/*.cpp but make_seeds).
FUZZ_CXX     ?= clang++
FUZZ_SECONDS ?= 20
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_FLAGS   := -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.
FUZZ_TARGETS ?= $(filter-out make_seeds,$(patsubst fuzz/%.cpp,%,$(wildcard fuzz/*.cpp)))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
# The readers and what they use, compiled with the fuzz flags (not the g++ objects). The layers are left
# out (OpenMP, and no reader needs them but gpt2_config); the archive lets each target take what it uses.
FUZZ_LIB_SRCS := $(wildcard common/*.cpp config/*.cpp data/*.cpp optim/*.cpp) layers/gpt2_config.cpp
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

test-asan: $(ASAN_BUILD)/test_cpu train_gpt2_cpu $(TOOL_BINS)
	$(ASAN_ENV) COLDSTART_DATA=$(DATA) COLDSTART_PYTHON=$(PYTHON) OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(ASAN_BUILD)/test_cpu

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:$(FUZZ_BUILD)/%=$(FUZZ_BUILD)/obj/fuzz/%.d) $(ASAN_OBJS:.o=.d)
