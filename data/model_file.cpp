#include "data/model_file.h"

#include <cstdint>
#include <cstring>

#include "common/error.h"
#include "data/llmc_header.h"

namespace coldstart {

static constexpr int kModelMagic = 20240326;
static constexpr int kVersionFp32 = 3;
static constexpr int kVersionBf16 = 5;

uint16_t float_to_bf16(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu)) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
    bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
    return uint16_t(bits >> 16);
}

float bf16_to_float(uint16_t x) {
    const uint32_t bits = uint32_t(x) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

LoadedModel load_model_file(const std::string& path) {
    File f(path, "rb");
    const size_t file_size = f.size();
    const LlmcHeader header = read_llmc_header(f, "llm.c model file", kModelMagic, {kVersionFp32, kVersionBf16});

    LoadedModel m;
    m.stored_as = header[1] == kVersionFp32 ? ModelDtype::fp32 : ModelDtype::bf16;
    m.config.max_seq_len = header[2];
    m.config.vocab_size = header[3];
    m.config.num_layers = header[4];
    m.config.num_heads = header[5];
    m.config.channels = header[6];
    m.config.padded_vocab_size = header[7];
    validate_config(m.config, path);

    const size_t count = ParamLayout(m.config).total;
    const size_t elem = m.stored_as == ModelDtype::fp32 ? 4 : 2;
    const size_t expected = kLlmcHeaderBytes + count * elem;
    if (file_size != expected)
        fail("%s: file is %zu bytes, but a model with %s in %s needs %zu (%s)", path.c_str(), file_size,
             m.config.describe().c_str(), elem == 4 ? "fp32" : "bf16", expected,
             file_size < expected ? "truncated" : "trailing bytes");

    m.params.resize(count);
    if (m.stored_as == ModelDtype::fp32) {
        f.read_exact(m.params.data(), count * 4, "the parameters");
    } else {
        std::vector<uint16_t> raw(count);
        f.read_exact(raw.data(), count * 2, "the parameters");
        for (size_t i = 0; i < count; ++i) m.params[i] = bf16_to_float(raw[i]);
    }
    return m;
}

void save_model_file(const std::string& path, const GPT2Config& c, const float* params, ModelDtype dtype) {
    LlmcHeader header = new_llmc_header(kModelMagic, dtype == ModelDtype::fp32 ? kVersionFp32 : kVersionBf16);
    header[2] = c.max_seq_len;
    header[3] = c.vocab_size;
    header[4] = c.num_layers;
    header[5] = c.num_heads;
    header[6] = c.channels;
    header[7] = c.padded_vocab_size;
    const size_t count = ParamLayout(c).total;
    write_atomically(path, [&](File& f) {
        f.write_all(header.data(), kLlmcHeaderBytes);
        if (dtype == ModelDtype::fp32) {
            f.write_all(params, count * sizeof(float));
            return;
        }
        std::vector<uint16_t> raw(count);
        for (size_t i = 0; i < count; ++i) raw[i] = float_to_bf16(params[i]);
        f.write_all(raw.data(), count * 2);
    });
}

}  // namespace coldstart
