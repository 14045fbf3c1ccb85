// The CUDA runtime API over host memory: what coldstart calls (the list in docs/EMULATION.md), with the
// errors a GPU gives for the same misuse. Device memory is host memory from posix_memalign (256-byte
// aligned, as cudaMalloc's, exactly as large as asked, so AddressSanitizer sees an overrun) and starts
// as 0xFF bytes, NaN in every float and bf16: a kernel that reads what nothing wrote shows it.
//
// Streams run their work at once, or with COLDSTART_EMU_DEFERRED=1 only at the next synchronisation
// point (emu/streams.cpp), which exposes a host buffer reused before its asynchronous copy ran.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emu/internal.h"

namespace emu {
namespace {

bool env_flag(const char* name) {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, "0") != 0 && *v;
}

long env_long(const char* name, long fallback) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end || x <= 0) {
        std::fprintf(stderr, "emulated device: %s=%s: expected a positive whole number\n", name, v);
        std::exit(1);
    }
    return x;
}

thread_local cudaError_t last_error = cudaSuccess;
std::mutex sticky_mutex;
cudaError_t sticky = cudaSuccess;
std::string failure;

std::mutex memory_mutex;
std::map<const char*, Allocation> allocations;  // by base address
size_t device_bytes_in_use = 0;

int current_device = 0;

}  // namespace

Options& options_for_tests() {
    static Options o = [] {
        Options x;
        x.strict = env_flag("COLDSTART_EMU_STRICT");
        x.schedule_check = env_flag("COLDSTART_EMU_SCHEDULE");
        x.deferred = env_flag("COLDSTART_EMU_DEFERRED");
        x.abort_on_error = env_flag("COLDSTART_EMU_ABORT");
        const unsigned cores = std::thread::hardware_concurrency();
        x.threads = int(env_long("COLDSTART_EMU_THREADS", cores ? long(cores) : 1));
        x.memory_bytes = size_t(env_long("COLDSTART_EMU_MEMORY_MIB", 16384)) << 20;
        return x;
    }();
    return o;
}
const Options& options() { return options_for_tests(); }

cudaError_t set_last_error(cudaError_t err) {
    if (err != cudaSuccess) last_error = err;
    return err;
}
cudaError_t take_last_error() {
    const cudaError_t s = sticky_error();
    if (s != cudaSuccess) return s;
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t peek_last_error() {
    const cudaError_t s = sticky_error();
    return s != cudaSuccess ? s : last_error;
}

void fail_device(cudaError_t err, const std::string& message) {
    std::fprintf(stderr, "emulated device: %s\n", message.c_str());
    std::fflush(stderr);
    if (options().abort_on_error) std::abort();
    std::lock_guard<std::mutex> lock(sticky_mutex);
    if (sticky == cudaSuccess) sticky = err;
    failure = message;
}
std::string last_failure() {
    std::lock_guard<std::mutex> lock(sticky_mutex);
    return failure;
}
cudaError_t sticky_error() {
    std::lock_guard<std::mutex> lock(sticky_mutex);
    return sticky;
}
void clear_sticky_error() {
    std::lock_guard<std::mutex> lock(sticky_mutex);
    sticky = cudaSuccess;
    last_error = cudaSuccess;
}

const Allocation* find_allocation(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(memory_mutex);
    const char* c = static_cast<const char*>(p);
    auto it = allocations.upper_bound(c);
    if (it == allocations.begin()) return nullptr;
    --it;
    const Allocation& a = it->second;
    if (c < a.base || c + bytes > a.base + a.bytes) return nullptr;
    return &a;
}

std::vector<Allocation> device_allocations() {
    std::lock_guard<std::mutex> lock(memory_mutex);
    std::vector<Allocation> out;
    for (const auto& kv : allocations)
        if (!kv.second.pinned) out.push_back(kv.second);
    return out;
}

void free_all_allocations() {
    std::lock_guard<std::mutex> lock(memory_mutex);
    for (auto& kv : allocations) std::free(kv.second.base);
    allocations.clear();
    device_bytes_in_use = 0;
}

namespace {

cudaError_t allocate(void** p, size_t bytes, bool pinned) {
    if (!p) return set_last_error(cudaErrorInvalidValue);
    *p = nullptr;
    std::lock_guard<std::mutex> lock(memory_mutex);
    if (!pinned && device_bytes_in_use + bytes > options().memory_bytes) return set_last_error(cudaErrorMemoryAllocation);
    void* q = nullptr;
    if (posix_memalign(&q, 256, bytes ? bytes : 1) != 0) return set_last_error(cudaErrorMemoryAllocation);
    if (!pinned) std::memset(q, 0xFF, bytes);
    allocations[static_cast<char*>(q)] = {static_cast<char*>(q), bytes, pinned};
    if (!pinned) device_bytes_in_use += bytes;
    *p = q;
    return cudaSuccess;
}

cudaError_t release(void* p, bool pinned) {
    if (!p) return cudaSuccess;
    drain(nullptr);  // as cudaFree, which waits for the device
    std::lock_guard<std::mutex> lock(memory_mutex);
    const auto it = allocations.find(static_cast<char*>(p));
    if (it == allocations.end() || it->second.pinned != pinned) {
        std::fprintf(stderr, "emulated device: %s(%p): not a pointer that %s returned\n", pinned ? "cudaFreeHost" : "cudaFree", p,
                     pinned ? "cudaMallocHost" : "cudaMalloc");
        return set_last_error(cudaErrorInvalidValue);
    }
    if (!pinned) device_bytes_in_use -= it->second.bytes;
    std::free(it->second.base);
    allocations.erase(it);
    return cudaSuccess;
}

bool is_device(const void* p, size_t bytes) {
    const Allocation* a = find_allocation(p, bytes ? bytes : 1);
    return a && !a->pinned;
}

// Whether [p, p + bytes) may be the device side of a copy or a memset: inside one device allocation.
cudaError_t check_device_range(const char* call, const void* p, size_t bytes) {
    if (bytes == 0 || is_device(p, bytes)) return cudaSuccess;
    const Allocation* start = find_allocation(p, 1);
    if (start && !start->pinned)
        std::fprintf(stderr, "emulated device: %s: %zu bytes at %p run past the end of their allocation (%zu bytes at %p)\n",
                     call, bytes, p, start->bytes, static_cast<void*>(start->base));
    else
        std::fprintf(stderr, "emulated device: %s: %p is not device memory\n", call, p);
    return set_last_error(cudaErrorInvalidValue);
}

cudaError_t check_copy(const char* call, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    cudaError_t err = cudaSuccess;
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) err = check_device_range(call, dst, bytes);
    if (err == cudaSuccess && (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice))
        err = check_device_range(call, src, bytes);
    if (err == cudaSuccess && kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice &&
        kind != cudaMemcpyDefault && kind != cudaMemcpyHostToHost)
        err = set_last_error(cudaErrorInvalidMemcpyDirection);
    return err;
}

bool is_pinned(const void* p) {
    const Allocation* a = find_allocation(p, 1);
    return a && a->pinned;
}

}  // namespace
}  // namespace emu

using namespace emu;

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
    if (!count) return set_last_error(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device != 0) return set_last_error(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
    if (!device) return set_last_error(cudaErrorInvalidValue);
    *device = current_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
    if (!prop || device != 0) return set_last_error(cudaErrorInvalidDevice);
    std::memset(prop, 0, sizeof(*prop));
    std::snprintf(prop->name, sizeof prop->name, "coldstart emulated device (CPU, not a GPU)");
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = kMultiprocessors;
    prop->totalGlobalMem = options().memory_bytes;
    prop->sharedMemPerBlock = kDefaultSharedBytes;
    prop->sharedMemPerBlockOptin = kOptInSharedBytes;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024;
    prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647;
    prop->maxGridSize[1] = 65535;
    prop->maxGridSize[2] = 65535;
    prop->warpSize = 32;
    prop->regsPerBlock = 65536;
    prop->totalConstMem = 65536;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
    *version = CUDART_VERSION;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
    *version = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
    EMU_STICKY();
    drain(nullptr);
    return sticky_error();
}

// Destroys the context: frees everything and clears a failed kernel's error (the emulator's own tests
// use it after a deliberately broken kernel).
cudaError_t cudaDeviceReset() {
    free_all_allocations();
    clear_sticky_error();
    return cudaSuccess;
}

cudaError_t cudaGetLastError() { return take_last_error(); }
cudaError_t cudaPeekAtLastError() { return peek_last_error(); }

cudaError_t cudaMalloc(void** p, size_t bytes) {
    EMU_STICKY();
    return allocate(p, bytes, false);
}
cudaError_t cudaFree(void* p) {
    EMU_STICKY();
    return release(p, false);
}
cudaError_t cudaMallocHost(void** p, size_t bytes) { return allocate(p, bytes, true); }
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int) { return allocate(p, bytes, true); }
cudaError_t cudaFreeHost(void* p) { return release(p, true); }

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    EMU_STICKY();
    std::lock_guard<std::mutex> lock(memory_mutex);
    *total_bytes = options().memory_bytes;
    *free_bytes = options().memory_bytes - device_bytes_in_use;
    return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* p) {
    if (!attributes) return set_last_error(cudaErrorInvalidValue);
    std::memset(attributes, 0, sizeof(*attributes));
    const Allocation* a = find_allocation(p, 1);
    if (!a) {
        attributes->type = cudaMemoryTypeUnregistered;
        attributes->hostPointer = const_cast<void*>(p);
        return cudaSuccess;
    }
    attributes->type = a->pinned ? cudaMemoryTypeHost : cudaMemoryTypeDevice;
    attributes->device = 0;
    if (a->pinned) attributes->hostPointer = const_cast<void*>(p);
    attributes->devicePointer = const_cast<void*>(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    EMU_STICKY();
    const cudaError_t err = check_copy("cudaMemcpy", dst, src, bytes, kind);
    if (err != cudaSuccess) return err;
    drain(nullptr);  // the legacy stream's order: after everything queued before
    if (sticky_error() != cudaSuccess) return sticky_error();
    std::memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    EMU_STICKY();
    const cudaError_t err = check_copy("cudaMemcpyAsync", dst, src, bytes, kind);
    if (err != cudaSuccess) return err;
    if (kind == cudaMemcpyHostToDevice && !is_pinned(src)) {
        // From pageable memory the call returns once the source is staged: later host writes do not reach it.
        auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
        enqueue(stream, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
        return cudaSuccess;
    }
    if (kind == cudaMemcpyDeviceToHost && !is_pinned(dst)) {
        // To pageable memory the call returns once the copy is done.
        drain(stream);
        if (sticky_error() != cudaSuccess) return sticky_error();
        std::memcpy(dst, src, bytes);
        return cudaSuccess;
    }
    enqueue(stream, [dst, src, bytes] { std::memmove(dst, src, bytes); });
    return cudaSuccess;
}

cudaError_t cudaMemset(void* p, int value, size_t bytes) {
    EMU_STICKY();
    const cudaError_t err = check_device_range("cudaMemset", p, bytes);
    if (err != cudaSuccess) return err;
    drain(nullptr);
    std::memset(p, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
    EMU_STICKY();
    const cudaError_t err = check_device_range("cudaMemsetAsync", p, bytes);
    if (err != cudaSuccess) return err;
    enqueue(stream, [p, value, bytes] { std::memset(p, value, bytes); });
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
    EMU_STICKY();
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return set_last_error(cudaErrorNotSupported);
    if (value < 0 || size_t(value) > kOptInSharedBytes) {
        std::fprintf(stderr, "emulated device: cudaFuncSetAttribute: %d bytes of dynamic shared memory, above the device's %zu\n", value,
                     kOptInSharedBytes);
        return set_last_error(cudaErrorInvalidValue);
    }
    set_max_dynamic_shared(func, value);
    return cudaSuccess;
}

const char* cudaGetErrorName(cudaError_t err) {
    switch (err) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
        case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorNotReady: return "cudaErrorNotReady";
        case cudaErrorNotSupported: return "cudaErrorNotSupported";
        default: return "cudaErrorUnknown";
    }
}

const char* cudaGetErrorString(cudaError_t err) {
    switch (err) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorLaunchFailure: return "unspecified launch failure (the emulated device printed why)";
        case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorNotReady: return "device not ready";
        case cudaErrorNotSupported: return "operation not supported (by the emulated device)";
        default: return "unknown error";
    }
}

}  // extern "C"
