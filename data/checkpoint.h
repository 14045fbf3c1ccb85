// Checkpoints in the output folder, llm.c's naming: after s updates,
//   model_%08d.bin        the model (llm.c model file: fp32, or bf16 with --save-bf16)
//   state_%08d_00000.bin  the training state of all ranks (below)
//   DONE_%08d             written last: a checkpoint is complete only when this marker exists.
// Each file is written to a temporary name, flushed to disk and renamed, so a crash at any moment leaves
// every earlier complete checkpoint intact, and -y resumes from the newest complete one.
//
// State file (one per checkpoint, whatever the number of ranks; the rank in its name is always 0): a
// header of 256 int32 ([0] = 20261125 magic, [1] = 4 version (3 is read for AdamW only), [2] = the number of ranks that wrote it,
// [3] = 1 if fp32 master weights follow the optimizer state, [4] = bytes of the JSON block), then a JSON
// object with everything small (step, the data loader's position, the random state, the batch shape the
// position refers to, the outlier detectors, the log's length), then the optimizer's state (named
// buffers in a layout independent of the number of ranks: optim/optimizer.h), then
// (when the model file is bf16) the fp32 parameters, so that a resumed run continues bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/model_file.h"
#include "optim/optimizer.h"

namespace coldstart {

class Communicator;

// Everything besides the weights and the optimizer state that a resumed run needs to continue exactly.
struct TrainingState {
    int64_t step = 0;             // updates done
    nlohmann::json run;           // what the saved position means: B, T, grad_accum, shuffle, seed, optimizer
    nlohmann::json progress;      // loader position, random state, outlier detectors, skipped steps, log bytes
};

struct CheckpointFiles {
    std::string model, state, done;
};
CheckpointFiles checkpoint_files(const std::string& dir, int64_t step);

// Writes model, state and the DONE marker, in that order, each atomically. With several ranks (comm),
// every rank calls it: rank 0 writes the model, the state file's header and JSON block, and the marker;
// every rank writes its part of the optimizer state into the one state file (a layout that does not
// depend on the number of ranks), which rank 0 renames into place once all have written.
void write_checkpoint(const std::string& dir, const GPT2Config& config, const float* params, ModelDtype dtype,
                      const TrainingState& state, const Optimizer& optimizer, Communicator* comm = nullptr);

// The step of the newest complete checkpoint in dir (its DONE marker exists), or -1 if there is none.
int64_t latest_checkpoint(const std::string& dir);

// The first file in dir that a run writes (log.jsonl, config.json, a checkpoint's file, finished or not),
// or "" when dir is missing or holds none: a new run refuses such a folder, so as not to mix two runs.
std::string file_of_a_run_in(const std::string& dir);

// Retention: keeps the newest keep_last complete checkpoints (0: all) and every checkpoint whose step is
// a multiple of keep_every_steps (0: none besides), deleting the others marker first.
void prune_checkpoints(const std::string& dir, int keep_last, int64_t keep_every_steps);

// Reads a state file, written by any number of ranks: the optimizer state goes into optimizer (the part
// its shard holds), fp32 master weights (if the file has them) into master_params (else it is left
// empty). Errors name the file and the field that does not match.
TrainingState read_state_file(const std::string& path, size_t num_params, Optimizer& optimizer,
                              std::vector<float>& master_params);

// Fault injection for the crash tests: if $COLDSTART_CRASH_AT equals "<point>:<step>", the process kills
// itself with SIGKILL at that point. Points: model-written, state-written (temporary files written, not
// yet renamed), before-done.
void crash_point(const char* point, int64_t step);

}  // namespace coldstart
