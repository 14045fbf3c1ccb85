// libFuzzer target: llm.c model files (fp32 v3, bf16 v5): load_model_file.
// Built and run by `make fuzz`; the body is fuzz::model_file in fuzz/fuzz_bodies.h, which the regression test
// (test/test_fuzz_regressions.cpp) replays over fuzz/corpus/model_file/.
#include "fuzz/fuzz_bodies.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run_one(fuzz::model_file, data, size);
}
