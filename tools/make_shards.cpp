// make_shards: text files -> llm.c token shards (GPT-2 tokens, an end-of-text token before every document;
// or, with --tokenizer bytes, each byte a token: a 256-token vocabulary for small studies on a CPU).
//
// Reproduces llm.c's data preparation byte for byte: tinyshakespeare with --split-on '\n\n' --val-tokens
// 32768 gives tiny_shakespeare_{val,train}.bin, and the Gutenberg books in manifest.tsv's order with
// --val-every 25 give gutenberg_en_{val,train}.bin.
#include "common/error.h"
#include "data/llmc_header.h"
#include "data/shards.h"
#include "data/tokenizer.h"

#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "make_shards writes the host's integers as they are; llm.c's format is little-endian"
#endif

using namespace coldstart;

namespace {

constexpr size_t kMaxShardTokens = INT32_MAX;  // the header stores the count as int32
constexpr size_t kMaxTokenId = UINT16_MAX;     // tokens are stored as uint16
// Documents are encoded in parallel in batches of about this many bytes of text.
constexpr size_t kBatchBytes = size_t(32) << 20;

const char* const kUsage = R"(usage: make_shards --tokenizer DIR --out-prefix PATH/NAME [options] FILE...

Tokenizes text files with GPT-2's BPE and writes llm.c token shards: a header of 256 int32
(20240520, 1, token count, 0...) followed by the tokens as uint16. Every document is preceded
by the end-of-text token (50256).

  --tokenizer DIR        folder holding encoder.json and vocab.bpe; or `bytes`: every byte of the text is
                         a token (ids 0-255, no end-of-text token), for byte-level models (-e dN
                         --vocab-size 256)
  --out-prefix PATH/NAME writes PATH/NAME_val.bin and PATH/NAME_train.bin, or, when a split
                         exceeds one shard, PATH/NAME_train_000000.bin, PATH/NAME_train_000001.bin, ...
  --split-on SEP         also split each file into documents after every SEP (C escapes such as
                         \n, \t, \r, \\, \xHH are interpreted): "A\n\nB" -> "A\n\n", "B"
                         (default: each FILE is one document)
  --val-tokens N         the first N tokens of the stream are validation, the rest training
  --val-every K          documents K, 2K, 3K, ... (counting from 1) are validation
                         (default: no validation split)
  --shard-tokens M       at most M tokens per shard file (default 100000000, at most 2^31-1)
  --help                 this text

Example, reproducing llm.c's tinyshakespeare shards:
  make_shards --tokenizer gpt2 --split-on '\n\n' --val-tokens 32768 \
      --out-prefix out/tiny_shakespeare tinyshakespeare/input.txt
)";

struct Options {
    std::string tokenizer;
    std::string out_prefix;
    std::string separator;  // empty: every file is one document
    size_t val_tokens = 0;
    size_t val_every = 0;
    size_t shard_tokens = 100000000;
    std::vector<std::string> files;
};

size_t parse_count(const char* flag, const char* text, size_t min, size_t max) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (*text == '\0' || *end != '\0' || *text == '-' || errno == ERANGE || value < min || value > max)
        fail("%s: expected a whole number from %zu to %zu, got '%s'", flag, min, max, text);
    return size_t(value);
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// "\n\n" as typed in a shell (backslash, n) -> the two newline bytes.
std::string unescape(const std::string& text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\') {
            out.push_back(text[i]);
            continue;
        }
        const char c = ++i < text.size() ? text[i] : '\0';
        if (c == 'n') out.push_back('\n');
        else if (c == 't') out.push_back('\t');
        else if (c == 'r') out.push_back('\r');
        else if (c == '\\') out.push_back('\\');
        else if (c == 'x' && i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 && hex_digit(text[i + 2]) >= 0) {
            out.push_back(char(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2])));
            i += 2;
        } else {
            fail("--split-on: unknown escape in '%s'; expected \\n, \\t, \\r, \\\\ or \\xHH", text.c_str());
        }
    }
    return out;
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        }
        if (arg.rfind("--", 0) != 0) {
            o.files.push_back(arg);
            continue;
        }
        if (i + 1 >= argc) fail("%s needs a value (see --help)", arg.c_str());
        const char* value = argv[++i];
        if (arg == "--tokenizer") o.tokenizer = value;
        else if (arg == "--out-prefix") o.out_prefix = value;
        else if (arg == "--split-on") o.separator = unescape(value);
        else if (arg == "--val-tokens") o.val_tokens = parse_count("--val-tokens", value, 1, SIZE_MAX);
        else if (arg == "--val-every") o.val_every = parse_count("--val-every", value, 1, SIZE_MAX);
        else if (arg == "--shard-tokens") o.shard_tokens = parse_count("--shard-tokens", value, 1, kMaxShardTokens);
        else fail("unknown option %s (see --help)", arg.c_str());
    }
    if (o.tokenizer.empty()) fail("--tokenizer is required: the folder holding encoder.json and vocab.bpe, or bytes");
    if (o.out_prefix.empty()) fail("--out-prefix is required, e.g. out/tiny_shakespeare");
    if (o.files.empty()) fail("no input files given (see --help)");
    if (o.val_tokens && o.val_every) fail("--val-tokens and --val-every exclude each other; give one");
    return o;
}

// Pieces that each end with the separator, as llm.c's text.replace(sep, sep + "<|endoftext|>") cuts the
// text: "A\n\nB" -> "A\n\n", "B"; a text ending in the separator gives a last, empty document.
std::vector<std::string_view> split_documents(std::string_view text, const std::string& separator) {
    if (separator.empty()) return {text};
    std::vector<std::string_view> documents;
    size_t start = 0;
    for (size_t found; (found = text.find(separator, start)) != std::string_view::npos;) {
        documents.push_back(text.substr(start, found + separator.size() - start));
        start = found + separator.size();
    }
    documents.push_back(text.substr(start));
    return documents;
}


// Collects one split's tokens and writes them as shards of at most shard_tokens each. The first file's
// name depends on whether a second will follow (NAME_val.bin vs NAME_val_000000.bin), so up to one
// shard's tokens wait in memory until that is known.
class ShardWriter {
public:
    ShardWriter(std::string path_stem, size_t shard_tokens) : stem_(std::move(path_stem)), shard_tokens_(shard_tokens) {}

    void append(const int* tokens, size_t n) {
        for (size_t i = 0; i < n; ++i) {
            if (tokens[i] < 0 || size_t(tokens[i]) > kMaxTokenId)
                fail("%s: token id %d does not fit llm.c's uint16 shards (at most %zu)", stem_.c_str(), tokens[i],
                     kMaxTokenId);
            pending_.push_back(uint16_t(tokens[i]));
        }
        total_ += n;
        while (pending_.size() > shard_tokens_) {  // another shard will follow this one
            write_shard(numbered_path(), pending_.data(), shard_tokens_);
            pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(shard_tokens_));
        }
    }

    // Writes what is left; an empty split writes nothing.
    void finish() {
        if (pending_.empty()) return;
        write_shard(shards_written_ == 0 ? stem_ + ".bin" : numbered_path(), pending_.data(), pending_.size());
        pending_.clear();
    }

    size_t total_tokens() const { return total_; }

private:
    std::string numbered_path() const { return stem_ + format("_%06d.bin", shards_written_); }

    void write_shard(const std::string& path, const uint16_t* tokens, size_t n) {
        LlmcHeader header = new_llmc_header(kShardMagic, kShardVersion);
        header[2] = int32_t(n);
        write_atomically(path, [&](File& f) {
            f.write_all(header.data(), kLlmcHeaderBytes);
            f.write_all(tokens, n * sizeof(uint16_t));
        });
        ++shards_written_;
        std::printf("wrote %s: %zu tokens\n", path.c_str(), n);
    }

    std::string stem_;
    size_t shard_tokens_;
    std::vector<uint16_t> pending_;
    size_t total_ = 0;
    int shards_written_ = 0;
};

// Sends each document's tokens to the validation or the training writer, as the options say.
class SplitRouter {
public:
    SplitRouter(const Options& o, ShardWriter& val, ShardWriter& train) : options_(o), val_(val), train_(train) {}

    void route(const std::vector<int>& tokens) {
        const size_t document = documents_++;
        if (options_.val_every) {
            ShardWriter& writer = document % options_.val_every == options_.val_every - 1 ? val_ : train_;
            writer.append(tokens.data(), tokens.size());
            return;
        }
        const size_t val_room = options_.val_tokens - std::min(options_.val_tokens, val_.total_tokens());
        const size_t to_val = std::min(val_room, tokens.size());
        val_.append(tokens.data(), to_val);
        train_.append(tokens.data() + to_val, tokens.size() - to_val);
    }

    size_t documents() const { return documents_; }

private:
    const Options& options_;
    ShardWriter& val_;
    ShardWriter& train_;
    size_t documents_ = 0;
};

// Encodes documents in parallel, each as [EOT] + its tokens (GPT-2), or each byte a token (the byte
// tokenizer has no end-of-text token), keeping their order. Each thread keeps its own cache across batches, since words repeat throughout a corpus.
class BatchEncoder {
public:
    explicit BatchEncoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer), caches_(omp_get_max_threads()) {}

    std::vector<std::vector<int>> encode(const std::vector<std::string_view>& documents) {
        std::vector<std::vector<int>> tokens(documents.size());
        std::exception_ptr error;  // exceptions cannot leave an OpenMP region, so the first is carried out
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t d = 0; d < documents.size(); ++d) {
            try {
                EncodeCache& cache = caches_[omp_get_thread_num()];
                if (tokenizer_.eot_token() >= 0) tokens[d].push_back(tokenizer_.eot_token());
                const std::vector<int> body = tokenizer_.encode(documents[d], cache);
                tokens[d].insert(tokens[d].end(), body.begin(), body.end());
            } catch (...) {
#pragma omp critical
                if (!error) error = std::current_exception();
            }
        }
        if (error) std::rethrow_exception(error);
        return tokens;
    }

private:
    const Tokenizer& tokenizer_;
    std::vector<EncodeCache> caches_;
};

void make_shards(const Options& options) {
    const Tokenizer tokenizer = Tokenizer::load(options.tokenizer);
    if (!tokenizer.can_encode())
        fail("--tokenizer %s can only decode; encoding needs a folder with encoder.json and vocab.bpe",
             options.tokenizer.c_str());
    const std::string prefix = options.out_prefix;
    const size_t slash = prefix.rfind('/');
    if (slash != std::string::npos) make_directories(prefix.substr(0, slash));

    ShardWriter val(prefix + "_val", options.shard_tokens), train(prefix + "_train", options.shard_tokens);
    SplitRouter router(options, val, train);
    BatchEncoder encoder(tokenizer);
    std::deque<std::string> texts;  // the batch's files, which its documents point into (a deque never moves them)
    std::vector<std::string_view> documents;
    size_t batch_bytes = 0;
    const auto encode_batch = [&] {
        for (const std::vector<int>& tokens : encoder.encode(documents)) router.route(tokens);
        texts.clear(), documents.clear(), batch_bytes = 0;
    };
    for (const std::string& path : options.files) {
        texts.push_back(read_whole_file(path));
        for (std::string_view document : split_documents(texts.back(), options.separator)) documents.push_back(document);
        batch_bytes += texts.back().size();
        if (batch_bytes >= kBatchBytes) encode_batch();
    }
    encode_batch();

    if (options.val_tokens && val.total_tokens() < options.val_tokens)
        fail("--val-tokens %zu: the input has only %zu tokens", options.val_tokens, val.total_tokens());
    if (train.total_tokens() == 0) fail("no tokens left for training after the validation split");
    val.finish();
    train.finish();
    std::printf("%zu documents from %zu files: %zu val tokens, %zu train tokens\n", router.documents(),
                options.files.size(), val.total_tokens(), train.total_tokens());
}

}  // namespace

int main(int argc, char** argv) {
    try {
        make_shards(parse_options(argc, argv));
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
