#include "dist/process_group.h"

#include <cstdlib>

#include "common/error.h"

namespace coldstart {

namespace {

bool integer_env(const char* name, int* value) {
    const char* text = std::getenv(name);
    if (!text || !*text) return false;
    char* end = nullptr;
    const long v = std::strtol(text, &end, 10);
    if (*end != '\0' || v < 0 || v > (1 << 20)) fail("environment variable %s=%s: expected a non-negative integer", name, text);
    *value = int(v);
    return true;
}

}  // namespace

ProcessGroup process_group(const ProcessOptions& options) {
    ProcessGroup g;
    int local = -1;  // the launchers' local ranks, where they set one
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"})
        if (local < 0) integer_env(name, &local);
    if (options.processes > 0) {
        if (options.rank < 0) fail("-pn %d: give this process's rank with -pr (0 to %d)", options.processes, options.processes - 1);
        if (options.rank >= options.processes) fail("-pr %d: expected a rank below -pn %d", options.rank, options.processes);
        return {options.rank, options.processes, local >= 0 ? local : options.rank, "-pn/-pr"};
    }
    if (options.rank >= 0) fail("-pr %d: give the number of processes with -pn too", options.rank);
    struct Launcher {
        const char* rank;
        const char* size;
    };
    for (const Launcher& l : {Launcher{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, Launcher{"PMI_RANK", "PMI_SIZE"},
                              Launcher{"SLURM_PROCID", "SLURM_NTASKS"}}) {
        int rank, size;
        if (integer_env(l.rank, &rank) && integer_env(l.size, &size)) {
            if (size < 1 || rank >= size) fail("environment: %s=%d is not below %s=%d", l.rank, rank, l.size, size);
            return {rank, size, local >= 0 ? local : rank, format("%s and %s", l.rank, l.size)};
        }
    }
    return g;
}

std::unique_ptr<Communicator> connect_cpu_processes(const ProcessGroup& group, const ProcessOptions& options) {
    if (group.size == 1) return make_single_process_communicator();
    const std::string& dir = options.meeting.dir;
    if (dir.empty())
        fail("%d processes meet through a folder they share: give -pf DIR (best a RAM disk such as /dev/shm) or -o DIR",
             group.size);
    make_directories(dir);
    return make_shared_memory_communicator(group.rank, group.size, dir);
}

}  // namespace coldstart
