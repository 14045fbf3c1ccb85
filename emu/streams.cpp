// Streams and events. By default every operation runs when it is called, which is one order a GPU could
// choose. With COLDSTART_EMU_DEFERRED=1 an operation is queued on its stream and runs only when the host
// waits (a stream or event synchronisation, a synchronous copy, cudaFree): the other extreme, where the
// host runs as far ahead of the device as CUDA allows. Ordering follows CUDA's rules: a stream's work in
// order, cudaStreamWaitEvent, and the legacy default stream (0), which waits for every blocking stream and
// is waited for by them; streams made with cudaStreamNonBlocking do not take part in that.
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "emu/internal.h"

namespace emu {
namespace {

struct StreamImpl;

struct Item {
    unsigned long seq;
    std::function<void()> work;
    std::vector<std::pair<StreamImpl*, unsigned long>> after;  // run these streams up to these items first
};

struct StreamImpl {
    std::deque<Item> queue;
    bool blocking = true;
    unsigned long last = 0;  // the newest item queued
};

struct EventImpl {
    StreamImpl* stream = nullptr;
    unsigned long seq = 0;
    bool recorded = false, done = false, timing = true;
    std::chrono::steady_clock::time_point time;
};

std::recursive_mutex mutex;
StreamImpl legacy;
std::set<StreamImpl*> streams;
std::set<EventImpl*> events;
unsigned long next_seq = 0;

StreamImpl* resolve(cudaStream_t s) {
    if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return &legacy;
    return reinterpret_cast<StreamImpl*>(s);
}

bool valid(cudaStream_t s) { return resolve(s) == &legacy || streams.count(resolve(s)) != 0; }

unsigned long waits_that_ran = 0;  // host waits that ran queued work (host_waits_that_ran_work)
int wait_depth = 0;

void run_until(StreamImpl* s, unsigned long seq) {
    const bool ran = !s->queue.empty() && s->queue.front().seq <= seq;
    ++wait_depth;
    while (!s->queue.empty() && s->queue.front().seq <= seq) {
        Item item = std::move(s->queue.front());
        s->queue.pop_front();
        for (const auto& dep : item.after) run_until(dep.first, dep.second);
        item.work();
    }
    --wait_depth;
    if (ran && wait_depth == 0) ++waits_that_ran;
}

void queue_on(StreamImpl* s, std::function<void()> work) {
    Item item{++next_seq, std::move(work), {}};
    if (s == &legacy) {
        for (StreamImpl* b : streams)
            if (b->blocking && !b->queue.empty()) item.after.push_back({b, b->last});
    } else if (s->blocking && !legacy.queue.empty()) {
        item.after.push_back({&legacy, legacy.last});
    }
    s->last = item.seq;
    s->queue.push_back(std::move(item));
}

}  // namespace

void enqueue(cudaStream_t stream, std::function<void()> work) {
    std::lock_guard<std::recursive_mutex> lock(mutex);
    if (!options().deferred) {
        work();
        return;
    }
    queue_on(resolve(stream), std::move(work));
}

void drain(cudaStream_t stream) {
    std::lock_guard<std::recursive_mutex> lock(mutex);
    if (stream) {
        StreamImpl* s = resolve(stream);
        run_until(s, s->last);
        return;
    }
    bool again = true;
    while (again) {
        again = false;
        run_until(&legacy, legacy.last);
        for (StreamImpl* s : streams) {
            again = again || !s->queue.empty();
            run_until(s, s->last);
        }
    }
}

void set_deferred_streams(bool on) {
    std::lock_guard<std::recursive_mutex> lock(mutex);
    if (!on) drain(nullptr);
    options_for_tests().deferred = on;
}

unsigned long host_waits_that_ran_work() {
    std::lock_guard<std::recursive_mutex> lock(mutex);
    return waits_that_ran;
}

}  // namespace emu

using namespace emu;

extern "C" {

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
    EMU_STICKY();
    if (!stream) return set_last_error(cudaErrorInvalidValue);
    std::lock_guard<std::recursive_mutex> lock(mutex);
    auto* s = new StreamImpl;
    s->blocking = !(flags & cudaStreamNonBlocking);
    streams.insert(s);
    *stream = reinterpret_cast<cudaStream_t>(s);
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    std::lock_guard<std::recursive_mutex> lock(mutex);
    if (!valid(stream) || resolve(stream) == &legacy) return set_last_error(cudaErrorInvalidResourceHandle);
    StreamImpl* s = resolve(stream);
    run_until(s, s->last);  // its work still completes
    streams.erase(s);
    delete s;
    return sticky_error();
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    EMU_STICKY();
    std::lock_guard<std::recursive_mutex> lock(mutex);
    if (!valid(stream)) return set_last_error(cudaErrorInvalidResourceHandle);
    drain(stream);
    return sticky_error();
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
    EMU_STICKY();
    std::lock_guard<std::recursive_mutex> lock(mutex);
    if (!valid(stream)) return set_last_error(cudaErrorInvalidResourceHandle);
    return resolve(stream)->queue.empty() ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
    if (!event) return set_last_error(cudaErrorInvalidValue);
    std::lock_guard<std::recursive_mutex> lock(mutex);
    auto* e = new EventImpl;
    e->timing = !(flags & cudaEventDisableTiming);
    events.insert(e);
    *event = reinterpret_cast<cudaEvent_t>(e);
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    std::lock_guard<std::recursive_mutex> lock(mutex);
    auto* e = reinterpret_cast<EventImpl*>(event);
    if (!events.count(e)) return set_last_error(cudaErrorInvalidResourceHandle);
    if (e->recorded && !e->done) run_until(e->stream, e->seq);  // a queued record must not touch freed memory
    events.erase(e);
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    EMU_STICKY();
    std::lock_guard<std::recursive_mutex> lock(mutex);
    auto* e = reinterpret_cast<EventImpl*>(event);
    if (!events.count(e) || !valid(stream)) return set_last_error(cudaErrorInvalidResourceHandle);
    e->recorded = true;
    e->done = false;
    e->stream = resolve(stream);
    enqueue(stream, [e] {
        e->time = std::chrono::steady_clock::now();
        e->done = true;
    });
    e->seq = e->stream->last;
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
    EMU_STICKY();
    std::lock_guard<std::recursive_mutex> lock(mutex);
    auto* e = reinterpret_cast<EventImpl*>(event);
    if (!events.count(e) || !valid(stream)) return set_last_error(cudaErrorInvalidResourceHandle);
    if (!options().deferred || !e->recorded || e->done) return cudaSuccess;
    queue_on(resolve(stream), [] {});
    resolve(stream)->queue.back().after.push_back({e->stream, e->seq});
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    EMU_STICKY();
    std::lock_guard<std::recursive_mutex> lock(mutex);
    auto* e = reinterpret_cast<EventImpl*>(event);
    if (!events.count(e)) return set_last_error(cudaErrorInvalidResourceHandle);
    if (e->recorded && !e->done) run_until(e->stream, e->seq);
    return sticky_error();
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
    EMU_STICKY();
    std::lock_guard<std::recursive_mutex> lock(mutex);
    auto* e = reinterpret_cast<EventImpl*>(event);
    if (!events.count(e)) return set_last_error(cudaErrorInvalidResourceHandle);
    return !e->recorded || e->done ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    EMU_STICKY();
    std::lock_guard<std::recursive_mutex> lock(mutex);
    auto* a = reinterpret_cast<EventImpl*>(start);
    auto* b = reinterpret_cast<EventImpl*>(end);
    if (!ms || !events.count(a) || !events.count(b)) return set_last_error(cudaErrorInvalidResourceHandle);
    if (!a->timing || !b->timing || !a->recorded || !b->recorded) return set_last_error(cudaErrorInvalidResourceHandle);
    if (!a->done || !b->done) return set_last_error(cudaErrorNotReady);
    *ms = std::chrono::duration<float, std::milli>(b->time - a->time).count();
    return cudaSuccess;
}

}  // extern "C"
