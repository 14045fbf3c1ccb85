// Token shards in llm.c's format and the loader that cuts them into training batches.
//
// Shard format: a header of 256 little-endian int32 ([0] = 20240520 magic, [1] = 1 version,
// [2] = token count, the rest 0), then the tokens as little-endian uint16.
//
// Batch order without shuffling is llm.c's. A batch is a window of B*T+1 consecutive tokens:
// inputs = window[0, B*T), targets = window[1, B*T] (each target is the next token of its input).
// Consecutive windows overlap by one token. With P processes, batch k of rank r inside a shard is the
// window starting at token (k*P + r)*B*T. The last rank's window of batch k ends at token
// (k+1)*P*B*T inclusive, so it fits when (k+1)*P*B*T + 1 <= num_tokens, which gives
//     batches per process in a shard = floor((num_tokens - 1) / (B*T*P)).
// Tokens past the last whole batch are never read in that epoch (llm.c drops them too). After a shard's
// last batch comes the next shard's first; after the last shard, a new epoch starts with the first.
//
// With shuffling, each epoch visits the shards in a permuted order and each shard's batches (the k
// above) in a permuted order. Both permutations are a pure function of (seed, epoch, shard), so every
// rank computes the same ones, and a saved position can be restored without replaying the run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace coldstart {

class File;

constexpr int kShardMagic = 20240520;
constexpr int kShardVersion = 1;

struct ShardInfo {
    std::string path;
    size_t num_tokens;
};

// Reads and checks a shard's header: magic, version, a token count above 0, and a file size of exactly
// header + 2 bytes per token. Every error names the file, the field, what was found and what was expected.
ShardInfo read_shard_header(const std::string& path);

// The files matching a glob(3) pattern, sorted bytewise (independent of the locale). No match throws
// "<flag_name>: no files match '<pattern>'", so the user knows which command-line flag to fix.
std::vector<std::string> expand_glob(const std::string& pattern, const char* flag_name);

// Where the loader stands: the next next_batch() serves batch batch_index (the index into the shard's
// batch order) of the shard at shard_index (the index into the epoch's shard order) in epoch epoch.
// Saved in checkpoints; DataLoader::seek() restores it.
struct LoaderPosition {
    uint64_t epoch;
    uint64_t shard_index;
    uint64_t batch_index;
    bool operator==(const LoaderPosition& o) const {
        return epoch == o.epoch && shard_index == o.shard_index && batch_index == o.batch_index;
    }
};

// Serves batches of B*T tokens from the shards matching a glob pattern, in the order described at the top.
//
// The constructor validates everything before training starts: every header, every shard holding at
// least one batch for all processes (B*T*P+1 tokens), and every token id below vocab_size (one chunked
// scan per shard).
//
// Memory: only the current batch's window is in memory. Each next_batch() reads its B*T+1 tokens with one
// seek+read from the open shard file, as llm.c does. Loading whole shards instead would cost 200 MB per
// 100M-token shard and a stall at every shard change, for no gain: one 2*(B*T+1)-byte read per step is
// noise next to a training step, and the OS page cache keeps repeated epochs off the disk.
class DataLoader {
public:
    DataLoader(const std::string& glob_pattern, const char* flag_name, int B, int T, int vocab_size,
               bool shuffle, uint64_t seed, int process_rank = 0, int num_processes = 1);
    ~DataLoader();
    DataLoader(const DataLoader&) = delete;
    DataLoader& operator=(const DataLoader&) = delete;

    // Loads the batch at position() into inputs()/targets() and advances the position past it.
    void next_batch();
    const int* inputs() const { return inputs_.data(); }    // (B, T) token ids of the last batch loaded
    const int* targets() const { return targets_.data(); }  // (B, T) the token following each input

    // Back to the very start: epoch 0, first shard, first batch, as freshly constructed.
    void reset();
    LoaderPosition position() const { return position_; }
    // Continues from a position() saved earlier (possibly by another loader over the same shards with the
    // same B, T, processes and seed): the following next_batch() calls serve bit-identical batches.
    void seek(const LoaderPosition& position);

    size_t total_tokens() const { return total_tokens_; }            // over all shards
    size_t batches_per_epoch() const { return batches_per_epoch_; }  // for this process
    uint64_t batches_served() const { return batches_served_; }      // since the start of epoch 0
    size_t num_shards() const { return shards_.size(); }
    int B() const { return B_; }
    int T() const { return T_; }

private:
    size_t batch_tokens() const { return size_t(B_) * size_t(T_); }
    size_t batches_in(const ShardInfo& shard) const;
    void check_shard_holds_a_batch(const ShardInfo& shard) const;
    std::vector<size_t> shard_order_for(uint64_t epoch) const;
    size_t current_shard() const { return shard_order_[position_.shard_index]; }
    void enter_shard();  // opens the current shard and computes its batch order
    void advance();
    uint64_t batches_before(const LoaderPosition& position) const;

    int B_, T_;
    bool shuffle_;
    uint64_t seed_;
    int process_rank_, num_processes_;
    std::vector<ShardInfo> shards_;  // sorted by path
    size_t total_tokens_ = 0;
    size_t batches_per_epoch_ = 0;

    LoaderPosition position_{0, 0, 0};
    uint64_t batches_served_ = 0;
    std::vector<size_t> shard_order_;  // (num_shards) this epoch's order: indices into shards_
    std::vector<size_t> batch_order_;  // (batches in the current shard) this shard's order of k
    std::unique_ptr<File> file_;       // the current shard, open for reading windows
    size_t file_shard_ = SIZE_MAX;     // which entry of shards_ file_ holds

    std::vector<uint16_t> window_;  // (B*T+1) raw tokens of the last batch
    std::vector<int> inputs_;       // (B*T) window_[0, B*T)
    std::vector<int> targets_;      // (B*T) window_[1, B*T]
};

}  // namespace coldstart
