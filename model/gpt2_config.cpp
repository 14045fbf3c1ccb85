#include "model/gpt2_config.h"

#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/random.h"

namespace coldstart {

const char* const kParamTensorNames[NUM_PARAM_TENSORS] = {
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};

std::string GPT2Config::describe() const {
    return format("L=%d NH=%d C=%d maxT=%d V=%d Vp=%d", num_layers, num_heads, channels, max_seq_len,
                  vocab_size, padded_vocab_size);
}

static bool parse_layers(const std::string& s, int* layers) {
    if (s.size() < 2 || s[0] != 'd' || s.size() > 4) return false;
    for (size_t i = 1; i < s.size(); ++i)
        if (s[i] < '0' || s[i] > '9') return false;
    *layers = std::atoi(s.c_str() + 1);
    return *layers > 0;
}

bool looks_like_descriptor(const std::string& init) {
    int layers;
    const std::string body = init.rfind("gpt2:", 0) == 0 ? init.substr(5) : init;
    return parse_layers(body, &layers);
}

GPT2Config config_from_descriptor(const std::string& descriptor) {
    const std::string body = descriptor.rfind("gpt2:", 0) == 0 ? descriptor.substr(5) : descriptor;
    int layers = 0;
    if (!parse_layers(body, &layers))
        fail("-e %s: expected a model file or a descriptor dN / gpt2:dN (e.g. d12 = GPT-2 124M)", descriptor.c_str());
    GPT2Config c;
    c.num_layers = layers;
    c.max_seq_len = 1024;
    c.vocab_size = 50257;
    c.padded_vocab_size = 50304;
    if (layers <= 12) {
        c.channels = 64 * layers;
    } else if (layers == 24) {
        c.channels = 1024;
    } else if (layers == 36) {
        c.channels = 1280;
    } else if (layers == 48) {
        c.channels = 1600;
    } else {
        fail("-e %s: GPT-2 descriptors exist for d1..d12, d24, d36 and d48", descriptor.c_str());
    }
    c.num_heads = c.channels / 64;
    return c;
}

void validate_config(const GPT2Config& c, const std::string& source) {
    auto positive = [&](int v, const char* field) {
        if (v <= 0) fail("%s: %s must be positive, got %d", source.c_str(), field, v);
    };
    // Upper bounds far above any GPT-2 keep every size product (at most L * 4C * C) inside 64 bits.
    auto at_most = [&](int v, int limit, const char* field) {
        if (v > limit) fail("%s: %s is %d, expected at most %d", source.c_str(), field, v, limit);
    };
    at_most(c.max_seq_len, 1 << 20, "max_seq_len");
    at_most(c.padded_vocab_size, 1 << 20, "padded_vocab_size");
    at_most(c.num_layers, 1 << 12, "num_layers");
    at_most(c.channels, 1 << 16, "channels");
    positive(c.max_seq_len, "max_seq_len");
    positive(c.vocab_size, "vocab_size");
    positive(c.num_layers, "num_layers");
    positive(c.num_heads, "num_heads");
    positive(c.channels, "channels");
    if (c.padded_vocab_size < c.vocab_size)
        fail("%s: padded_vocab_size %d is smaller than vocab_size %d", source.c_str(), c.padded_vocab_size, c.vocab_size);
    if (c.channels % c.num_heads != 0)
        fail("%s: channels %d is not a multiple of num_heads %d", source.c_str(), c.channels, c.num_heads);
    if (c.vocab_size > 65536)
        fail("%s: vocab_size %d does not fit the uint16 token shards (at most 65536)", source.c_str(), c.vocab_size);
}

ParamLayout::ParamLayout(const GPT2Config& c) {
    const size_t C = size_t(c.channels), L = size_t(c.num_layers);
    sizes = {size_t(c.padded_vocab_size) * C, size_t(c.max_seq_len) * C,
             L * C, L * C,                      // ln1w, ln1b
             L * 3 * C * C, L * 3 * C,          // qkvw, qkvb
             L * C * C, L * C,                  // attprojw, attprojb
             L * C, L * C,                      // ln2w, ln2b
             L * 4 * C * C, L * 4 * C,          // fcw, fcb
             L * C * 4 * C, L * C,              // fcprojw, fcprojb
             C, C};                             // lnfw, lnfb
    for (int i = 0; i < NUM_PARAM_TENSORS; ++i) {
        offsets[i] = total;
        total += sizes[i];
    }
}

// (rows, cols) of one layer's slice of each stacked tensor; vectors are (1, n).
static void slice_shape(ParamTensor kind, const GPT2Config& c, int* rows, int* cols) {
    const int C = c.channels;
    switch (kind) {
        case WTE: *rows = c.padded_vocab_size; *cols = C; return;
        case WPE: *rows = c.max_seq_len; *cols = C; return;
        case QKVW: *rows = 3 * C; *cols = C; return;
        case ATTPROJW: *rows = C; *cols = C; return;
        case FCW: *rows = 4 * C; *cols = C; return;
        case FCPROJW: *rows = C; *cols = 4 * C; return;
        case QKVB: *rows = 1; *cols = 3 * C; return;
        case FCB: *rows = 1; *cols = 4 * C; return;
        default: *rows = 1; *cols = C; return;  // layernorm gains/biases, projection biases
    }
}

std::vector<TensorSlice> parameter_tensors(const GPT2Config& c) {
    const ParamLayout layout(c);
    std::vector<TensorSlice> slices;
    for (int k = 0; k < NUM_PARAM_TENSORS; ++k) {
        const auto kind = ParamTensor(k);
        const bool stacked = kind != WTE && kind != WPE && kind != LNFW && kind != LNFB;
        const int layers = stacked ? c.num_layers : 1;
        int rows, cols;
        slice_shape(kind, c, &rows, &cols);
        const size_t numel = layout.sizes[k] / size_t(layers);
        for (int l = 0; l < layers; ++l) {
            const std::string name = stacked ? format("h%d.%s", l, kParamTensorNames[k]) : kParamTensorNames[k];
            slices.push_back({name, kind, stacked ? l : -1, layout.offsets[k] + size_t(l) * numel, numel, rows,
                              cols, rows > 1});
        }
    }
    return slices;
}

void init_parameters(float* params, const GPT2Config& c, unsigned long long seed) {
    const ParamLayout layout(c);
    Rng rng(seed);
    const float residual_scale = 1.0f / std::sqrt(2.0f * float(c.num_layers));
    for (int k = 0; k < NUM_PARAM_TENSORS; ++k) {
        float* p = params + layout.offsets[k];
        const size_t n = layout.sizes[k];
        switch (ParamTensor(k)) {
            case LN1W: case LN2W: case LNFW:
                for (size_t i = 0; i < n; ++i) p[i] = 1.0f;
                break;
            case LN1B: case LN2B: case LNFB: case QKVB: case ATTPROJB: case FCB: case FCPROJB:
                std::memset(p, 0, n * sizeof(float));
                break;
            case WTE: {
                const size_t real = size_t(c.vocab_size) * size_t(c.channels);
                for (size_t i = 0; i < real; ++i) p[i] = 0.02f * rng.normal();
                std::memset(p + real, 0, (n - real) * sizeof(float));  // padded rows never receive gradient
                break;
            }
            case ATTPROJW: case FCPROJW:
                for (size_t i = 0; i < n; ++i) p[i] = 0.02f * residual_scale * rng.normal();
                break;
            default:  // wpe, qkvw, fcw
                for (size_t i = 0; i < n; ++i) p[i] = 0.02f * rng.normal();
        }
    }
}

}  // namespace coldstart
