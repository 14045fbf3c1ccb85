// The emulated device's semantics (built-in variables, barriers, shuffles, shared memory, launch limits,
// streams) and each of its checks, shown on a kernel broken on purpose: the check must name what is wrong.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "emu/internal.h"
#include "emu/test/device_support.h"

namespace {

using namespace emu_test;

// Runs f with some of the emulator's checks switched, then puts them back.
template <typename F>
void with_options(bool strict, bool schedule, bool deferred, F f) {
    emu::Options& o = emu::options_for_tests();
    const emu::Options saved = o;
    o.strict = strict;
    o.schedule_check = schedule;
    o.deferred = deferred;
    f();
    o = saved;
}

// ---- kernels that are right ----

__global__ void indices_kernel(int* out) {
    const int block = int(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
    const int thread = int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
    const int per_block = int(blockDim.x * blockDim.y * blockDim.z);
    out[block * per_block + thread] = block * 10000 + thread;
}

// The sum of a block's values through shared memory and shuffles (as common.cuh's block_sum).
__global__ void block_sum_kernel(float* out, const float* in) {
    __shared__ float partial[32];
    float x = in[blockIdx.x * blockDim.x + threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = x;
    __syncthreads();
    if (threadIdx.x < 32) {
        x = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
        if (threadIdx.x == 0) out[blockIdx.x] = x;
    }
}

__global__ void shuffles_kernel(int* out) {
    const int lane = int(threadIdx.x);
    out[0 * 32 + lane] = __shfl_sync(0xffffffffu, lane * 10, 3, 16);     // lane 3 of each half
    out[1 * 32 + lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 5);     // lane ^ 5
    out[2 * 32 + lane] = __shfl_up_sync(0xffffffffu, lane * 10, 2, 8);   // lane - 2 within 8, else itself
    out[3 * 32 + lane] = __shfl_down_sync(0xffffffffu, lane * 10, 3);    // lane + 3 below 32, else itself
}

__global__ void early_exit_kernel(int* out, int live) {
    if (int(threadIdx.x) >= live) return;
    __syncthreads();  // the exited threads count as arrived, as on a GPU
    out[threadIdx.x] = 1;
}

__global__ void read_static_shared_kernel(float* out) {
    __shared__ float cell;
    out[blockIdx.x] = cell;  // read before any write: the poison shows
    __syncthreads();
    cell = 1.0f;
}

__global__ void __launch_bounds__(64) bounded_kernel(int* out) { out[threadIdx.x] = 1; }

__global__ void dynamic_shared_kernel(float* out, int n) {
    extern __shared__ float memory[];
    for (int i = int(threadIdx.x); i < n; i += int(blockDim.x)) memory[i] = float(i);
    __syncthreads();
    if (threadIdx.x == 0) out[0] = memory[n - 1];
}

// ---- kernels broken on purpose ----

// Each thread loads one element of a tile and reads its neighbour's, with no barrier in between.
__global__ void missing_barrier_after_load_kernel(float* out, const float* in) {
    __shared__ float tile[64];
    tile[threadIdx.x] = in[threadIdx.x];
    out[threadIdx.x] = tile[(threadIdx.x + 1) % 64];
}

// Two tiles through one buffer: the second load overwrites what slower threads still read.
__global__ void missing_barrier_before_overwrite_kernel(float* out, const float* in) {
    __shared__ float tile[64];
    float sum = 0.0f;
    for (int t = 0; t < 2; ++t) {
        tile[threadIdx.x] = in[t * 64 + threadIdx.x];
        __syncthreads();
        sum += tile[(threadIdx.x + 1) % 64] * float(t + 1);
    }
    out[threadIdx.x] = sum;
}

// Threads 2i and 2i+1 both add into element i.
__global__ void racing_add_kernel(float* out, const float* in) { out[threadIdx.x / 2] += in[threadIdx.x]; }

// Lanes that leave before the warp reduction.
__global__ void early_lane_exit_kernel(float* out, int live) {
    if (int(threadIdx.x) >= live) return;
    float x = 1.0f;
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    out[threadIdx.x] = x;
}

// Half the warp at a barrier, the other half at a shuffle that waits for them.
__global__ void deadlock_kernel(float* out) {
    float x = 1.0f;
    if (threadIdx.x < 16) __syncthreads();
    else x = __shfl_xor_sync(0xffffffffu, x, 1);
    out[threadIdx.x] = x;
}

__global__ void disagreeing_masks_kernel(float* out) {
    const unsigned mask = threadIdx.x < 8 ? 0x0000ffffu : 0xffffffffu;
    out[threadIdx.x] = __shfl_xor_sync(mask, 1.0f, 1);
}

__global__ void divergent_barriers_kernel(float* out) {
    if (threadIdx.x % 2) __syncthreads();
    else __syncthreads();
    out[threadIdx.x] = 1.0f;
}

}  // namespace

TEST_CASE("emulated device: built-in variables of a 3-D grid of 3-D blocks") {
    const dim3 grid(3, 2, 2), block(5, 3, 2);
    const int threads = 12 * 30;
    DeviceVector<int> out{size_t(threads)};
    indices_kernel<<<grid, block>>>(out.p);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const std::vector<int> got = out.get();
    for (int b = 0; b < 12; ++b)
        for (int t = 0; t < 30; ++t) CHECK(got[size_t(b * 30 + t)] == b * 10000 + t);
}

TEST_CASE("emulated device: barriers and shuffles sum a block; the schedule check finds nothing to report") {
    for (bool schedule : {false, true}) {
        CAPTURE(schedule);
        with_options(true, schedule, false, [&] {
            std::vector<float> in(5 * 96);
            for (size_t i = 0; i < in.size(); ++i) in[i] = float(i % 7);
            DeviceVector<float> d_in(in), d_out(5);
            block_sum_kernel<<<5, 96>>>(d_out.p, d_in.p);
            REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
            const std::vector<float> got = d_out.get();
            for (int b = 0; b < 5; ++b) {
                float expected = 0;
                for (int t = 0; t < 96; ++t) expected += in[size_t(b * 96 + t)];
                CHECK(got[size_t(b)] == expected);
            }
        });
    }
}

TEST_CASE("emulated device: shuffles follow the PTX rules for index, xor, up and down with widths") {
    DeviceVector<int> out(4 * 32);
    shuffles_kernel<<<1, 32>>>(out.p);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<int> got = out.get();
    for (int lane = 0; lane < 32; ++lane) {
        CHECK(got[size_t(lane)] == ((lane & ~15) + 3) * 10);
        CHECK(got[size_t(32 + lane)] == (lane ^ 5) * 10);
        CHECK(got[size_t(64 + lane)] == ((lane % 8) >= 2 ? lane - 2 : lane) * 10);
        CHECK(got[size_t(96 + lane)] == (lane + 3 < 32 ? lane + 3 : lane) * 10);
    }
}

TEST_CASE("emulated device: exited threads count at a barrier; strict mode reports them") {
    with_options(false, false, false, [] {
        DeviceVector<int> out(64);
        early_exit_kernel<<<1, 64>>>(out.p, 40);
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        const std::vector<int> got = out.get();
        CHECK(got[0] == 1);
        CHECK(got[39] == 1);
    });
    with_options(true, false, false, [] {
        DeviceVector<int> out(64);
        early_exit_kernel<<<1, 64>>>(out.p, 40);
        const std::string why = failure_and_reset();
        CHECK(contains(why, "early_exit_kernel"));
        CHECK(contains(why, "test_device.cu:"));
        CHECK((contains(why, "exited") && contains(why, "strict")));
    });
}

TEST_CASE("emulated device: shared memory starts as NaN in every block; dynamic shared memory and its limits") {
    DeviceVector<float> out(3);
    read_static_shared_kernel<<<3, 32>>>(out.p);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    for (float x : out.get()) CHECK(std::isnan(x));  // also in blocks 1 and 2, after block 0 wrote 1

    const int big = 20000;  // 80 KB of floats: above 48 KiB
    dynamic_shared_kernel<<<1, 128, big * sizeof(float)>>>(out.p, big);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    REQUIRE(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(big * sizeof(float))) == cudaSuccess);
    dynamic_shared_kernel<<<1, 128, big * sizeof(float)>>>(out.p, big);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    CHECK(out.get()[0] == float(big - 1));
    dynamic_shared_kernel<<<1, 128, 300 * 1024>>>(out.p, 10);  // above the device's 227 KiB
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
}

TEST_CASE("emulated device: impossible launches fail as on a GPU") {
    DeviceVector<int> out(2048);
    indices_kernel<<<1, 1025>>>(out.p);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    indices_kernel<<<dim3(1, 70000), 32>>>(out.p);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    bounded_kernel<<<1, 128>>>(out.p);
    CHECK(cudaGetLastError() == cudaErrorLaunchOutOfResources);
    bounded_kernel<<<1, 64>>>(out.p);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE("emulated device: copies and memsets past an allocation's end are refused") {
    DeviceVector<float> d(10);
    std::vector<float> h(11, 1.0f);
    CHECK(cudaMemcpy(d.p, h.data(), 11 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    CHECK(cudaMemset(d.p + 5, 0, 6 * sizeof(float)) == cudaErrorInvalidValue);
    CHECK(cudaMemcpy(h.data(), h.data() + 1, 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);  // not device memory
    int x = 0;
    CHECK(cudaFree(&x) == cudaErrorInvalidValue);
    cudaGetLastError();
}

TEST_CASE("broken kernel: a barrier missing after a shared tile load (NaN poison and the schedule check)") {
    std::vector<float> in(64);
    for (int i = 0; i < 64; ++i) in[size_t(i)] = float(i);
    with_options(true, false, false, [&] {
        DeviceVector<float> d_in(in), d_out(64);
        missing_barrier_after_load_kernel<<<1, 64>>>(d_out.p, d_in.p);
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        int poisoned = 0;
        for (float x : d_out.get()) poisoned += std::isnan(x);
        CHECK(poisoned > 0);  // in ascending order every thread reads its neighbour's element before it is written
    });
    with_options(true, true, false, [&] {
        DeviceVector<float> d_in(in), d_out(64);
        missing_barrier_after_load_kernel<<<1, 64>>>(d_out.p, d_in.p);
        const std::string why = failure_and_reset();
        CHECK(contains(why, "schedule check"));
        CHECK(contains(why, "missing_barrier_after_load_kernel"));
    });
}

TEST_CASE("broken kernel: a barrier missing before a tile is overwritten (the schedule check)") {
    std::vector<float> in(128);
    for (int i = 0; i < 128; ++i) in[size_t(i)] = float(i);
    with_options(true, true, false, [&] {
        DeviceVector<float> d_in(in), d_out(64);
        missing_barrier_before_overwrite_kernel<<<1, 64>>>(d_out.p, d_in.p);
        const std::string why = failure_and_reset();
        CHECK(contains(why, "schedule check"));
        CHECK(contains(why, "missing_barrier_before_overwrite_kernel"));
    });
}

TEST_CASE("broken kernel: two threads add into one element (the schedule check)") {
    // (1 + 1e-7) - 1 and (1 - 1) + 1e-7 differ in fp32: the order of the two additions shows.
    std::vector<float> in(64);
    for (int i = 0; i < 64; ++i) in[size_t(i)] = i % 2 ? -1.0f : 1e-7f;
    with_options(true, true, false, [&] {
        DeviceVector<float> d_in(in), d_out(std::vector<float>(32, 1.0f));
        racing_add_kernel<<<1, 64>>>(d_out.p, d_in.p);
        const std::string why = failure_and_reset();
        CHECK(contains(why, "schedule check"));
        CHECK(contains(why, "racing_add_kernel"));
    });
}

TEST_CASE("broken kernel: lanes exit before a warp reduction") {
    DeviceVector<float> out(32);
    early_lane_exit_kernel<<<1, 32>>>(out.p, 20);
    const std::string why = failure_and_reset();
    CHECK(contains(why, "__shfl_xor_sync"));
    CHECK(contains(why, "exited"));
    CHECK(contains(why, "test_device.cu:"));
}

TEST_CASE("broken kernels: a deadlock, masks that disagree, a mask naming absent lanes, divergent barriers") {
    {
        DeviceVector<float> out(32);
        deadlock_kernel<<<1, 32>>>(out.p);
        const std::string why = failure_and_reset();
        CHECK(contains(why, "deadlock"));
        CHECK(contains(why, "__syncthreads"));
        CHECK(contains(why, "__shfl_xor_sync"));
    }
    {
        DeviceVector<float> out(32);
        disagreeing_masks_kernel<<<1, 32>>>(out.p);
        CHECK(contains(failure_and_reset(), "disagree"));
    }
    {
        DeviceVector<float> out(32);
        disagreeing_masks_kernel<<<1, 16>>>(out.p);  // a block of 16: a full mask names lanes 16-31
        CHECK(contains(failure_and_reset(), "does not have"));
    }
    with_options(true, false, false, [] {
        DeviceVector<float> out(64);
        divergent_barriers_kernel<<<1, 64>>>(out.p);
        CHECK(contains(failure_and_reset(), "different barriers"));
    });
}

TEST_CASE("deferred streams: a pinned buffer reused before its asynchronous copy ran") {
    // The host writes 1, queues the copy, writes 2 before waiting: a race. At once the device gets 1; when
    // the copy runs at the synchronisation (as a GPU may run it), it gets 2.
    for (bool deferred : {false, true}) {
        CAPTURE(deferred);
        with_options(true, false, deferred, [&] {
            float* pinned = nullptr;
            REQUIRE(cudaMallocHost(&pinned, sizeof(float)) == cudaSuccess);
            cudaStream_t stream;
            REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
            DeviceVector<float> d(1);
            *pinned = 1.0f;
            REQUIRE(cudaMemcpyAsync(d.p, pinned, sizeof(float), cudaMemcpyHostToDevice, stream) == cudaSuccess);
            *pinned = 2.0f;
            REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
            CHECK(d.get()[0] == (deferred ? 2.0f : 1.0f));
            cudaStreamDestroy(stream);
            cudaFreeHost(pinned);
        });
    }
}

TEST_CASE("deferred streams: switched on and off by the GPU suite; host waits that ran queued work are counted") {
    with_options(true, false, false, [] {
        emu::set_deferred_streams(true);
        cudaStream_t stream;
        REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
        DeviceVector<float> x(std::vector<float>(96, 1.0f)), sums(1);
        const unsigned long before = emu::host_waits_that_ran_work();
        block_sum_kernel<<<1, 96, 0, stream>>>(sums.p, x.p);
        CHECK(emu::host_waits_that_ran_work() == before);  // queued, not run: no wait
        REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
        CHECK(emu::host_waits_that_ran_work() == before + 1);
        REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);  // nothing left to run
        CHECK(emu::host_waits_that_ran_work() == before + 1);
        block_sum_kernel<<<1, 96, 0, stream>>>(sums.p, x.p);
        emu::set_deferred_streams(false);  // runs what is queued
        CHECK(cudaStreamQuery(stream) == cudaSuccess);
        CHECK(sums.get()[0] == 96.0f);
        cudaStreamDestroy(stream);
    });
}

TEST_CASE("deferred streams: an event orders two streams; the legacy stream waits for blocking streams") {
    with_options(true, false, true, [] {
        cudaStream_t a, b;
        cudaEvent_t done;
        REQUIRE(cudaStreamCreate(&a) == cudaSuccess);
        REQUIRE(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking) == cudaSuccess);
        REQUIRE(cudaEventCreateWithFlags(&done, cudaEventDisableTiming) == cudaSuccess);
        DeviceVector<float> x(std::vector<float>(96, 1.0f)), sums(1);
        REQUIRE(cudaMemsetAsync(x.p, 0, 96 * sizeof(float), a) == cudaSuccess);
        REQUIRE(cudaEventRecord(done, a) == cudaSuccess);
        REQUIRE(cudaStreamWaitEvent(b, done, 0) == cudaSuccess);
        block_sum_kernel<<<1, 96, 0, b>>>(sums.p, x.p);
        CHECK(cudaStreamQuery(b) == cudaErrorNotReady);  // nothing ran yet
        REQUIRE(cudaStreamSynchronize(b) == cudaSuccess);
        CHECK(sums.get()[0] == 0.0f);  // the memset on stream a ran first
        cudaEventDestroy(done);
        cudaStreamDestroy(a);
        cudaStreamDestroy(b);
    });
}
