// The bodies of the fuzz targets, shared by the libFuzzer binaries (fuzz/<target>.cpp, built by clang++
// with `make fuzz`) and by the regression test (test/test_fuzz_regressions.cpp, built by the normal
// suite), which replays every file of fuzz/corpus/<target>/ through the same function.
//
// Each body takes arbitrary bytes, turns them into the file(s) a reader expects, and calls the reader.
// The contract every reader must keep on hostile input:
//   - it returns normally, or throws coldstart::Error (a one-line message naming the file and field);
//   - nothing else: no other exception (std::length_error, nlohmann::json's, ...), no crash, no hang,
//     no out-of-bounds access (the fuzzers run under AddressSanitizer and UBSan), and no allocation
//     that the file's size does not justify (libFuzzer's -rss_limit_mb / -malloc_limit_mb catch those).
// Where a reader succeeds, the body also checks what the result must satisfy (sizes agree with the file,
// ids in range, decode(encode(text)) == text, ...) and throws fuzz::Broken when it does not; Broken is not
// a coldstart::Error, so the fuzzer reports it as a crash and the regression test fails on it.
//
// Header-only (inline) so that both compilers build it without a library of its own.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"
#include "config/config.h"
#include "config/flags.h"
#include "data/checkpoint.h"
#include "data/llmc_header.h"
#include "data/model_file.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "model/gpt2_config.h"
#include "optim/adamw.h"

namespace fuzz {

// A property a successful read must have does not hold.
struct Broken : std::logic_error {
    explicit Broken(const std::string& what) : std::logic_error(what) {}
};

inline void require(bool ok, const std::string& what) {
    if (!ok) throw Broken(what);
}

// ---- scratch files -----------------------------------------------------------------------------------

// One file of this process, created once with mkstemp (under /dev/shm when it is writable, else $TMPDIR or
// /tmp) and rewritten by each write(); removed when the process exits normally.
class ScratchFile {
public:
    explicit ScratchFile(const char* tag) {
        const char* tmpdir = std::getenv("TMPDIR");
        const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (tmpdir && *tmpdir ? tmpdir : "/tmp");
        std::string name = dir + "/coldstart-fuzz-" + tag + "-XXXXXX";
        const int fd = mkstemp(name.data());
        if (fd < 0) {
            std::perror(("fuzz: mkstemp " + name).c_str());
            std::abort();
        }
        close(fd);
        path_ = name;
    }
    ~ScratchFile() {
        unlink(path_.c_str());
        unlink((path_ + ".tmp").c_str());
    }
    ScratchFile(const ScratchFile&) = delete;
    ScratchFile& operator=(const ScratchFile&) = delete;

    const std::string& write(const void* data, size_t size) {
        FILE* f = std::fopen(path_.c_str(), "wb");
        if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
            std::perror(("fuzz: cannot write " + path_).c_str());
            std::abort();
        }
        return path_;
    }
    const std::string& write(std::string_view bytes) { return write(bytes.data(), bytes.size()); }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// scratch(0), scratch(1), scratch(2): the process's scratch files (a body needs at most three).
inline ScratchFile& scratch(int slot) {
    static ScratchFile files[3] = {ScratchFile("a"), ScratchFile("b"), ScratchFile("c")};
    return files[slot];
}

// The input split at its first 0 byte: (before, after). No 0 byte: (everything, "").
inline std::pair<std::string_view, std::string_view> split_at_zero(const uint8_t* data, size_t size) {
    const std::string_view all(reinterpret_cast<const char*>(data), size);
    const size_t zero = all.find('\0');
    if (zero == std::string_view::npos) return {all, std::string_view()};
    return {all.substr(0, zero), all.substr(zero + 1)};
}

// The shared data folder: $COLDSTART_DATA, default ../shared/data (relative to the repository root).
inline std::string data_dir() {
    const char* env = std::getenv("COLDSTART_DATA");
    return env && *env ? env : "../shared/data";
}

// ---- token shards: read_shard_header and DataLoader ------------------------------------------------------

// The input is a shard file. The reader ignores header ints 3..255, so bytes 12..20 of the input choose
// the loader's settings: B (1-4), T (1-8), vocab size (1-65536), shuffle, seed, and a position to seek to.
inline void shards(const uint8_t* data, size_t size) {
    const std::string& path = scratch(0).write(data, size);
    const coldstart::ShardInfo info = coldstart::read_shard_header(path);
    require(info.num_tokens > 0 && coldstart::kLlmcHeaderBytes + 2 * info.num_tokens == size,
            "read_shard_header accepted a token count that does not match the file size");

    const int B = 1 + data[12] % 4, T = 1 + data[13] % 8;
    const int vocab = 1 + (data[14] | data[15] << 8);
    const bool shuffle = data[16] & 1;
    const uint64_t seed = data[17];
    coldstart::DataLoader loader(path, "-i", B, T, vocab, shuffle, seed);
    const size_t n = size_t(B) * size_t(T);
    require(loader.batches_per_epoch() >= 1 && loader.batches_per_epoch() <= (info.num_tokens - 1) / n,
            "DataLoader: batches per epoch do not fit the shard");
    // Two epochs and a bit, so the epoch change (and its reshuffle) is crossed.
    const size_t batches = std::min<size_t>(2 * loader.batches_per_epoch() + 1, 64);
    for (size_t k = 0; k < batches; ++k) {
        loader.next_batch();
        for (size_t i = 0; i < n; ++i) {
            require(loader.inputs()[i] >= 0 && loader.inputs()[i] < vocab, "DataLoader: input id out of range");
            require(loader.targets()[i] >= 0 && loader.targets()[i] < vocab, "DataLoader: target id out of range");
            if (i + 1 < n)
                require(loader.targets()[i] == loader.inputs()[i + 1], "DataLoader: targets are not shifted inputs");
        }
    }
    // A position from the input: out-of-range ones must throw Error, in-range ones must serve a batch.
    loader.seek({uint64_t(data[18] % 4), uint64_t(data[19] % 2), uint64_t(data[20])});
    loader.next_batch();
    loader.reset();
    loader.next_batch();
}

// ---- llm.c model files --------------------------------------------------------------------------------

// The parameter count of a config in exact arithmetic (no size_t wrap-around), the way ParamLayout
// computes it.
inline unsigned __int128 exact_parameter_count(const coldstart::GPT2Config& c) {
    using u128 = unsigned __int128;
    const u128 C = u128(c.channels), L = u128(c.num_layers);
    return u128(c.padded_vocab_size) * C + u128(c.max_seq_len) * C + L * (12 * C * C + 13 * C) + 2 * C;
}

inline void model_file(const uint8_t* data, size_t size) {
    const std::string& path = scratch(0).write(data, size);
    const coldstart::LoadedModel m = coldstart::load_model_file(path);
    const unsigned __int128 exact = exact_parameter_count(m.config);
    require(exact == m.params.size(), "load_model_file returned " + std::to_string(m.params.size()) +
                                          " parameters for a config (" + m.config.describe() + ") that has more");
    const size_t elem = m.stored_as == coldstart::ModelDtype::fp32 ? 4 : 2;
    require(coldstart::kLlmcHeaderBytes + m.params.size() * elem == size, "load_model_file accepted a file of the wrong size");
}

// ---- state files (checkpoints) ----------------------------------------------------------------------------

// The model the state-file fuzzer's files belong to (make_seeds writes its seeds for the same config).
inline coldstart::GPT2Config state_file_model() {
    coldstart::GPT2Config c;
    c.max_seq_len = 4;
    c.vocab_size = 5;
    c.padded_vocab_size = 8;
    c.num_layers = 1;
    c.num_heads = 1;
    c.channels = 2;
    return c;
}

inline void state_file(const uint8_t* data, size_t size) {
    const std::string& path = scratch(0).write(data, size);
    const coldstart::GPT2Config config = state_file_model();
    const size_t num_params = coldstart::ParamLayout(config).total;
    coldstart::AdamWCpu optimizer(coldstart::OptimizerConfig{}, coldstart::parameter_tensors(config));
    std::vector<float> master;
    const coldstart::TrainingState state = coldstart::read_state_file(path, num_params, optimizer, master);
    require(master.empty() || master.size() == num_params, "read_state_file: master weights of the wrong size");
    (void)state;
}

// ---- tokenizers -------------------------------------------------------------------------------------------

// Ids in [0, vocab) decode; the ids just outside throw Error; encoding round-trips where possible.
inline void check_decoding(const coldstart::Tokenizer& t) {
    const int vocab = t.vocab_size();
    require(vocab > 0 && t.eot_token() >= 0 && t.eot_token() < vocab, "tokenizer: vocab size or eot out of range");
    for (int id = 0; id < vocab && id < 4096; ++id) (void)t.decode_token(id);
    for (const int bad : {-1, vocab}) {
        bool threw = false;
        try {
            (void)t.decode({bad});
        } catch (const coldstart::Error&) {
            threw = true;
        }
        require(threw, "tokenizer: decoding id " + std::to_string(bad) + " did not throw");
    }
}

inline void check_round_trip(const coldstart::Tokenizer& t, std::string_view text) {
    const std::vector<int> ids = t.encode(text);
    for (const int id : ids) require(id >= 0 && id < t.vocab_size(), "tokenizer: encode produced an id out of range");
    require(t.decode(ids) == text, "tokenizer: decode(encode(text)) != text");
}

// The input is llm.c's tokenizer file. A successful load must decode, refuse to encode, and save back
// to the same bytes (header ints 4..255 are not kept: they are written as 0).
inline void tokenizer_bin(const uint8_t* data, size_t size) {
    const std::string& path = scratch(0).write(data, size);
    const coldstart::Tokenizer t = coldstart::Tokenizer::from_llmc_binary(path);
    check_decoding(t);
    require(!t.can_encode(), "tokenizer_bin: a decode-only tokenizer claims it can encode");
    t.save_llmc_binary(scratch(1).path());
    std::string expected(reinterpret_cast<const char*>(data), size);
    std::memset(&expected[16], 0, 1024 - 16);
    FILE* f = std::fopen(scratch(1).path().c_str(), "rb");
    require(f != nullptr, "tokenizer_bin: save_llmc_binary wrote no file");
    std::string saved(size + 1, '\0');
    const size_t got = std::fread(saved.data(), 1, saved.size(), f);
    std::fclose(f);
    saved.resize(got);
    require(saved == expected, "tokenizer_bin: save_llmc_binary(from_llmc_binary(file)) differs from the file");
}

// The input is encoder.json, a 0 byte, then vocab.bpe. A successful load must round-trip some text.
inline void tokenizer_files(const uint8_t* data, size_t size) {
    const auto [encoder_json, vocab_bpe] = split_at_zero(data, size);
    const std::string& encoder_path = scratch(0).write(encoder_json);
    const std::string& vocab_path = scratch(1).write(vocab_bpe);
    const coldstart::Tokenizer t = coldstart::Tokenizer::from_files(encoder_path, vocab_path);
    check_decoding(t);
    require(t.can_encode(), "tokenizer_files: a tokenizer from encoder.json and vocab.bpe cannot encode");
    check_round_trip(t, "Hello world, it's 2024!\n\n  don't\xff\xfe \xe6\x97\xa5\xe6\x9c\xac");
    check_round_trip(t, vocab_bpe.substr(0, 256));
}

// The real GPT-2 tokenizer, both forms, loaded once from the shared data folder.
struct Gpt2Tokenizers {
    coldstart::Tokenizer full, decode_only;
    coldstart::EncodeCache cache;  // shared across inputs, as the encoder of make_shards shares one
};
inline Gpt2Tokenizers& gpt2_tokenizers() {
    static Gpt2Tokenizers t{
        coldstart::Tokenizer::from_files(data_dir() + "/gpt2/encoder.json", data_dir() + "/gpt2/vocab.bpe"),
        coldstart::Tokenizer::from_llmc_binary(data_dir() + "/gpt2/gpt2_tokenizer.bin"), {}};
    return t;
}

// Arbitrary bytes through the real GPT-2 tokenizer. First byte even: the rest is text, which must
// round-trip, encode the same with and without the cache, and decode the same with llm.c's table.
// Odd: the rest is little-endian int32 ids (any value), which must decode the same with both forms or
// throw Error with both.
inline void tokenizer_text(const uint8_t* data, size_t size) {
    if (size == 0) return;
    Gpt2Tokenizers& t = gpt2_tokenizers();
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] % 2 == 0) {
        const std::vector<int> ids = t.full.encode(rest);
        require(ids == t.full.encode(rest, t.cache), "tokenizer_text: encode with a cache differs from without");
        for (const int id : ids) require(id >= 0 && id < 50257, "tokenizer_text: encode produced an id out of range");
        require(t.full.decode(ids) == rest, "tokenizer_text: decode(encode(text)) != text");
        require(t.decode_only.decode(ids) == rest, "tokenizer_text: llm.c's table decodes differently");
        return;
    }
    std::vector<int> ids(rest.size() / 4);
    if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
    std::string full, table;
    bool full_threw = false, table_threw = false;
    try {
        full = t.full.decode(ids);
    } catch (const coldstart::Error&) {
        full_threw = true;
    }
    try {
        table = t.decode_only.decode(ids);
    } catch (const coldstart::Error&) {
        table_threw = true;
    }
    require(full_threw == table_threw && full == table, "tokenizer_text: the two forms decode differently");
}

// ---- configuration: JSON config file and command line ---------------------------------------------------

// Options that parsed must be writable as config.json (the trainer writes config_to_json(config).dump(2))
// and must read back from it to the same options (the README: config.json repeats the run).
inline void check_config_reads_back(const coldstart::Config& config) {
    const nlohmann::json written = coldstart::config_to_json(config);
    std::string text;
    try {
        text = written.dump(2);
    } catch (const nlohmann::json::exception& e) {
        throw Broken(std::string("accepted options that config.json cannot hold (the trainer's dump(2) throws): ") +
                     e.what());
    }
    coldstart::Config again;
    coldstart::apply_json_config(nlohmann::json::parse(text), "config.json", again);
    const nlohmann::json rewritten = coldstart::config_to_json(again);
    if (rewritten != written)
        throw Broken("config.json does not read back to the same options: wrote " + text + ", read back " +
                     rewritten.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

inline void json_config(const uint8_t* data, size_t size) {
    const std::string& path = scratch(0).write(data, size);
    coldstart::Config config;
    coldstart::load_json_config_file(path, config);
    check_config_reads_back(config);
}

// The input split at 0 bytes is argv[1..]. The argument after each "--config" is not a path but the
// file's contents: it is written to a scratch file and replaced by that file's path (so the fuzzer never
// opens files of its own choosing). "--help" prints to stdout and returns help_shown.
inline void command_line(const uint8_t* data, size_t size) {
    std::vector<std::string> args{"train_gpt2"};
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    while (!rest.empty() && args.size() < 256) {
        const size_t zero = rest.find('\0');
        args.emplace_back(rest.substr(0, zero));
        rest = zero == std::string_view::npos ? std::string_view() : rest.substr(zero + 1);
    }
    int config_files = 0;
    for (size_t i = 1; i + 1 < args.size(); ++i) {
        if (args[i] != "--config") continue;
        if (config_files == 3) {
            args[i + 1] = scratch(2).path();
            continue;
        }
        args[i + 1] = scratch(config_files++).write(args[i + 1]);
    }
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    coldstart::Config config;
    if (coldstart::parse_command_line(int(argv.size()), argv.data(), config) == coldstart::ParseOutcome::run)
        check_config_reads_back(config);
}

// ---- the table both drivers use ---------------------------------------------------------------------------

struct Target {
    const char* name;  // also the folder fuzz/corpus/<name>/ and the binary build/fuzz/<name>
    void (*body)(const uint8_t* data, size_t size);
};

inline const std::vector<Target>& targets() {
    static const std::vector<Target> table = {
        {"shards", shards},
        {"model_file", model_file},
        {"state_file", state_file},
        {"tokenizer_bin", tokenizer_bin},
        {"tokenizer_files", tokenizer_files},
        {"tokenizer_text", tokenizer_text},
        {"json_config", json_config},
        {"command_line", command_line},
    };
    return table;
}

// libFuzzer's entry, for fuzz/<target>.cpp: coldstart::Error is the expected outcome of bad input;
// anything else is reported with its message and aborts, which libFuzzer records as a crash.
inline int run_one(void (*body)(const uint8_t*, size_t), const uint8_t* data, size_t size) {
    try {
        body(data, size);
    } catch (const coldstart::Error&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nfuzz: not a coldstart::Error: %s\n", e.what());
        std::abort();
    }
    return 0;
}

}  // namespace fuzz
