// Token shards and the data loader: llm.c's batch order, multi-process interleaving, deterministic
// shuffling, resuming from a saved position, and the error messages for bad input.
#include "common/error.h"
#include "data/shards.h"
#include "test/test_util.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <set>

using coldstart::DataLoader;
using coldstart::LoaderPosition;
using test_util::contains;
using test_util::error_of;
using test_util::write_shard;

namespace {

constexpr int kVocab = 50257;

// n tokens first, first+1, ...: every position in every test shard has a distinct id.
std::vector<uint16_t> counting_tokens(size_t n, uint16_t first) {
    std::vector<uint16_t> tokens(n);
    for (size_t i = 0; i < n; ++i) tokens[i] = uint16_t(first + i);
    return tokens;
}

// The tokens of a shard file as the reference for what the loader must serve.
std::vector<uint16_t> read_tokens(const std::string& path) {
    const std::vector<char> bytes = test_util::read_bytes(path);
    REQUIRE(bytes.size() >= 1024);
    std::vector<uint16_t> tokens((bytes.size() - 1024) / 2);
    std::memcpy(tokens.data(), bytes.data() + 1024, tokens.size() * 2);
    return tokens;
}

// The B*T+1 window the loader last served: the inputs then the last target.
std::vector<int> served_window(const DataLoader& loader) {
    const size_t n = size_t(loader.B()) * size_t(loader.T());
    std::vector<int> window(loader.inputs(), loader.inputs() + n);
    window.push_back(loader.targets()[n - 1]);
    return window;
}

std::vector<int> window_at(const std::vector<uint16_t>& tokens, size_t start, size_t length) {
    REQUIRE(start + length <= tokens.size());
    return std::vector<int>(tokens.begin() + long(start), tokens.begin() + long(start + length));
}

// The windows of the next n batches.
std::vector<std::vector<int>> next_windows(DataLoader& loader, size_t n) {
    std::vector<std::vector<int>> windows;
    for (size_t i = 0; i < n; ++i) {
        loader.next_batch();
        windows.push_back(served_window(loader));
    }
    return windows;
}


// Two shards with distinct tokens: a.bin holds 3 batches of B*T=6 (19 tokens, the last window ends
// exactly at its end), b.bin holds 2 batches plus 4 tokens that no batch reaches (17 tokens).
struct TwoShards {
    test_util::TempDir dir;
    std::vector<uint16_t> a = counting_tokens(19, 100), b = counting_tokens(17, 200);
    TwoShards() {
        write_shard(dir / "s_b.bin", b);  // written first: the loader must still read s_a first
        write_shard(dir / "s_a.bin", a);
    }
    std::string pattern() const { return dir / "s_*.bin"; }
};

}  // namespace

TEST_CASE("shards: header of the tinyshakespeare val shard") {
    const std::string path = test_util::data_path("tinyshakespeare/tiny_shakespeare_val.bin");
    const coldstart::ShardInfo info = coldstart::read_shard_header(path);
    CHECK(info.path == path);
    CHECK(info.num_tokens == 32768);
}

TEST_CASE("shards: unshuffled batch k is the window at k*B*T of the real val shard, then a new epoch") {
    const std::string path = test_util::data_path("tinyshakespeare/tiny_shakespeare_val.bin");
    const std::vector<uint16_t> tokens = read_tokens(path);
    const int B = 4, T = 64;
    const size_t BT = B * T;
    DataLoader loader(path, "-i", B, T, kVocab, false, 0);
    CHECK(loader.total_tokens() == 32768);
    CHECK(loader.batches_per_epoch() == (32768 - 1) / BT);  // 127: the 128th window would need token 32768

    const std::vector<std::vector<int>> windows = next_windows(loader, 127 + 2);
    for (size_t k : {size_t(0), size_t(1), size_t(5), size_t(126)}) {
        CAPTURE(k);
        CHECK(windows[k] == window_at(tokens, k * BT, BT + 1));
    }
    CHECK(windows[127] == window_at(tokens, 0, BT + 1));  // epoch 1 starts over
    CHECK(windows[128] == window_at(tokens, BT, BT + 1));
    CHECK(loader.position() == LoaderPosition{1, 0, 2});
    CHECK(loader.batches_served() == 129);
}

TEST_CASE("shards: targets are the inputs shifted by one token") {
    const std::string path = test_util::data_path("tinyshakespeare/tiny_shakespeare_val.bin");
    const std::vector<uint16_t> tokens = read_tokens(path);
    DataLoader loader(path, "-i", 2, 8, kVocab, false, 0);
    loader.next_batch();
    loader.next_batch();
    for (size_t i = 0; i < 16; ++i) {
        CAPTURE(i);
        CHECK(loader.inputs()[i] == tokens[16 + i]);
        CHECK(loader.targets()[i] == tokens[16 + i + 1]);
    }
}

TEST_CASE("shards: expand_glob sorts its matches") {
    TwoShards data;
    const std::vector<std::string> paths = coldstart::expand_glob(data.pattern(), "-i");
    CHECK(paths == std::vector<std::string>{data.dir / "s_a.bin", data.dir / "s_b.bin"});
}

TEST_CASE("shards: batches per shard are floor((tokens - 1) / (B*T)), whatever the number of processes") {
    test_util::TempDir dir;
    for (size_t n : {13, 18, 19, 24, 25}) {
        CAPTURE(n);
        write_shard(dir / "x.bin", counting_tokens(n, 0));
        CHECK(DataLoader(dir / "x.bin", "-i", 2, 3, kVocab, false, 0).batches_per_epoch() == (n - 1) / 6);
        const DataLoader two_processes(dir / "x.bin", "-i", 2, 3, kVocab, false, 0, 1, 2);
        CHECK(two_processes.batches_per_epoch() == (n - 1) / 6);
    }
}

TEST_CASE("shards: unshuffled order crosses from one shard to the next and wraps to a new epoch") {
    TwoShards data;
    DataLoader loader(data.pattern(), "-i", 2, 3, kVocab, false, 0);
    CHECK(loader.num_shards() == 2);
    CHECK(loader.total_tokens() == 19 + 17);
    CHECK(loader.batches_per_epoch() == 3 + 2);

    const std::vector<std::vector<int>> windows = next_windows(loader, 5 + 2);
    const std::vector<std::vector<int>> expected = {
        window_at(data.a, 0, 7), window_at(data.a, 6, 7), window_at(data.a, 12, 7),  // a: 3 batches
        window_at(data.b, 0, 7), window_at(data.b, 6, 7),                            // b: 2 batches
        window_at(data.a, 0, 7), window_at(data.a, 6, 7),                            // epoch 1
    };
    CHECK(windows == expected);
}

TEST_CASE("shards: P processes split the single-process order: rank r reads windows r, r+P, ..., across shard and epoch ends") {
    TwoShards data;  // windows a0 a1 a2 b0 b1, then the next epoch
    for (bool shuffle : {false, true}) {
        CAPTURE(shuffle);
        DataLoader single(data.pattern(), "-i", 1, 6, kVocab, shuffle, 3);
        const std::vector<std::vector<int>> one = next_windows(single, 12);
        for (int processes : {2, 3}) {
            CAPTURE(processes);
            for (int rank = 0; rank < processes; ++rank) {
                DataLoader loader(data.pattern(), "-i", 1, 6, kVocab, shuffle, 3, rank, processes);
                const std::vector<std::vector<int>> mine = next_windows(loader, 12 / processes);
                for (int i = 0; i < 12 / processes; ++i) CHECK(mine[size_t(i)] == one[size_t(i * processes + rank)]);
                // Every rank agrees on where the group stands: the position is the single process's.
                CHECK(loader.position() == single.position());
                CHECK(loader.batches_served() == 12);
            }
        }
    }
}

TEST_CASE("shards: a position saved by 2 processes is resumed by 3 and by 1, serving the same windows") {
    TwoShards data;
    DataLoader single(data.pattern(), "-i", 1, 6, kVocab, true, 9);
    const std::vector<std::vector<int>> one = next_windows(single, 12);
    DataLoader two(data.pattern(), "-i", 1, 6, kVocab, true, 9, 1, 2);
    next_windows(two, 3);  // 6 windows consumed by the pair
    const LoaderPosition saved = two.position();
    for (int processes : {1, 3}) {
        for (int rank = 0; rank < processes; ++rank) {
            DataLoader resumed(data.pattern(), "-i", 1, 6, kVocab, true, 9, rank, processes);
            resumed.seek(saved);
            CHECK(resumed.batches_served() == 6);
            const std::vector<std::vector<int>> mine = next_windows(resumed, 6 / processes);
            for (int i = 0; i < 6 / processes; ++i) CHECK(mine[size_t(i)] == one[size_t(6 + i * processes + rank)]);
        }
    }
}

namespace {

// Three shards whose windows are told apart by their first token (shard s window k starts with
// 1000*s + 6k): 4, 3 and 5 batches of B*T = 6.
struct ThreeShards {
    test_util::TempDir dir;
    ThreeShards() {
        write_shard(dir / "t_0.bin", counting_tokens(4 * 6 + 1, 0));
        write_shard(dir / "t_1.bin", counting_tokens(3 * 6 + 3, 1000));
        write_shard(dir / "t_2.bin", counting_tokens(5 * 6 + 1, 2000));
    }
    std::string pattern() const { return dir / "t_*.bin"; }
};

// The first tokens of the next n batches: identifies each window.
std::vector<int> window_starts(DataLoader& loader, size_t n) {
    std::vector<int> starts;
    for (size_t i = 0; i < n; ++i) {
        loader.next_batch();
        starts.push_back(loader.inputs()[0]);
    }
    return starts;
}

// The windows of one shard, in the order they were served.
std::vector<int> from_shard(const std::vector<int>& starts, int shard) {
    std::vector<int> picked;
    for (int start : starts)
        if (start / 1000 == shard) picked.push_back(start);
    return picked;
}

std::vector<int> sorted(std::vector<int> v) {
    std::sort(v.begin(), v.end());
    return v;
}

}  // namespace

TEST_CASE("shards: shuffling is deterministic in the seed and serves each window once per epoch") {
    ThreeShards data;
    DataLoader plain(data.pattern(), "-i", 2, 3, kVocab, false, 0);
    const size_t epoch = plain.batches_per_epoch();
    REQUIRE(epoch == 12);
    const std::vector<int> unshuffled = window_starts(plain, epoch);

    DataLoader a(data.pattern(), "-i", 2, 3, kVocab, true, 1234);
    DataLoader same(data.pattern(), "-i", 2, 3, kVocab, true, 1234);
    DataLoader other(data.pattern(), "-i", 2, 3, kVocab, true, 99);
    const std::vector<int> a0 = window_starts(a, epoch), a1 = window_starts(a, epoch);
    const std::vector<int> same01 = window_starts(same, 2 * epoch);
    const std::vector<int> other0 = window_starts(other, epoch);

    CHECK(sorted(a0) == unshuffled);  // a permutation of the epoch's windows
    CHECK(sorted(a1) == unshuffled);
    CHECK(sorted(other0) == unshuffled);
    CHECK(a0 != unshuffled);
    CHECK(a1 != a0);  // each epoch has its own order
    CHECK(other0 != a0);
    // Inside a shard too (shard 2 has 5 batches: 120 orders), and differently in each epoch.
    CHECK(from_shard(a0, 2) != from_shard(unshuffled, 2));
    CHECK(from_shard(a1, 2) != from_shard(a0, 2));
    std::vector<int> a01 = a0;
    a01.insert(a01.end(), a1.begin(), a1.end());
    CHECK(same01 == a01);
}

TEST_CASE("shards: shuffling visits whole shards, in every possible order over the epochs") {
    ThreeShards data;
    DataLoader loader(data.pattern(), "-i", 2, 3, kVocab, true, 5);
    std::set<std::vector<int>> shard_orders;
    for (int epoch = 0; epoch < 60; ++epoch) {
        std::vector<int> order;  // the shard of each batch, collapsed over runs
        for (int shard : window_starts(loader, loader.batches_per_epoch())) {
            shard /= 1000;
            if (order.empty() || order.back() != shard) order.push_back(shard);
        }
        CHECK(sorted(order) == std::vector<int>{0, 1, 2});  // each shard's batches are contiguous
        shard_orders.insert(order);
    }
    // All 3! orders: a biased shuffle (e.g. Sattolo's, which makes only cycles) would miss some. A fair
    // one misses one of 6 in 60 epochs with probability 1e-4, and the seed is fixed.
    CHECK(shard_orders.size() == 6);
}

TEST_CASE("shards: reset() starts over like a fresh loader") {
    ThreeShards data;
    for (bool shuffle : {false, true}) {
        CAPTURE(shuffle);
        DataLoader fresh(data.pattern(), "-i", 2, 3, kVocab, shuffle, 3);
        DataLoader used(data.pattern(), "-i", 2, 3, kVocab, shuffle, 3);
        window_starts(used, 17);
        used.reset();
        CHECK(used.position() == LoaderPosition{0, 0, 0});
        CHECK(used.batches_served() == 0);
        CHECK(window_starts(used, 30) == window_starts(fresh, 30));
    }
}

TEST_CASE("shards: seek() to a saved position continues bit-identically") {
    ThreeShards data;
    // 0: the start; 2: inside shard 0's slot; 4: a shard boundary; 11: the epoch's last batch; 12: an epoch
    // boundary; 17: inside epoch 1.
    for (bool shuffle : {false, true}) {
        for (size_t done : {0, 2, 4, 11, 12, 17}) {
            CAPTURE(shuffle);
            CAPTURE(done);
            DataLoader uninterrupted(data.pattern(), "-i", 2, 3, kVocab, shuffle, 42);
            const std::vector<std::vector<int>> reference = next_windows(uninterrupted, done + 15);

            DataLoader before(data.pattern(), "-i", 2, 3, kVocab, shuffle, 42);
            next_windows(before, done);
            const LoaderPosition saved = before.position();

            DataLoader resumed(data.pattern(), "-i", 2, 3, kVocab, shuffle, 42);
            resumed.seek(saved);
            CHECK(resumed.position() == saved);
            CHECK(resumed.batches_served() == done);
            const std::vector<std::vector<int>> after = next_windows(resumed, 15);
            CHECK(after == std::vector<std::vector<int>>(reference.begin() + long(done), reference.end()));
        }
    }
}

TEST_CASE("shards: seek() rejects a position outside the data") {
    ThreeShards data;
    DataLoader loader(data.pattern(), "-i", 2, 3, kVocab, false, 0);
    CHECK(contains(error_of([&] { loader.seek({0, 3, 0}); }), "shard index 3 is out of range, the data has 3 shards"));
    const std::string msg = error_of([&] { loader.seek({0, 1, 3}); });  // t_1.bin has 3 batches
    CHECK(contains(msg, "batch index 3 is out of range"));
    CHECK(contains(msg, data.dir / "t_1.bin"));
    CHECK(loader.position() == LoaderPosition{0, 0, 0});  // unchanged by the failed seeks
}

TEST_CASE("shards: a glob with no match names the flag and the pattern") {
    test_util::TempDir dir;
    const std::string pattern = dir / "x_*.bin";
    CHECK(error_of([&] { DataLoader(pattern, "-j", 1, 4, kVocab, false, 0); }) ==
          "-j: no files match '" + pattern + "'");
}

TEST_CASE("shards: a wrong magic names the file, the field and both values") {
    test_util::TempDir dir;
    write_shard(dir / "x.bin", counting_tokens(100, 0), 20240521);
    const std::string msg = error_of([&] { coldstart::read_shard_header(dir / "x.bin"); });
    CHECK(contains(msg, dir / "x.bin"));
    CHECK(contains(msg, "not a valid llm.c token shard: magic number 20240521, expected 20240520"));
}

TEST_CASE("shards: a wrong version names the file and both values") {
    test_util::TempDir dir;
    write_shard(dir / "x.bin", counting_tokens(100, 0), 20240520, 2);
    const std::string msg = error_of([&] { DataLoader(dir / "x.bin", "-i", 1, 4, kVocab, false, 0); });
    CHECK(contains(msg, dir / "x.bin"));
    CHECK(contains(msg, "llm.c token shard version 2 is not supported, expected 1"));
}

TEST_CASE("shards: a token count of 0 is rejected") {
    test_util::TempDir dir;
    write_shard(dir / "x.bin", {});
    const std::string msg = error_of([&] { coldstart::read_shard_header(dir / "x.bin"); });
    CHECK(contains(msg, dir / "x.bin"));
    CHECK(contains(msg, "token count is 0, expected at least 1"));
}

TEST_CASE("shards: a truncated file says how many bytes are expected and found") {
    test_util::TempDir dir;
    SUBCASE("header only") {
        write_shard(dir / "x.bin", {}, 20240520, 1, 100);
        const std::string msg = error_of([&] { coldstart::read_shard_header(dir / "x.bin"); });
        CHECK(contains(msg, dir / "x.bin"));
        CHECK(contains(msg, "token count 100 needs 1224 bytes, found 1024"));
    }
    SUBCASE("tokens cut short") {
        write_shard(dir / "x.bin", counting_tokens(99, 0), 20240520, 1, 100);
        CHECK(contains(error_of([&] { coldstart::read_shard_header(dir / "x.bin"); }), "needs 1224 bytes, found 1222"));
    }
    SUBCASE("not even a header") {
        const char bytes[100] = {};
        test_util::write_bytes(dir / "x.bin", bytes, sizeof bytes);
        const std::string msg = error_of([&] { coldstart::read_shard_header(dir / "x.bin"); });
        CHECK(contains(msg, dir / "x.bin"));
        CHECK(contains(msg, "header needs 1024 bytes, only 100 remain"));
    }
    SUBCASE("trailing bytes") {
        write_shard(dir / "x.bin", counting_tokens(101, 0), 20240520, 1, 100);
        CHECK(contains(error_of([&] { coldstart::read_shard_header(dir / "x.bin"); }),
                       "file has 1226 bytes, expected 1224 for the header's token count 100"));
    }
}

TEST_CASE("shards: a token id at or above the vocab size names the file, index, value and vocab size") {
    test_util::TempDir dir;
    // Good shards first, so the error must come from the scan of the later one. The bad token is the last
    // one, which a batch only ever reads as a target, and lies past the first 1M-token read.
    write_shard(dir / "a.bin", counting_tokens(64, 0));
    std::vector<uint16_t> tokens((1 << 20) + 10, 7);
    tokens.back() = kVocab;
    write_shard(dir / "b.bin", tokens);
    const std::string msg = error_of([&] { DataLoader(dir / "*.bin", "-i", 4, 8, kVocab, false, 0); });
    CHECK(contains(msg, dir / "b.bin"));
    CHECK(contains(msg, "token 1048585 has id 50257, which is not below the vocab size 50257"));
    // The same shard is fine for a larger vocabulary.
    CHECK(error_of([&] { DataLoader(dir / "*.bin", "-i", 4, 8, kVocab + 1, false, 0); }) == "(no error)");
}

TEST_CASE("shards: a shard smaller than one batch names the file, its tokens, B and T") {
    test_util::TempDir dir;
    write_shard(dir / "x.bin", counting_tokens(32, 0));
    std::string msg = error_of([&] { DataLoader(dir / "x.bin", "-i", 4, 8, kVocab, false, 0); });
    CHECK(contains(msg, dir / "x.bin"));
    CHECK(contains(msg, "has 32 tokens, but one batch needs B*T+1 = 4*8+1 = 33"));

    write_shard(dir / "x.bin", counting_tokens(33, 0));  // exactly one window, for one process or two
    CHECK(DataLoader(dir / "x.bin", "-i", 4, 8, kVocab, false, 0).batches_per_epoch() == 1);
    CHECK(DataLoader(dir / "x.bin", "-i", 4, 8, kVocab, false, 0, 1, 2).batches_per_epoch() == 1);
}

TEST_CASE("shards: the gutenberg train shard validates quickly and serves its first window") {
    const std::string path = test_util::data_path("gutenberg/gutenberg_en_train.bin");
    const auto start = std::chrono::steady_clock::now();
    DataLoader loader(path, "-i", 8, 1024, kVocab, true, 1);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(seconds < 3.0);  // a generous bound: the chunked scan takes well under a second from the page cache
    CHECK(loader.total_tokens() == coldstart::read_shard_header(path).num_tokens);
    CHECK(loader.total_tokens() > 25000000);
    CHECK(loader.batches_per_epoch() == (loader.total_tokens() - 1) / (8 * 1024));
    loader.next_batch();
    CHECK(*std::max_element(loader.inputs(), loader.inputs() + 8 * 1024) < kVocab);
    CHECK(*std::max_element(loader.inputs(), loader.inputs() + 8 * 1024) > 0);
}
