// libFuzzer target: checkpoint state files: read_state_file (with an AdamW optimizer of a tiny model).
// Built and run by `make fuzz`; the body is fuzz::state_file in fuzz/fuzz_bodies.h, which the regression test
// (test/test_fuzz_regressions.cpp) replays over fuzz/corpus/state_file/.
#include "fuzz/fuzz_bodies.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run_one(fuzz::state_file, data, size);
}
