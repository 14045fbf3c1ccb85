// libFuzzer target: the --config JSON file: load_json_config_file.
// Built and run by `make fuzz`; the body is fuzz::json_config in fuzz/fuzz_bodies.h, which the regression test
// (test/test_fuzz_regressions.cpp) replays over fuzz/corpus/json_config/.
#include "fuzz/fuzz_bodies.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run_one(fuzz::json_config, data, size);
}
