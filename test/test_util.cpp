#include "test/test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/error.h"
#include "common/random.h"

namespace test_util {

std::string data_path(const std::string& relative) {
    const char* root = std::getenv("COLDSTART_DATA");
    const std::string path = std::string(root && *root ? root : "../shared/data") + "/" + relative;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) FAIL("test data missing: " << path << " (set COLDSTART_DATA to the shared data folder)");
    return path;
}

TempDir::TempDir() {
    char tmpl[] = "/tmp/coldstart_test_XXXXXX";
    const char* made = mkdtemp(tmpl);
    REQUIRE_MESSAGE(made != nullptr, "mkdtemp failed");
    path = made;
}

TempDir::~TempDir() {
    const std::string cmd = "rm -rf '" + path + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "warning: could not remove %s\n", path.c_str());
}

CommandResult run_command(const std::string& command_line) {
    const std::string cmd = command_line + " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    REQUIRE_MESSAGE(pipe != nullptr, "popen failed for: " << command_line);
    std::string output;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
    const int status = pclose(pipe);
    int code = -1;
    if (WIFEXITED(status)) code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) code = 128 + WTERMSIG(status);
    return {code, output};
}

std::string python() {
    const char* p = std::getenv("COLDSTART_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

double relative_error(const float* a, const float* b, size_t n) {
    double diff = 0, ref = 0;
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
        const double d = double(a[i]) - double(b[i]);
        diff += d * d;
        ref += double(b[i]) * double(b[i]);
    }
    if (ref == 0) return diff == 0 ? 0 : INFINITY;
    return std::sqrt(diff / ref);
}

double l2_norm(const std::vector<float>& a) {
    double sq = 0;
    for (float x : a) {
        if (!std::isfinite(x)) return INFINITY;
        sq += double(x) * x;
    }
    return std::sqrt(sq);
}

double dot(const float* a, const float* b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
    return s;
}

double angle_between(const float* a, const float* b, size_t n) {
    const double na = std::sqrt(dot(a, a, n)), nb = std::sqrt(dot(b, b, n));
    double diff = 0, sum = 0;
    for (size_t i = 0; i < n; ++i) {
        const double x = a[i] / na, y = b[i] / nb;
        diff += (x - y) * (x - y);
        sum += (x + y) * (x + y);
    }
    return 2 * std::atan2(std::sqrt(diff), std::sqrt(sum));
}

void write_bytes(const std::string& path, const void* data, size_t n) {
    std::ofstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f.good(), "cannot write " << path);
    f.write(static_cast<const char*>(data), std::streamsize(n));
}

void write_shard(const std::string& path, const std::vector<uint16_t>& tokens, int magic, int version, int count) {
    std::vector<int32_t> header(256, 0);
    header[0] = magic;
    header[1] = version;
    header[2] = count >= 0 ? count : int(tokens.size());
    std::vector<char> bytes(header.size() * 4 + tokens.size() * 2);
    std::memcpy(bytes.data(), header.data(), header.size() * 4);
    if (!tokens.empty()) std::memcpy(bytes.data() + header.size() * 4, tokens.data(), tokens.size() * 2);
    write_bytes(path, bytes.data(), bytes.size());
}

std::string trainer() {
    const char* t = std::getenv("COLDSTART_TRAINER");
    return t && *t ? t : "./train_gpt2_cpu";
}

std::string shakespeare_flags() {
    return " -i " + data_path("tinyshakespeare/tiny_shakespeare_train.bin") + " -j " +
           data_path("tinyshakespeare/tiny_shakespeare_val.bin");
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "no log at " << path);
    std::vector<nlohmann::json> records;
    std::string line;
    while (std::getline(in, line)) records.push_back(nlohmann::json::parse(line));
    return records;
}

std::vector<nlohmann::json> records_of(const std::vector<nlohmann::json>& log, const std::string& type) {
    std::vector<nlohmann::json> out;
    for (const auto& r : log)
        if (r["type"] == type) out.push_back(r);
    return out;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const coldstart::Error& e) {
        return e.what();
    }
    return "(no error)";
}

std::vector<char> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f.good(), "cannot read " << path);
    return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string read_text(const std::string& path) {
    const std::vector<char> bytes = read_bytes(path);
    return std::string(bytes.begin(), bytes.end());
}

double explicit_rrc(const coldstart::Gpt2Cpu& model, const coldstart::TensorSlice& t, const float* before, const float* after) {
    const coldstart::LinearActivations x = model.linear_activations(t.kind, t.layer);
    double change_sq = 0, output_sq = 0;
    for (int row = 0; row < model.batch_tokens(); ++row)
        for (int o = 0; o < x.out_features; ++o) {
            double change = 0, output = 0;
            for (int i = 0; i < x.in_features; ++i) {
                const double xi = x.inputs[size_t(row) * x.in_features + i];
                const size_t wi = size_t(o) * x.in_features + i;
                change += xi * (double(after[wi]) - before[wi]);
                output += xi * before[wi];
            }
            change_sq += change * change;
            output_sq += output * output;
        }
    return std::sqrt(change_sq / output_sq);
}

coldstart::OptimizerConfig test_optimizer(const std::string& name) {
    coldstart::OptimizerConfig c;
    c.name = name;
    c.weight_decay = 0.1f;
    if (name != "adamw") c.beta2 = 0.99f;
    return c;
}

coldstart::GPT2Config small_model_config() {
    coldstart::GPT2Config c;
    c.max_seq_len = 16;
    c.vocab_size = 97;  // awkward on purpose: not a multiple of anything
    c.padded_vocab_size = 128;
    c.num_layers = 2;
    c.num_heads = 3;
    c.channels = 24;
    return c;
}

std::vector<float> random_model_params(const coldstart::GPT2Config& c, uint64_t seed) {
    using namespace coldstart;
    const ParamLayout layout(c);
    std::vector<float> p(layout.total);
    Rng rng(seed);
    for (int k = 0; k < NUM_PARAM_TENSORS; ++k) {
        const bool gain = k == LN1W || k == LN2W || k == LNFW;
        const bool bias = k == LN1B || k == LN2B || k == LNFB || k == QKVB || k == ATTPROJB || k == FCB || k == FCPROJB;
        for (size_t i = 0; i < layout.sizes[k]; ++i)
            p[layout.offsets[k] + i] = gain ? 1.0f + 0.2f * rng.normal() : (bias ? 0.1f : 0.2f) * rng.normal();
    }
    for (size_t i = size_t(c.vocab_size) * c.channels; i < size_t(c.padded_vocab_size) * c.channels; ++i) p[i] = 0.0f;
    return p;
}

}  // namespace test_util
