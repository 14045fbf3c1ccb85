// The communicator of GPU processes: NCCL, one process per GPU, on one machine or several. The
// collectives run on the communicator's own stream, so that the backend can overlap the gradient's
// reduction with the rest of its backward pass (it orders them against its own stream with events).
// Device pointers take the fast path; host pointers (the training loop's few scalars, a checkpoint's
// gathered weights) are staged through device memory and the call waits for the result. What NCCL's sums promise (the same bits on every rank,
// not a fixed order of additions): dist/communicator.h.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "dist/communicator.h"
#include "dist/process_group.h"

namespace coldstart {

class NcclCommunicator : public Communicator {
public:
    virtual cudaStream_t stream() const = 0;  // where the collectives run
    virtual int device() const = 0;           // the GPU this process drives
    // Device collectives issued between the two go to NCCL as one group (one launch for a layer's dozen
    // tensors instead of a dozen); host data cannot be reduced inside a group.
    virtual void begin_group() = 0;
    virtual void end_group() = 0;

    // ZeRO-1's collectives on device data, for segments of any sizes (offsets as in reduce_scatter_sum).
    // The part [begin, end) of data: each rank's segment within it receives the sum over the ranks (the
    // backend reduces each layer's gradient as soon as the backward pass has finished it).
    virtual void reduce_scatter_sum(float* data, size_t begin, size_t end, const std::vector<size_t>& offsets) = 0;
    // Elements of element_bytes (the bf16 weights' copy, 2): segment r comes from rank r, to every rank.
    virtual void all_gather(void* data, size_t element_bytes, const std::vector<size_t>& offsets) = 0;
    using Communicator::all_gather;
    using Communicator::reduce_scatter_sum;
};

// Picks this process's GPU (its local rank, modulo the GPUs it sees), exchanges NCCL's unique id
// (dist/rendezvous.h: -pi fs through -pf, or -pi tcp through -ps) and makes the communicator.
std::unique_ptr<NcclCommunicator> make_nccl_communicator(const ProcessGroup& group, const Rendezvous& how);

}  // namespace coldstart
