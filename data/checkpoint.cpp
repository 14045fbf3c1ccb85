#include "data/checkpoint.h"

#include <dirent.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "data/llmc_header.h"
#include "dist/communicator.h"

namespace coldstart {

static constexpr int32_t kStateMagic = 20261125;
// 3: the optimizer state as named buffers; 4: the Lion family renamed (liona = the l2-controlled Lion,
// lionar = the rotational Lion), so that the state of a version-3 liona or lionar is not read as another.
static constexpr int32_t kStateVersion = 4;
static constexpr int32_t kStateVersionBeforeRename = 3;

CheckpointFiles checkpoint_files(const std::string& dir, int64_t step) {
    const long long s = step;
    return {format("%s/model_%08lld.bin", dir.c_str(), s), format("%s/state_%08lld_00000.bin", dir.c_str(), s),
            format("%s/DONE_%08lld", dir.c_str(), s)};
}

void crash_point(const char* point, int64_t step) {
    const char* at = std::getenv("COLDSTART_CRASH_AT");
    if (at && format("%s:%lld", point, (long long)step) == at) std::raise(SIGKILL);
}

void write_checkpoint(const std::string& dir, const GPT2Config& config, const float* params, ModelDtype dtype,
                      const TrainingState& state, const Optimizer& optimizer, Communicator* comm) {
    const CheckpointFiles files = checkpoint_files(dir, state.step);
    const bool lead = !comm || comm->rank() == 0;
    auto barrier = [&] {
        if (comm) comm->barrier();
    };
    const std::string tmp = files.state + ".tmp";
    const bool master_weights = dtype != ModelDtype::fp32;
    try {
        if (lead) {
            remove_quietly(files.done);  // an overwritten checkpoint is incomplete until its marker is back
            save_model_file(files.model, config, params, dtype);
            crash_point("model-written", state.step);
            // The header and the JSON block; then every rank adds its part of the optimizer state.
            const std::string meta = nlohmann::json{{"step", state.step}, {"run", state.run}, {"progress", state.progress}}.dump();
            LlmcHeader header = new_llmc_header(kStateMagic, kStateVersion);
            header[2] = comm ? comm->size() : 1;  // the ranks that wrote it (any number can read it)
            header[3] = master_weights ? 1 : 0;
            header[4] = int32_t(meta.size());
            File f(tmp, "wb");
            f.write_all(header.data(), kLlmcHeaderBytes);
            f.write_all(meta.data(), meta.size());
            f.close();
        }
        barrier();
        {
            File f(tmp, "r+b");
            LlmcHeader header;
            f.read_exact(header.data(), kLlmcHeaderBytes, "the state file's header");
            f.seek(kLlmcHeaderBytes + size_t(header[4]));
            const size_t end = save_optimizer_state(optimizer, f);
            if (master_weights && lead) {
                f.seek(end);
                f.write_all(params, ParamLayout(config).total * sizeof(float));
            }
            f.flush_to_disk();
            f.close();
        }
        barrier();
        if (lead) {
            crash_point("state-written", state.step);
            rename_or_fail(tmp, files.state);
            crash_point("before-done", state.step);
            write_atomically(files.done, [](File&) {});
        }
        barrier();
    } catch (...) {
        if (lead) remove_quietly(tmp);
        throw;
    }
}

// Steps of the complete checkpoints in dir (those with a DONE marker), ascending.
static std::vector<int64_t> complete_checkpoints(const std::string& dir) {
    std::vector<int64_t> steps;
    DIR* d = opendir(dir.c_str());
    if (!d) return steps;
    while (const dirent* e = readdir(d)) {
        long long step;
        char tail;
        if (std::sscanf(e->d_name, "DONE_%lld%c", &step, &tail) == 1) steps.push_back(step);  // not DONE_*.tmp
    }
    closedir(d);
    std::sort(steps.begin(), steps.end());
    return steps;
}

int64_t latest_checkpoint(const std::string& dir) {
    const std::vector<int64_t> steps = complete_checkpoints(dir);
    return steps.empty() ? -1 : steps.back();
}

std::string file_of_a_run_in(const std::string& dir) {
    for (const char* name : {"log.jsonl", "config.json"})
        if (file_exists(dir + "/" + name)) return name;
    DIR* d = opendir(dir.c_str());
    if (!d) return "";
    std::string found;
    while (const dirent* e = readdir(d)) {
        long long step;
        char c;
        if (std::sscanf(e->d_name, "model_%lld%c", &step, &c) == 2 || std::sscanf(e->d_name, "state_%lld%c", &step, &c) == 2 ||
            std::sscanf(e->d_name, "DONE_%lld", &step) == 1) {
            found = e->d_name;
            break;
        }
    }
    closedir(d);
    return found;
}

void prune_checkpoints(const std::string& dir, int keep_last, int64_t keep_every_steps) {
    if (keep_last <= 0) return;
    const std::vector<int64_t> steps = complete_checkpoints(dir);
    for (size_t i = 0; i + size_t(keep_last) < steps.size(); ++i) {
        if (keep_every_steps > 0 && steps[i] % keep_every_steps == 0) continue;
        const CheckpointFiles files = checkpoint_files(dir, steps[i]);
        remove_quietly(files.done);  // first: a half-deleted checkpoint must never look complete
        remove_quietly(files.state);
        remove_quietly(files.model);
    }
}

TrainingState read_state_file(const std::string& path, size_t num_params, Optimizer& optimizer,
                              std::vector<float>& master_params) {
    File f(path, "rb");
    const size_t file_size = f.size();
    const LlmcHeader header = read_llmc_header(f, "coldstart state file", kStateMagic, {kStateVersion, kStateVersionBeforeRename});
    if (header[1] == kStateVersionBeforeRename && optimizer.config().is_lion_family())
        fail("%s: a state file of version 3, from before the Lion family was renamed: its liona is today's lionar "
             "--rrc-correction none, its lionar today's lionar --rrc-correction alignment, and today's liona (the "
             "l2-controlled Lion) is new; a version-3 Lion-family state is not resumed: start the run again "
             "(AdamW's version-3 states still resume)", path.c_str());
    if (header[4] <= 0 || size_t(header[4]) > file_size - kLlmcHeaderBytes)
        fail("%s: the JSON block's length %d does not fit the file's %zu bytes", path.c_str(), header[4], file_size);
    std::string meta(size_t(header[4]), '\0');
    f.read_exact(meta.data(), meta.size(), "the JSON block");
    TrainingState state;
    int64_t params_in_run = -1;
    try {
        const nlohmann::json j = nlohmann::json::parse(meta);
        if (!j.at("step").is_number_integer() || j.at("step").get<int64_t>() < 0)
            fail("%s: the JSON block's step is not a non-negative integer: %s", path.c_str(), j.at("step").dump().c_str());
        state.step = j.at("step").get<int64_t>();
        state.run = j.at("run");
        state.progress = j.at("progress");
        if (!state.run.is_object() || !state.progress.is_object()) fail("%s: the JSON block's run and progress must be objects", path.c_str());
        if (!state.run.at("parameters").is_number_integer())
            fail("%s: the JSON block's parameter count is not an integer: %s", path.c_str(), state.run.at("parameters").dump().c_str());
        params_in_run = state.run.at("parameters").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
        fail("%s: the JSON block is malformed: %s", path.c_str(), e.what());
    }
    if (params_in_run != int64_t(num_params))
        fail("%s: holds state for %lld parameters, the model has %zu", path.c_str(), (long long)params_in_run, num_params);
    load_optimizer_state(optimizer, f);
    master_params.clear();
    if (header[3] == 1) {
        master_params.resize(num_params);
        f.read_exact(master_params.data(), num_params * sizeof(float), "the fp32 master weights");
    }
    if (f.position() != file_size)
        fail("%s: %zu bytes follow the end of the state (the optimizer's state of another optimizer or option set?)",
             path.c_str(), file_size - f.position());
    return state;
}

}  // namespace coldstart
