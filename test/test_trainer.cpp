// The trainer binary end to end, as a user runs it: a short run's logs and checkpoints, restarting from
// a written model, determinism, and one clear error line (and nothing written) for each kind of bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/model_file.h"
#include "test/test_util.h"

using namespace coldstart;
using nlohmann::json;
using test_util::records_of;
using test_util::shakespeare_flags;
using test_util::trainer;

namespace {

// A tiny GPT-2 (1 layer, 64 channels) and a small batch: a step takes tens of milliseconds.
const char* kTinyRun = " -e d1 -b 4 -t 16 -l 1e-2 --threads 2";

}  // namespace

TEST_CASE("trainer: a short run logs every step, validates, samples, checkpoints, and restarts from its model") {
    test_util::TempDir dir;
    const std::string out = dir / "run";
    const auto run = test_util::run_command(trainer() + shakespeare_flags() + kTinyRun + " -x 12 -v 6 -m 2 -n 6 -s 12 -g 8 --tokenizer " +
                                            test_util::data_path("gpt2/gpt2_tokenizer.bin") + " -o " + out);
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    CHECK(run.output.find("training on the CPU reference path") != std::string::npos);
    CHECK(run.output.find("--- sample at step 12 ---") != std::string::npos);

    const std::vector<json> log = test_util::read_jsonl(out + "/log.jsonl");
    REQUIRE(records_of(log, "run").size() == 1);
    const auto train = records_of(log, "train");
    REQUIRE(train.size() == 12);
    for (int s = 0; s < 12; ++s) {
        CHECK(train[s]["step"] == s);
        CHECK(std::isfinite(train[s]["loss"].get<double>()));
    }
    CHECK(train[11]["loss"].get<double>() < train[0]["loss"].get<double>() - 1.0);  // it learns
    const auto val = records_of(log, "val");
    REQUIRE(val.size() == 3);
    CHECK(val[0]["step"] == 0);
    CHECK(val[2]["step"] == 12);
    CHECK(records_of(log, "sample").size() == 1);

    // The written config reproduces the options; checkpoints are complete.
    std::ifstream config_file(out + "/config.json");
    const json config = json::parse(config_file);
    CHECK(config["max-steps"] == 12);
    CHECK(config["init"] == "d1");
    for (const char* name : {"model_00000006.bin", "state_00000006_00000.bin", "DONE_00000006", "model_00000012.bin",
                             "state_00000012_00000.bin", "DONE_00000012"})
        CHECK_MESSAGE(file_exists(out + "/" + name), name);
    CHECK_FALSE(file_exists(out + "/model_00000012.bin.tmp"));

    // Starting from the written model with -x 0 evaluates exactly the model the first run ended with.
    const auto again = test_util::run_command(trainer() + shakespeare_flags() + kTinyRun + " -x 0 -m 2 -s 0 -e " + out +
                                              "/model_00000012.bin -o " + dir / "eval");
    REQUIRE_MESSAGE(again.exit_code == 0, again.output);
    const auto val_again = records_of(test_util::read_jsonl(dir / "eval/log.jsonl"), "val");
    REQUIRE(val_again.size() == 1);
    CHECK(val_again[0]["loss"] == val[2]["loss"]);
}

TEST_CASE("trainer: the same seed gives the same losses bit for bit, with shuffling and accumulation") {
    test_util::TempDir dir;
    const std::string flags = shakespeare_flags() + kTinyRun + " -x 6 -d 128 --shuffle 1 --seed 7 -v 3 -m 2 -s 0";
    const auto a = test_util::run_command(trainer() + flags + " -o " + dir / "a");
    const auto b = test_util::run_command(trainer() + flags + " -o " + dir / "b" + " --threads 1");
    REQUIRE_MESSAGE(a.exit_code == 0, a.output);
    REQUIRE_MESSAGE(b.exit_code == 0, b.output);
    auto losses = [](const std::string& path) {
        std::vector<json> out;
        for (const auto& r : test_util::read_jsonl(path))
            if (r["type"] == "train" || r["type"] == "val") out.push_back(r["loss"]);
        return out;
    };
    const auto la = losses(dir / "a/log.jsonl");
    CHECK(la.size() == 9);
    CHECK(la == losses(dir / "b/log.jsonl"));  // also across thread counts
    CHECK(test_util::read_jsonl(dir / "a/log.jsonl")[0]["grad_accum"] == 2);
}

TEST_CASE("trainer: bad input gets one clear error line, a non-zero exit, and no output written") {
    test_util::TempDir dir;
    std::vector<uint16_t> tokens(5000);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint16_t(i % 50000);
    test_util::write_shard(dir / "good.bin", tokens);
    test_util::write_shard(dir / "magic.bin", tokens, 1234);
    test_util::write_shard(dir / "version.bin", tokens, 20240520, 2);
    test_util::write_shard(dir / "truncated.bin", tokens, 20240520, 1, 6000);
    test_util::write_shard(dir / "tiny.bin", std::vector<uint16_t>(40, 1));
    std::vector<uint16_t> bad_token = tokens;
    bad_token[4321] = 60000;
    test_util::write_shard(dir / "vocab.bin", bad_token);
    test_util::write_bytes(dir / "model.bin", "not a model", 11);
    std::ofstream(dir / "bad.json") << "{\"lr\": 1e-3,}";

    struct Case {
        std::string args, expected;
    };
    const std::string good = " -i " + dir / "good.bin" + " -e d1 -b 4 -t 16 -x 2 -s 0";
    const std::vector<Case> cases = {
        {" -i " + dir / "nothing*.bin -e d1", "-i: no files match '" + dir / "nothing*.bin'"},
        {" -i " + dir / "magic.bin -e d1 -b 4 -t 16", dir / "magic.bin"},
        {" -i " + dir / "version.bin -e d1 -b 4 -t 16", dir / "version.bin"},
        {" -i " + dir / "truncated.bin -e d1 -b 4 -t 16", dir / "truncated.bin"},
        {" -i " + dir / "vocab.bin -e d1 -b 4 -t 16", "60000"},
        {" -i " + dir / "tiny.bin -e d1 -b 4 -t 16", dir / "tiny.bin"},
        {good + " -j " + dir / "tiny.bin", dir / "tiny.bin"},
        {good + " --frobnicate 1", "unknown flag '--frobnicate' (see --help)"},
        {good + " -l", "-l/--lr: expected a value after the flag"},
        {good + " -b 0", "-b/--batch-size: expected an integer in [1, 1.04858e+06], got '0'"},
        {good + " -k sawtooth", "-k/--schedule: expected one of cosine|linear|constant|trapezoid|wsd, got 'sawtooth'"},
        {good + " --config " + dir / "bad.json", dir / "bad.json: malformed JSON at byte"},
        {good + " -t 2048", "-t 2048: exceeds the model's maximum sequence length 1024 (from -e d1)"},
        {good + " -d 100", "-d 100: expected a positive multiple of B*T*processes = 4*16*1 = 64"},
        {good + " -e " + dir / "model.bin", dir / "model.bin: file is truncated"},
        {good + " -e " + dir / "missing.bin", "-e " + dir / "missing.bin: no such model file, and not a descriptor"},
        {good + " -e d7x", "-e d7x: no such model file, and not a descriptor (dN or gpt2:dN, e.g. d12 = GPT-2 124M)"},
        {good + " --tokenizer " + dir / "model.bin", dir / "model.bin"},
        {" -e d1", "-i/--train-data: no training shards given"},
    };
    for (const Case& c : cases) {
        const std::string out = dir / "out";
        const auto r = test_util::run_command(trainer() + " -o " + out + c.args);  // a flag missing its value stands last
        CAPTURE(c.args);
        CHECK(r.exit_code == 1);
        const std::string last_line = r.output.substr(r.output.rfind("error: ") == std::string::npos ? 0 : r.output.rfind("error: "));
        CHECK_MESSAGE(last_line.rfind("error: ", 0) == 0, r.output);
        CHECK_MESSAGE(last_line.find(c.expected) != std::string::npos, "expected '" << c.expected << "' in: " << r.output);
        CHECK_MESSAGE(std::count(last_line.begin(), last_line.end(), '\n') == 1, "one line: " << last_line);
        CHECK_MESSAGE(!file_exists(out), "output written despite the error: " << c.args);
    }
}

TEST_CASE("trainer: --help prints the option table and exits 0; --device cuda without CUDA is an error") {
    const auto help = test_util::run_command(trainer() + " --help");
    CHECK(help.exit_code == 0);
    CHECK(help.output.find("usage: train_gpt2") == 0);
    CHECK(help.output.find("--total-batch-tokens") != std::string::npos);
    const auto cuda = test_util::run_command(trainer() + " -i x.bin --device cuda");
    CHECK(cuda.exit_code == 1);
    CHECK(cuda.output.find("--device cuda") != std::string::npos);
}
