// Which process of a run this is, and how it meets the others. Ranks come from -pn/-pr, else from the
// launcher's environment (mpirun of Open MPI or MPICH, Slurm's srun), else the process is alone: no MPI
// library is linked, the launcher only starts the processes.
#pragma once

#include <memory>
#include <string>

#include "dist/communicator.h"
#include "dist/rendezvous.h"

namespace coldstart {

struct ProcessGroup {
    int rank = 0;
    int size = 1;
    int local_rank = 0;  // the rank among this machine's processes (which GPU to take): from the launcher, else rank
    std::string source;  // where rank and size came from: "-pn/-pr", "OMPI_COMM_WORLD_*", ...
};

// What the run's flags say about its processes (config/resolve.h fills it from -pn -pr -pi -pf -ps -o).
struct ProcessOptions {
    int processes = 0;   // -pn; 0: from the launcher's environment, else 1
    int rank = -1;       // -pr; -1: from the launcher's environment
    Rendezvous meeting;  // -pi method; -pf folder (default: the output folder -o); -ps rank 0's host:port
};

ProcessGroup process_group(const ProcessOptions& options);

// The communicator of the CPU backend: alone, or the processes of one machine through a shared-memory
// file in the meeting folder.
std::unique_ptr<Communicator> connect_cpu_processes(const ProcessGroup& group, const ProcessOptions& options);

}  // namespace coldstart
