// coldstart: train GPT-2 on llm.c token shards.
//
// Read this file top to bottom for the whole pipeline:
//   flags + JSON config (config/)  ->  model from a descriptor or file (model/, data/model_file)
//   -> data loaders (data/shards) and tokenizer (data/tokenizer) -> a backend that holds the model and
//   optimizer on the CPU or GPU (backend/backend.h, optim/) -> the training loop below: validation, samples,
//   checkpoints (data/checkpoint), gradient accumulation, clipping, the schedule, and the logs.
//
// Built by nvcc (COLDSTART_CUDA defined) where the CUDA Toolkit exists, or by the C++ compiler alone.

#include <omp.h>

#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "backend/backend.h"
#include "backend/sampling.h"
#include "common/error.h"
#include "common/random.h"
#include "common/run_log.h"
#include "common/stop_signal.h"
#include "config/flags.h"
#include "config/resolve.h"
#include "data/checkpoint.h"
#include "data/model_file.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "dist/process_group.h"
#include "optim/outlier.h"
#include "optim/schedule.h"
#include "optim/rrc.h"
#include "optim/step_gate.h"
#include "optim/update_metrics.h"

#ifdef COLDSTART_CUDA
#include <cuda_runtime.h>

#include "backend/cuda_backend.h"
#include "model/mfu.h"
#ifdef COLDSTART_NCCL
#include "dist/nccl_communicator.cuh"
#endif
#endif

using namespace coldstart;

// The source's git commit, from the Makefile (recorded in the log's run record).
#ifndef COLDSTART_VERSION
#define COLDSTART_VERSION "unknown"
#endif

// ---------------------------------------------------------------------------------------------------
// Device: a CUDA GPU when one is present and asked for; otherwise the CPU reference path, said aloud.

#ifdef COLDSTART_CUDA
static std::string find_cuda_gpu() {  // the GPU's name, or "" with the reason printed
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || (err == cudaSuccess && count == 0)) {
        // An old driver is what the runtime reports on a machine with no NVIDIA driver at all.
        std::printf("no CUDA GPU: no GPU or NVIDIA driver was found (%s)\n", err != cudaSuccess ? cudaGetErrorString(err) : "no device");
        return "";
    }
    if (err != cudaSuccess) {
        std::printf("no CUDA GPU: %s\n", cudaGetErrorString(err));
        return "";
    }
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    return prop.name;
}
#endif

static std::string choose_device(const Config& cfg) {
    if (cfg.device == "cpu") return "cpu";
#ifdef COLDSTART_CUDA
    const std::string gpu = find_cuda_gpu();
    if (!gpu.empty()) {
        std::printf("training on %s (CUDA, %s; MFU counts llm.c's 6N + 6LCT FLOPs per token)\n", gpu.c_str(), cfg.precision.c_str());
        return "cuda";
    }
    if (cfg.device == "cuda") fail("--device cuda: no CUDA GPU is available");
#else
    if (cfg.device == "cuda") fail("--device cuda: this binary was built without CUDA (rebuild with nvcc)");
#endif
    std::printf("training on the CPU reference path (%d threads)\n", omp_get_max_threads());
    return "cpu";
}

// The processes' communicator: NCCL between GPU processes, shared memory between CPU processes on one
// machine, or none for a process alone.
static std::unique_ptr<Communicator> connect(const std::string& device, const ProcessGroup& group, const Config& cfg) {
    if (device != "cuda" || group.size == 1) return connect_cpu_processes(group, process_options(cfg));
#ifdef COLDSTART_NCCL
    return make_nccl_communicator(group, process_options(cfg).meeting);
#else
    fail("%d processes on GPUs need NCCL, and this binary was built without it (make NCCL_PATH=..., see the README)", group.size);
#endif
}

static std::unique_ptr<Backend> make_backend(const std::string& device, const GPT2Config& config, int B, int T,
                                             const OptimizerConfig& opt, const Config& cfg, Communicator& comm) {
#ifdef COLDSTART_CUDA
    if (device == "cuda") {
        CudaOptions options{cfg.precision, cfg.attention, cfg.recompute, cfg.gelu_fusion};
        options.rrc = cfg.metrics_every > 0 && cfg.metrics_rrc;
        options.zero_stage = cfg.zero_stage;
#ifdef COLDSTART_NCCL
        if (auto* nccl = dynamic_cast<NcclCommunicator*>(&comm)) {
            options.comm = nccl;
            options.device = nccl->device();
        }
#endif
        return make_cuda_backend(config, B, T, opt, options);
    }
#endif
    return make_cpu_backend(config, B, T, opt, &comm, cfg.zero_stage);
}

// The step line's throughput note: MFU on the GPU (llm.c's FLOP count, see model/mfu.h), nothing on the CPU.
static std::string mfu_note(const std::string& device, const Backend& backend, const Config& cfg, size_t params, double tokens_per_s) {
#ifdef COLDSTART_CUDA
    if (device == "cuda")
        return " | " + mfu_text(backend.device_name(), cfg.precision == "bf16", flops_per_token(backend.config(), params, cfg.seq_len), tokens_per_s);
#endif
    return "";
}

// ---------------------------------------------------------------------------------------------------
// Model: a fresh GPT-2 from a descriptor, or the weights of an llm.c model file.

struct InitialModel {
    GPT2Config config;
    std::vector<float> params;
    std::string source;
};

static InitialModel load_initial_model(const Config& cfg) {
    if (looks_like_descriptor(cfg.init)) {
        InitialModel m{config_from_descriptor(cfg.init), {}, "-e " + cfg.init};
        if (cfg.vocab_size > 0) {  // a smaller vocabulary, padded to a multiple of 128 as GPT-2's is
            m.config.vocab_size = cfg.vocab_size;
            m.config.padded_vocab_size = (cfg.vocab_size + 127) / 128 * 128;
            m.source += format(" --vocab-size %d", cfg.vocab_size);
        }
        m.params.resize(ParamLayout(m.config).total);
        init_parameters(m.params.data(), m.config, cfg.seed);
        return m;
    }
    if (!file_exists(cfg.init))
        fail("-e %s: no such model file, and not a descriptor (dN or gpt2:dN, e.g. d12 = GPT-2 124M)", cfg.init.c_str());
    if (cfg.vocab_size > 0) fail("--vocab-size %d: applies to a descriptor (-e dN); the model file %s has its own", cfg.vocab_size, cfg.init.c_str());
    LoadedModel loaded = load_model_file(cfg.init);
    return {loaded.config, std::move(loaded.params), cfg.init};
}

// ---------------------------------------------------------------------------------------------------
// Checks between options that the option table cannot express alone.

// Micro-batches per step on each of `processes` processes.
static int gradient_accumulation_steps(const Config& cfg, int processes) {
    const int64_t tokens_per_micro = int64_t(cfg.batch_size) * cfg.seq_len * processes;
    if (cfg.total_batch_tokens == -1) return 1;
    if (cfg.total_batch_tokens <= 0 || cfg.total_batch_tokens % tokens_per_micro != 0)
        fail("-d %lld: expected a positive multiple of B*T*processes = %d*%d*%d = %lld", (long long)cfg.total_batch_tokens,
             cfg.batch_size, cfg.seq_len, processes, (long long)tokens_per_micro);
    return int(cfg.total_batch_tokens / tokens_per_micro);
}

static void check_sequence_length(const Config& cfg, const InitialModel& model) {
    if (cfg.seq_len > model.config.max_seq_len)
        fail("-t %d: exceeds the model's maximum sequence length %d (from %s)", cfg.seq_len,
             model.config.max_seq_len, model.source.c_str());
}

// ---------------------------------------------------------------------------------------------------
// Validation and samples.

// The mean loss over the first `batches` windows of the validation data; each process takes every
// size()-th of them (the loader serves rank r the windows r, r + size(), ...).
static float validation_loss(Backend& backend, DataLoader& val, int batches, Communicator& comm) {
    val.reset();
    double sum = 0;
    for (int i = comm.rank(); i < batches; i += comm.size()) {
        val.next_batch();
        sum += backend.evaluate(val.inputs(), val.targets());
    }
    comm.all_reduce_sum(&sum, 1);
    return float(sum / batches);
}

static void print_sample(Backend& backend, const Tokenizer* tokenizer, int n, Rng& rng, RunLog& log, int64_t step) {
    const std::vector<int> tokens = generate(backend, sample_start_token(tokenizer, backend.config().vocab_size), n, rng);
    std::string text;
    if (tokenizer) {
        text = tokenizer->decode(tokens);
    } else {
        for (int t : tokens) text += std::to_string(t) + " ";
    }
    std::printf("--- sample at step %lld ---\n%s\n---\n", (long long)step, text.c_str());
    log.write({{"type", "sample"}, {"step", step}, {"tokens", tokens}, {"text", text}});
}

static std::string duration_text(double seconds) {
    const long s = long(seconds + 0.5);
    if (s >= 3600) return format("%ldh%02ldm", s / 3600, (s / 60) % 60);
    if (s >= 60) return format("%ldm%02lds", s / 60, s % 60);
    return format("%lds", s);
}

// ---------------------------------------------------------------------------------------------------
// Resume: what a checkpoint's data position means, and putting a run back exactly where it was.

// The settings a saved position and optimizer state depend on; a resumed run must match them. The number
// of processes is not one of them: the position and the state do not depend on it. The run's id (a random
// name given at its start, in the log's run record and every checkpoint) is added once it is known, so
// that a checkpoint of another run in the same folder is never resumed.
static nlohmann::json run_identity(const Config& cfg, size_t parameters, int64_t step_tokens) {
    return {{"train-data", cfg.train_data}, {"batch-size", cfg.batch_size}, {"seq-len", cfg.seq_len}, {"step_tokens", step_tokens},
            {"shuffle", cfg.shuffle}, {"seed", cfg.seed}, {"optimizer", cfg.optimizer}, {"parameters", parameters}};
}

// Everything that changes from step to step besides weights and optimizer state.
struct Progress {
    int64_t step = 0;            // updates done, skipped ones included (the schedule's clock)
    int64_t optimizer_t = 0;     // updates taken (Adam's bias-correction clock)
    int64_t skipped = 0;         // steps skipped (non-finite or spikes)
    int bad_in_row = 0;          // consecutive non-finite steps
    OutlierDetector loss_detector, norm_detector;
    float last_val_loss = NAN;   // for the end-of-run summary (not saved)
};

// A random run id: 16 hex digits from the system's entropy source and the clock.
static std::string new_run_id() {
    std::random_device entropy;
    const uint64_t id = (uint64_t(entropy()) << 32 ^ entropy()) ^ uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
    return format("%016llx", (unsigned long long)id);
}

static nlohmann::json progress_to_json(const Progress& p, const DataLoader& loader, const Rng& rng, const RunLog& log) {
    const LoaderPosition pos = loader.position();
    return {{"optimizer_t", p.optimizer_t}, {"skipped", p.skipped}, {"bad_in_row", p.bad_in_row},
            {"loss_detector", p.loss_detector.to_json()}, {"norm_detector", p.norm_detector.to_json()},
            {"loader", {pos.epoch, pos.shard_index, pos.batch_index}}, {"sample_rng", rng.state()},
            {"log_bytes", log.bytes_written()}, {"elapsed_s", log.elapsed()}};
}

// Puts loader, sampler and counters where the checkpoint's progress says. Integers must be JSON
// integers: converting a huge JSON float to int64 would be undefined behaviour.
static int64_t restore_progress(const nlohmann::json& j, const std::string& path, DataLoader& loader, Rng& rng, Progress& p,
                                RunLog& log) {
    auto integer = [&](const nlohmann::json& v, const char* field) {
        if (!v.is_number_integer()) fail("%s: the saved progress field %s is not an integer: %s", path.c_str(), field, v.dump().c_str());
        return v.get<int64_t>();
    };
    p.optimizer_t = integer(j.at("optimizer_t"), "optimizer_t");
    p.skipped = integer(j.at("skipped"), "skipped");
    p.bad_in_row = int(integer(j.at("bad_in_row"), "bad_in_row"));
    p.loss_detector.from_json(j.at("loss_detector"));
    p.norm_detector.from_json(j.at("norm_detector"));
    const auto& pos = j.at("loader");
    loader.seek({uint64_t(integer(pos.at(0), "loader")), uint64_t(integer(pos.at(1), "loader")), uint64_t(integer(pos.at(2), "loader"))});
    rng.set_state(j.at("sample_rng").get<Rng::State>());
    if (j.contains("elapsed_s") && j["elapsed_s"].is_number()) log.set_elapsed_before(j["elapsed_s"].get<double>());
    return integer(j.at("log_bytes"), "log_bytes");
}

// A log whose run has ended (its "end" record, the last one a run writes). Records are JSON objects with
// sorted keys, and a string value escapes its quotes, so the text "type":"end" marks that record alone.
static bool log_has_ended(const std::string& path) {
    return file_exists(path) && read_whole_file(path).find("\"type\":\"end\"") != std::string::npos;
}

// Loads the newest complete checkpoint of cfg.output_dir into backend, loader, rng and progress, and
// gives identity the run's id. Returns the log length to keep, or -1 when there is no checkpoint (a
// fresh start).
static int64_t resume(const Config& cfg, nlohmann::json& identity, Backend& backend, DataLoader& loader, Rng& rng,
                      Progress& p, RunLog& log) {
    const std::string log_path = cfg.output_dir + "/log.jsonl";
    const int64_t step = latest_checkpoint(cfg.output_dir);
    if (step < 0) {
        if (log_has_ended(log_path))
            fail("-y 1: %s holds a finished run whose checkpoints were removed: nothing to resume, and its log is kept; "
                 "choose another -o", cfg.output_dir.c_str());
        std::printf("-y 1: no complete checkpoint in %s: starting from the beginning\n", cfg.output_dir.c_str());
        return -1;
    }
    const CheckpointFiles files = checkpoint_files(cfg.output_dir, step);
    LoadedModel model = load_model_file(files.model);
    if (model.config.describe() != backend.config().describe())
        fail("%s: the checkpoint's model (%s) is not this run's (%s)", files.model.c_str(), model.config.describe().c_str(),
             backend.config().describe().c_str());
    std::vector<float> master;
    const TrainingState state = read_state_file(files.state, model.params.size(), backend.optimizer(), master);
    for (const auto& [key, value] : identity.items())
        if (state.run.value(key, nlohmann::json()) != value)
            fail("%s: the checkpoint was written with %s = %s, this run has %s; resuming needs the same", files.state.c_str(),
                 key.c_str(), state.run.value(key, nlohmann::json()).dump().c_str(), value.dump().c_str());
    const std::string run_id = state.run.value("run_id", ""), log_run_id = run_id_of_log(log_path);
    if (run_id != log_run_id)
        fail("%s: the checkpoint belongs to another run (run id %s) than %s (run id %s): it is never resumed into "
             "another run's log; choose another -o, or remove the checkpoints that are not this log's run",
             files.state.c_str(), run_id.empty() ? "none" : run_id.c_str(), log_path.c_str(),
             log_run_id.empty() ? "none" : log_run_id.c_str());
    identity["run_id"] = run_id;
    backend.set_parameters(master.empty() ? model.params.data() : master.data());
    p.step = state.step;
    int64_t log_bytes;
    try {
        log_bytes = restore_progress(state.progress, files.state, loader, rng, p, log);
    } catch (const nlohmann::json::exception& e) {
        fail("%s: the saved progress is malformed: %s", files.state.c_str(), e.what());
    }
    std::printf("resumed from %s (step %lld)\n", files.model.c_str(), (long long)step);
    return log_bytes;
}

static std::set<int64_t> parse_step_list(const std::string& list) {
    std::set<int64_t> steps;
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) steps.insert(std::stoll(item));
    return steps;
}

// ---------------------------------------------------------------------------------------------------
// The run: everything fixed at its start, then one function per part of the loop.

struct Run {
    Config cfg;
    std::unique_ptr<Communicator> comm;
    std::string device;
    InitialModel model;
    int B = 0, T = 0, accum = 0;  // micro-batch, and micro-batches per step on each process
    int64_t steps = 0;
    std::set<int64_t> inject_nonfinite;
    std::unique_ptr<DataLoader> train_loader, val_loader;  // no train_loader when -x 0 has no -i
    int val_batches = 0;
    std::unique_ptr<Tokenizer> tokenizer;
    OptimizerConfig opt;
    std::unique_ptr<Backend> backend;
    Schedule schedule;
    std::vector<TensorSlice> tensors;
    nlohmann::json identity;
    RunLog log;

    int processes() const { return comm->size(); }
    int64_t step_tokens() const { return int64_t(B) * T * accum * processes(); }
};

// Checks every input and builds the run; nothing is written yet.
static void set_up(Run& r, const ProcessGroup& group) {
    Config& cfg = r.cfg;
    resolve_optimizer_defaults(cfg);
    if (cfg.train_data.empty() && (cfg.max_steps != 0 || cfg.resume))
        fail("-i/--train-data: no training shards given (a glob of llm.c .bin files; only -x 0, evaluating, needs none)");
    if (cfg.resume && cfg.output_dir.empty()) fail("-y 1: resuming needs the run's output folder (-o)");
    if (cfg.checkpoint_every > 0 && cfg.output_dir.empty())
        fail("-n %d: checkpoints are written into the output folder; add -o DIR", cfg.checkpoint_every);
    // Every process looks before any of them writes (they meet in connect() below).
    if (!cfg.output_dir.empty() && !cfg.resume) {
        const std::string found = file_of_a_run_in(cfg.output_dir);
        if (!found.empty())
            fail("%s already holds a run (%s): resume with -y 1, or choose another -o", cfg.output_dir.c_str(), found.c_str());
    }
    if (cfg.threads > 0) omp_set_num_threads(cfg.threads);
    r.device = choose_device(cfg);
    r.model = load_initial_model(cfg);
    check_sequence_length(cfg, r.model);
    const int V = r.model.config.vocab_size;
    if (!cfg.tokenizer.empty()) {  // now, not at the first sample
        r.tokenizer = std::make_unique<Tokenizer>(Tokenizer::load(cfg.tokenizer));
        if (r.tokenizer->vocab_size() != V)
            fail("--tokenizer %s: %d tokens, but the model (%s) has a vocabulary of %d; give the tokenizer its shards were "
                 "made with (--tokenizer bytes for byte-level shards)",
                 cfg.tokenizer.c_str(), r.tokenizer->vocab_size(), r.model.source.c_str(), V);
    }
    r.B = cfg.batch_size;
    r.T = cfg.seq_len;
    r.accum = gradient_accumulation_steps(cfg, group.size);
    try {
        r.inject_nonfinite = parse_step_list(cfg.inject_nonfinite);
    } catch (const std::exception&) {
        fail("--inject-nonfinite: expected comma-separated step numbers, got '%s'", cfg.inject_nonfinite.c_str());
    }
    if (!cfg.train_data.empty())
        r.train_loader = std::make_unique<DataLoader>(cfg.train_data, "-i", r.B, r.T, V, cfg.shuffle != 0, cfg.seed, group.rank, group.size);
    if (!cfg.val_data.empty())
        r.val_loader = std::make_unique<DataLoader>(cfg.val_data, "-j", r.B, r.T, V, false, cfg.seed, group.rank, group.size);
    const int64_t micro_per_step = int64_t(r.accum) * group.size;
    r.steps = cfg.max_steps >= 0 ? cfg.max_steps : int64_t(r.train_loader->batches_per_epoch()) / micro_per_step;
    if (r.steps == 0 && cfg.max_steps == -1)
        fail("-x -1: one epoch of %s holds no full step of %lld micro-batches; set -x", cfg.train_data.c_str(), (long long)micro_per_step);
    if (r.val_loader) r.val_batches = int(std::min<size_t>(size_t(cfg.val_batches), r.val_loader->batches_per_epoch()));

    r.opt = optimizer_config(cfg);
    validate_optimizer_config(r.opt, cfg.lr);
    r.comm = connect(r.device, group, cfg);
    r.backend = make_backend(r.device, r.model.config, r.B, r.T, r.opt, cfg, *r.comm);
    r.backend->set_parameters(r.model.params.data());
    r.schedule = {cfg.schedule, cfg.lr, warmup_steps(cfg.warmup, r.steps), cfg.final_lr_frac, cfg.cooldown_frac, int(r.steps)};
    r.tensors = parameter_tensors(r.model.config);
    r.identity = run_identity(cfg, r.model.params.size(), r.step_tokens());
}

static void print_plan(const Run& r) {
    const Config& cfg = r.cfg;
    std::printf("model: %s (%s), %zu parameters\n", r.model.source.c_str(), r.model.config.describe().c_str(), r.model.params.size());
    std::printf("batch: B=%d T=%d, %d micro-batches per step%s = %lld tokens; %lld steps; train tokens %zu\n", r.B, r.T, r.accum,
                r.processes() > 1 ? format(" on each of %d processes", r.processes()).c_str() : "", (long long)r.step_tokens(),
                (long long)r.steps, r.train_loader ? r.train_loader->total_tokens() : size_t(0));
    if (r.processes() > 1) {
        // A ring all-reduce sends and receives 2 (P-1)/P of the fp32 gradient per process; ZeRO-1's
        // reduce-scatter (P-1)/P of it, and its all-gather (P-1)/P of the weights the kernels read, which
        // on GPUs in bf16 are the bf16 copy (2 bytes a parameter).
        const bool zero = cfg.zero_stage == 1, bf16_copy = r.device == "cuda" && cfg.precision == "bf16";
        const double P = r.processes(), share = (P - 1) / P * double(r.model.params.size());
        const double bytes = zero ? share * (sizeof(float) + (bf16_copy ? 2 : sizeof(float))) : 2.0 * share * sizeof(float);
        std::printf("processes: %s, optimizer state %s; %s %.1f MB per step and process\n", r.comm->describe().c_str(),
                    zero ? "and master weights sharded (ZeRO-1)" : "replicated",
                    zero ? "the gradient's reduce-scatter and the weights' all-gather move" : "the gradient's all-reduce moves", bytes / 1e6);
    }
    std::printf("schedule: %s, peak lr %g, warmup %d steps, grad clip %g%s%s\n", cfg.schedule.c_str(), cfg.lr,
                r.schedule.warmup_steps, cfg.grad_clip, cfg.recipe.empty() ? "" : ", recipe ", cfg.recipe.c_str());
    std::fputs(describe_optimizer(r.opt, r.tensors).c_str(), stdout);
    if (cfg.metrics_every > 0)
        std::printf("metrics: every %d steps%s\n", cfg.metrics_every, cfg.metrics_rrc ? ", with the RRC of the linear layers" : "");
    if (cfg.sample_every > 0 && !r.tokenizer) std::printf("no --tokenizer given: samples are shown as token ids\n");
}

// config.json and the log, by the first process; only now that every input has been checked.
static void open_outputs(Run& r, int64_t resumed_at, int64_t log_bytes) {
    const Config& cfg = r.cfg;
    if (cfg.output_dir.empty() || r.comm->rank() != 0) return;
    make_directories(cfg.output_dir);
    const std::string config_json = config_to_json(cfg).dump(2) + "\n";
    write_atomically(cfg.output_dir + "/config.json", [&](File& f) { f.write_all(config_json.data(), config_json.size()); });
    if (resumed_at >= 0) {
        r.log.reopen_at(cfg.output_dir + "/log.jsonl", size_t(log_bytes));
        r.log.write({{"type", "resume"}, {"step", resumed_at}, {"processes", r.processes()}});
    } else {
        r.log.open(cfg.output_dir + "/log.jsonl");
        r.log.write({{"type", "run"}, {"run_id", r.identity["run_id"]}, {"version", COLDSTART_VERSION}, {"device", r.device},
                     {"model", r.model.config.describe()}, {"parameters", r.model.params.size()}, {"B", r.B}, {"T", r.T},
                     {"grad_accum", r.accum}, {"processes", r.processes()}, {"steps", r.steps}, {"config", config_to_json(cfg)}});
    }
}

static void save_checkpoint(Run& r, int64_t step, const Progress& p, const Rng& sample_rng) {
    const Config& cfg = r.cfg;
    std::vector<float>& host_params = r.model.params;  // the initial weights are in the backend: reuse the buffer
    r.backend->get_parameters(host_params.data());
    const TrainingState state{step, r.identity, progress_to_json(p, *r.train_loader, sample_rng, r.log)};
    write_checkpoint(cfg.output_dir, r.model.config, host_params.data(), cfg.save_bf16 ? ModelDtype::bf16 : ModelDtype::fp32,
                     state, r.backend->optimizer(), r.comm.get());
    if (r.comm->rank() == 0)
        prune_checkpoints(cfg.output_dir, cfg.checkpoint_keep, int64_t(cfg.checkpoint_keep_every) * cfg.checkpoint_every);
    std::printf("checkpoint: %s\n", checkpoint_files(cfg.output_dir, step).model.c_str());
}

// What happens between updates at step `step`: validation, a sample, a checkpoint (every -n steps, and
// always at the end of a run with -o). Returns whether a checkpoint was written.
static bool between_steps(Run& r, int64_t step, bool last, Progress& p, Rng& sample_rng) {
    const Config& cfg = r.cfg;
    if (r.val_loader && (last || (cfg.val_every > 0 && step % cfg.val_every == 0))) {
        const float val = validation_loss(*r.backend, *r.val_loader, r.val_batches, *r.comm);
        std::printf("val loss %.6f at step %lld\n", val, (long long)step);
        r.log.write({{"type", "val"}, {"step", step}, {"loss", val}});
        p.last_val_loss = val;
    }
    if (cfg.sample_every > 0 && step > 0 && (last || step % cfg.sample_every == 0) && r.comm->rank() == 0)
        print_sample(*r.backend, r.tokenizer.get(), cfg.gen_tokens, sample_rng, r.log, step);
    if (cfg.output_dir.empty()) return false;
    if (step > 0 && (last || (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0))) {
        save_checkpoint(r, step, p, sample_rng);
        return true;
    }
    if (last && step == 0 && r.comm->rank() == 0) {  // -x 0: the model evaluated, as an llm.c model file
        const std::string path = checkpoint_files(cfg.output_dir, 0).model;
        save_model_file(path, r.model.config, r.model.params.data(), cfg.save_bf16 ? ModelDtype::bf16 : ModelDtype::fp32);
        std::printf("model: %s\n", path.c_str());
    }
    return false;
}

// The ETA from this process's wall time per step so far, validation, samples and checkpoints included.
struct Eta {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    int64_t first_step = 0;  // where this process began (a resumed run's checkpoint)
    double seconds_left(int64_t steps_done, int64_t steps) const {
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return elapsed / double(steps_done - first_step) * double(steps - steps_done);
    }
};

// One update (or a skipped one): the micro-batches, the gradient's norm, the step, the records.
static void train_step(Run& r, int64_t step, Progress& p, const Eta& eta) {
    const Config& cfg = r.cfg;
    const auto start = std::chrono::steady_clock::now();
    const bool measured = cfg.metrics_every > 0 && step % cfg.metrics_every == 0;
    const int micro_total = r.accum * r.processes();
    r.backend->zero_grad();
    NoiseScaleSums noise;  // the first micro-batch's gradient against the step's, for B_noise
    for (int micro = 0; micro < r.accum; ++micro) {
        r.train_loader->next_batch();
        r.backend->forward_backward(r.train_loader->inputs(), r.train_loader->targets(), 1.0f / float(micro_total),
                                    micro == r.accum - 1);
        if (measured && r.accum > 1 && micro == 0) {
            // This process's gradient so far is g_1 / micro_total, its first micro-batch's (not yet summed
            // across processes). Averaged over the processes: an estimate of |G_b|^2 for b = B*T tokens.
            const double small = double(r.backend->grad_norm()) * micro_total;
            noise = {small * small / r.processes(), double(r.B) * r.T, 0.0, double(r.step_tokens())};
        }
    }
    if (measured && r.accum > 1) r.comm->all_reduce_sum(&noise.small_sq, 1);
    const float lr = r.schedule.at(int(step));

    // A step with a non-finite or spiking loss or gradient norm is skipped: its batch is consumed, the
    // weights and optimizer state stay as they were. The backend decides where the loss and the norm are
    // (on the GPU: on the device, so the update never waits for the host) from limits the detectors set
    // before the step; every process decides alike, the loss and norm being summed over all of them.
    // step_report() is the step's one wait for the device: the numbers to log.
    StepPlan plan{lr, p.optimizer_t + 1, cfg.grad_clip, r.inject_nonfinite.count(step) > 0,
                  p.loss_detector.limit(cfg.skip_loss_z), p.norm_detector.limit(cfg.skip_norm_z)};
    plan.rrc_target = float(rrc_target_at(r.opt, lr, cfg.lr, plan.t));  // 0 without direct RRC control
    StepMeasurement measurement;
    measurement.with_rrc = cfg.metrics_rrc != 0;
    r.backend->optimizer_step(plan, measured ? &measurement : nullptr);
    const StepReport report = r.backend->step_report();
    const double loss = report.loss;
    const float norm = report.norm;
    const char* skip = verdict_reason(report.verdict);
    if (!skip) {
        ++p.optimizer_t;
        p.loss_detector.add(loss);
        p.norm_detector.add(norm);
        p.bad_in_row = 0;
    } else {
        ++p.skipped;
        p.bad_in_row = report.verdict == StepVerdict::nonfinite ? p.bad_in_row + 1 : 0;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    const double tokens_per_s = double(r.step_tokens()) / seconds;
    std::printf("step %5lld/%lld | loss %.6f | norm %.4f | lr %.2e | %.1f ms | %.0f tok/s%s | eta %s%s%s\n",
                (long long)step + 1, (long long)r.steps, loss, norm, lr, seconds * 1e3, tokens_per_s,
                mfu_note(r.device, *r.backend, cfg, r.model.params.size(), tokens_per_s).c_str(),
                duration_text(eta.seconds_left(step + 1, r.steps)).c_str(), skip ? " | skipped: " : "", skip ? skip : "");
    nlohmann::json record = {{"type", "train"}, {"step", step}, {"loss", loss}, {"grad_norm", norm}, {"lr", lr},
                             {"ms", seconds * 1e3}, {"tokens_per_s", tokens_per_s}};
    if (skip) record["skipped"] = skip;
    r.log.write(record);
    if (measured && !skip) {
        noise.big_sq = double(norm) * norm;
        const nlohmann::json metrics =
            metrics_record(step, lr, p.optimizer_t, measurement, r.tensors, r.opt, r.accum > 1 ? &noise : nullptr);
        // A negative B_noise (the estimate of tr(Sigma) was negative) is noise, not a size: said, not printed.
        nlohmann::json shown = metrics;
        const bool noise_not_positive = shown.contains("b_noise") && shown["b_noise"].is_number() && shown["b_noise"].get<double>() <= 0;
        if (noise_not_positive) shown.erase("b_noise");
        std::printf("step %5lld %s%s\n", (long long)step + 1, metrics_summary(shown).c_str(), noise_not_positive ? " | B_noise not positive" : "");
        r.log.write(metrics);
    }
    if (p.bad_in_row >= cfg.max_bad_steps) {
        const int64_t good = cfg.output_dir.empty() ? -1 : latest_checkpoint(cfg.output_dir);
        fail("step %lld: %d steps in a row had a non-finite loss or gradient norm; stopping (%s)", (long long)step + 1,
             p.bad_in_row, good >= 0 ? ("the last complete checkpoint is " + checkpoint_files(cfg.output_dir, good).model).c_str()
                                     : "no checkpoint was written");
    }
}

// A stop asked for by a signal, agreed by every process (a signal may reach only some of them): the
// signal, or 0 to go on.
static int agreed_stop_signal(const Run& r) {
    int signal = stop_signal();
    if (r.processes() > 1) {
        double asked = signal != 0;
        r.comm->all_reduce_sum(&asked, 1);
        if (asked > 0 && signal == 0) signal = SIGTERM;
    }
    return signal;
}

// After a signal: a checkpoint of where the run is (unless one was just written), and the exit status.
static int stop_after_signal(Run& r, int64_t step, bool saved, const Progress& p, const Rng& sample_rng, int signal) {
    const char* name = signal == SIGINT ? "SIGINT" : "SIGTERM";
    if (r.cfg.output_dir.empty()) {
        std::printf("stopped by %s at step %lld: nothing was saved (no -o)\n", name, (long long)step);
    } else if (step == 0) {
        std::printf("stopped by %s before the first step: nothing to save\n", name);
    } else {
        if (!saved) save_checkpoint(r, step, p, sample_rng);
        std::printf("stopped by %s at step %lld: the checkpoint %s holds it; the same command with -y 1 continues\n", name,
                    (long long)step, checkpoint_files(r.cfg.output_dir, step).model.c_str());
    }
    return 128 + signal;
}

// The end of a run: one line, and the log's last record.
static void summarise(Run& r, const Progress& p) {
    const double seconds = r.log.elapsed();
    const int64_t tokens = r.steps * r.step_tokens();
    const std::string model = r.cfg.output_dir.empty() ? "" : checkpoint_files(r.cfg.output_dir, r.steps).model;
    std::printf("done: %lld steps, %lld tokens in %s; final val loss %s; model %s\n", (long long)r.steps, (long long)tokens,
                duration_text(seconds).c_str(), std::isnan(p.last_val_loss) ? "n/a (no -j)" : format("%.6f", p.last_val_loss).c_str(),
                model.empty() ? "not saved (no -o)" : model.c_str());
    if (p.skipped > 0) std::printf("%lld steps were skipped\n", (long long)p.skipped);
    nlohmann::json end = {{"type", "end"}, {"step", r.steps}, {"tokens", tokens}, {"skipped", p.skipped}};
    end["val_loss"] = std::isnan(p.last_val_loss) ? nlohmann::json() : nlohmann::json(p.last_val_loss);
    if (!model.empty()) end["model"] = model;
    r.log.write(end);
}

// Returns the process's exit status: 0, or 128 + the signal that stopped it.
static int train(const Config& parsed, const ProcessGroup& group) {
    Run r;
    r.cfg = parsed;
    set_up(r, group);
    Rng sample_rng(r.cfg.seed ^ 0x5A4D504CULL);  // a stream of its own: not the initialisation's numbers again
    Progress p;
    const int64_t log_bytes = r.cfg.resume ? resume(r.cfg, r.identity, *r.backend, *r.train_loader, sample_rng, p, r.log) : -1;
    const int64_t resumed_at = log_bytes >= 0 ? p.step : -1;
    if (resumed_at < 0) r.identity["run_id"] = new_run_id();  // (only the first process's is written)
    if (resumed_at >= r.steps) {
        std::printf("%s: the run is already finished: its newest checkpoint is at step %lld, and -x asks for %lld steps; "
                    "nothing to do (resume with a larger -x to train longer)\n",
                    r.cfg.output_dir.c_str(), (long long)resumed_at, (long long)r.steps);
        return 0;
    }
    print_plan(r);
    open_outputs(r, resumed_at, log_bytes);

    Eta eta;
    eta.first_step = p.step;
    for (; p.step <= r.steps; ++p.step) {
        const bool last = p.step == r.steps;
        bool saved = p.step == resumed_at;  // a checkpoint's step did its validation and sample already
        if (!saved) saved = between_steps(r, p.step, last, p, sample_rng);
        if (last) break;
        if (const int signal = agreed_stop_signal(r)) return stop_after_signal(r, p.step, saved, p, sample_rng, signal);
        train_step(r, p.step, p, eta);
    }
    summarise(r, p);
    return 0;
}

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear at once when piped to tee or a log
    std::signal(SIGXFSZ, SIG_IGN);             // a file-size limit makes writes fail with EFBIG, which we report
    std::string who;                           // "rank 2: " in errors of a process other than the first
    try {
        Config cfg;
        if (parse_command_line(argc, argv, cfg) == ParseOutcome::help_shown) return 0;
        const ProcessGroup group = process_group(process_options(cfg));
        if (group.rank > 0) {
            who = format("rank %d: ", group.rank);
            if (!std::freopen("/dev/null", "w", stdout)) fail("cannot silence the output of rank %d", group.rank);  // the first process speaks
        }
        install_stop_handlers();
        return train(cfg, group);
    } catch (const Error& e) {
        std::fprintf(stderr, "%serror: %s\n", who.c_str(), e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "%serror: out of memory (try a smaller -b or -t, or a smaller model)\n", who.c_str());
        return 1;
    } catch (const std::exception& e) {  // a bug: still one line and a non-zero exit, never an abort
        std::fprintf(stderr, "%serror: internal error: %s\n", who.c_str(), e.what());
        return 1;
    }
}
