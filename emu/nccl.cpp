// The NCCL calls coldstart makes, for ranks that are processes on one machine: each rank's emulated
// device memory is its own host memory, and the collectives go through the project's shared-memory
// communicator (dist/shared_memory_communicator.cpp), which adds the ranks' values in rank order. So
// `-pn 2 --device cuda` and the gradient reduction overlapped with the backward pass run without GPUs.
// A collective runs in its stream's order, like any other work of the emulated device.
#include <nccl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "dist/communicator.h"
#include "emu/internal.h"

struct ncclComm {
    std::unique_ptr<coldstart::Communicator> comm;
    std::string dir;  // where the ranks meet (rank 0 made it and removes it)
    int rank, size;
};

namespace {

thread_local std::string last_error;

ncclResult_t failed(const std::string& why) {
    std::fprintf(stderr, "emulated NCCL: %s\n", why.c_str());
    last_error = why;
    return ncclSystemError;
}

// The size of one element of `type`; 0 for one the emulator does not know.
size_t element_bytes(ncclDataType_t type) {
    switch (type) {
        case ncclInt8: case ncclUint8: return 1;
        case ncclFloat16: case ncclBfloat16: return 2;
        case ncclInt32: case ncclUint32: case ncclFloat: return 4;
        case ncclInt64: case ncclUint64: case ncclDouble: return 8;
        default: return 0;
    }
}

// Sums count elements of `type` at data over the ranks, in place.
void all_reduce(coldstart::Communicator& c, void* data, size_t count, ncclDataType_t type) {
    if (type == ncclFloat) c.all_reduce_sum(static_cast<float*>(data), count);
    else c.all_reduce_sum(static_cast<double*>(data), count);
}

// Queues a collective on the stream; an error while it runs (a rank that died) breaks the device, as a
// failed NCCL kernel does. reduces: whether it adds (only ncclSum of float and double is emulated) or
// only moves data (any type).
ncclResult_t collective(ncclComm_t comm, cudaStream_t stream, ncclDataType_t type, bool reduces, ncclRedOp_t op,
                        std::function<void()> work) {
    if (!comm) return failed("a null communicator");
    if (!element_bytes(type)) return failed("an NCCL data type the emulator does not know");
    if (reduces && type != ncclFloat && type != ncclDouble) return failed("only sums of ncclFloat and ncclDouble are emulated");
    if (reduces && op != ncclSum) return failed("only ncclSum is emulated");
    emu::enqueue(stream, [work] {
        try {
            work();
        } catch (const std::exception& e) {
            emu::fail_device(cudaErrorLaunchFailure, std::string("emulated NCCL collective failed: ") + e.what());
        }
    });
    return ncclSuccess;
}

}  // namespace

extern "C" {

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/coldstart-emu-nccl-XXXXXX";
    std::vector<char> path(pattern.begin(), pattern.end());
    path.push_back('\0');
    if (!mkdtemp(path.data())) return failed("cannot make a folder for the ranks to meet in: " + pattern);
    if (std::strlen(path.data()) >= sizeof(id->internal)) return failed("the meeting folder's path is too long");
    std::memset(id->internal, 0, sizeof(id->internal));
    std::strcpy(id->internal, path.data());
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
    if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    try {
        auto c = std::make_unique<ncclComm>();
        c->dir.assign(id.internal, strnlen(id.internal, sizeof(id.internal)));
        c->rank = rank;
        c->size = nranks;
        c->comm = coldstart::make_shared_memory_communicator(rank, nranks, c->dir);
        *comm = c.release();
        return ncclSuccess;
    } catch (const std::exception& e) {
        return failed(std::string("ncclCommInitRank: ") + e.what());
    }
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    emu::drain(nullptr);
    const bool first = comm->rank == 0;
    const std::string dir = comm->dir;
    delete comm;  // rank 0 unlinks the shared file
    if (first) rmdir(dir.c_str());
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
    return collective(comm, stream, type, true, op, [=] {
        if (send != recv) std::memcpy(recv, send, count * element_bytes(type));
        all_reduce(*comm->comm, recv, count, type);
    });
}

ncclResult_t ncclReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op, int root, ncclComm_t comm,
                        cudaStream_t stream) {
    if (comm && (root < 0 || root >= comm->size)) return ncclInvalidArgument;
    return collective(comm, stream, type, true, op, [=] {
        // Only the root's receive buffer changes; every rank's send buffer stays as it was.
        std::vector<char> sum(static_cast<const char*>(send), static_cast<const char*>(send) + count * element_bytes(type));
        all_reduce(*comm->comm, sum.data(), count, type);
        if (comm->rank == root) std::memcpy(recv, sum.data(), sum.size());
    });
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t stream) {
    if (comm && (root < 0 || root >= comm->size)) return ncclInvalidArgument;
    return collective(comm, stream, type, false, ncclSum, [=] {
        // The root's bytes, exactly: an all-gather of floats in which only the root's segment is not
        // empty, the bytes padded to whole floats.
        const size_t bytes = count * element_bytes(type);
        std::vector<float> staged((bytes + sizeof(float) - 1) / sizeof(float));
        std::vector<size_t> offsets(size_t(comm->size) + 1, 0);
        for (int r = root + 1; r <= comm->size; ++r) offsets[size_t(r)] = staged.size();
        if (comm->rank == root) std::memcpy(staged.data(), send, bytes);
        comm->comm->all_gather(staged.data(), offsets);
        std::memcpy(recv, staged.data(), bytes);
    });
}

// Collectives run in the order they are issued, which every rank shares, so a group needs nothing more.
ncclResult_t ncclGroupStart() { return ncclSuccess; }
ncclResult_t ncclGroupEnd() { return ncclSuccess; }

const char* ncclGetErrorString(ncclResult_t result) {
    switch (result) {
        case ncclSuccess: return "no error";
        case ncclInvalidArgument: return "invalid argument";
        case ncclSystemError: return "system error (the emulated NCCL printed why)";
        default: return "unhandled NCCL error";
    }
}

const char* ncclGetLastError(ncclComm_t) { return last_error.c_str(); }

}  // extern "C"
