#include "data/llmc_header.h"

#include <algorithm>
#include <string>

#include "common/error.h"

namespace coldstart {

LlmcHeader read_llmc_header(File& f, const char* kind, int32_t magic, std::initializer_list<int32_t> versions) {
    LlmcHeader header;
    f.read_exact(header.data(), kLlmcHeaderBytes, "the 1024-byte header");
    if (header[0] != magic)
        fail("%s: not a valid %s: magic number %d, expected %d", f.path().c_str(), kind, header[0], magic);
    if (std::find(versions.begin(), versions.end(), header[1]) == versions.end()) {
        std::string expected;
        for (int32_t v : versions) expected += (expected.empty() ? "" : " or ") + std::to_string(v);
        fail("%s: %s version %d is not supported, expected %s", f.path().c_str(), kind, header[1], expected.c_str());
    }
    return header;
}

LlmcHeader new_llmc_header(int32_t magic, int32_t version) {
    LlmcHeader header{};
    header[0] = magic;
    header[1] = version;
    return header;
}

}  // namespace coldstart
