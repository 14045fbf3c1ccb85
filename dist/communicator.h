// Folder dist/: the processes of one run: this interface, shared memory and NCCL communicators, the
// rendezvous, the process group. May include common/ (and common/cuda/ for NCCL) (tools/check_includes.py).
//
// The communicator: collective operations between the processes of one training run (one per GPU, or
// several CPU processes). The training loop and the backends only see this interface: NCCL implements it
// for GPUs (dist/nccl_communicator.cu), shared memory for processes on one machine (below), which is how
// the partitioning, the reductions and the resume logic are tested without GPUs.
//
// Pointers are in the memory of the backend that calls (host memory for the CPU backend, device memory
// for NCCL). What a reduction promises: every rank receives the same bits (so the replicas never drift
// apart). The order of the additions is the implementation's: the shared-memory communicator adds in rank
// order, so its runs repeat bit for bit for a given number of processes. NCCL picks its algorithm (ring,
// tree, NVLS on NVSwitch machines), protocol and chunking from the message size, the number of ranks and
// the topology, so its sums differ from the rank-order sum by rounding, and from one machine or NCCL
// version to another; a run can repeat bit for bit only on the same GPUs, topology and NCCL, and NVLS's
// in-switch reduction is not promised to repeat between calls at all (NCCL_ALGO=Ring,Tree leaves it out).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace coldstart {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual std::string describe() const = 0;  // for the startup lines: "shared memory, 3 processes"

    // Elementwise sum over the ranks, in place.
    virtual void all_reduce_sum(float* data, size_t n) = 0;
    virtual void all_reduce_sum(double* data, size_t n) = 0;
    // offsets (size()+1, ascending) cut data into one segment per rank. data holds this rank's
    // contribution to all of it; afterwards this rank's segment holds the sum over ranks (the rest of data
    // is left unspecified).
    virtual void reduce_scatter_sum(float* data, const std::vector<size_t>& offsets) = 0;
    // offsets as above: segment r of data comes from rank r; afterwards every rank holds every segment.
    virtual void all_gather(float* data, const std::vector<size_t>& offsets) = 0;
    virtual void barrier() = 0;
};

// One process alone: every collective is the identity.
std::unique_ptr<Communicator> make_single_process_communicator();

// Processes on one machine that meet through a shared-memory file in `dir` (best on a RAM disk such as
// /dev/shm): rank 0 creates it, the others wait for it. A collective that waits longer than
// timeout_seconds for the other ranks (one of them has stopped) throws, naming the rank and the wait.
std::unique_ptr<Communicator> make_shared_memory_communicator(int rank, int size, const std::string& dir,
                                                              double timeout_seconds = 300);

}  // namespace coldstart
