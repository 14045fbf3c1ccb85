// libFuzzer target: llm.c token shards: read_shard_header and the DataLoader (validation, batches, seek).
// Built and run by `make fuzz`; the body is fuzz::shards in fuzz/fuzz_bodies.h, which the regression test
// (test/test_fuzz_regressions.cpp) replays over fuzz/corpus/shards/.
#include "fuzz/fuzz_bodies.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz::run_one(fuzz::shards, data, size);
}
