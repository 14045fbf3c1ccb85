// Writes the fuzzers' seed inputs: small valid files of every format (made by the project's own
// writers, so they follow the formats as they change) and a few near misses, as <dir>/<target>/seed-*.
//
//   build/fuzz/make_seeds fuzz/corpus        refresh the committed seeds
//   (make fuzz runs it into build/fuzz/corpus/ before fuzzing)
//
// Built by g++ against build/libcoldstart.a (no sanitizers needed); not a fuzz target.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "config/config.h"
#include "config/flags.h"
#include "data/checkpoint.h"
#include "data/llmc_header.h"
#include "data/model_file.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "fuzz/fuzz_bodies.h"
#include "model/gpt2_config.h"
#include "optim/adamw.h"

using namespace coldstart;

namespace {

std::string g_dir;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
    make_directories(g_dir + "/" + target);
    File f(g_dir + "/" + target + "/" + name, "wb");
    f.write_all(bytes.data(), bytes.size());
    f.close();
}

std::string read_all(const std::string& path) {
    File f(path, "rb");
    std::string s(f.size(), '\0');
    f.read_exact(s.data(), s.size(), "contents");
    return s;
}

template <typename T>
std::string bytes_of(const T* p, size_t n) {
    return std::string(reinterpret_cast<const char*>(p), n * sizeof(T));
}

// A shard of the given tokens; header bytes 12..20 carry the fuzz body's loader settings (see
// fuzz::shards): B-1, T-1, vocab-1 (2 bytes), shuffle, seed, seek epoch, shard, batch.
std::string shard(const std::vector<uint16_t>& tokens, int B, int T, int vocab, int shuffle) {
    LlmcHeader header = new_llmc_header(kShardMagic, kShardVersion);
    header[2] = int32_t(tokens.size());
    uint8_t* settings = reinterpret_cast<uint8_t*>(header.data()) + 12;
    const uint8_t values[9] = {uint8_t(B - 1), uint8_t(T - 1), uint8_t((vocab - 1) & 0xff), uint8_t((vocab - 1) >> 8),
                               uint8_t(shuffle), 7, 1, 0, 1};
    std::memcpy(settings, values, sizeof values);
    return bytes_of(header.data(), header.size()) + bytes_of(tokens.data(), tokens.size());
}

void shard_seeds() {
    std::vector<uint16_t> tokens(41);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint16_t(i * 7 % 10);
    put("shards", "seed-valid", shard(tokens, 2, 4, 10, 0));
    put("shards", "seed-valid-shuffled", shard(tokens, 2, 4, 10, 1));
    put("shards", "seed-token-not-below-vocab", shard(tokens, 2, 4, 9, 0));
    put("shards", "seed-one-batch", shard(std::vector<uint16_t>(9, 3), 2, 4, 4, 0));
    put("shards", "seed-too-short-for-a-batch", shard(std::vector<uint16_t>(8, 3), 2, 4, 4, 0));
}

void model_seeds(const std::string& tmp) {
    const GPT2Config c = fuzz::state_file_model();
    std::vector<float> params(ParamLayout(c).total);
    init_parameters(params.data(), c, 1);
    save_model_file(tmp + "/m32.bin", c, params.data(), ModelDtype::fp32);
    save_model_file(tmp + "/m16.bin", c, params.data(), ModelDtype::bf16);
    put("model_file", "seed-fp32", read_all(tmp + "/m32.bin"));
    put("model_file", "seed-bf16", read_all(tmp + "/m16.bin"));
}

void state_seeds(const std::string& tmp) {
    const GPT2Config c = fuzz::state_file_model();
    const size_t n = ParamLayout(c).total;
    std::vector<float> params(n);
    init_parameters(params.data(), c, 1);
    AdamWCpu optimizer(OptimizerConfig{}, parameter_tensors(c));
    std::vector<float> grads(n, 0.01f);
    optimizer.step(params.data(), grads.data(), {1e-3f, 1.0f, 1});
    TrainingState state;
    state.step = 3;
    // The shape of what the trainer writes (train_gpt2.cu: run_identity, progress_to_json).
    state.run = {{"train-data", "data/*.bin"}, {"batch-size", 2}, {"seq-len", 4}, {"grad_accum", 1}, {"shuffle", 0},
                 {"seed", 42}, {"optimizer", "adamw"}, {"parameters", n}};
    state.progress = {{"optimizer_t", 3}, {"skipped", 0}, {"bad_in_row", 0}, {"loader", {0, 0, 2}},
                      {"sample_rng", {1, 2, 3, 4}}, {"log_bytes", 100}};
    make_directories(tmp + "/fp32");
    make_directories(tmp + "/bf16");
    write_checkpoint(tmp + "/fp32", c, params.data(), ModelDtype::fp32, state, optimizer);
    write_checkpoint(tmp + "/bf16", c, params.data(), ModelDtype::bf16, state, optimizer);
    put("state_file", "seed-fp32", read_all(checkpoint_files(tmp + "/fp32", 3).state));
    put("state_file", "seed-bf16-master-weights", read_all(checkpoint_files(tmp + "/bf16", 3).state));
}

// GPT-2's spelling of a byte in encoder.json and vocab.bpe (its byte-to-unicode table), as UTF-8.
std::string spell(const std::string& bytes) {
    std::string out;
    for (const unsigned char b : bytes) {
        int cp = b;
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
            cp = 256;
            for (int x = 0; x < b; ++x)
                if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) ++cp;
        }
        if (cp < 0x80) {
            out.push_back(char(cp));
        } else {
            out.push_back(char(0xC0 | (cp >> 6)));
            out.push_back(char(0x80 | (cp & 0x3F)));
        }
    }
    return out;
}

void tokenizer_seeds(const std::string& tmp) {
    // All 256 single bytes, a few merges ("hello", " world", "'s"), and the end-of-text token.
    nlohmann::json encoder = nlohmann::json::object();
    int id = 0;
    for (int b = 0; b < 256; ++b) encoder[spell(std::string(1, char(b)))] = id++;
    const std::vector<std::pair<std::string, std::string>> merges = {
        {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}, {" w", "or"}, {"l", "d"},
        {" wor", "ld"}, {"'", "s"}};
    std::string vocab_bpe = "#version: 0.2\n";
    for (const auto& [left, right] : merges) {
        encoder[spell(left + right)] = id++;
        vocab_bpe += spell(left) + " " + spell(right) + "\n";
    }
    encoder["<|endoftext|>"] = id++;
    const std::string encoder_json = encoder.dump();
    put("tokenizer_files", "seed-tiny", encoder_json + std::string(1, '\0') + vocab_bpe);
    put("tokenizer_files", "seed-crlf-no-version", encoder_json + std::string(1, '\0') + "h e\r\nl l\r\n");

    File(tmp + "/encoder.json", "wb").write_all(encoder_json.data(), encoder_json.size());
    File(tmp + "/vocab.bpe", "wb").write_all(vocab_bpe.data(), vocab_bpe.size());
    Tokenizer::from_files(tmp + "/encoder.json", tmp + "/vocab.bpe").save_llmc_binary(tmp + "/tok.bin");
    put("tokenizer_bin", "seed-tiny", read_all(tmp + "/tok.bin"));
}

void text_seeds() {
    const auto text = [](const std::string& s) { return std::string(1, '\0') + s; };
    put("tokenizer_text", "seed-english", text("Hello world, it's a test. We'll see: 1234567 apples!\n\n"));
    put("tokenizer_text", "seed-unicode",
        text("Ünïcödé \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \xd9\xa3\xd9\xa4 "
             "caf\xc3\xa9\t\r\n  x"));
    put("tokenizer_text", "seed-invalid-utf8", text("\xff\xfe\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 abc\xe6\x97"));
    put("tokenizer_text", "seed-whitespace", text("   \n\n\n    \t\t x  y   \u00a0\u3000z   "));
    put("tokenizer_text", "seed-contractions", text("don't I'm you're we've they'll he'd 's 't 'S 're's"));
    const int32_t ids[] = {15496, 995, 50256, 0, 50255, 11};
    put("tokenizer_text", "seed-ids", std::string(1, '\1') + bytes_of(ids, 6));
    const int32_t bad_ids[] = {15496, 50257, -1};
    put("tokenizer_text", "seed-ids-out-of-range", std::string(1, '\1') + bytes_of(bad_ids, 3));
}

void config_seeds() {
    put("json_config", "seed-defaults", config_to_json(Config{}).dump(2));
    put("json_config", "seed-small", R"({"lr": 0.001, "batch-size": 8, "schedule": "wsd", "seed": 7, "shuffle": 1})");
    put("json_config", "seed-unknown-key", R"({"lr": 0.001, "no-such-option": 1})");
    const auto argv = [](const std::vector<std::string>& args) {
        std::string s;
        for (size_t i = 0; i < args.size(); ++i) s += (i ? std::string(1, '\0') : std::string()) + args[i];
        return s;
    };
    put("command_line", "seed-llmc-flags",
        argv({"-i", "a.bin", "-j", "b.bin", "-e", "d4", "-b", "8", "-t", "64", "-l", "3e-4", "-u", "10", "-k", "wsd",
              "-q", "0.1", "-x", "100", "--seed", "5", "--shuffle", "1"}));
    put("command_line", "seed-long-flags", argv({"--batch-size=4", "--lr=1e-3", "--device", "cpu", "--eps=1e-6"}));
    put("command_line", "seed-config", argv({"--config", R"({"lr": 0.01, "seq-len": 32})", "-l", "0.02"}));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <corpus dir>   (writes <dir>/<target>/seed-*)\n", argv[0]);
        return 2;
    }
    try {
        g_dir = argv[1];
        char tmp_template[] = "/tmp/coldstart_seeds_XXXXXX";
        if (!mkdtemp(tmp_template)) fail("cannot create a temporary directory");
        const std::string tmp = tmp_template;
        shard_seeds();
        model_seeds(tmp);
        state_seeds(tmp);
        tokenizer_seeds(tmp);
        text_seeds();
        config_seeds();
        std::system(("rm -rf '" + tmp + "'").c_str());
    } catch (const Error& e) {
        std::fprintf(stderr, "make_seeds: %s\n", e.what());
        return 1;
    }
    return 0;
}
