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

}  // namespace test_util
