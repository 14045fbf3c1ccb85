#include "data/tokenizer.h"
#include "data/llmc_header.h"

#include "common/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <sys/stat.h>

namespace coldstart {

namespace {

constexpr int32_t kLlmcTokenizerMagic = 20240328;
constexpr int32_t kLlmcTokenizerVersion = 2;
// Beyond this many distinct pieces the cache starts over, so memory stays bounded on huge corpora.
constexpr size_t kMaxCachedPieces = size_t(1) << 20;

// ---- Unicode classes -------------------------------------------------------------------------------

struct CodePointRange {
    char32_t first, last;
};
#include "data/unicode_tables.inc"

enum class CharClass : uint8_t { Letter, Number, Space, Other };

// Marks a byte that does not start a valid UTF-8 sequence: it is in no class but Other.
constexpr char32_t kNotACodePoint = 0x110000;

template <size_t N>
bool in_ranges(const CodePointRange (&table)[N], char32_t cp) {
    const CodePointRange* after = std::upper_bound(std::begin(table), std::end(table), cp,
                                                   [](char32_t c, const CodePointRange& r) { return c < r.first; });
    return after != std::begin(table) && cp <= (after - 1)->last;
}

CharClass classify(char32_t cp) {
    if (cp < 0x80) {  // the common case, without a table search
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::Letter;
        if (cp >= '0' && cp <= '9') return CharClass::Number;
        if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return CharClass::Space;
        return CharClass::Other;
    }
    if (in_ranges(kLetterRanges, cp)) return CharClass::Letter;
    if (in_ranges(kNumberRanges, cp)) return CharClass::Number;
    if (in_ranges(kWhiteSpaceRanges, cp)) return CharClass::Space;
    return CharClass::Other;
}

struct DecodedChar {
    char32_t value;
    size_t length;
};

// Decodes the UTF-8 sequence starting at s[i]. Anything but a well-formed sequence (stray continuation
// byte, overlong form, surrogate, above U+10FFFF, cut short) yields kNotACodePoint for the one byte s[i].
DecodedChar decode_utf8_char(std::string_view s, size_t i) {
    const unsigned char lead = static_cast<unsigned char>(s[i]);
    if (lead < 0x80) return {lead, 1};
    const DecodedChar invalid{kNotACodePoint, 1};
    size_t length;
    char32_t value;
    unsigned char second_min = 0x80, second_max = 0xBF;  // narrower after some leads (RFC 3629's table)
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2, value = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3, value = lead & 0x0F;
        if (lead == 0xE0) second_min = 0xA0;  // no overlong forms
        if (lead == 0xED) second_max = 0x9F;  // no surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4, value = lead & 0x07;
        if (lead == 0xF0) second_min = 0x90;  // no overlong forms
        if (lead == 0xF4) second_max = 0x8F;  // nothing above U+10FFFF
    } else {
        return invalid;
    }
    if (i + length > s.size()) return invalid;
    for (size_t k = 1; k < length; ++k) {
        const unsigned char b = static_cast<unsigned char>(s[i + k]);
        const unsigned char lo = k == 1 ? second_min : 0x80, hi = k == 1 ? second_max : 0xBF;
        if (b < lo || b > hi) return invalid;
        value = value << 6 | (b & 0x3F);
    }
    return {value, length};
}

// ---- Pre-tokenization ------------------------------------------------------------------------------

// The text as code points: each one's value and class, and the byte offset where it starts (offset has
// one more entry, the text's length).
struct CodePoints {
    explicit CodePoints(std::string_view text) {
        value.reserve(text.size());
        cls.reserve(text.size());
        offset.reserve(text.size() + 1);
        for (size_t i = 0; i < text.size();) {
            const DecodedChar c = decode_utf8_char(text, i);
            value.push_back(c.value);
            cls.push_back(classify(c.value));
            offset.push_back(i);
            i += c.length;
        }
        offset.push_back(text.size());
    }
    size_t size() const { return value.size(); }

    std::vector<char32_t> value;
    std::vector<CharClass> cls;
    std::vector<size_t> offset;
};

// 's 't 're 've 'm 'll 'd (lowercase only, as in the pattern) starting at i: their end, else i.
size_t contraction_end(const CodePoints& cps, size_t i) {
    if (cps.value[i] != '\'') return i;
    const auto at = [&](size_t k) { return i + k < cps.size() ? cps.value[i + k] : 0; };
    const char32_t a = at(1), b = at(2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return i;
}

size_t class_run_end(const CodePoints& cps, size_t i) {
    const CharClass cls = cps.cls[i];
    while (i < cps.size() && cps.cls[i] == cls) ++i;
    return i;
}

// The end of the piece that GPT-2's pattern matches at code point i, taking the alternatives in order.
size_t piece_end(const CodePoints& cps, size_t i) {
    const size_t contraction = contraction_end(cps, i);
    if (contraction != i) return contraction;
    // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional U+0020, then a run of one non-space class.
    const bool space_prefix = cps.value[i] == ' ' && i + 1 < cps.size() && cps.cls[i + 1] != CharClass::Space;
    const size_t run_start = space_prefix ? i + 1 : i;
    if (cps.cls[run_start] != CharClass::Space) return class_run_end(cps, run_start);
    // "\s+(?!\S)" backs off one code point from a whitespace run followed by non-space, leaving that
    // last whitespace (typically a space) to prefix the next word. A run of one such code point cannot
    // back off, so "\s+" takes it. At the end of the text the whole run goes.
    const size_t run_end = class_run_end(cps, i);
    if (run_end == cps.size() || run_end - i == 1) return run_end;
    return run_end - 1;
}

// ---- GPT-2's byte-to-unicode alphabet --------------------------------------------------------------

// encoder.json and vocab.bpe write each byte as one code point: printable bytes (33-126, 161-172,
// 174-255) as themselves, the remaining 68 as U+0100, U+0101, ... in byte order. Indexed by code point:
// the byte it stands for, or -1.
std::vector<int> unicode_to_byte_table() {
    std::vector<int> table(256 + 68, -1);
    int next_stand_in = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        table[printable ? b : next_stand_in++] = b;
    }
    return table;
}

// A token as spelled in encoder.json or vocab.bpe -> its raw bytes. The file's name is for the error.
std::string spelled_token_to_bytes(std::string_view spelled, const std::string& path) {
    static const std::vector<int> to_byte = unicode_to_byte_table();
    std::string bytes;
    for (size_t i = 0; i < spelled.size();) {
        const DecodedChar c = decode_utf8_char(spelled, i);
        if (c.value >= to_byte.size() || to_byte[c.value] < 0)
            fail("%s: token \"%.*s\" has a character outside GPT-2's byte-to-unicode alphabet", path.c_str(),
                 int(spelled.size()), spelled.data());
        bytes.push_back(char(to_byte[c.value]));
        i += c.length;
    }
    return bytes;
}


}  // namespace

// ---- Loading ---------------------------------------------------------------------------------------

Tokenizer Tokenizer::from_files(const std::string& encoder_json, const std::string& vocab_bpe) {
    Tokenizer t;
    t.source_ = encoder_json;
    t.load_encoder_json(encoder_json);
    t.load_merges(vocab_bpe);
    return t;
}

void Tokenizer::load_encoder_json(const std::string& path) {
    nlohmann::json encoder;
    try {
        encoder = nlohmann::json::parse(read_whole_file(path));
    } catch (const nlohmann::json::exception& e) {
        fail("%s: malformed JSON: %s", path.c_str(), e.what());
    }
    if (!encoder.is_object() || encoder.empty())
        fail("%s: expected a JSON object mapping each token to its id", path.c_str());
    const size_t vocab = encoder.size();
    token_bytes_.assign(vocab, std::string());
    std::vector<bool> seen(vocab, false);
    for (const auto& [spelled, id_json] : encoder.items()) {
        if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 || id_json.get<int64_t>() >= int64_t(vocab))
            fail("%s: token \"%s\" has id %s; expected an integer in [0, %zu)", path.c_str(), spelled.c_str(),
                 id_json.dump().c_str(), vocab);
        const int id = id_json.get<int>();
        if (seen[id]) fail("%s: id %d is given to more than one token", path.c_str(), id);
        seen[id] = true;
        token_bytes_[id] = spelled_token_to_bytes(spelled, path);
        if (spelled == "<|endoftext|>") eot_token_ = id;
    }
    if (eot_token_ < 0) fail("%s: no \"<|endoftext|>\" token", path.c_str());
}

void Tokenizer::load_merges(const std::string& path) {
    std::unordered_map<std::string, int> id_of_bytes;
    for (int id = 0; id < vocab_size(); ++id) id_of_bytes.emplace(token_bytes_[id], id);
    for (int b = 0; b < 256; ++b) {
        const auto it = id_of_bytes.find(std::string(1, char(b)));
        if (it == id_of_bytes.end()) fail("%s: no token for the single byte 0x%02x", source_.c_str(), b);
        byte_token_[b] = it->second;
    }
    const auto id_of = [&](const std::string& bytes, size_t line_number, const char* what) {
        const auto it = id_of_bytes.find(bytes);
        if (it == id_of_bytes.end())
            fail("%s line %zu: the %s is not a token of %s", path.c_str(), line_number, what, source_.c_str());
        return it->second;
    };

    const std::string text = read_whole_file(path);
    size_t line_number = 0;
    for (size_t start = 0; start < text.size();) {
        const size_t newline = std::min(text.find('\n', start), text.size());
        std::string_view line(text.data() + start, newline - start);
        start = newline + 1;
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty() || line.rfind("#version", 0) == 0) continue;
        const size_t space = line.find(' ');
        if (space == 0 || space == std::string_view::npos || space + 1 == line.size() ||
            line.find(' ', space + 1) != std::string_view::npos)
            fail("%s line %zu: expected two tokens separated by one space, got \"%.*s\"", path.c_str(), line_number,
                 int(line.size()), line.data());
        const std::string left = spelled_token_to_bytes(line.substr(0, space), path);
        const std::string right = spelled_token_to_bytes(line.substr(space + 1), path);
        const Merge merge{int(merges_.size()), id_of(left + right, line_number, "merged pair")};
        merges_.emplace(pair_key(id_of(left, line_number, "left part"), id_of(right, line_number, "right part")),
                        merge);
    }
    if (merges_.empty()) fail("%s: no merges found; expected lines of two tokens", path.c_str());
}

Tokenizer Tokenizer::from_llmc_binary(const std::string& path) {
    File f(path, "rb");
    const LlmcHeader header = read_llmc_header(f, "llm.c tokenizer file", kLlmcTokenizerMagic, {kLlmcTokenizerVersion});
    const int vocab = header[2], eot = header[3];
    if (vocab <= 0) fail("%s: vocabulary size %d, expected a positive number", path.c_str(), vocab);
    if (eot < 0 || eot >= vocab)
        fail("%s: end-of-text token %d, expected an id in [0, %d)", path.c_str(), eot, vocab);
    if (size_t(vocab) > (f.size() - kLlmcHeaderBytes) / 2)  // before allocating: each token takes >= 2 bytes
        fail("%s: vocabulary size %d needs at least %zu bytes after the header, the file has %zu", path.c_str(),
             vocab, 2 * size_t(vocab), f.size() - kLlmcHeaderBytes);

    Tokenizer t;
    t.source_ = path;
    t.eot_token_ = eot;
    t.token_bytes_.resize(vocab);
    for (int id = 0; id < vocab; ++id) {
        uint8_t length;
        f.read_exact(&length, 1, format("the length of token %d", id).c_str());
        if (length == 0) fail("%s: token %d has length 0, expected 1 to 255 bytes", path.c_str(), id);
        t.token_bytes_[id].resize(length);
        f.read_exact(t.token_bytes_[id].data(), length, format("the bytes of token %d", id).c_str());
    }
    const long position = ftell(f.get());
    const size_t extra = f.size() - size_t(position);
    if (extra != 0) fail("%s: %zu unexpected bytes after the last of %d tokens", path.c_str(), extra, vocab);
    return t;
}

Tokenizer Tokenizer::bytes() {
    Tokenizer t;
    t.source_ = "bytes";
    t.byte_level_ = true;
    for (int b = 0; b < 256; ++b) {
        t.token_bytes_.push_back(std::string(1, char(b)));
        t.byte_token_[size_t(b)] = b;
    }
    return t;
}

Tokenizer Tokenizer::load(const std::string& path) {
    if (path == "bytes") return bytes();
    struct stat st;
    if (stat(path.c_str(), &st) != 0)
        fail("tokenizer %s does not exist: expected a directory with encoder.json and vocab.bpe, or llm.c's "
             "tokenizer file (gpt2_tokenizer.bin)",
             path.c_str());
    if (S_ISDIR(st.st_mode)) return from_files(path + "/encoder.json", path + "/vocab.bpe");
    return from_llmc_binary(path);
}

void Tokenizer::save_llmc_binary(const std::string& path) const {
    LlmcHeader header = new_llmc_header(kLlmcTokenizerMagic, kLlmcTokenizerVersion);
    header[2] = vocab_size();
    header[3] = eot_token_;
    std::string contents(reinterpret_cast<const char*>(header.data()), kLlmcHeaderBytes);
    for (int id = 0; id < vocab_size(); ++id) {
        const std::string& bytes = token_bytes_[id];
        if (bytes.empty() || bytes.size() > 255)
            fail("cannot save %s: token %d has %zu bytes, llm.c's format holds 1 to 255", path.c_str(), id,
                 bytes.size());
        contents.push_back(char(uint8_t(bytes.size())));
        contents += bytes;
    }
    write_atomically(path, [&](File& f) { f.write_all(contents.data(), contents.size()); });
}

// ---- Encoding --------------------------------------------------------------------------------------

void Tokenizer::require_encoding() const {
    if (!can_encode())
        fail("tokenizer %s can only decode (llm.c's format holds no merges): encoding needs encoder.json and "
             "vocab.bpe",
             source_.c_str());
}

std::vector<int> Tokenizer::encode(std::string_view utf8_text) const {
    EncodeCache cache;
    return encode(utf8_text, cache);
}

std::vector<int> Tokenizer::encode(std::string_view utf8_text, EncodeCache& cache) const {
    require_encoding();
    if (byte_level_) {
        std::vector<int> tokens;
        for (const char c : utf8_text) tokens.push_back(static_cast<unsigned char>(c));
        return tokens;
    }
    const CodePoints cps(utf8_text);
    std::vector<int> tokens;
    tokens.reserve(utf8_text.size() / 3);  // English runs at about four bytes per token
    std::string key;                       // reused so cache lookups do not allocate
    for (size_t i = 0; i < cps.size();) {
        const size_t end = piece_end(cps, i);
        append_piece_tokens(utf8_text.substr(cps.offset[i], cps.offset[end] - cps.offset[i]), cache, key, tokens);
        i = end;
    }
    return tokens;
}

void Tokenizer::append_piece_tokens(std::string_view piece, EncodeCache& cache, std::string& key,
                                    std::vector<int>& out) const {
    if (piece.size() == 1) {
        out.push_back(byte_token_[static_cast<unsigned char>(piece[0])]);
        return;
    }
    key.assign(piece);
    auto it = cache.tokens_of_piece.find(key);
    if (it == cache.tokens_of_piece.end()) {
        if (cache.tokens_of_piece.size() >= kMaxCachedPieces) cache.tokens_of_piece.clear();
        it = cache.tokens_of_piece.emplace(key, byte_pair_merge(piece)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
}

// GPT-2's merge loop: find the adjacent pair with the lowest rank and merge all its occurrences, left to
// right without overlap ("aaa" with pair "a a" -> "aa a"); repeat until no adjacent pair has a rank.
// Quadratic in the piece's length, which is fine for words; a huge unbroken run of letters is slow.
std::vector<int> Tokenizer::byte_pair_merge(std::string_view piece) const {
    std::vector<int> parts(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) parts[i] = byte_token_[static_cast<unsigned char>(piece[i])];
    while (parts.size() > 1) {
        const Merge* best = nullptr;
        int best_left = 0, best_right = 0;
        for (size_t i = 0; i + 1 < parts.size(); ++i) {
            const auto it = merges_.find(pair_key(parts[i], parts[i + 1]));
            if (it != merges_.end() && (!best || it->second.rank < best->rank)) {
                best = &it->second;
                best_left = parts[i], best_right = parts[i + 1];
            }
        }
        if (!best) break;
        size_t kept = 0;
        for (size_t i = 0; i < parts.size(); ++i) {
            const bool merge_here = i + 1 < parts.size() && parts[i] == best_left && parts[i + 1] == best_right;
            parts[kept++] = merge_here ? best->result : parts[i];
            if (merge_here) ++i;
        }
        parts.resize(kept);
    }
    return parts;
}

// ---- Decoding --------------------------------------------------------------------------------------

const std::string& Tokenizer::decode_token(int token) const {
    if (token < 0 || token >= vocab_size())
        fail("token id %d is out of range: tokenizer %s has %d tokens (ids 0 to %d)", token, source_.c_str(),
             vocab_size(), vocab_size() - 1);
    return token_bytes_[token];
}

std::string Tokenizer::decode(const std::vector<int>& tokens) const {
    std::string text;
    for (const int token : tokens) text += decode_token(token);
    return text;
}

int sample_start_token(const Tokenizer* tokenizer, int vocab_size) {
    if (!tokenizer) return vocab_size - 1;
    return tokenizer->eot_token() >= 0 ? tokenizer->eot_token() : '\n';
}

}  // namespace coldstart
