// Fuzz regressions: every file of fuzz/corpus/<target>/ (the seeds, and each input a fuzzer found that
// crashed or misbehaved, kept under a name saying what it exercises) goes through the same body the
// libFuzzer target runs (fuzz/fuzz_bodies.h). Each must either be read or be rejected with a
// coldstart::Error; any other exception (including fuzz::Broken, a violated property of a successful
// read) fails the test and names the file. Under `make test-asan` the same replay runs with
// AddressSanitizer and UBSan, which catch the out-of-bounds reads a plain build would miss.
#include <doctest/doctest.h>

#include <dirent.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.h"
#include "fuzz/fuzz_bodies.h"
#include "test/test_util.h"

namespace {

// The files of fuzz/corpus/<target>/ (the suite runs from the repository root), sorted by name.
std::vector<std::string> corpus_files(const std::string& target) {
    const std::string dir = "fuzz/corpus/" + target;
    std::vector<std::string> files;
    DIR* d = opendir(dir.c_str());
    if (!d) return files;
    while (const dirent* e = readdir(d))
        if (e->d_name[0] != '.') files.push_back(dir + "/" + e->d_name);
    closedir(d);
    std::sort(files.begin(), files.end());
    return files;
}

void replay(const std::string& name) {
    const fuzz::Target* target = nullptr;
    for (const fuzz::Target& t : fuzz::targets())
        if (t.name == name) target = &t;
    REQUIRE(target != nullptr);
    const std::vector<std::string> files = corpus_files(name);
    const std::string where = "fuzz/corpus/" + name + "/";
    REQUIRE_MESSAGE(!files.empty(), std::string(where + " must hold the seeds (build/fuzz/make_seeds fuzz/corpus)"));
    int read = 0, rejected = 0;
    for (const std::string& file : files) {
        const std::vector<char> bytes = test_util::read_bytes(file);
        const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
        try {
            target->body(data, bytes.size());
            ++read;
        } catch (const coldstart::Error&) {
            ++rejected;
        } catch (const std::exception& e) {
            FAIL_CHECK(std::string(file + ": threw something other than coldstart::Error: " + e.what()));
        } catch (...) {
            FAIL_CHECK(std::string(file + ": threw something other than a std::exception"));
        }
    }
    // The valid seeds still read: the replay is not vacuous.
    CHECK_MESSAGE(read > 0, std::string(where + ": none read, " + std::to_string(rejected) + " rejected"));
}

}  // namespace

TEST_CASE("fuzz regressions: shards (read_shard_header, DataLoader)") { replay("shards"); }
TEST_CASE("fuzz regressions: model_file (load_model_file)") { replay("model_file"); }
TEST_CASE("fuzz regressions: state_file (read_state_file)") { replay("state_file"); }
TEST_CASE("fuzz regressions: tokenizer_bin (Tokenizer::from_llmc_binary)") { replay("tokenizer_bin"); }
TEST_CASE("fuzz regressions: tokenizer_files (Tokenizer::from_files)") { replay("tokenizer_files"); }
TEST_CASE("fuzz regressions: tokenizer_text (Tokenizer::encode, decode)") {
    test_util::data_path("gpt2/vocab.bpe");  // names the missing data folder instead of failing each input
    replay("tokenizer_text");
}
TEST_CASE("fuzz regressions: json_config (load_json_config_file)") { replay("json_config"); }
TEST_CASE("fuzz regressions: command_line (parse_command_line)") { replay("command_line"); }
