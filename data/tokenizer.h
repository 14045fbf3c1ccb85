// GPT-2's byte-level BPE tokenizer: encoding and decoding, token for token the same as OpenAI's GPT-2
// encoder and tiktoken's "gpt2" encoding (ordinary encoding: "<|endoftext|>" in text is plain text).
//
// Encoding has two stages:
//   1. Pre-tokenization splits the text into pieces with GPT-2's pattern
//          's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      matched by hand over Unicode code points (classes from data/unicode_tables.inc). A byte that is not
//      part of valid UTF-8 counts as a code point of its own that is neither letter, number nor space, so
//      any byte string encodes, and decode(encode(bytes)) == bytes.
//   2. Each piece's bytes start as one token per byte; then the adjacent pair with the lowest merge rank
//      (its line in vocab.bpe) is merged, everywhere in the piece, until no pair has a rank.
//
// Tokens are byte strings. encoder.json spells them with GPT-2's byte-to-unicode mapping (printable bytes
// stand for themselves, the others for code points 256 and up); they are stored here as raw bytes.
//
// The byte tokenizer (`--tokenizer bytes`, as make_shards writes byte-level shards): token i is byte i,
// 256 tokens, no merges and no end-of-text token.
//
// llm.c's tokenizer file (version 2) holds only the decode table: a header of 256 int32 ([0] = 20240328,
// [1] = 2, [2] = vocab size, [3] = end-of-text token), then per token a uint8 length and its bytes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace coldstart {

// The tokens of pieces already encoded. Text repeats its words, so reusing one cache across many calls
// (documents) skips most of the BPE work. Not thread-safe: give each thread its own.
struct EncodeCache {
    std::unordered_map<std::string, std::vector<int>> tokens_of_piece;
};

class Tokenizer {
public:
    // Full tokenizer from OpenAI's files. Errors name the file (and the line of vocab.bpe).
    static Tokenizer from_files(const std::string& encoder_json, const std::string& vocab_bpe);
    // Decode-only tokenizer from llm.c's gpt2_tokenizer.bin; encode() on it throws.
    static Tokenizer from_llmc_binary(const std::string& path);
    static Tokenizer bytes();
    // "bytes", a directory holding encoder.json and vocab.bpe, or an llm.c tokenizer file.
    static Tokenizer load(const std::string& path);

    bool can_encode() const { return byte_level_ || !merges_.empty(); }
    std::vector<int> encode(std::string_view utf8_text) const;
    // The same, reusing cache across calls; much faster over many short documents.
    std::vector<int> encode(std::string_view utf8_text, EncodeCache& cache) const;

    // Decoding concatenates the tokens' bytes, which need not be valid UTF-8 on their own. An id outside
    // [0, vocab_size) throws, naming the id.
    std::string decode(const std::vector<int>& tokens) const;
    const std::string& decode_token(int token) const;

    int eot_token() const { return eot_token_; }  // -1: none (the byte tokenizer)
    int vocab_size() const { return int(token_bytes_.size()); }

    // Writes llm.c's decode table (version 2) atomically.
    void save_llmc_binary(const std::string& path) const;

private:
    struct Merge {
        int rank;    // line order in vocab.bpe: lower merges first
        int result;  // the token the pair becomes
    };
    static uint64_t pair_key(int left, int right) { return uint64_t(uint32_t(left)) << 32 | uint32_t(right); }

    void load_encoder_json(const std::string& path);
    void load_merges(const std::string& path);
    void require_encoding() const;
    void append_piece_tokens(std::string_view piece, EncodeCache& cache, std::string& key,
                             std::vector<int>& out) const;
    std::vector<int> byte_pair_merge(std::string_view piece) const;

    std::string source_;                     // where the tokenizer came from, for error messages
    std::vector<std::string> token_bytes_;   // (vocab_size) the bytes of each token id
    int eot_token_ = -1;
    bool byte_level_ = false;                // the byte tokenizer: every byte is its own token
    // Encoding only (empty when loaded from llm.c's file):
    std::array<int, 256> byte_token_{};      // the single-byte token of each byte value
    std::unordered_map<uint64_t, Merge> merges_;  // by pair_key(left token, right token)
};

// The token a text sample starts after: the tokenizer's end-of-text token (as llm.c does), a newline for
// the byte tokenizer, which has none, and the last id when there is no tokenizer.
int sample_start_token(const Tokenizer* tokenizer, int vocab_size);

}  // namespace coldstart
