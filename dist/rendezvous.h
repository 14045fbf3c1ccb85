// Before any communicator exists, the processes of a run must agree on something small that rank 0
// makes (NCCL's unique id): rank 0 shares it through a file in a folder they all see (-pi fs, -pf DIR:
// a shared file system, good for Slurm's srun and for mpirun), or by serving it on a TCP port that the
// others connect to (-pi tcp, -ps HOST:PORT, HOST a name or an IPv4 or bracketed IPv6 address: no shared
// folder needed; rank 0 listens on both families).
#pragma once

#include <cstdint>
#include <string>

namespace coldstart {

struct Rendezvous {
    std::string method;  // "fs" or "tcp"
    std::string dir;     // fs: the shared folder
    std::string server;  // tcp: rank 0's "host:port"
    double timeout_seconds = 300;
};

// Rank 0 passes its blob and gets it back; every other rank gets rank 0's. Rank 0 must live until the
// others have it (in a run it waits for them in NCCL's set-up): a shared file names rank 0's machine and
// process, and one written on this machine by a process that has ended is taken for a killed run's and
// waited out (a process on another machine cannot be checked: its file is taken as it is). Throws naming
// the file or the address, and what it waited for, when the exchange cannot complete within
// timeout_seconds: the other ranks waiting for rank 0, and rank 0 (tcp) waiting for them to connect.
std::string share_from_rank0(int rank, int size, const std::string& blob, const Rendezvous& how);

// Whether a process runs: it exists and has not ended as a zombie its parent has yet to collect (so that
// a file or a wait does not take a killed run's process for a live one).
bool process_alive(int32_t pid);

// The file of -pi fs in `dir`, which rank 0 removes once every rank has joined.
std::string rendezvous_file(const std::string& dir);

// This machine as the file of -pi fs names it: the host name and the kernel's boot id (two containers
// may share a host name; a boot id is one running kernel).
std::string this_machine();

}  // namespace coldstart
