#include "data/shards.h"

#include "data/llmc_header.h"

#include "common/error.h"
#include "common/random.h"

#include <algorithm>
#include <cinttypes>
#include <glob.h>

namespace coldstart {

// Shards are little-endian and read straight into uint16/int32 buffers.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards are read as little-endian");

namespace {

uint64_t mix(uint64_t x) { return Rng::splitmix64(x); }

// An independent generator for each (seed, epoch, stream), so any epoch's permutations can be rebuilt
// directly when resuming. Stream 0 orders the shards; stream 1+s orders the batches of shard s. Rng is
// defined bit for bit (unlike std::shuffle), so a seed gives the same order with every standard library.
Rng rng_for(uint64_t seed, uint64_t epoch, uint64_t stream) { return Rng(mix(mix(mix(seed) ^ epoch) ^ stream)); }

// 0..n-1, Fisher-Yates shuffled when rng is given.
std::vector<size_t> order_of(size_t n, Rng* rng) {
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    if (rng)
        for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng->below(i)]);
    return order;
}

void check_arguments(int B, int T, int vocab_size, int process_rank, int num_processes) {
    if (B <= 0 || T <= 0) fail("data loader: B and T must be positive, got B=%d T=%d", B, T);
    if (vocab_size <= 0) fail("data loader: vocab size must be positive, got %d", vocab_size);
    if (num_processes <= 0 || process_rank < 0 || process_rank >= num_processes)
        fail("data loader: process rank %d is not in [0, %d)", process_rank, num_processes);
}

// One pass over the shard in 2 MB reads; fails at the first token id >= vocab_size.
void check_token_ids(const ShardInfo& shard, int vocab_size) {
    constexpr size_t kChunkTokens = size_t(1) << 20;
    File file(shard.path, "rb");
    file.seek(kLlmcHeaderBytes);
    std::vector<uint16_t> chunk(std::min(kChunkTokens, shard.num_tokens));  // (chunk tokens)
    for (size_t start = 0; start < shard.num_tokens; start += chunk.size()) {
        const size_t n = std::min(chunk.size(), shard.num_tokens - start);
        file.read_exact(chunk.data(), n * sizeof(uint16_t), "tokens");
        // The max is a branch-free reduction the compiler vectorizes; only a bad chunk is searched.
        uint16_t largest = 0;
        for (size_t i = 0; i < n; ++i) largest = std::max(largest, chunk[i]);
        if (largest < vocab_size) continue;
        const auto is_bad = [&](uint16_t token) { return token >= vocab_size; };
        const size_t bad = size_t(std::find_if(chunk.begin(), chunk.end(), is_bad) - chunk.begin());
        fail("%s: token %zu has id %d, which is not below the vocab size %d", shard.path.c_str(), start + bad,
             int(chunk[bad]), vocab_size);
    }
}

}  // namespace

ShardInfo read_shard_header(const std::string& path) {
    File file(path, "rb");
    const LlmcHeader header = read_llmc_header(file, "llm.c token shard", kShardMagic, {kShardVersion});
    if (header[2] <= 0) fail("%s: header field token count is %d, expected at least 1", path.c_str(), header[2]);

    const size_t num_tokens = size_t(header[2]);
    const size_t expected = kLlmcHeaderBytes + num_tokens * sizeof(uint16_t);
    const size_t found = file.size();
    if (found < expected)
        fail("%s: file is truncated: the header's token count %zu needs %zu bytes, found %zu", path.c_str(), num_tokens,
             expected, found);
    if (found > expected)
        fail("%s: file has %zu bytes, expected %zu for the header's token count %zu", path.c_str(), found, expected,
             num_tokens);
    return {path, num_tokens};
}

std::vector<std::string> expand_glob(const std::string& pattern, const char* flag_name) {
    glob_t matches;
    const int rc = glob(pattern.c_str(), 0, nullptr, &matches);
    if (rc != 0) {
        globfree(&matches);
        if (rc == GLOB_NOMATCH) fail("%s: no files match '%s'", flag_name, pattern.c_str());
        fail("%s: cannot expand '%s': %s", flag_name, pattern.c_str(),
             rc == GLOB_NOSPACE ? "out of memory" : "read error");
    }
    std::vector<std::string> paths(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
    globfree(&matches);
    std::sort(paths.begin(), paths.end());  // glob sorts by the locale's collation; we want the same order everywhere
    return paths;
}

DataLoader::DataLoader(const std::string& glob_pattern, const char* flag_name, int B, int T, int vocab_size,
                       bool shuffle, uint64_t seed, int process_rank, int num_processes)
    : B_(B), T_(T), shuffle_(shuffle), seed_(seed), process_rank_(process_rank), num_processes_(num_processes) {
    check_arguments(B, T, vocab_size, process_rank, num_processes);
    for (const std::string& path : expand_glob(glob_pattern, flag_name)) shards_.push_back(read_shard_header(path));
    for (const ShardInfo& shard : shards_) {
        check_shard_holds_a_batch(shard);
        total_tokens_ += shard.num_tokens;
        batches_per_epoch_ += batches_in(shard);
    }
    // After the cheap header checks, so a wrong path or format is reported before a long scan.
    for (const ShardInfo& shard : shards_) check_token_ids(shard, vocab_size);

    window_.resize(batch_tokens() + 1);
    inputs_.resize(batch_tokens());
    targets_.resize(batch_tokens());
    reset();
}

DataLoader::~DataLoader() = default;

size_t DataLoader::batches_in(const ShardInfo& shard) const { return (shard.num_tokens - 1) / batch_tokens(); }

void DataLoader::check_shard_holds_a_batch(const ShardInfo& shard) const {
    const size_t needed = batch_tokens() + 1;
    if (shard.num_tokens < needed)
        fail("%s: has %zu tokens, but one batch needs B*T+1 = %d*%d+1 = %zu", shard.path.c_str(), shard.num_tokens, B_, T_,
             needed);
}

std::vector<size_t> DataLoader::shard_order_for(uint64_t epoch) const {
    Rng rng = rng_for(seed_, epoch, 0);
    return order_of(shards_.size(), shuffle_ ? &rng : nullptr);
}

void DataLoader::enter_shard(Cursor& c) const {
    const size_t shard = c.shard_order[c.position.shard_index];
    Rng rng = rng_for(seed_, c.position.epoch, 1 + shard);
    c.batch_order = order_of(batches_in(shards_[shard]), shuffle_ ? &rng : nullptr);
}

void DataLoader::step(Cursor& c) const {
    if (++c.position.batch_index < c.batch_order.size()) return;
    c.position.batch_index = 0;
    if (++c.position.shard_index == shards_.size()) {
        c.position.shard_index = 0;
        ++c.position.epoch;
        c.shard_order = shard_order_for(c.position.epoch);
    }
    enter_shard(c);
}

void DataLoader::next_batch() {
    const size_t shard = own_.shard_order[own_.position.shard_index];
    if (file_shard_ != shard) {
        file_ = std::make_unique<File>(shards_[shard].path, "rb");
        file_shard_ = shard;
    }
    const size_t first_token = own_.batch_order[own_.position.batch_index] * batch_tokens();
    file_->seek(kLlmcHeaderBytes + first_token * sizeof(uint16_t));
    file_->read_exact(window_.data(), window_.size() * sizeof(uint16_t), "batch tokens");
    for (size_t i = 0; i < batch_tokens(); ++i) {
        inputs_[i] = window_[i];
        targets_[i] = window_[i + 1];
    }
    for (int p = 0; p < num_processes_; ++p) {
        step(group_);
        step(own_);
    }
    batches_served_ += uint64_t(num_processes_);
}

void DataLoader::reset() { seek({0, 0, 0}); }

void DataLoader::seek(const LoaderPosition& position) {
    if (position.shard_index >= shards_.size())
        fail("data loader position: shard index %" PRIu64 " is out of range, the data has %zu shards",
             position.shard_index, shards_.size());
    Cursor c;
    c.shard_order = shard_order_for(position.epoch);
    const ShardInfo& shard = shards_[c.shard_order[position.shard_index]];
    if (position.batch_index >= batches_in(shard))
        fail("data loader position: batch index %" PRIu64 " is out of range, %s has %zu batches", position.batch_index,
             shard.path.c_str(), batches_in(shard));
    c.position = position;
    enter_shard(c);
    batches_served_ = batches_before(position, c.shard_order);
    group_ = c;
    for (int r = 0; r < process_rank_; ++r) step(c);
    own_ = std::move(c);
}

uint64_t DataLoader::batches_before(const LoaderPosition& position, const std::vector<size_t>& shard_order) const {
    uint64_t batches = position.epoch * batches_per_epoch_ + position.batch_index;
    for (size_t i = 0; i < position.shard_index; ++i) batches += batches_in(shards_[shard_order[i]]);
    return batches;
}

}  // namespace coldstart
