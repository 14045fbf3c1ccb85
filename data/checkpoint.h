// Checkpoints in the output folder, llm.c's naming: after s updates,
//   model_%08d.bin        the model (llm.c model file: fp32, or bf16 with --save-bf16)
//   state_%08d_%05d.bin   the training state of rank r (below)
//   DONE_%08d             written last: a checkpoint is complete only when this marker exists.
// Each file is written to a temporary name, flushed to disk and renamed, so a crash at any moment leaves
// every earlier complete checkpoint intact.
//
// State file: a header of 256 int32 ([0] = 20261125 magic, [1] = 1 version, [2] = world size,
// [3] = 0 fp32 master weights), then int64 step, int64 parameter count, the data loader's position
// (int64 epoch, shard, batch), the sampler's random state (4 x uint64), the optimizer's name (32 bytes,
// zero padded), then the optimizer's own state.
#pragma once

#include <cstdint>
#include <string>

#include "common/random.h"
#include "data/model_file.h"
#include "optim/optimizer.h"

namespace coldstart {

struct TrainingState {
    int64_t step = 0;  // updates done
    int64_t loader_epoch = 0, loader_shard = 0, loader_batch = 0;
    Rng::State rng{};
};

struct CheckpointFiles {
    std::string model, state, done;
};
CheckpointFiles checkpoint_files(const std::string& dir, int64_t step, int rank = 0);

void write_checkpoint(const std::string& dir, const GPT2Config& config, const float* params, ModelDtype dtype,
                      const TrainingState& state, const std::string& optimizer_name, const Optimizer& optimizer);

// Reads a state file into state and optimizer; errors name the file and the field that does not match.
void read_state_file(const std::string& path, size_t num_params, const std::string& optimizer_name,
                     TrainingState& state, Optimizer& optimizer);

}  // namespace coldstart
