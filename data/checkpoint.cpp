#include "data/checkpoint.h"

#include <cstring>

#include "common/error.h"

namespace coldstart {

static constexpr int32_t kStateMagic = 20261125;
static constexpr int32_t kStateVersion = 1;
static constexpr size_t kNameBytes = 32;

CheckpointFiles checkpoint_files(const std::string& dir, int64_t step, int rank) {
    const long long s = step;
    return {format("%s/model_%08lld.bin", dir.c_str(), s), format("%s/state_%08lld_%05d.bin", dir.c_str(), s, rank),
            format("%s/DONE_%08lld", dir.c_str(), s)};
}

void write_checkpoint(const std::string& dir, const GPT2Config& config, const float* params, ModelDtype dtype,
                      const TrainingState& state, const std::string& optimizer_name, const Optimizer& optimizer) {
    const CheckpointFiles files = checkpoint_files(dir, state.step);
    remove_quietly(files.done);  // an overwritten checkpoint is incomplete until its marker is back
    save_model_file(files.model, config, params, dtype);
    write_atomically(files.state, [&](File& f) {
        int32_t header[256] = {};
        header[0] = kStateMagic;
        header[1] = kStateVersion;
        header[2] = 1;  // world size
        header[3] = 0;  // fp32 master weights
        f.write_all(header, sizeof header);
        const int64_t fields[5] = {state.step, int64_t(ParamLayout(config).total), state.loader_epoch,
                                   state.loader_shard, state.loader_batch};
        f.write_all(fields, sizeof fields);
        f.write_all(state.rng.data(), sizeof(uint64_t) * state.rng.size());
        char name[kNameBytes] = {};
        std::strncpy(name, optimizer_name.c_str(), kNameBytes - 1);
        f.write_all(name, kNameBytes);
        optimizer.save_state(f);
    });
    write_atomically(files.done, [](File&) {});
}

void read_state_file(const std::string& path, size_t num_params, const std::string& optimizer_name,
                     TrainingState& state, Optimizer& optimizer) {
    File f(path, "rb");
    int32_t header[256];
    f.read_exact(header, sizeof header, "the header");
    if (header[0] != kStateMagic) fail("%s: not a coldstart state file: magic %d, expected %d", path.c_str(), header[0], kStateMagic);
    if (header[1] != kStateVersion) fail("%s: state file version %d, expected %d", path.c_str(), header[1], kStateVersion);
    if (header[2] != 1) fail("%s: written by %d ranks, this run has 1", path.c_str(), header[2]);
    int64_t fields[5];
    f.read_exact(fields, sizeof fields, "the step and loader position");
    if (fields[1] != int64_t(num_params))
        fail("%s: holds state for %lld parameters, the model has %zu", path.c_str(), (long long)fields[1], num_params);
    f.read_exact(state.rng.data(), sizeof(uint64_t) * state.rng.size(), "the random state");
    char name[kNameBytes];
    f.read_exact(name, kNameBytes, "the optimizer name");
    name[kNameBytes - 1] = '\0';
    if (optimizer_name != name)
        fail("%s: optimizer state is for '%s', this run uses '%s'", path.c_str(), name, optimizer_name.c_str());
    optimizer.load_state(f);
    state.step = fields[0];
    state.loader_epoch = fields[2];
    state.loader_shard = fields[3];
    state.loader_batch = fields[4];
}

}  // namespace coldstart
