// libFuzzer target: the command line (argv split at 0 bytes): parse_command_line.
// Built and run by `make fuzz`; the body is fuzz::command_line in fuzz/fuzz_bodies.h, which the regression test
// (test/test_fuzz_regressions.cpp) replays over fuzz/corpus/command_line/.
#include "fuzz/fuzz_bodies.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run_one(fuzz::command_line, data, size);
}
