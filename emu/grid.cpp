// One launch: the checks a GPU makes of its shape, its blocks dealt to the worker threads, and the
// schedule check (COLDSTART_EMU_SCHEDULE=1): the launch runs once with blocks and threads in ascending
// order on one thread, once more from the same device memory in descending order, and the two results
// must be the same bytes. A missing barrier or two threads writing one element makes them differ.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emu/block.h"
#include "emu/internal.h"

namespace emu {
namespace {

std::mutex attributes_mutex;
std::map<const void*, int> dynamic_shared_limits;

// The kernel as its launch names it, and by its own name where the launch names a variable (a kernel
// passed to a helper that launches it).
std::string launch_name(const KernelCall& call, const char* kernel = nullptr) {
    std::string name = kernel && std::string(kernel) != call.name ? std::string(kernel) + " (as " + call.name + ")" : call.name;
    return name + " (launched at " + call.file + ":" + std::to_string(call.line) + ")";
}

// Threads that run blocks; the launching thread works too.
class Workers {
public:
    explicit Workers(int count) {
        for (int i = 0; i < count; ++i) threads_.emplace_back([this] { loop(); });
    }
    ~Workers() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_) t.join();
    }
    // Runs job(i) for i in [0, n) on every worker; job must be safe to run concurrently.
    void run(size_t n, const std::function<bool(size_t)>& job) {
        std::unique_lock<std::mutex> lock(mutex_);
        job_ = &job;
        next_ = 0;
        total_ = n;
        busy_ = int(threads_.size());
        ++generation_;
        lock.unlock();
        wake_.notify_all();
        work();
        lock.lock();
        done_.wait(lock, [this] { return busy_ == 0; });
        job_ = nullptr;
    }

private:
    void work() {
        while (true) {
            const size_t i = next_.fetch_add(1);
            if (i >= total_ || !(*job_)(i)) {
                next_ = total_;  // a failed block stops the others at their next one
                return;
            }
        }
    }
    void loop() {
        unsigned long seen = 0;
        while (true) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            lock.unlock();
            work();
            lock.lock();
            if (--busy_ == 0) done_.notify_all();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const std::function<bool(size_t)>* job_ = nullptr;
    std::atomic<size_t> next_{0};
    size_t total_ = 0;
    int busy_ = 0;
    unsigned long generation_ = 0;
    bool stop_ = false;
};

Workers& workers() {
    static Workers pool(options().threads - 1);
    return pool;
}

uint3 block_index(const dim3& grid, size_t b) {
    return {unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (size_t(grid.x) * grid.y))};
}

struct GridOutcome {
    const char* kernel = nullptr;  // the kernel's own name, from a block that started
    BlockOutcome first_failure;
    uint3 block{0, 0, 0};
    bool failed = false;
};

GridOutcome run_blocks(const KernelCall& call, const LaunchConfig& config, bool parallel, bool reverse) {
    const size_t blocks = size_t(config.grid.x) * config.grid.y * config.grid.z;
    GridOutcome outcome;
    std::mutex mutex;
    auto job = [&](size_t i) {
        const size_t b = reverse ? blocks - 1 - i : i;
        const uint3 idx = block_index(config.grid, b);
        BlockOutcome r = run_block(call, config, idx, reverse);
        std::lock_guard<std::mutex> lock(mutex);
        if (!outcome.kernel) outcome.kernel = r.kernel;
        if (r.error.empty()) return true;
        if (!outcome.failed) {
            outcome.failed = true;
            outcome.first_failure = r;
            outcome.block = idx;
        }
        return false;
    };
    if (parallel && blocks > 1 && options().threads > 1) {
        workers().run(blocks, job);
    } else {
        for (size_t i = 0; i < blocks; ++i)
            if (!job(i)) break;
    }
    return outcome;
}

// Copies of every device allocation (the schedule check runs a launch twice from the same memory).
struct Snapshot {
    std::vector<Allocation> allocations;
    std::vector<std::unique_ptr<char[]>> bytes;
    static Snapshot take() {
        Snapshot s;
        s.allocations = device_allocations();
        for (const Allocation& a : s.allocations) {
            s.bytes.emplace_back(new char[a.bytes]);
            std::memcpy(s.bytes.back().get(), a.base, a.bytes);
        }
        return s;
    }
    void restore() const {
        for (size_t i = 0; i < allocations.size(); ++i) std::memcpy(allocations[i].base, bytes[i].get(), allocations[i].bytes);
    }
    // The first difference from the device's memory now, or "".
    std::string difference() const {
        for (size_t i = 0; i < allocations.size(); ++i) {
            const Allocation& a = allocations[i];
            if (std::memcmp(a.base, bytes[i].get(), a.bytes) == 0) continue;
            size_t first = 0, count = 0;
            for (size_t k = 0; k < a.bytes; ++k)
                if (a.base[k] != bytes[i][k]) {
                    if (count++ == 0) first = k;
                }
            char where[256];
            std::snprintf(where, sizeof where,
                          "%zu of the %zu bytes of the allocation at %p differ, the first at byte %zu (float element %zu)",
                          count, a.bytes, static_cast<void*>(a.base), first, first / 4);
            return where;
        }
        return "";
    }
};

void report(const KernelCall& call, const GridOutcome& g) {
    char block[64];
    std::snprintf(block, sizeof block, "block (%u,%u,%u)", g.block.x, g.block.y, g.block.z);
    fail_device(cudaErrorLaunchFailure, "kernel " + launch_name(call, g.first_failure.kernel) + ", " + block + ": " + g.first_failure.error);
}

}  // namespace

int max_dynamic_shared(const void* kernel) {
    std::lock_guard<std::mutex> lock(attributes_mutex);
    const auto it = dynamic_shared_limits.find(kernel);
    return it == dynamic_shared_limits.end() ? 0 : it->second;
}

void set_max_dynamic_shared(const void* kernel, int bytes) {
    std::lock_guard<std::mutex> lock(attributes_mutex);
    dynamic_shared_limits[kernel] = bytes;
}

cudaError_t check_launch(const KernelCall& call, const LaunchConfig& c) {
    const dim3 &g = c.grid, &b = c.block;
    const size_t threads = size_t(b.x) * b.y * b.z;
    const char* problem = nullptr;
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) problem = "a grid or block dimension is 0";
    else if (b.x > 1024 || b.y > 1024 || b.z > 64) problem = "a block dimension is above the device's limit (1024, 1024, 64)";
    else if (threads > 1024) problem = "more than 1024 threads per block";
    else if (g.y > 65535 || g.z > 65535 || g.x > 2147483647u) problem = "a grid dimension is above the device's limit";
    if (problem) {
        std::fprintf(stderr, "emulated device: launch of %s: grid (%u,%u,%u), block (%u,%u,%u): %s\n", launch_name(call).c_str(), g.x,
                     g.y, g.z, b.x, b.y, b.z, problem);
        return cudaErrorInvalidConfiguration;
    }
    if (c.shared_bytes > kOptInSharedBytes) {
        std::fprintf(stderr, "emulated device: launch of %s: %zu bytes of dynamic shared memory, above the device's %zu\n",
                     launch_name(call).c_str(), c.shared_bytes, kOptInSharedBytes);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

void run_launch(const KernelCall& call, const LaunchConfig& config) {
    if (sticky_error() != cudaSuccess) return;  // a broken context runs nothing more
    if (!options().schedule_check) {
        const GridOutcome g = run_blocks(call, config, true, false);
        if (g.failed && g.first_failure.launch_error != cudaSuccess && !options().deferred) {
            std::fprintf(stderr, "emulated device: launch of %s: %s\n", launch_name(call, g.first_failure.kernel).c_str(), g.first_failure.error.c_str());
            set_last_error(g.first_failure.launch_error);
        } else if (g.failed) {
            report(call, g);
        }
        return;
    }
    const Snapshot before = Snapshot::take();
    GridOutcome g = run_blocks(call, config, false, false);
    if (!g.failed) {
        const Snapshot forward = Snapshot::take();
        before.restore();
        g = run_blocks(call, config, false, true);
        if (!g.failed) {
            const std::string diff = forward.difference();
            if (!diff.empty())
                fail_device(cudaErrorLaunchFailure,
                            "schedule check: kernel " + launch_name(call, g.kernel) +
                                " gave different bytes when its blocks and threads ran in descending instead of ascending "
                                "order: " + diff +
                                ". A barrier is missing, or threads race on an element (two writes, or a read of what "
                                "another thread writes).");
            return;
        }
    }
    if (g.first_failure.launch_error != cudaSuccess && !options().deferred) {
        std::fprintf(stderr, "emulated device: launch of %s: %s\n", launch_name(call, g.first_failure.kernel).c_str(), g.first_failure.error.c_str());
        set_last_error(g.first_failure.launch_error);
        before.restore();
        return;
    }
    report(call, g);
}

void submit_launch(const KernelCall& call, const LaunchConfig& config) {
    std::shared_ptr<const void> closure(call.closure, call.destroy);
    const cudaError_t err = check_launch(call, config);
    if (err != cudaSuccess) {
        set_last_error(err);
        return;
    }
    KernelCall copy = call;
    enqueue(config.stream, [copy, config, closure] { run_launch(copy, config); });
}

}  // namespace emu
