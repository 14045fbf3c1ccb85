// The header that begins every llm.c file (token shards, model files, tokenizer files) and coldstart's
// state file: 256 little-endian int32, [0] a magic number naming the kind of file, [1] its version, the
// rest kind-specific or zero.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace coldstart {

class File;

constexpr size_t kLlmcHeaderInts = 256;
constexpr size_t kLlmcHeaderBytes = kLlmcHeaderInts * sizeof(int32_t);
using LlmcHeader = std::array<int32_t, kLlmcHeaderInts>;

// Reads and checks magic and version; errors name the file, the kind and what was expected, e.g.
//   "x.bin: not a valid llm.c token shard: magic number 1234, expected 20240520"
//   "m.bin: llm.c model file version 4 is not supported, expected 3 or 5"
LlmcHeader read_llmc_header(File& f, const char* kind, int32_t magic, std::initializer_list<int32_t> versions);

LlmcHeader new_llmc_header(int32_t magic, int32_t version);  // zeros elsewhere

}  // namespace coldstart
