#include "dist/nccl_communicator.cuh"

#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/cuda/common.cuh"
#include "common/error.h"
#include "dist/rendezvous.h"

namespace coldstart {
namespace {

#define NCCL_CHECK(call)                                                                                     \
    do {                                                                                                     \
        const ncclResult_t nccl_check_result_ = (call);                                                      \
        if (nccl_check_result_ != ncclSuccess)                                                               \
            ::coldstart::cuda::throw_library_error("NCCL", #call, int(nccl_check_result_),                    \
                                                   ncclGetErrorString(nccl_check_result_),                   \
                                                   "NCCL_DEBUG=INFO says more; check that every rank runs", \
                                                   __FILE__, __LINE__);                                      \
    } while (0)

class Nccl final : public NcclCommunicator {
public:
    Nccl(const ProcessGroup& group, const Rendezvous& how) : rank_(group.rank), size_(group.size) {
        int devices = 0;
        CUDA_CHECK(cudaGetDeviceCount(&devices));
        device_ = group.local_rank % devices;
        CUDA_CHECK(cudaSetDevice(device_));
        CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        ncclUniqueId id;
        if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
        const std::string mine(reinterpret_cast<const char*>(&id), sizeof(id));
        const std::string shared = share_from_rank0(rank_, size_, rank_ == 0 ? mine : std::string(), how);
        if (shared.size() != sizeof(id)) fail("rank %d: the rendezvous gave %zu bytes, NCCL's id has %zu", rank_, shared.size(), sizeof(id));
        std::memcpy(&id, shared.data(), sizeof(id));
        NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));  // returns once every rank has joined
        if (rank_ == 0 && how.method == "fs" && size_ > 1) remove_quietly(rendezvous_file(how.dir));
        staging_ = cuda::device_alloc(kStagingBytes, "NCCL staging");
    }

    ~Nccl() override {
        if (comm_) ncclCommDestroy(comm_);
        if (stream_) cudaStreamDestroy(stream_);
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string describe() const override { return format("NCCL, %d processes, this one on GPU %d", size_, device_); }
    cudaStream_t stream() const override { return stream_; }
    int device() const override { return device_; }

    void all_reduce_sum(float* data, size_t n) override { reduce(data, n, ncclFloat, sizeof(float)); }
    void all_reduce_sum(double* data, size_t n) override { reduce(data, n, ncclDouble, sizeof(double)); }

    void reduce_scatter_sum(float* data, const std::vector<size_t>& offsets) override {
        check_offsets(offsets);
        reduce_scatter_sum(data, 0, offsets.back(), offsets);
    }

    // NCCL's ReduceScatter and AllGather take equal segments, and ZeRO-1's shards are cut between rows,
    // so they are not equal: one ncclReduce to each segment's rank (one ncclBroadcast from it), grouped.
    // A ring moves the same bytes: each element crosses P-1 links on its way to (from) its owner, which
    // is (P-1)/P of the data per rank, spread over the ranks as the segments are.
    void reduce_scatter_sum(float* data, size_t begin, size_t end, const std::vector<size_t>& offsets) override {
        check_offsets(offsets);
        require_device(data, "reduce-scatter");
        NCCL_CHECK(ncclGroupStart());
        for (int r = 0; r < size_; ++r) {
            const size_t lo = std::max(begin, offsets[size_t(r)]), hi = std::min(end, offsets[size_t(r) + 1]);
            if (lo < hi) NCCL_CHECK(ncclReduce(data + lo, data + lo, hi - lo, ncclFloat, ncclSum, r, comm_, stream_));
        }
        NCCL_CHECK(ncclGroupEnd());
    }

    void all_gather(void* data, size_t element_bytes, const std::vector<size_t>& offsets) override {
        check_offsets(offsets);
        require_device(data, "all-gather");
        char* bytes = static_cast<char*>(data);
        NCCL_CHECK(ncclGroupStart());
        for (int r = 0; r < size_; ++r) {
            char* segment = bytes + offsets[size_t(r)] * element_bytes;
            const size_t n = (offsets[size_t(r) + 1] - offsets[size_t(r)]) * element_bytes;
            if (n > 0) NCCL_CHECK(ncclBroadcast(segment, segment, n, ncclUint8, r, comm_, stream_));
        }
        NCCL_CHECK(ncclGroupEnd());
    }

    // Host data (a checkpoint's weights, gathered from ZeRO-1's shards): a piece of the staging buffer's
    // size at a time, each rank staging its part of the piece, waiting for each.
    void all_gather(float* data, const std::vector<size_t>& offsets) override {
        if (on_device(data)) return all_gather(data, sizeof(float), offsets);
        check_offsets(offsets);
        if (in_group_) fail("communicator: host data cannot be gathered inside an NCCL group (it waits for the result)");
        float* staged = static_cast<float*>(staging_.get());
        const size_t piece = kStagingBytes / sizeof(float);
        for (size_t start = 0; start < offsets.back(); start += piece) {
            const size_t n = std::min(piece, offsets.back() - start);
            std::vector<size_t> local(offsets.size());
            for (size_t r = 0; r < offsets.size(); ++r) local[r] = std::min(std::max(offsets[r], start), start + n) - start;
            const size_t mine = local[size_t(rank_)], count = local[size_t(rank_) + 1] - mine;
            CUDA_CHECK(cudaMemcpyAsync(staged + mine, data + start + mine, count * sizeof(float), cudaMemcpyHostToDevice, stream_));
            all_gather(staged, sizeof(float), local);
            CUDA_CHECK(cudaMemcpyAsync(data + start, staged, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
            CUDA_CHECK(cudaStreamSynchronize(stream_));
        }
    }

    void begin_group() override {
        NCCL_CHECK(ncclGroupStart());
        in_group_ = true;
    }
    void end_group() override {
        in_group_ = false;
        NCCL_CHECK(ncclGroupEnd());
    }

    void barrier() override {
        double one = 1;
        all_reduce_sum(&one, 1);  // host memory: waits for every rank
    }

private:
    static constexpr size_t kStagingBytes = size_t(1) << 20;

    static bool on_device(const void* p) {
        cudaPointerAttributes a;
        if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
            cudaGetLastError();  // an unregistered host pointer on older drivers: clear the error
            return false;
        }
        return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
    }

    // Device data: asynchronous on the stream. Host data (a few scalars of the training loop): through
    // the staging buffer, waiting for the result.
    void reduce(void* data, size_t n, ncclDataType_t type, size_t element) {
        if (on_device(data)) {
            NCCL_CHECK(ncclAllReduce(data, data, n, type, ncclSum, comm_, stream_));
            return;
        }
        if (in_group_) fail("communicator: host data cannot be reduced inside an NCCL group (it waits for the result)");
        if (n * element > kStagingBytes) fail("communicator: %zu bytes of host data to reduce; at most %zu", n * element, kStagingBytes);
        void* staged = staging_.get();
        CUDA_CHECK(cudaMemcpyAsync(staged, data, n * element, cudaMemcpyHostToDevice, stream_));
        NCCL_CHECK(ncclAllReduce(staged, staged, n, type, ncclSum, comm_, stream_));
        CUDA_CHECK(cudaMemcpyAsync(data, staged, n * element, cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    void check_offsets(const std::vector<size_t>& offsets) const {
        if (offsets.size() != size_t(size_) + 1) fail("communicator: expected %d segment offsets, got %zu", size_ + 1, offsets.size());
    }

    static void require_device(const void* data, const char* what) {
        if (!on_device(data)) fail("communicator: the NCCL %s of segments takes device memory", what);
    }

    int rank_, size_, device_ = 0;
    bool in_group_ = false;
    cudaStream_t stream_ = nullptr;
    ncclComm_t comm_ = nullptr;
    cuda::DeviceMemory staging_;
};

}  // namespace

std::unique_ptr<NcclCommunicator> make_nccl_communicator(const ProcessGroup& group, const Rendezvous& how) {
    return std::make_unique<Nccl>(group, how);
}

}  // namespace coldstart
