// The communicator of processes on one machine: a file mapped into every process's memory holds one slot
// per rank and a barrier. A collective goes chunk by chunk: each rank copies its chunk into its slot,
// all meet at the barrier, each reads every slot in rank order (so every rank adds in the same order and
// gets the same bits), and all meet again before the slots are reused.
//
// It favours being obviously right over speed: it exists so that data parallelism, ZeRO sharding and
// resuming on another number of processes are tested on machines without GPUs.
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <cstring>
#include <thread>

#include "common/error.h"
#include "dist/communicator.h"
#include "dist/rendezvous.h"

namespace coldstart {

namespace {

class SingleProcess : public Communicator {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    std::string describe() const override { return "one process"; }
    void all_reduce_sum(float*, size_t) override {}
    void all_reduce_sum(double*, size_t) override {}
    void reduce_scatter_sum(float*, const std::vector<size_t>&) override {}
    void all_gather(float*, const std::vector<size_t>&) override {}
    void barrier() override {}
};

constexpr uint64_t kMagic = 0x636f6c6473686d31ull;  // "coldshm1"
constexpr size_t kSlotBytes = size_t(4) << 20;       // per rank and chunk: 1M floats
constexpr int kMaxRanks = 512;

// The start of the mapped file; the slots follow it. Atomics that are lock-free work across processes.
struct Header {
    uint64_t magic;
    int32_t size;
    int32_t creator_pid;               // rank 0's: a file left by a killed run names a dead process
    std::atomic<uint32_t> ready;       // 1 once rank 0 has set everything up
    std::atomic<uint32_t> arrived;     // barrier: ranks that reached it
    std::atomic<uint32_t> generation;  // barrier: bumped by the last rank to arrive
    std::atomic<int32_t> pids[kMaxRanks];  // each rank's process, so that a wait notices one that died
};
static_assert(std::atomic<uint32_t>::is_always_lock_free, "the barrier needs lock-free atomics in shared memory");
constexpr size_t kHeaderBytes = 4096;

class SharedMemory : public Communicator {
public:
    SharedMemory(int rank, int size, const std::string& dir, double timeout_seconds)
        : rank_(rank), size_(size), path_(dir + "/coldstart_comm.shm"), timeout_(timeout_seconds) {
        if (size < 1 || rank < 0 || rank >= size) fail("process rank %d is not in [0, %d)", rank, size);
        if (size > kMaxRanks) fail("%d processes: the shared-memory communicator joins at most %d", size, kMaxRanks);
        bytes_ = kHeaderBytes + size_t(size) * kSlotBytes;
        if (rank == 0) create();
        else attach();
        header()->pids[rank].store(int32_t(getpid()), std::memory_order_release);
        barrier();  // everyone is in
    }

    ~SharedMemory() override {
        if (base_) munmap(base_, bytes_);
        if (rank_ == 0) unlink(path_.c_str());  // the others keep their mappings of the unlinked file
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string describe() const override { return format("shared memory (%s), %d processes", path_.c_str(), size_); }

    void all_reduce_sum(float* data, size_t n) override { reduce_all(data, n); }
    void all_reduce_sum(double* data, size_t n) override { reduce_all(data, n); }

    void reduce_scatter_sum(float* data, const std::vector<size_t>& offsets) override {
        check_offsets(offsets);
        const size_t n = offsets.back(), chunk = kSlotBytes / sizeof(float);
        const size_t mine_begin = offsets[size_t(rank_)], mine_end = offsets[size_t(rank_) + 1];
        for (size_t start = 0; start < n; start += chunk) {
            const size_t count = std::min(chunk, n - start);
            std::memcpy(slot(rank_), data + start, count * sizeof(float));
            barrier();
            const size_t lo = std::max(start, mine_begin), hi = std::min(start + count, mine_end);
            for (size_t i = lo; i < hi; ++i) data[i] = sum_over_slots<float>(i - start);
            barrier();
        }
    }

    void all_gather(float* data, const std::vector<size_t>& offsets) override {
        check_offsets(offsets);
        // The slots, end to end, are one staging area of size * chunk floats.
        const size_t n = offsets.back(), area = size_t(size_) * (kSlotBytes / sizeof(float));
        float* staging = reinterpret_cast<float*>(slot(0));
        const size_t mine_begin = offsets[size_t(rank_)], mine_end = offsets[size_t(rank_) + 1];
        for (size_t start = 0; start < n; start += area) {
            const size_t count = std::min(area, n - start);
            const size_t lo = std::max(start, mine_begin), hi = std::min(start + count, mine_end);
            if (lo < hi) std::memcpy(staging + (lo - start), data + lo, (hi - lo) * sizeof(float));
            barrier();
            std::memcpy(data + start, staging, count * sizeof(float));
            barrier();
        }
    }

    void barrier() override {
        Header* h = header();
        const uint32_t generation = h->generation.load(std::memory_order_acquire);
        if (h->arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == uint32_t(size_)) {
            h->arrived.store(0, std::memory_order_relaxed);
            h->generation.fetch_add(1, std::memory_order_acq_rel);
            return;
        }
        wait_until([&] { return h->generation.load(std::memory_order_acquire) != generation; },
                   "the other processes at a collective operation");
    }

private:
    Header* header() const { return reinterpret_cast<Header*>(base_); }
    char* slot(int r) const { return static_cast<char*>(base_) + kHeaderBytes + size_t(r) * kSlotBytes; }

    template <typename T>
    T sum_over_slots(size_t i) const {
        T s = 0;
        for (int r = 0; r < size_; ++r) s += reinterpret_cast<const T*>(slot(r))[i];
        return s;
    }

    template <typename T>
    void reduce_all(T* data, size_t n) {
        const size_t chunk = kSlotBytes / sizeof(T);
        for (size_t start = 0; start < n; start += chunk) {
            const size_t count = std::min(chunk, n - start);
            std::memcpy(slot(rank_), data + start, count * sizeof(T));
            barrier();
            for (size_t i = 0; i < count; ++i) data[start + i] = sum_over_slots<T>(i);
            barrier();
        }
    }

    void check_offsets(const std::vector<size_t>& offsets) const {
        if (offsets.size() != size_t(size_) + 1 || !std::is_sorted(offsets.begin(), offsets.end()))
            fail("communicator: expected %d ascending segment offsets, got %zu", size_ + 1, offsets.size());
    }

    // Waits for done(), failing after the timeout, or at once when a rank's process has ended (it stopped
    // with an error or was killed: the collective can never complete).
    template <typename Done>
    void wait_until(Done&& done, const char* what) const {
        const auto start = std::chrono::steady_clock::now();
        for (long spins = 0; !done(); ++spins) {
            if (spins < 1000) {
                sched_yield();  // more processes than cores is normal in tests: let the others run
                continue;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(50));
            if (spins % 2000 != 0) continue;
            if (base_)
                for (int r = 0; r < size_; ++r) {
                    const int32_t pid = header()->pids[r].load(std::memory_order_acquire);
                    if (pid > 0 && !process_alive(pid))
                        fail("rank %d of %d: rank %d (process %d) has stopped while this one waited for %s", rank_, size_, r,
                             int(pid), what);
                }
            if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_)
                fail("rank %d of %d: waited %.0f s for %s (has one of them stopped? see its output)", rank_, size_, timeout_, what);
        }
    }

    void map(int fd) {
        base_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (base_ == MAP_FAILED) {
            base_ = nullptr;
            fail("%s: cannot map %zu bytes of shared memory: %s", path_.c_str(), bytes_, strerror(errno));
        }
    }

    // Rank 0 makes the file under a temporary name and renames it into place when it is set up, so the
    // others never see a half-made one.
    void create() {
        const std::string tmp = path_ + ".tmp";
        unlink(tmp.c_str());
        const int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) fail("%s: cannot create the shared-memory file: %s (is -pf a writable folder?)", tmp.c_str(), strerror(errno));
        if (ftruncate(fd, off_t(bytes_)) != 0) {
            close(fd);
            fail("%s: cannot size the shared-memory file to %zu bytes: %s", tmp.c_str(), bytes_, strerror(errno));
        }
        map(fd);
        Header* h = new (base_) Header{};
        h->magic = kMagic;
        h->size = size_;
        h->creator_pid = int32_t(getpid());
        h->ready.store(1, std::memory_order_release);
        rename_or_fail(tmp, path_);
    }

    // A file is this run's when it is complete, made for this many ranks, and its creator is alive: one
    // left by a killed run is waited out until rank 0 replaces it.
    bool current_file_is_ready() {
        const int fd = open(path_.c_str(), O_RDWR);
        if (fd < 0) return false;
        struct stat st;
        if (fstat(fd, &st) != 0 || size_t(st.st_size) != bytes_) {
            close(fd);
            return false;
        }
        map(fd);
        Header* h = header();
        if (h->magic == kMagic && h->size == size_ && h->ready.load(std::memory_order_acquire) == 1 && process_alive(h->creator_pid))
            return true;
        munmap(base_, bytes_);
        base_ = nullptr;
        return false;
    }

    void attach() {
        wait_until([&] { return current_file_is_ready(); }, "rank 0 to create the shared-memory file (is rank 0 running, with the same -pf?)");
    }

    int rank_, size_;
    std::string path_;
    double timeout_;
    size_t bytes_ = 0;
    void* base_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() { return std::make_unique<SingleProcess>(); }

std::unique_ptr<Communicator> make_shared_memory_communicator(int rank, int size, const std::string& dir, double timeout_seconds) {
    return std::make_unique<SharedMemory>(rank, size, dir, timeout_seconds);
}

}  // namespace coldstart
