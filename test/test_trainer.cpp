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
#include "model/gpt2_config.h"
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
        {good + " -b -t 64", "-b/--batch-size: expected a value after the flag, got the flag '-t'"},
        {good + " --vocab-size 256 --tokenizer " + test_util::data_path("gpt2/gpt2_tokenizer.bin"),
         "--tokenizer " + test_util::data_path("gpt2/gpt2_tokenizer.bin") +
             ": 50257 tokens, but the model (-e d1 --vocab-size 256) has a vocabulary of 256"},
        {good + " --tokenizer bytes", "--tokenizer bytes: 256 tokens, but the model (-e d1) has a vocabulary of 50257"},
        {good + " -b 0", "-b/--batch-size: expected an integer in [1, 1048576], got '0'"},
        {good + " -k sawtooth", "-k/--schedule: expected one of cosine|linear|constant|trapezoid|wsd, got 'sawtooth'"},
        {good + " --config " + dir / "bad.json", dir / "bad.json: malformed JSON at byte"},
        {good + " -t 2048", "-t 2048: exceeds the model's maximum sequence length 1024 (from -e d1)"},
        {good + " -d 100", "-d 100: expected a positive multiple of B*T*processes = 4*16*1 = 64"},
        {good + " -e " + dir / "model.bin", dir / "model.bin: file is truncated"},
        {good + " -e " + dir / "missing.bin", "-e " + dir / "missing.bin: no such model file, and not a descriptor"},
        {good + " -e d7x", "-e d7x: no such model file, and not a descriptor (dN or gpt2:dN, e.g. d12 = GPT-2 124M)"},
        {good + " --tokenizer " + dir / "model.bin", dir / "model.bin"},
        {" -e d1", "-i/--train-data: no training shards given"},
        {" -e d1 -x 0 -y 1", "-i/--train-data: no training shards given"},
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

TEST_CASE("trainer: --help and -h print the option table and exit 0; --device cuda without CUDA is an error") {
    const auto help = test_util::run_command(trainer() + " --help");
    CHECK(help.exit_code == 0);
    CHECK(help.output.find("usage: train_gpt2") == 0);
    CHECK(help.output.find("--total-batch-tokens") != std::string::npos);
    CHECK(test_util::run_command(trainer() + " -h").output == help.output);
    const auto cuda = test_util::run_command(trainer() + " -i x.bin --device cuda");
    CHECK(cuda.exit_code == 1);
    CHECK(cuda.output.find("--device cuda") != std::string::npos);
}

TEST_CASE("trainer: a folder that holds a run is refused without -y; -y 1 on a finished run changes nothing; -o keeps the model") {
    test_util::TempDir dir;
    const std::string out = dir / "run";
    const std::string flags = shakespeare_flags() + kTinyRun + " -x 3 -v 0 -m 1 -s 0 -o " + out;
    const auto first = test_util::run_command(trainer() + flags);
    REQUIRE_MESSAGE(first.exit_code == 0, first.output);
    // No -n: the final model and state are still written, and the summary says where.
    CHECK(file_exists(out + "/model_00000003.bin"));
    CHECK(file_exists(out + "/DONE_00000003"));
    CHECK(test_util::contains(first.output, "done: 3 steps, 192 tokens in "));
    CHECK(test_util::contains(first.output, "model " + out + "/model_00000003.bin"));
    const std::string log = test_util::read_text(out + "/log.jsonl"), config = test_util::read_text(out + "/config.json");

    // The README's "--config on config.json repeats a run": into the same folder it is refused, and nothing changes.
    for (const std::string& again : {trainer() + " --config " + out + "/config.json -x 5", trainer() + flags}) {
        CAPTURE(again);
        const auto r = test_util::run_command(again);
        CHECK(r.exit_code == 1);
        CHECK_MESSAGE(test_util::contains(r.output, "error: " + out + " already holds a run (log.jsonl): resume with -y 1, or choose another -o"),
                      r.output);
    }
    // A folder with only a checkpoint's file (no log) holds a run too.
    test_util::run_command("mkdir -p " + dir / "other" + " && cp " + out + "/DONE_00000003 " + dir / "other/");
    CHECK(test_util::contains(test_util::run_command(trainer() + shakespeare_flags() + kTinyRun + " -x 3 -o " + dir / "other").output,
                              "already holds a run (DONE_00000003)"));

    const auto finished = test_util::run_command(trainer() + flags + " -y 1");
    CHECK(finished.exit_code == 0);
    CHECK_MESSAGE(test_util::contains(finished.output, out + ": the run is already finished: its newest checkpoint is at step 3, "
                                                             "and -x asks for 3 steps; nothing to do"), finished.output);
    CHECK(test_util::read_text(out + "/log.jsonl") == log);
    CHECK(test_util::read_text(out + "/config.json") == config);

    // -n needs somewhere to write.
    const auto no_folder = test_util::run_command(trainer() + shakespeare_flags() + kTinyRun + " -x 3 -n 1");
    CHECK(no_folder.exit_code == 1);
    CHECK(test_util::contains(no_folder.output, "error: -n 1: checkpoints are written into the output folder; add -o DIR"));
}

TEST_CASE("trainer: every record has its time; the run record names the run and the version; the end record sums up") {
    test_util::TempDir dir;
    const auto run = test_util::run_command(trainer() + shakespeare_flags() + kTinyRun + " -x 4 -v 2 -m 2 -s 0 -o " + dir / "run");
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    const std::vector<json> log = test_util::read_jsonl(dir / "run/log.jsonl");
    double previous_elapsed = 0;
    for (const json& r : log) {
        CAPTURE(r.dump());
        REQUIRE(r.contains("time"));
        CHECK(r["time"].get<std::string>().size() == 20);  // 2026-12-02T14:41:19Z
        CHECK(r["elapsed_s"].get<double>() >= previous_elapsed);
        previous_elapsed = r["elapsed_s"].get<double>();
    }
    CHECK(log.front()["type"] == "run");
    CHECK(log.front()["run_id"].get<std::string>().size() == 16);
    CHECK(!log.front()["version"].get<std::string>().empty());
    const json& end = log.back();
    CHECK(end["type"] == "end");
    CHECK(end["step"] == 4);
    CHECK(end["tokens"] == 4 * 64);
    CHECK(end["val_loss"] == records_of(log, "val").back()["loss"]);
    CHECK(end["model"] == dir / "run/model_00000004.bin");
    CHECK(test_util::contains(run.output, format("final val loss %.6f", end["val_loss"].get<double>())));

    // Two runs get two ids.
    REQUIRE(test_util::run_command(trainer() + shakespeare_flags() + kTinyRun + " -x 1 -v 0 -m 1 -s 0 -o " + dir / "two").exit_code == 0);
    CHECK(test_util::read_jsonl(dir / "two/log.jsonl").front()["run_id"] != log.front()["run_id"]);
}

TEST_CASE("trainer: -x 0 evaluates without training data and writes the model it evaluated") {
    test_util::TempDir dir;
    const auto run = test_util::run_command(trainer() + " -j " + test_util::data_path("tinyshakespeare/tiny_shakespeare_val.bin") +
                                            kTinyRun + " -x 0 -m 2 -o " + dir / "eval");
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    CHECK(records_of(test_util::read_jsonl(dir / "eval/log.jsonl"), "val").size() == 1);
    const LoadedModel written = load_model_file(dir / "eval/model_00000000.bin");
    CHECK(written.config.describe() == config_from_descriptor("d1").describe());
    CHECK(test_util::contains(run.output, "model: " + dir / "eval/model_00000000.bin"));
    // The model written is the one a fresh -e d1 starts from: evaluating it again gives the same loss.
    const auto again = test_util::run_command(trainer() + " -j " + test_util::data_path("tinyshakespeare/tiny_shakespeare_val.bin") +
                                              kTinyRun + " -x 0 -m 2 -e " + dir / "eval/model_00000000.bin -o " + dir / "again");
    REQUIRE_MESSAGE(again.exit_code == 0, again.output);
    CHECK(records_of(test_util::read_jsonl(dir / "again/log.jsonl"), "val")[0]["loss"] ==
          records_of(test_util::read_jsonl(dir / "eval/log.jsonl"), "val")[0]["loss"]);
}

TEST_CASE("trainer: --tokenizer bytes decodes a byte-level model's samples as text; build/tools/sample continues a prompt") {
    test_util::TempDir dir;
    const auto shards = test_util::run_command("build/tools/make_shards --tokenizer bytes --val-tokens 2000 --out-prefix " + dir / "bytes " +
                                               test_util::data_path("tinyshakespeare/input.txt"));
    REQUIRE_MESSAGE(shards.exit_code == 0, shards.output);
    const auto run = test_util::run_command(trainer() + " -i " + dir / "bytes_train.bin -j " + dir / "bytes_val.bin" +
                                            " -e d1 --vocab-size 256 -b 4 -t 16 -l 1e-2 --threads 2 -x 2 -v 0 -m 1 -s 2 -g 12"
                                            " --tokenizer bytes -o " + dir / "run");
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    CHECK_FALSE(test_util::contains(run.output, "samples are shown as token ids"));
    const auto samples = records_of(test_util::read_jsonl(dir / "run/log.jsonl"), "sample");
    REQUIRE(samples.size() == 1);
    std::string bytes;
    for (const json& t : samples[0]["tokens"]) bytes += char(t.get<int>());
    CHECK(samples[0]["tokens"].size() == 12);
    // The text is the bytes themselves (where they are not UTF-8, the log holds U+FFFD in their place).
    CHECK((samples[0]["text"] == bytes || test_util::contains(samples[0]["text"].get<std::string>(), "\xEF\xBF\xBD")));

    // build/tools/sample continues a prompt from the run's newest checkpoint, with the run's tokenizer.
    const std::string sample = "build/tools/sample --threads 2 -e " + dir / "run";
    const auto greedy = test_util::run_command(sample + " --start 'ROMEO:' --top-k 1 --max-new-tokens 10 --num-samples 2");
    REQUIRE_MESSAGE(greedy.exit_code == 0, greedy.output);
    const std::string one = greedy.output.substr(0, greedy.output.find("\n---------------\n"));
    CHECK(one.rfind("ROMEO:", 0) == 0);
    CHECK(one.size() >= 6 + 10);   // 10 bytes after the prompt (more where U+FFFD stands in for a byte)
    CHECK(greedy.output == one + "\n---------------\n" + one + "\n---------------\n");  // top-k 1: the same twice
    const auto drawn = test_util::run_command(sample + " --start 'ROMEO:' --temperature 1.5 --top-k 0 --max-new-tokens 40 --seed 3");
    CHECK(drawn.exit_code == 0);
    CHECK(drawn.output != greedy.output);
    CHECK(drawn.output == test_util::run_command(sample + " --start 'ROMEO:' --temperature 1.5 --top-k 0 --max-new-tokens 40 --seed 3").output);
    const auto mismatch = test_util::run_command("build/tools/sample -e " + dir / "run/model_00000002.bin --tokenizer " +
                                                    test_util::data_path("gpt2/gpt2_tokenizer.bin") + " --start hi");
    CHECK(mismatch.exit_code == 1);
    CHECK(test_util::contains(mismatch.output, "error: --tokenizer " + test_util::data_path("gpt2/gpt2_tokenizer.bin") +
                                                      ": 50257 tokens, but " + dir / "run/model_00000002.bin has a vocabulary of 256"));
    const auto bad = test_util::run_command(sample + " --temperature 0");
    CHECK(test_util::contains(bad.output, "error: --temperature: expected a number from 0.001 to 100, got '0'"));
}
