// libFuzzer target: OpenAI's encoder.json + vocab.bpe (the input split at its first 0 byte):
// Tokenizer::from_files, encode, decode.
// Built and run by `make fuzz`; the body is fuzz::tokenizer_files in fuzz/fuzz_bodies.h, which the regression test
// (test/test_fuzz_regressions.cpp) replays over fuzz/corpus/tokenizer_files/.
#include "fuzz/fuzz_bodies.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run_one(fuzz::tokenizer_files, data, size);
}
