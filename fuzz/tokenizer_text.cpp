// libFuzzer target: arbitrary text and token ids through the real GPT-2 tokenizer: encode, decode.
// Built and run by `make fuzz`; the body is fuzz::tokenizer_text in fuzz/fuzz_bodies.h, which the
// regression test (test/test_fuzz_regressions.cpp) replays over fuzz/corpus/tokenizer_text/.
// Needs $COLDSTART_DATA/gpt2 (default ../shared/data/gpt2, relative to the repository root).
#include "fuzz/fuzz_bodies.h"

// Loads the tokenizer before fuzzing starts, so a missing data folder stops the run instead of making
// every input "fail" with the same coldstart::Error.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    try {
        fuzz::gpt2_tokenizers();
    } catch (const coldstart::Error& e) {
        std::fprintf(stderr, "fuzz tokenizer_text: cannot load the GPT-2 tokenizer: %s\n", e.what());
        std::exit(1);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run_one(fuzz::tokenizer_text, data, size);
}
