// libFuzzer target: llm.c's tokenizer file: Tokenizer::from_llmc_binary, decode, save_llmc_binary.
// Built and run by `make fuzz`; the body is fuzz::tokenizer_bin in fuzz/fuzz_bodies.h, which the regression test
// (test/test_fuzz_regressions.cpp) replays over fuzz/corpus/tokenizer_bin/.
#include "fuzz/fuzz_bodies.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run_one(fuzz::tokenizer_bin, data, size);
}
