// One block's fibers (Boost.Context's fcontext: a switch is a few register moves, about 13x faster than
// ucontext, which makes a system call per switch). A fiber that must wait switches straight to the next
// ready fiber of its block; the last one to arrive at a barrier or a shuffle completes it and goes on, and
// the waiters run after it in thread order (or reverse order, for the schedule check). Nothing runs
// between two scheduling points of a fiber, so no locks are needed inside a block.
#include "emu/block.h"

#include <sys/mman.h>
#include <unistd.h>

#include <boost/context/detail/fcontext.hpp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"  // format
#include "emu/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

namespace emu {

thread_local ThreadState* tls_thread = nullptr;
thread_local BlockView tls_block;

namespace {

namespace fc = boost::context::detail;
using coldstart::format;

// Kernels keep small arrays in registers on a GPU and on the fiber's stack here; AddressSanitizer's
// redzones need more room.
constexpr size_t kStackBytes = EMU_ASAN ? 512 * 1024 : 128 * 1024;

enum class State { ready, barrier, warp, exited };

// A cp.async in flight: it lands when a wait completes its group (-1: not committed yet).
struct AsyncCopy {
    char* dst;
    const char* src;
    size_t bytes, src_bytes;
    long group;
    const char* file;
    int line;
};

struct Fiber : ThreadState {
    fc::fcontext_t context;
    State state;
    // where it waits
    const char* op;
    const char* file;
    int line;
    // a warp operation: the mask, the bits it offers, the lane it reads, the bits it got; or, for a warp
    // collective, where its input and output are
    unsigned mask;
    uint64_t bits;
    int src;
    uint64_t result;
    const void* in;
    void* out;
    // cp.async: the copies not landed yet, and the groups committed so far
    std::vector<AsyncCopy> copies;
    long groups;
    char* stack;  // lowest usable address
    void* fake_stack;
};

// Fiber stacks of this OS thread, each with a guard page below it (a kernel that overflows its stack faults
// instead of writing into another fiber's). A fiber takes a stack when it first runs and gives it back when
// it ends, so a kernel without barriers runs every thread of a block on one stack that stays in the cache.
class StackPool {
public:
    ~StackPool() {
        for (char* s : all_) munmap(s - page(), kStackBytes + page());
    }
    char* take() {
        if (free_.empty()) {
            void* p = mmap(nullptr, kStackBytes + page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) {
                std::fprintf(stderr, "emulated device: cannot map a fiber stack\n");
                std::abort();
            }
            mprotect(p, page(), PROT_NONE);
            all_.push_back(static_cast<char*>(p) + page());
            free_.push_back(all_.back());
        }
        char* s = free_.back();
        free_.pop_back();
#if EMU_ASAN
        __asan_unpoison_memory_region(s, kStackBytes);  // a fiber abandoned by a failed block left it poisoned
#endif
        return s;
    }
    void give(char* s) { free_.push_back(s); }

private:
    static size_t page() { return size_t(sysconf(_SC_PAGESIZE)); }
    std::vector<char*> all_, free_;
};

}  // namespace

struct BlockRun {
    const KernelCall* call;
    const LaunchConfig* config;
    std::vector<Fiber>* fibers;
    StackPool* stacks;
    int n;
    bool reverse;
    std::vector<int> ready;  // a ring of fiber indices
    size_t head = 0, count = 0;
    int live, exited = 0;
    int at_barrier = 0;
    const char* barrier_file = nullptr;
    int barrier_line = 0;
    std::vector<unsigned> warp_waiting;  // per warp: the lanes waiting at a warp operation
    std::vector<unsigned> warp_exited;   // per warp: the lanes that have exited
    fc::fcontext_t scheduler = nullptr;
    const void* scheduler_stack = nullptr;
    size_t scheduler_stack_bytes = 0;
    void* scheduler_fake_stack = nullptr;
    std::vector<std::pair<void*, size_t>> touched;  // static shared variables poisoned in this block
    size_t static_shared = 0;
    bool entered = false;
    const char* kernel_name = nullptr;
    BlockOutcome outcome;

    Fiber& fiber(int i) { return (*fibers)[size_t(i)]; }
    void push(int i) {
        size_t slot = head + count;
        if (slot >= size_t(n)) slot -= size_t(n);
        ready[slot] = i;
        ++count;
    }
    Fiber* pop() {
        if (count == 0) return nullptr;
        const int i = ready[head];
        if (++head == size_t(n)) head = 0;
        --count;
        return &fiber(i);
    }
    template <typename F>
    void each_in_order(F f) {
        if (reverse)
            for (int i = n - 1; i >= 0; --i) f(fiber(i));
        else
            for (int i = 0; i < n; ++i) f(fiber(i));
    }
    const char* name() const { return kernel_name ? kernel_name : call->name; }
};

namespace {

Fiber* current() { return static_cast<Fiber*>(tls_thread); }

// ---- switching, with AddressSanitizer told which stack is live ----

void fiber_main(fc::transfer_t t);

void before_switch(void** fake_stack_save, const void* to_stack, size_t to_bytes) {
#if EMU_ASAN
    __sanitizer_start_switch_fiber(fake_stack_save, to_stack, to_bytes);
#else
    (void)fake_stack_save, (void)to_stack, (void)to_bytes;
#endif
}

// Where every jump lands: record the context of the fiber that jumped (null data: the scheduler).
void after_switch(void* fake_stack, fc::transfer_t t, BlockRun* run) {
#if EMU_ASAN
    const void* from_stack = nullptr;
    size_t from_bytes = 0;
    __sanitizer_finish_switch_fiber(fake_stack, &from_stack, &from_bytes);
    if (!t.data && !run->scheduler_stack) {
        run->scheduler_stack = from_stack;
        run->scheduler_stack_bytes = from_bytes;
    }
#else
    (void)fake_stack;
#endif
    if (!t.data) {
        run->scheduler = t.fctx;
        return;
    }
    Fiber* from = static_cast<Fiber*>(t.data);
    from->context = t.fctx;
    if (from->state == State::exited) {  // it has left its stack for good
        run->stacks->give(from->stack);
        from->stack = nullptr;
    }
}

// A fiber that has not run yet gets its stack and its context now.
void start_if_new(Fiber* f) {
    if (f->stack) return;
    f->stack = f->block->stacks->take();
    f->context = fc::make_fcontext(f->stack + kStackBytes, kStackBytes, fiber_main);
}

void switch_to(Fiber* next) {
    Fiber* me = current();
    BlockRun* run = me->block;
    start_if_new(next);
    tls_thread = next;
    before_switch(me->state == State::exited ? nullptr : &me->fake_stack, next->stack, kStackBytes);
    const fc::transfer_t t = fc::jump_fcontext(next->context, me);
    after_switch(me->fake_stack, t, run);
}

[[noreturn]] void to_scheduler() {
    Fiber* me = current();
    BlockRun* run = me->block;
    tls_thread = nullptr;
    before_switch(nullptr, run->scheduler_stack, run->scheduler_stack_bytes);
    fc::jump_fcontext(run->scheduler, me);
    __builtin_unreachable();  // the scheduler never resumes a fiber that gave up its block
}

// The block stops here: the message names the kernel and its launch; the block's fibers are abandoned.
[[noreturn]] void fail(const std::string& what) {
    BlockRun* run = current()->block;
    run->outcome.error = what;
    to_scheduler();
}

[[noreturn]] void fail_launch(cudaError_t err, const std::string& what) {
    current()->block->outcome.launch_error = err;
    fail(what);
}

std::string where(const Fiber& f) { return format("%s (%s:%d)", f.op, f.file, f.line); }

std::string thread_name(const Fiber& f) {
    return format("thread (%u,%u,%u)", f.thread_idx.x, f.thread_idx.y, f.thread_idx.z);
}

[[noreturn]] void deadlock() {
    BlockRun* run = current()->block;
    std::string what = "deadlock: no thread of the block can go on;";
    std::vector<bool> told(size_t(run->n), false);
    for (int i = 0; i < run->n; ++i) {
        const Fiber& f = run->fiber(i);
        if (f.state == State::exited || told[size_t(i)]) continue;
        int count = 0;
        for (int j = i; j < run->n; ++j) {
            const Fiber& g = run->fiber(j);
            if (g.state == f.state && g.line == f.line && g.op == f.op && !told[size_t(j)]) {
                told[size_t(j)] = true;
                ++count;
            }
        }
        what += format(" %d thread(s) from %s wait at %s;", count, thread_name(f).c_str(), where(f).c_str());
        if (f.state == State::warp)
            what += format(" (their warp's lanes 0x%08x have not arrived there)", f.mask & ~run->warp_waiting[size_t(f.linear / 32)]);
    }
    if (run->exited) what += format(" %d thread(s) have exited.", run->exited);
    fail(what);
}

void wait_here() {
    Fiber* next = current()->block->pop();
    if (!next) deadlock();
    switch_to(next);
}

void release_barrier(BlockRun& run, Fiber* me) {
    run.each_in_order([&](Fiber& f) {
        if (f.state == State::barrier && &f != me) {
            f.state = State::ready;
            run.push(f.linear);
        }
    });
    if (me) me->state = State::ready;
    run.at_barrier = 0;
}

[[noreturn]] void thread_exit() {
    Fiber* me = current();
    BlockRun& run = *me->block;
    if (!me->copies.empty()) {
        const AsyncCopy& c = me->copies.front();
        fail(format("%s ended with %zu cp.async copies never waited for, the first from %s:%d: without "
                    "cp.async.wait_group their bytes may land at any time, or never",
                    thread_name(*me).c_str(), me->copies.size(), c.file, c.line));
    }
    me->state = State::exited;
    --run.live;
    ++run.exited;
    const int warp = me->linear / 32, lane = me->linear % 32;
    run.warp_exited[size_t(warp)] |= 1u << lane;
    const unsigned waiting = run.warp_waiting[size_t(warp)];
    for (int l = 0; l < 32; ++l) {
        if (!(waiting >> l & 1)) continue;
        const Fiber& other = run.fiber(warp * 32 + l);
        if (other.mask >> lane & 1)
            fail(format("%s exited while lane %d of its warp waits for it at %s (mask 0x%08x): lanes that leave "
                        "before a warp operation make its result undefined on a GPU",
                        thread_name(*me).c_str(), l, where(other).c_str(), other.mask));
    }
    if (run.at_barrier > 0) {
        if (options().strict)
            fail(format("%s exited while %d thread(s) wait at __syncthreads (%s:%d) (strict mode: exited threads "
                        "count as arrived on a GPU, which a barrier that not every thread reaches relies on)",
                        thread_name(*me).c_str(), run.at_barrier, run.barrier_file, run.barrier_line));
        if (run.at_barrier == run.live) release_barrier(run, nullptr);
    }
    if (Fiber* next = run.pop()) switch_to(next);
    if (run.live == 0) to_scheduler();
    deadlock();
}

void fiber_main(fc::transfer_t t) {
    Fiber* me = current();
    after_switch(nullptr, t, me->block);
    me->block->call->invoke(me->block->call->closure);
    thread_exit();
}

}  // namespace

// ---- what the kernels call (emu/device.h) ----

void syncthreads(const char* file, int line) {
    Fiber* me = current();
    BlockRun& run = *me->block;
    if (options().strict && run.exited > 0)
        fail(format("__syncthreads (%s:%d) reached after %d of the block's %d threads exited (strict mode; a GPU "
                    "counts them as arrived)",
                    file, line, run.exited, run.n));
    if (run.at_barrier == 0) {
        run.barrier_file = file;
        run.barrier_line = line;
    } else if (options().strict && (line != run.barrier_line || std::strcmp(file, run.barrier_file) != 0)) {
        fail(format("threads of one block wait at different barriers: %s at __syncthreads (%s:%d), others at "
                    "__syncthreads (%s:%d) (strict mode: a barrier in divergent code)",
                    thread_name(*me).c_str(), file, line, run.barrier_file, run.barrier_line));
    }
    me->state = State::barrier;
    me->op = "__syncthreads";
    me->file = file;
    me->line = line;
    if (++run.at_barrier == run.live) {
        release_barrier(run, me);
        return;
    }
    wait_here();
}

namespace {

// Why a warp operation cannot go on (the cold path of warp_exchange): never returns.
[[noreturn, gnu::cold, gnu::noinline]] void warp_misuse(const Fiber& me, unsigned mask, unsigned present, const char* op,
                                                        const char* file, int line) {
    BlockRun& run = *me.block;
    const int warp = me.linear / 32, lane = me.linear % 32;
    if (!(mask >> lane & 1))
        fail(format("%s (%s:%d): lane %d of warp %d calls it with mask 0x%08x, which does not name the lane itself",
                    op, file, line, lane, warp, mask));
    if (mask & ~present)
        fail(format("%s (%s:%d): mask 0x%08x names lanes the block does not have (%d threads: warp %d has lanes 0-%d)",
                    op, file, line, mask, run.n, warp, __builtin_popcount(present) - 1));
    if (const unsigned gone = mask & run.warp_exited[size_t(warp)])
        fail(format("%s (%s:%d): mask 0x%08x names lane %d of warp %d, which has exited: a lane that leaves before a "
                    "warp operation makes its result undefined on a GPU",
                    op, file, line, mask, __builtin_ctz(gone), warp));
    const int l = __builtin_ctz(run.warp_waiting[size_t(warp)] & mask);
    const Fiber& other = run.fiber(warp * 32 + l);
    fail(format("lanes of warp %d disagree: lane %d is at %s with mask 0x%08x, lane %d at %s (%s:%d) with mask 0x%08x", warp, l,
                where(other).c_str(), other.mask, lane, op, file, line, mask));
}

}  // namespace

namespace {

// A lane arrives at a warp operation: checked against the lanes already there, then it waits, or, if it is the
// last of its mask, returns true to complete the operation for all of them (then warp_release).
bool warp_arrive(Fiber* me, unsigned mask, const char* op, const char* file, int line) {
    BlockRun& run = *me->block;
    const int warp = me->linear / 32, lane = me->linear % 32;
    const int lanes_here = std::min(32, run.n - warp * 32);
    const unsigned present = lanes_here == 32 ? 0xffffffffu : (1u << lanes_here) - 1;
    unsigned& waiting = run.warp_waiting[size_t(warp)];
    // The lanes already waiting in this mask agree with each other (each was checked on arrival): one stands for all.
    const unsigned others = waiting & mask;
    const Fiber* other = others ? &run.fiber(warp * 32 + __builtin_ctz(others)) : nullptr;
    if (__builtin_expect(!(mask >> lane & 1) || (mask & ~present) || (mask & run.warp_exited[size_t(warp)]) ||
                             (other && (other->mask != mask || other->line != line || other->op != op)),
                         0))
        warp_misuse(*me, mask, present, op, file, line);
    me->state = State::warp;
    me->op = op;
    me->file = file;
    me->line = line;
    me->mask = mask;
    waiting |= 1u << lane;
    if ((waiting & mask) != mask) {
        wait_here();
        return false;
    }
    return true;
}

// The last lane has completed the operation: the others of its mask may go on (after it).
void warp_release(Fiber* me, unsigned mask) {
    BlockRun& run = *me->block;
    const int warp = me->linear / 32, lane = me->linear % 32;
    run.warp_waiting[size_t(warp)] &= ~mask;
    for (int k = 0; k < 32; ++k) {
        const int l = run.reverse ? 31 - k : k;
        if (!(mask >> l & 1) || l == lane) continue;
        Fiber& f = run.fiber(warp * 32 + l);
        f.state = State::ready;
        run.push(f.linear);
    }
    me->state = State::ready;
}

}  // namespace

uint64_t warp_exchange(unsigned mask, uint64_t bits, int src, const char* op, const char* file, int line) {
    Fiber* me = current();
    me->bits = bits;
    me->src = src;
    if (!warp_arrive(me, mask, op, file, line)) return me->result;
    BlockRun& run = *me->block;
    const int warp = me->linear / 32;
    for (unsigned bits_left = mask; bits_left; bits_left &= bits_left - 1) {
        const int l = __builtin_ctz(bits_left);
        Fiber& f = run.fiber(warp * 32 + l);
        if (!(mask >> f.src & 1))
            fail(format("%s (%s:%d): lane %d reads lane %d, which is not in the mask 0x%08x (undefined on a GPU)", op, file,
                        line, l, f.src, mask));
        f.result = run.fiber(warp * 32 + f.src).bits;
    }
    warp_release(me, mask);
    return me->result;
}

// The lanes' inputs and outputs are read and written where they are, in the waiting lanes' own frames, which stay
// untouched until the operation has completed: no copy into a buffer, and one switch per lane.
void warp_collective(unsigned mask, const void* in, void* out, void (*combine)(const WarpLanes&), const char* op,
                     const char* file, int line) {
    Fiber* me = current();
    me->in = in;
    me->out = out;
    if (!warp_arrive(me, mask, op, file, line)) return;
    BlockRun& run = *me->block;
    const int warp = me->linear / 32;
    WarpLanes lanes;
    lanes.mask = mask;
    for (int l = 0; l < 32; ++l) {
        const bool member = mask >> l & 1;
        lanes.in[l] = member ? run.fiber(warp * 32 + l).in : nullptr;
        lanes.out[l] = member ? run.fiber(warp * 32 + l).out : nullptr;
    }
    combine(lanes);
    warp_release(me, mask);
}

void syncwarp(unsigned mask, const char* file, int line) {
    warp_exchange(mask, 0, tls_thread->linear % 32, "__syncwarp", file, line);
}

void* dynamic_shared() { return tls_block.dynamic_shared; }

void shared_touch(void* address, size_t bytes) {
    BlockRun& run = *current()->block;
    for (const auto& t : run.touched)
        if (t.first == address) return;
    std::memset(address, 0xFF, bytes);  // NaN in every float and bf16: a read before any write shows
    run.touched.push_back({address, bytes});
    run.static_shared += bytes;
    if (run.static_shared + run.config->shared_bytes > kOptInSharedBytes)
        fail_launch(cudaErrorInvalidValue,
                    format("%zu bytes of static and %zu of dynamic shared memory: above the device's %zu per block",
                           run.static_shared, run.config->shared_bytes, kOptInSharedBytes));
}

void require_shared(const void* p, size_t bytes, size_t align, const char* op, const char* file, int line) {
    const BlockRun& run = *current()->block;
    const char* c = static_cast<const char*>(p);
    const auto inside = [&](const void* base, size_t size) {
        const char* b = static_cast<const char*>(base);
        return c >= b && c + bytes <= b + size;
    };
    bool shared = inside(tls_block.dynamic_shared, run.config->shared_bytes);
    for (const auto& t : run.touched) shared = shared || inside(t.first, t.second);
    if (!shared)
        fail(format("%s (%s:%d): %zu bytes at %p are not inside the block's shared memory", op, file, line, bytes, p));
    if (reinterpret_cast<uintptr_t>(p) % align)
        fail(format("%s (%s:%d): the shared address %p is not aligned to %zu bytes", op, file, line, p, align));
}

void async_copy(void* dst, const void* src, size_t bytes, size_t src_bytes, const char* file, int line) {
    require_shared(dst, bytes, bytes, "cp.async", file, line);
    if (reinterpret_cast<uintptr_t>(src) % bytes)
        fail(format("cp.async (%s:%d): the global address %p is not aligned to the copy's %zu bytes", file, line, src, bytes));
    std::memset(dst, 0xFF, bytes);
    current()->copies.push_back({static_cast<char*>(dst), static_cast<const char*>(src), bytes, src_bytes, -1, file, line});
}

void async_commit() {
    Fiber* me = current();
    for (AsyncCopy& c : me->copies)
        if (c.group < 0) c.group = me->groups;
    ++me->groups;
}

void async_wait(int newest_pending) {
    Fiber* me = current();
    const long complete_below = me->groups - newest_pending;  // groups [0, complete_below) must have landed
    size_t kept = 0;
    for (AsyncCopy& c : me->copies) {
        if (c.group >= 0 && c.group < complete_below) {
            std::memcpy(c.dst, c.src, c.src_bytes);
            std::memset(c.dst + c.src_bytes, 0, c.bytes - c.src_bytes);
        } else {
            me->copies[kept++] = c;
        }
    }
    me->copies.resize(kept);
}

void kernel_entry(const void* kernel, const char* name, int max_threads) {
    BlockRun& run = *current()->block;
    if (run.entered) return;
    run.entered = true;
    run.kernel_name = name;
    if (max_threads > 0 && run.n > max_threads)
        fail_launch(cudaErrorLaunchOutOfResources,
                    format("a block of %d threads, above the kernel's __launch_bounds__(%d)", run.n, max_threads));
    const size_t dynamic = run.config->shared_bytes;
    if (dynamic > kDefaultSharedBytes && dynamic > size_t(max_dynamic_shared(kernel)))
        fail_launch(cudaErrorInvalidValue,
                    format("%zu bytes of dynamic shared memory: above 48 KiB needs cudaFuncSetAttribute(kernel, "
                           "cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) first (set for this kernel: %d)",
                           dynamic, max_dynamic_shared(kernel)));
}

BlockOutcome run_block(const KernelCall& call, const LaunchConfig& config, uint3 block_idx, bool reverse) {
    thread_local StackPool stacks;
    thread_local std::vector<Fiber> fibers;
    const int n = int(config.block.x * config.block.y * config.block.z);
    if (fibers.size() < size_t(n)) fibers.resize(size_t(n));
    BlockRun run;
    run.call = &call;
    run.config = &config;
    run.fibers = &fibers;
    run.stacks = &stacks;
    run.n = n;
    run.live = n;
    run.reverse = reverse;
    run.ready.assign(size_t(n), 0);
    run.warp_waiting.assign(size_t(n + 31) / 32, 0);
    run.warp_exited.assign(size_t(n + 31) / 32, 0);
    // Dynamic shared memory, exactly as large as asked (AddressSanitizer sees an overrun), poisoned.
    std::unique_ptr<char[]> dynamic(new char[config.shared_bytes ? config.shared_bytes : 1]);
    std::memset(dynamic.get(), 0xFF, config.shared_bytes);
    tls_block = {block_idx, config.block, config.grid, dynamic.get()};
    for (int i = 0; i < n; ++i) {
        Fiber& f = fibers[size_t(i)];
        f.thread_idx = {unsigned(i) % config.block.x, unsigned(i) / config.block.x % config.block.y,
                        unsigned(i) / (config.block.x * config.block.y)};
        f.block = &run;
        f.linear = i;
        f.state = State::ready;
        f.fake_stack = nullptr;
        f.stack = nullptr;
        f.copies.clear();
        f.groups = 0;
    }
    run.each_in_order([&](Fiber& f) { run.push(f.linear); });
    Fiber* first = run.pop();
    start_if_new(first);
    tls_thread = first;
    before_switch(&run.scheduler_fake_stack, first->stack, kStackBytes);
    const fc::transfer_t t = fc::jump_fcontext(first->context, nullptr);
    after_switch(run.scheduler_fake_stack, {t.fctx, nullptr}, &run);
    tls_thread = nullptr;
    run.outcome.kernel = run.kernel_name;
    // The last fiber jumped here from its own stack, and a failed block abandons fibers that hold theirs.
    for (int i = 0; i < n; ++i)
        if (fibers[size_t(i)].stack) stacks.give(fibers[size_t(i)].stack);
    return run.outcome;
}

}  // namespace emu
