// The GPT-2 tokenizer and make_shards: golden encodings from an independent encoder, round trips over
// arbitrary bytes, llm.c's decode table, byte-identical tinyshakespeare shards, and the error messages.
#include "common/error.h"
#include "data/tokenizer.h"
#include "test/test_util.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>

using coldstart::Tokenizer;

namespace {

const Tokenizer& gpt2() {
    static const Tokenizer tokenizer =
        Tokenizer::from_files(test_util::data_path("gpt2/encoder.json"), test_util::data_path("gpt2/vocab.bpe"));
    return tokenizer;
}

struct GoldenEncoding {
    std::string text;
    std::vector<int> ids;
};

std::vector<GoldenEncoding> golden_encodings() {
    const std::vector<char> bytes = test_util::read_bytes(test_util::data_path("gpt2/golden_encodings.json"));
    std::vector<GoldenEncoding> cases;
    for (const auto& entry : nlohmann::json::parse(bytes.begin(), bytes.end()))
        cases.push_back({entry.at("text").get<std::string>(), entry.at("ids").get<std::vector<int>>()});
    return cases;
}



std::string tools_dir() {
    const char* dir = std::getenv("COLDSTART_TOOLS_DIR");
    return dir && *dir ? dir : "build/tools";
}

// Runs build/tools/make_shards (or $COLDSTART_TOOLS_DIR's) with the given arguments.
test_util::CommandResult run_make_shards(const std::string& arguments) {
    const std::string tool = tools_dir() + "/make_shards";
    REQUIRE_MESSAGE(coldstart::file_exists(tool), tool << " is missing: build the tools first (or set COLDSTART_TOOLS_DIR)");
    return test_util::run_command(tool + " " + arguments);
}

// Random strings mixing the cases the pre-tokenizer distinguishes: ASCII letters, digits, spaces and
// punctuation, contractions, multi-byte UTF-8 (letters, numbers, spaces, symbols) and arbitrary bytes,
// which are often invalid UTF-8 (stray continuation bytes, cut-off sequences, 0xFF).
std::string random_text(std::mt19937& rng) {
    static const char* const fragments[] = {
        "a", "Z", "q", "7", "42", " ", "  ", "\n", "\n\n", "\t", "\r\n", "'s", "'ll", "'", "!", "...", "-",
        "\xc3\xa9",           // é
        "\xe4\xb8\xad",       // 中
        "\xd9\xa3",           // Arabic-Indic digit three
        "\xc2\xa0",           // no-break space
        "\xe3\x80\x80",       // ideographic space
        "\xc2\x85",           // next line (White_Space, not JavaScript's \s)
        "\xf0\x9f\x98\x80",   // emoji
        "\xe2\x80\x8b",       // zero-width space (not white space)
    };
    const size_t fragment_count = sizeof fragments / sizeof fragments[0];
    std::string text;
    const int pieces = int(rng() % 24);
    for (int i = 0; i < pieces; ++i) {
        if (rng() % 4 == 0) text.push_back(char(rng() % 256));
        else text += fragments[rng() % fragment_count];
    }
    return text;
}

// The token ids in an llm.c shard, after checking its header.
std::vector<uint16_t> shard_tokens(const std::string& path) {
    const std::vector<char> bytes = test_util::read_bytes(path);
    REQUIRE_MESSAGE(bytes.size() >= 1024, path << " is shorter than a header");
    int32_t header[3];
    std::memcpy(header, bytes.data(), sizeof header);
    CHECK(header[0] == 20240520);
    CHECK(header[1] == 1);
    std::vector<uint16_t> tokens((bytes.size() - 1024) / 2);
    CHECK(size_t(header[2]) == tokens.size());
    std::memcpy(tokens.data(), bytes.data() + 1024, tokens.size() * 2);
    return tokens;
}

// A copy of gpt2_tokenizer.bin's bytes with the header int32 at index field set to value.
std::vector<char> llmc_table_with_header(int field, int32_t value) {
    std::vector<char> bytes = test_util::read_bytes(test_util::data_path("gpt2/gpt2_tokenizer.bin"));
    std::memcpy(bytes.data() + field * 4, &value, 4);
    return bytes;
}

}  // namespace

TEST_CASE("tokenizer: all golden encodings are reproduced exactly") {
    const std::vector<GoldenEncoding> cases = golden_encodings();
    CHECK(cases.size() == 75);
    for (const GoldenEncoding& c : cases) CHECK_MESSAGE(gpt2().encode(c.text) == c.ids, "text: " << c.text);
}

TEST_CASE("tokenizer: the end-of-text text is plain text, and the vocabulary's shape") {
    CHECK(gpt2().vocab_size() == 50257);
    CHECK(gpt2().eot_token() == 50256);
    CHECK(gpt2().decode_token(50256) == "<|endoftext|>");
    const std::vector<int> tokens = gpt2().encode("<|endoftext|>");
    CHECK(tokens.size() > 1);
    CHECK(std::find(tokens.begin(), tokens.end(), 50256) == tokens.end());
}

TEST_CASE("tokenizer: decode(encode(x)) == x for the golden strings and random bytes") {
    for (const GoldenEncoding& c : golden_encodings())
        CHECK_MESSAGE(gpt2().decode(gpt2().encode(c.text)) == c.text, "text: " << c.text);

    std::mt19937 rng(1234);
    coldstart::EncodeCache shared_cache;
    for (int i = 0; i < 3000; ++i) {
        const std::string text = random_text(rng);
        const std::vector<int> tokens = gpt2().encode(text);
        CHECK_MESSAGE(gpt2().decode(tokens) == text, "random string #" << i);
        // A cache carried over from other strings must not change the result.
        CHECK_MESSAGE(gpt2().encode(text, shared_cache) == tokens, "random string #" << i);
    }
}

TEST_CASE("tokenizer: invalid UTF-8 bytes are neither letters nor spaces, and decode back") {
    const std::string text = "ab\xff\xfe cd\xe4\xb8 \x80\xed\xa0\x80";  // 0xFF, cut-off sequence, surrogate
    CHECK(gpt2().decode(gpt2().encode(text)) == text);

    const std::vector<int> lone_byte = gpt2().encode("\xff");
    REQUIRE(lone_byte.size() == 1);
    CHECK(gpt2().decode_token(lone_byte[0]) == "\xff");
    // A cut-off CJK character and overlong spellings of "A" (2 and 3 bytes) count as punctuation, so the
    // apostrophe after them joins their piece instead of starting the contraction "'s". Decoded
    // leniently, the overlong ones would be letters, and "'s" would be one token.
    for (const std::string bad : {"\xe4\xb8", "\xc1\x81", "\xe0\x81\x81"}) {
        std::vector<int> pieces;
        for (const std::string& piece : {std::string("x"), bad + "'", std::string("s")})
            for (const int token : gpt2().encode(piece)) pieces.push_back(token);
        CHECK_MESSAGE(gpt2().encode("x" + bad + "'s") == pieces, "bytes: " << bad);
    }
}

TEST_CASE("tokenizer: llm.c's gpt2_tokenizer.bin decodes every token like encoder.json") {
    const Tokenizer table = Tokenizer::from_llmc_binary(test_util::data_path("gpt2/gpt2_tokenizer.bin"));
    REQUIRE(table.vocab_size() == gpt2().vocab_size());
    CHECK(table.eot_token() == gpt2().eot_token());
    CHECK_FALSE(table.can_encode());
    int mismatches = 0;
    for (int id = 0; id < table.vocab_size(); ++id) {
        if (table.decode_token(id) != gpt2().decode_token(id) && ++mismatches <= 5) FAIL_CHECK("token " << id << " differs");
    }
    CHECK(mismatches == 0);
}

TEST_CASE("tokenizer: save_llmc_binary reproduces gpt2_tokenizer.bin byte for byte") {
    test_util::TempDir dir;
    gpt2().save_llmc_binary(dir / "saved.bin");
    CHECK(test_util::read_bytes(dir / "saved.bin") == test_util::read_bytes(test_util::data_path("gpt2/gpt2_tokenizer.bin")));
    CHECK_FALSE(coldstart::file_exists(dir / "saved.bin.tmp"));
}

TEST_CASE("tokenizer: load accepts a folder of OpenAI's files or llm.c's file") {
    const Tokenizer from_folder = Tokenizer::load(test_util::data_path("gpt2"));
    CHECK(from_folder.encode("Hello world") == std::vector<int>{15496, 995});
    const Tokenizer from_bin = Tokenizer::load(test_util::data_path("gpt2/gpt2_tokenizer.bin"));
    CHECK(from_bin.decode({15496, 995}) == "Hello world");
}

TEST_CASE("tokenizer: make_shards re-tokenizes tinyshakespeare byte-identically to the shipped shards") {
    test_util::TempDir dir;
    const test_util::CommandResult result = run_make_shards(
        "--tokenizer " + test_util::data_path("gpt2") + " --split-on '\\n\\n' --val-tokens 32768 --out-prefix " +
        (dir / "out/tiny_shakespeare") + " " + test_util::data_path("tinyshakespeare/input.txt"));
    REQUIRE_MESSAGE(result.exit_code == 0, result.output);
    CHECK(test_util::contains(result.output, "tiny_shakespeare_val.bin: 32768 tokens"));
    CHECK(test_util::contains(result.output, "tiny_shakespeare_train.bin: 305260 tokens"));
    for (const char* split : {"val", "train"}) {
        const std::string name = std::string("tiny_shakespeare_") + split + ".bin";
        CHECK_MESSAGE(test_util::read_bytes(dir / ("out/" + name)) ==
                          test_util::read_bytes(test_util::data_path("tinyshakespeare/" + name)),
                      name << " differs from the shipped file");
    }
}

TEST_CASE("tokenizer: make_shards numbers shards past --shard-tokens and splits with --val-every") {
    test_util::TempDir dir;
    const std::string text = "One.\n\nTwo two.\n\nThree three three.\n\n";  // ends in the separator
    const size_t shard_size = 6;
    test_util::write_bytes(dir / "a.txt", text.data(), text.size());
    const test_util::CommandResult result =
        run_make_shards("--tokenizer " + test_util::data_path("gpt2") + " --split-on '\\n\\n' --val-every 2" +
                        " --shard-tokens " + std::to_string(shard_size) + " --out-prefix " + (dir / "x") + " " + (dir / "a.txt"));
    REQUIRE_MESSAGE(result.exit_code == 0, result.output);

    // Documents: "One.\n\n", "Two two.\n\n", "Three three three.\n\n" and the empty one after the last
    // separator; the 2nd and 4th are validation.
    const int eot = gpt2().eot_token();
    std::vector<int> train{eot}, val{eot};
    for (int t : gpt2().encode("One.\n\n")) train.push_back(t);
    for (int t : gpt2().encode("Two two.\n\n")) val.push_back(t);
    train.push_back(eot);
    for (int t : gpt2().encode("Three three three.\n\n")) train.push_back(t);
    val.push_back(eot);
    REQUIRE(train.size() > shard_size);  // so the training split needs numbered shards
    REQUIRE(val.size() <= shard_size);

    const std::vector<uint16_t> val_file = shard_tokens(dir / "x_val.bin");
    CHECK(std::vector<int>(val_file.begin(), val_file.end()) == val);
    std::vector<int> train_files;
    for (size_t shard = 0; shard * shard_size < train.size(); ++shard) {
        const std::vector<uint16_t> tokens = shard_tokens(dir / coldstart::format("x_train_%06zu.bin", shard));
        CHECK(tokens.size() == std::min(shard_size, train.size() - shard * shard_size));
        train_files.insert(train_files.end(), tokens.begin(), tokens.end());
    }
    CHECK(train_files == train);
    CHECK_FALSE(coldstart::file_exists(dir / "x_train.bin"));
}

TEST_CASE("tokenizer: make_shards --tokenizer bytes makes every byte a token; a byte-level model trains on it") {
    test_util::TempDir dir;
    const char raw[] = "To be, or not to be:\n\xc3\xa9t\xc3\xa9\x00\xff that is the question.\n";
    const std::string text(raw, sizeof(raw) - 1);  // with its NUL byte
    test_util::write_bytes(dir / "a.txt", text.data(), text.size());
    const test_util::CommandResult result =
        run_make_shards("--tokenizer bytes --val-tokens 10 --out-prefix " + (dir / "b") + " " + (dir / "a.txt"));
    REQUIRE_MESSAGE(result.exit_code == 0, result.output);
    std::vector<int> tokens;
    for (const char* split : {"val", "train"})
        for (uint16_t t : shard_tokens(dir / (std::string("b_") + split + ".bin"))) tokens.push_back(t);
    std::vector<int> bytes;
    for (unsigned char c : text) bytes.push_back(c);
    CHECK(tokens == bytes);  // no end-of-text token, every byte as it is (0 and 255 too)
    CHECK(shard_tokens(dir / "b_val.bin").size() == 10);

    // A descriptor with --vocab-size 256 is a byte-level model; the data's ids must fit its vocabulary.
    const auto run = test_util::run_command(test_util::trainer() + " -i " + dir / "b_train.bin -e d1 --vocab-size 256 -b 1 -t 8 -x 2 -s 0 --threads 1");
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    CHECK(test_util::contains(run.output, "L=1 NH=1 C=64 maxT=1024 V=256 Vp=256"));
    const auto too_small = test_util::run_command(test_util::trainer() + " -i " + dir / "b_train.bin -e d1 --vocab-size 200 -b 1 -t 8 -x 2 -s 0");
    CHECK(too_small.exit_code == 1);
    CHECK(test_util::contains(too_small.output, "which is not below the vocab size 200"));
    const auto file_model = test_util::run_command(test_util::trainer() + " -i " + dir / "b_train.bin -e " + dir / "a.txt --vocab-size 256");
    CHECK(file_model.exit_code == 1);
    CHECK(test_util::contains(file_model.output, "--vocab-size 256: applies to a descriptor (-e dN)"));
}

TEST_CASE("tokenizer: make_shards reports bad usage as one error line and exit status 1") {
    test_util::TempDir dir;
    const test_util::CommandResult missing_input = run_make_shards(
        "--tokenizer " + test_util::data_path("gpt2") + " --out-prefix " + (dir / "x") + " " + (dir / "nope.txt"));
    CHECK(missing_input.exit_code == 1);
    CHECK_MESSAGE(test_util::contains(missing_input.output, "error: cannot open " + (dir / "nope.txt")), missing_input.output);

    const test_util::CommandResult decode_only =
        run_make_shards("--tokenizer " + test_util::data_path("gpt2/gpt2_tokenizer.bin") + " --out-prefix " +
                        (dir / "x") + " " + test_util::data_path("tinyshakespeare/input.txt"));
    CHECK(decode_only.exit_code == 1);
    CHECK_MESSAGE(test_util::contains(decode_only.output, "encoder.json and vocab.bpe"), decode_only.output);

    const test_util::CommandResult bad_count = run_make_shards("--tokenizer x --out-prefix y --shard-tokens 0 z");
    CHECK(bad_count.exit_code == 1);
    CHECK_MESSAGE(test_util::contains(bad_count.output, "error: --shard-tokens"), bad_count.output);
}

TEST_CASE("tokenizer: errors name the file or token id and what was expected") {
    test_util::TempDir dir;
    const std::string vocab_bpe = test_util::data_path("gpt2/vocab.bpe");

    SUBCASE("missing encoder.json") {
        const std::string message = test_util::error_of([&] { Tokenizer::load(dir.path); });
        CHECK_MESSAGE(test_util::contains(message, dir / "encoder.json"), message);
        CHECK_MESSAGE(test_util::contains(message, "cannot open"), message);
    }
    SUBCASE("malformed encoder.json") {
        const std::string bad = "{\"a\": 0, \"b\": ";
        test_util::write_bytes(dir / "encoder.json", bad.data(), bad.size());
        const std::string message = test_util::error_of([&] { Tokenizer::from_files(dir / "encoder.json", vocab_bpe); });
        CHECK_MESSAGE(test_util::contains(message, dir / "encoder.json"), message);
        CHECK_MESSAGE(test_util::contains(message, "malformed JSON"), message);
    }
    SUBCASE("llm.c file with a wrong magic number") {
        const std::vector<char> bytes = llmc_table_with_header(0, 12345);
        test_util::write_bytes(dir / "t.bin", bytes.data(), bytes.size());
        const std::string message = test_util::error_of([&] { Tokenizer::from_llmc_binary(dir / "t.bin"); });
        CHECK_MESSAGE(test_util::contains(message, dir / "t.bin"), message);
        CHECK_MESSAGE(test_util::contains(message, "magic number 12345, expected 20240328"), message);
    }
    SUBCASE("llm.c file with a wrong version") {
        const std::vector<char> bytes = llmc_table_with_header(1, 3);
        test_util::write_bytes(dir / "t.bin", bytes.data(), bytes.size());
        const std::string message = test_util::error_of([&] { Tokenizer::load(dir / "t.bin"); });
        CHECK_MESSAGE(test_util::contains(message, dir / "t.bin"), message);
        CHECK_MESSAGE(test_util::contains(message, "version 3 is not supported, expected 2"), message);
    }
    SUBCASE("truncated llm.c file") {
        const std::vector<char> bytes = test_util::read_bytes(test_util::data_path("gpt2/gpt2_tokenizer.bin"));
        test_util::write_bytes(dir / "t.bin", bytes.data(), bytes.size() - 3);
        const std::string message = test_util::error_of([&] { Tokenizer::from_llmc_binary(dir / "t.bin"); });
        CHECK_MESSAGE(test_util::contains(message, dir / "t.bin"), message);
        CHECK_MESSAGE(test_util::contains(message, "truncated"), message);
        CHECK_MESSAGE(test_util::contains(message, "token 50256"), message);
    }
    SUBCASE("decoding an id outside the vocabulary") {
        for (const int id : {50257, -1}) {
            const std::string message = test_util::error_of([&] { gpt2().decode({15496, id}); });
            CHECK_MESSAGE(test_util::contains(message, "token id " + std::to_string(id) + " is out of range"), message);
            CHECK_MESSAGE(test_util::contains(message, "ids 0 to 50256"), message);
        }
    }
    SUBCASE("encoding with a decode-only tokenizer") {
        const std::string bin = test_util::data_path("gpt2/gpt2_tokenizer.bin");
        const Tokenizer table = Tokenizer::from_llmc_binary(bin);
        const std::string message = test_util::error_of([&] { table.encode("hello"); });
        CHECK_MESSAGE(test_util::contains(message, bin), message);
        CHECK_MESSAGE(test_util::contains(message, "encoding needs encoder.json and vocab.bpe"), message);
    }
}
