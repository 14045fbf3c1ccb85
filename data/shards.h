// Folder data/: the files a run reads and writes: token shards (here), the tokenizer, llm.c model files,
// checkpoints. May include model/ and common/; a checkpoint also stores the optimizer's state and is
// written by all ranks together, so data/checkpoint alone includes optim/optimizer.h and
// dist/communicator.h (tools/check_includes.py).
//
// Token shards in llm.c's format and the loader that cuts them into training batches.
//
// Shard format: a header of 256 little-endian int32 ([0] = 20240520 magic, [1] = 1 version,
// [2] = token count, the rest 0), then the tokens as little-endian uint16.
//
// Batch order without shuffling is llm.c's. A batch is a window of B*T+1 consecutive tokens:
// inputs = window[0, B*T), targets = window[1, B*T] (each target is the next token of its input).
// Consecutive windows overlap by one token: window k of a shard starts at token k*B*T, and a shard holds
//     windows = floor((num_tokens - 1) / (B*T)).
// Tokens past the last whole window are never read in that epoch (llm.c drops them too). After a shard's
// last window comes the next shard's first; after the last shard, a new epoch starts with the first.
// This is the single-process order. P processes split it: rank r serves windows r, r+P, r+2P, ... of the
// same order, so the windows that P processes read together in one step are the consecutive windows that
// one process with the same total batch reads, whatever P (across shard and epoch ends too), and a
// position saved by P processes is resumed by any number of them.
//
// With shuffling, each epoch visits the shards in a permuted order and each shard's windows (the k
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

// Where the loader stands in the single-process order: the next window (of rank 0; rank r reads the one
// r windows further) is window batch_index (the index into the shard's window order) of the shard at
// shard_index (the index into the epoch's shard order) in epoch epoch. The same on every rank after the
// same number of next_batch() calls; saved in checkpoints; DataLoader::seek() restores it.
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
// least one window (B*T+1 tokens), and every token id below vocab_size (one chunked scan per shard).
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

    // Loads this process's next batch into inputs()/targets() and advances the position by one window
    // per process.
    void next_batch();
    const int* inputs() const { return inputs_.data(); }    // (B, T) token ids of the last batch loaded
    const int* targets() const { return targets_.data(); }  // (B, T) the token following each input

    // Back to the very start: epoch 0, first shard, first batch, as freshly constructed.
    void reset();
    LoaderPosition position() const { return group_.position; }
    // Continues from a position() saved earlier (possibly by loaders over the same shards with the same
    // B, T and seed and any number of processes): the following next_batch() calls serve bit-identical
    // batches.
    void seek(const LoaderPosition& position);

    size_t total_tokens() const { return total_tokens_; }            // over all shards
    size_t batches_per_epoch() const { return batches_per_epoch_; }  // windows in one epoch, all processes together
    uint64_t batches_served() const { return batches_served_; }      // windows since epoch 0 began, all processes
    size_t num_shards() const { return shards_.size(); }
    int B() const { return B_; }
    int T() const { return T_; }

private:
    // A place in the single-process order and what walking on from it needs.
    struct Cursor {
        LoaderPosition position{0, 0, 0};
        std::vector<size_t> shard_order;  // (num_shards) the epoch's order: indices into shards_
        std::vector<size_t> batch_order;  // (windows in the current shard) the shard's order of k
    };
    size_t batch_tokens() const { return size_t(B_) * size_t(T_); }
    size_t batches_in(const ShardInfo& shard) const;
    void check_shard_holds_a_batch(const ShardInfo& shard) const;
    std::vector<size_t> shard_order_for(uint64_t epoch) const;
    void enter_shard(Cursor& c) const;  // computes the batch order of c's shard
    void step(Cursor& c) const;         // one window on in the single-process order
    uint64_t batches_before(const LoaderPosition& position, const std::vector<size_t>& shard_order) const;

    int B_, T_;
    bool shuffle_;
    uint64_t seed_;
    int process_rank_, num_processes_;
    std::vector<ShardInfo> shards_;  // sorted by path
    size_t total_tokens_ = 0;
    size_t batches_per_epoch_ = 0;

    Cursor group_;  // where all processes together stand: the next window of rank 0
    Cursor own_;    // this process's next window: process_rank_ windows after group_
    uint64_t batches_served_ = 0;
    std::unique_ptr<File> file_;    // the shard of own_, open for reading windows
    size_t file_shard_ = SIZE_MAX;  // which entry of shards_ file_ holds

    std::vector<uint16_t> window_;  // (B*T+1) raw tokens of the last batch
    std::vector<int> inputs_;       // (B*T) window_[0, B*T)
    std::vector<int> targets_;      // (B*T) window_[1, B*T]
};

}  // namespace coldstart
