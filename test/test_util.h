// Helpers shared by the CPU test suites: where the shared data lives, scratch directories, running the
// project's binaries as a user would, and comparing float arrays by relative norm error.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/gpt2_cpu.h"
#include "model/gpt2_config.h"
#include "optim/optimizer.h"

namespace test_util {

// Path of a file under the shared data folder ($COLDSTART_DATA, default ../shared/data). Fails the
// current test with the full path if the file is missing.
std::string data_path(const std::string& relative);

// A fresh empty directory under /tmp, removed (recursively) when the object goes out of scope.
struct TempDir {
    TempDir();
    ~TempDir();
    std::string path;
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

struct CommandResult {
    int exit_code;       // the process's exit status (128+signal if killed)
    std::string output;  // stdout and stderr together
};
// Runs a shell command line from the repository root and captures its output.
CommandResult run_command(const std::string& command_line);

// The Python interpreter that has torch and numpy (Debian's): $COLDSTART_PYTHON, default /usr/bin/python3.
std::string python();

// ||a - b|| / ||b|| over all elements (0 when both are zero); NaN anywhere gives +inf.
double relative_error(const float* a, const float* b, size_t n);
// ||a||, or infinity if an element is not finite.
double l2_norm(const std::vector<float>& a);
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() ? relative_error(a.data(), b.data(), a.size()) : 1e30;
}

// <a, b> in double, and the angle between a and b in double by Kahan's formula 2 atan2(|a^ - b^|, |a^ + b^|)
// of the unit vectors: independent of the trainer's own formula, and precise for tiny angles where
// arccos of the cosine is not.
double dot(const float* a, const float* b, size_t n);
double angle_between(const float* a, const float* b, size_t n);

void write_bytes(const std::string& path, const void* data, size_t n);

// Writes an llm.c token shard; the header fields can be overridden to make bad files.
void write_shard(const std::string& path, const std::vector<uint16_t>& tokens, int magic = 20240520, int version = 1,
                 int count = -1);

// The trainer binary the end-to-end tests run: $COLDSTART_TRAINER, default ./train_gpt2_cpu.
std::string trainer();
// " -i <train shard> -j <val shard>" of tinyshakespeare.
std::string shakespeare_flags();
// The records of a JSON-lines log, and those of one type.
std::vector<nlohmann::json> read_jsonl(const std::string& path);
std::vector<nlohmann::json> records_of(const std::vector<nlohmann::json>& log, const std::string& type);

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A small GPT-2 with awkward sizes (C=24, L=2, NH=3, maxT=16, V=97 padded to 128) for model-level tests.
coldstart::GPT2Config small_model_config();
// Every parameter random (gains around 1, non-zero biases) so that no term of the model hides behind a
// zero or a one; padded vocabulary rows stay zero as in a real model file.
std::vector<float> random_model_params(const coldstart::GPT2Config& c, uint64_t seed);

// The RRC of one linear layer (tensor t) as METHODS.md defines it, independently of the backends' Gram and
// product forms: ||X dW^T|| / ||X W^T|| with explicit products in double, X = the layer's inputs in `model`'s
// last forward pass, W = before, dW = after - before (each the tensor's own values, (out, in)).
double explicit_rrc(const coldstart::Gpt2Cpu& model, const coldstart::TensorSlice& t, const float* before, const float* after);

// The optimizer `name` as the tests use it: weight decay 0.1, and for the Lion family Lion's betas
// 0.9 / 0.99 (AdamW keeps 0.9 / 0.95); every other option at its default.
coldstart::OptimizerConfig test_optimizer(const std::string& name);

// The message of the coldstart::Error that f throws, or "(no error)".
std::string error_of(const std::function<void()>& f);
std::vector<char> read_bytes(const std::string& path);
std::string read_text(const std::string& path);

}  // namespace test_util
