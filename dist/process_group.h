// Which process of a run this is, and how it meets the others. Ranks come from -pn/-pr, else from the
// launcher's environment (mpirun of Open MPI or MPICH, Slurm's srun), else the process is alone: no MPI
// library is linked, the launcher only starts the processes.
#pragma once

#include <memory>
#include <string>

#include "config/config.h"
#include "dist/communicator.h"

namespace coldstart {

struct ProcessGroup {
    int rank = 0;
    int size = 1;
    int local_rank = 0;  // the rank among this machine's processes (which GPU to take): from the launcher, else rank
    std::string source;  // where rank and size came from: "-pn/-pr", "OMPI_COMM_WORLD_*", ...
};

ProcessGroup process_group(const Config& cfg);

// The communicator of the CPU backend: alone, or the processes of one machine through a shared-memory
// file in the folder of -pf (default: the output folder -o).
std::unique_ptr<Communicator> connect_cpu_processes(const ProcessGroup& group, const Config& cfg);

}  // namespace coldstart
