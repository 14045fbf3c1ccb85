// The emulated NCCL between processes, against NCCL's documented semantics: ncclReduce leaves the sum in
// the root's receive buffer only, ncclBroadcast copies the root's count elements of any type to every
// rank, exactly (odd numbers of 2-byte and 1-byte elements included), collectives in a group run as if
// issued one after the other; sums of a type the emulator does not add are refused, not guessed.
// Ranks are forked processes (NCCL and copies only: no kernel launches, which need the worker threads
// the fork leaves behind).
#include <doctest/doctest.h>
#include <nccl.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "test/processes.h"

namespace {

using test_util::in_processes;

template <typename T>
std::vector<T> download(const T* device, size_t n) {
    std::vector<T> host(n);
    cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
}

// Rank r's contribution to element i.
float value(int rank, size_t i) { return float(rank + 1) + float(i % 13) * 0.25f; }

// Reduce to each segment's rank, grouped (a reduce-scatter of unequal segments); each rank checks its own
// segment holds the sum and the other segment its own values. 0 when right.
int reduce_to_owners(ncclComm_t comm, int rank, cudaStream_t stream) {
    const size_t n = 1001, offsets[3] = {0, 7, n};
    std::vector<float> mine(n);
    for (size_t i = 0; i < n; ++i) mine[i] = value(rank, i);
    float* d = nullptr;
    cudaMalloc(&d, n * sizeof(float));
    cudaMemcpy(d, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    ncclGroupStart();
    for (int root = 0; root < 2; ++root)
        if (ncclReduce(d + offsets[root], d + offsets[root], offsets[root + 1] - offsets[root], ncclFloat, ncclSum, root, comm,
                       stream) != ncclSuccess)
            return 10;
    ncclGroupEnd();
    cudaStreamSynchronize(stream);
    const std::vector<float> got = download(d, n);
    cudaFree(d);
    for (size_t i = 0; i < n; ++i) {
        const bool owned = i >= offsets[rank] && i < offsets[rank + 1];
        if (got[i] != (owned ? value(0, i) + value(1, i) : mine[i])) return 11;
    }
    return 0;
}

// Broadcast from rank `root` of `count` elements of `type` (`bytes` each): every rank gets the root's
// bytes, and nothing past them changes. 0 when right.
int broadcast_exactly(ncclComm_t comm, int rank, cudaStream_t stream, ncclDataType_t type, size_t bytes, size_t count, int root) {
    const size_t n = count * bytes + 3;  // three bytes past the elements that must stay as they were
    std::vector<uint8_t> mine(n);
    for (size_t i = 0; i < n; ++i) mine[i] = uint8_t(rank * 100 + i);
    uint8_t* d = nullptr;
    cudaMalloc(&d, n);
    cudaMemcpy(d, mine.data(), n, cudaMemcpyHostToDevice);
    if (ncclBroadcast(d, d, count, type, root, comm, stream) != ncclSuccess) return 20;
    cudaStreamSynchronize(stream);
    const std::vector<uint8_t> got = download(d, n);
    cudaFree(d);
    for (size_t i = 0; i < n; ++i)
        if (got[i] != (i < count * bytes ? uint8_t(root * 100 + i) : mine[i])) return 21;
    return 0;
}

}  // namespace

TEST_CASE("emulated NCCL: reduce to each rank's segment, broadcasts of 4-, 2- and 1-byte elements exactly, unknown sums refused") {
    ncclUniqueId id;
    REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
    const std::vector<int> statuses = in_processes(2, [&](int rank) {
        ncclComm_t comm = nullptr;
        if (ncclCommInitRank(&comm, 2, id, rank) != ncclSuccess) return 1;
        cudaStream_t stream = nullptr;
        cudaStreamCreate(&stream);
        int failed = reduce_to_owners(comm, rank, stream);
        if (!failed) failed = broadcast_exactly(comm, rank, stream, ncclFloat, 4, 5, 1);
        if (!failed) failed = broadcast_exactly(comm, rank, stream, ncclBfloat16, 2, 7, 0);  // 14 bytes: not whole floats
        if (!failed) failed = broadcast_exactly(comm, rank, stream, ncclUint8, 1, 9, 1);
        float x = 1;
        if (!failed && ncclAllReduce(&x, &x, 1, ncclBfloat16, ncclSum, comm, stream) == ncclSuccess) failed = 30;
        ncclCommDestroy(comm);
        return failed;
    });
    CHECK(statuses == std::vector<int>{0, 0});
}
