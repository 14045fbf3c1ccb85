#include "config/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <variant>

#include "common/error.h"
#include "config/recipes.h"
#include "config/resolve.h"
#include "optim/schedule.h"

namespace coldstart {

namespace {

using Field = std::variant<int Config::*, int64_t Config::*, uint64_t Config::*, float Config::*, std::string Config::*>;

struct Option {
    const char* short_name;  // llm.c's flag ("-b"), or nullptr
    const char* long_name;   // "batch-size": the flag is --batch-size, the JSON key "batch-size"
    Field field;
    double min, max;         // inclusive range for numbers
    const char* choices;     // "a|b|c" for strings with a fixed set of values, else nullptr
    const char* help;
    bool (*valid)(const std::string&) = nullptr;  // strings with a format: says whether a value has it,
    const char* expected = nullptr;               // and describes the format for the error message
};

constexpr double kNoMin = -1e300, kNoMax = 1e300;

// The one table: parser, --help, JSON config and config.json all read it.
const std::vector<Option>& options() {
    static const std::vector<Option> table = {
        {"-i", "train-data", &Config::train_data, 0, 0, nullptr, "glob of llm.c token shards to train on"},
        {"-j", "val-data", &Config::val_data, 0, 0, nullptr, "glob of validation shards (empty: no validation)"},
        {"-e", "init", &Config::init, 0, 0, nullptr,
         "model file (llm.c format, fp32 or bf16) or descriptor dN / gpt2:dN (d12 = GPT-2 124M)"},
        {nullptr, "vocab-size", &Config::vocab_size, 0, 65536, nullptr,
         "with a descriptor (-e dN): the vocabulary size, e.g. 256 for byte-level shards; 0: GPT-2's 50257"},
        {"-o", "output-dir", &Config::output_dir, 0, 0, nullptr,
         "folder for the log, config.json and checkpoints (empty: write nothing)"},
        {nullptr, "tokenizer", &Config::tokenizer, 0, 0, nullptr,
         "folder with encoder.json and vocab.bpe, llm.c's gpt2_tokenizer.bin, or bytes (to decode samples; the model's vocabulary)"},
        {nullptr, "config", &Config::config_file, 0, 0, nullptr, "JSON file of {option: value}; flags override it"},
        {"-b", "batch-size", &Config::batch_size, 1, 1 << 20, nullptr, "micro-batch size B (sequences)"},
        {"-t", "seq-len", &Config::seq_len, 1, 1 << 20, nullptr, "sequence length T (at most the model's maximum)"},
        {"-d", "total-batch-tokens", &Config::total_batch_tokens, -1, 1e15, nullptr,
         "tokens per optimizer step, a multiple of B*T (gradient accumulation); -1: B*T"},
        {"-x", "max-steps", &Config::max_steps, -1, 1e15, nullptr, "optimizer steps; -1: one epoch of the training data; 0: evaluate only (no -i needed; -o writes the model)"},
        {nullptr, "shuffle", &Config::shuffle, 0, 1, nullptr, "1: shuffle shards and batches each epoch (seeded)"},
        {nullptr, "seed", &Config::seed, 0, 1.8e19, nullptr, "seed of initialisation, shuffling and sampling"},
        {nullptr, "recipe", &Config::recipe, 0, 0, nullptr,
         "preset of optimizer and schedule options (listed below); options given besides it win"},
        {nullptr, "optimizer", &Config::optimizer, 0, 0, "adamw|lion|liona|lionar", "optimizer"},
        {"-l", "lr", &Config::lr, 0, kNoMax, nullptr,
         "peak learning rate (lion family: Lion's; lionar's controlled rows turn by its equilibrium angle, --target-angle)"},
        {"-u", "warmup", &Config::warmup, 0, 0, nullptr,
         "linear warmup: steps (700) or a percentage of the run's steps (5%)", is_warmup_text,
         "steps (700) or a percentage of the run's steps (5%)"},
        {"-q", "final-lr-frac", &Config::final_lr_frac, 0, 1, nullptr, "final learning rate as a fraction of the peak"},
        {"-k", "schedule", &Config::schedule, 0, 0, kScheduleKinds, "learning-rate schedule after warmup"},
        {nullptr, "cooldown-frac", &Config::cooldown_frac, 0, 1, nullptr,
         "trapezoid/wsd: fraction of training spent in the final linear cooldown"},
        {"-c", "weight-decay", &Config::weight_decay, 0, kNoMax, nullptr,
         "decoupled weight decay (matrices only; never on controlled tensors)"},
        {nullptr, "beta1", &Config::beta1, -1, 0.999999, nullptr,
         "adamw: first-moment EMA; lion family: interpolation of the update direction; -1: 0.9"},
        {nullptr, "beta2", &Config::beta2, -1, 0.999999, nullptr,
         "adamw: second-moment EMA; lion family: the momentum's EMA; -1: 0.95 for adamw, 0.99 for the lion family"},
        {nullptr, "eps", &Config::eps, 0, 1, nullptr, "adamw: epsilon"},
        {nullptr, "grad-clip", &Config::grad_clip, 0, kNoMax, nullptr, "clip the global gradient norm to this; 0: off"},
        {nullptr, "bias-correction", &Config::bias_correction, 0, 1, nullptr,
         "adamw: 1 divides the first moment by 1 - beta1^t; 0: AdamW without momentum bias correction"},
        {nullptr, "nesterov", &Config::nesterov, 0, 1, nullptr,
         "lion family: 1 = Nesterov momentum with factor beta2, i.e. beta1 = beta2^2"},
        {nullptr, "inverse-bias-correction", &Config::inverse_bias_correction, 0, 0, "none|step|snr",
         "lion family: step multiplies each step by 1 - beta2^t (reading i); snr corrects the RRC correction's norm-ratio "
         "estimate for the zero-initialised momentum (reading ii)"},
        {nullptr, "control", &Config::control, 0, 0, "rows|tensor", "lionar: angular control per row or per tensor"},
        {nullptr, "control-embeddings", &Config::control_embeddings, 0, 1, nullptr,
         "lionar: 1 controls wte and wpe too (else they take plain Lion steps at -l)"},
        {nullptr, "center", &Config::center, 0, 1, nullptr,
         "lionar: 1 centres each controlled row at the start and each row of every update"},
        {nullptr, "angle-norm", &Config::angle_norm, 0, 0, "smoothed|strict",
         "lionar: divide the update by an EMA of its RMS (the authors' wrapper) or by its norm (exact angle)"},
        {nullptr, "norm-ema", &Config::norm_ema, 0, 0.999999, nullptr, "lionar: EMA factor of the smoothed normalisation"},
        {nullptr, "target-angle", &Config::target_angle, 0, 0, "equilibrium|lr",
         "lionar: the angle per step is Lion's equilibrium angle for (lr, weight decay), or the learning rate itself"},
        {nullptr, "rrc-correction", &Config::rrc_correction, 0, 0, "none|alignment|norm-ratio",
         "lionar: scale the angle by k from the gradient's signal fraction, estimated by alignment or norm ratio; none: off"},
        {nullptr, "k-min", &Config::k_min, 1e-6, 1, nullptr, "lionar's RRC correction: the smallest step scale"},
        {nullptr, "snr-ema", &Config::snr_ema, 0, 0.999999, nullptr, "lionar's RRC correction: EMA factor of the signal-fraction estimate"},
        {nullptr, "row-gains", &Config::row_gains, 0, 1, nullptr,
         "lionar (per row): 1 adds a learnable gain per controlled row (W = gain * direction)"},
        {nullptr, "rrc-target", &Config::rrc_target, 0, 1, nullptr,
         "liona, lionar: direct RRC control, each controlled linear layer's step scaled so that its RRC on the step's "
         "last micro-batch is this at the peak learning rate (the schedule scales it); 0: off"},
        {nullptr, "metrics-every", &Config::metrics_every, 0, 1e9, nullptr,
         "measure the update size per tensor every N steps (log records of type metrics); 0: off"},
        {nullptr, "metrics-rrc", &Config::metrics_rrc, 0, 1, nullptr,
         "with --metrics-every: 1 also measures each linear layer's relative representation change"},
        {"-v", "val-every", &Config::val_every, 0, 1e9, nullptr, "validate every N steps and at the end; 0: only at the end"},
        {"-m", "val-batches", &Config::val_batches, 1, 1e9, nullptr, "batches per validation"},
        {"-s", "sample-every", &Config::sample_every, 0, 1e9, nullptr, "print a text sample every N steps; 0: never"},
        {"-g", "gen-tokens", &Config::gen_tokens, 1, 1e6, nullptr, "tokens per sample"},
        {"-n", "checkpoint-every", &Config::checkpoint_every, 0, 1e9, nullptr,
         "write model and optimizer state every N steps (needs -o); 0: only at the end (always, with -o)"},
        {"-nk", "checkpoint-keep", &Config::checkpoint_keep, 0, 1e9, nullptr, "keep only the last N checkpoints; 0: all"},
        {"-nm", "checkpoint-keep-every", &Config::checkpoint_keep_every, 0, 1e9, nullptr,
         "with -nk: also keep every M-th checkpoint forever; 0: none"},
        {"-y", "resume", &Config::resume, 0, 1, nullptr,
         "1: continue from the newest complete checkpoint in -o (the same run, bit for bit); without it a folder "
         "that holds a run is refused"},
        {"-sl", "skip-loss-z", &Config::skip_loss_z, 0, kNoMax, nullptr,
         "skip the update when the loss's z-score over the last 128 steps exceeds this; 0: off"},
        {"-sg", "skip-norm-z", &Config::skip_norm_z, 0, kNoMax, nullptr,
         "skip the update when the grad norm's z-score over the last 128 steps exceeds this; 0: off"},
        {nullptr, "max-bad-steps", &Config::max_bad_steps, 1, 1e9, nullptr,
         "stop after this many steps in a row with a non-finite loss or gradient norm (each is skipped)"},
        {nullptr, "inject-nonfinite", &Config::inject_nonfinite, 0, 0, nullptr,
         "testing: comma-separated steps whose loss is replaced by NaN (fault injection)"},
        {nullptr, "save-bf16", &Config::save_bf16, 0, 1, nullptr, "1: write model files in bf16 (llm.c version 5)"},
        {nullptr, "device", &Config::device, 0, 0, "auto|cpu|cuda", "where to train; auto: a CUDA GPU if present"},
        {nullptr, "threads", &Config::threads, 0, 4096, nullptr, "CPU threads; 0: OpenMP's default"},
        {"-pn", "processes", &Config::processes, 0, 1 << 20, nullptr,
         "processes of a data-parallel run; 0: from the launcher's environment (mpirun, srun), else 1"},
        {"-pr", "process-rank", &Config::process_rank, -1, 1 << 20, nullptr,
         "this process's rank in [0, -pn); -1: from the launcher's environment"},
        {"-pf", "process-dir", &Config::process_dir, 0, 0, nullptr,
         "folder where the processes meet (one machine: best /dev/shm); empty: the output folder"},
        {"-pi", "process-init", &Config::process_init, 0, 0, "fs|tcp",
         "GPU processes exchange NCCL's id through the folder of -pf (fs) or rank 0's port of -ps (tcp)"},
        {"-ps", "process-server", &Config::process_server, 0, 0, nullptr, "-pi tcp: rank 0's address, HOST:PORT"},
        {"-z", "zero-stage", &Config::zero_stage, 0, 1, nullptr,
         "1: each process holds only its shard of the optimizer state and fp32 master weights (ZeRO-1); 0: every process holds all"},
        // CUDA path
        {nullptr, "precision", &Config::precision, 0, 0, "bf16|fp32",
         "GPU: bf16 (fp32 master weights and optimizer, bf16 matrix work) or fp32 (everything, as the tests)"},
        {nullptr, "attention", &Config::attention, 0, 0, "flash|cudnn",
         "GPU: our flash attention (tensor cores in bf16 at head size 64 or 128, else an fp32 kernel), or cuDNN's fused "
         "attention (bf16, in builds with cuDNN)"},
        {"-r", "recompute", &Config::recompute, 0, 2, nullptr,
         "GPU: recompute in the backward pass to save memory: 0 nothing, 1 GELU, 2 GELU and layernorms"},
        {"-ge", "gelu-fusion", &Config::gelu_fusion, 0, 1, nullptr, "GPU: 1: GELU in cuBLASLt's matmul epilogue"},
    };
    return table;
}

const Option* find_option(const std::string& arg) {
    for (const Option& o : options()) {
        if (o.short_name && arg == o.short_name) return &o;
        if (arg == std::string("--") + o.long_name) return &o;
    }
    return nullptr;
}

std::string flag_names(const Option& o) {
    return o.short_name ? format("%s/--%s", o.short_name, o.long_name) : format("--%s", o.long_name);
}

bool is_one_of(const std::string& value, const char* choices) {
    std::stringstream ss(choices);
    std::string item;
    while (std::getline(ss, item, '|'))
        if (item == value) return true;
    return false;
}

const char* kind_name(const Field& f) {
    if (std::holds_alternative<float Config::*>(f)) return "a number";
    if (std::holds_alternative<std::string Config::*>(f)) return "a string";
    return "an integer";
}

// A switch: an integer option that is 0 or 1, which also takes true and false.
bool is_switch(const Option& o) { return std::holds_alternative<int Config::*>(o.field) && o.min == 0 && o.max == 1; }

// A bound of o's range; integers in full (1048576, not 1.04858e+06).
std::string bound_text(const Option& o, double v) {
    return std::holds_alternative<float Config::*>(o.field) ? format("%g", v) : format("%.0f", v);
}

std::string range_text(const Option& o) {
    if (o.min > kNoMin && o.max < kNoMax)
        return " in [" + bound_text(o, o.min) + ", " + bound_text(o, o.max) + "]" + (is_switch(o) ? " (or true/false)" : "");
    if (o.min > kNoMin) return " >= " + bound_text(o, o.min);
    return "";
}

void check_range(const Option& o, double v, const std::string& where, const std::string& text) {
    if (std::isnan(v) || v < o.min || v > o.max)
        fail("%s: expected %s%s, got %s", where.c_str(), kind_name(o.field), range_text(o).c_str(), text.c_str());
}

// Sets o's field from text; `where` names the flag or the config key in errors.
// Strict UTF-8 (no overlong forms, surrogates or values past U+10FFFF), as JSON strings require.
bool is_valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        const unsigned char b = s[i];
        const int n = b < 0x80 ? 0 : (b >> 5) == 0x6 ? 1 : (b >> 4) == 0xE ? 2 : (b >> 3) == 0x1E ? 3 : -1;
        if (n < 0 || i + n >= s.size() + (n == 0)) return false;
        uint32_t cp = n == 0 ? b : b & (0x3F >> n);
        for (int k = 1; k <= n; ++k) {
            const unsigned char cont = s[i + k];
            if ((cont & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cont & 0x3F);
        }
        const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += size_t(n) + 1;
    }
    return true;
}

void set_from_text(const Option& o, const std::string& text, const std::string& where, Config& c) {
    if (auto s = std::get_if<std::string Config::*>(&o.field)) {
        if (!is_valid_utf8(text)) fail("%s: the value is not valid UTF-8 (config.json could not record it)", where.c_str());
        if (o.choices && !is_one_of(text, o.choices))
            fail("%s: expected one of %s, got '%s'", where.c_str(), o.choices, text.c_str());
        if (o.valid && !o.valid(text)) fail("%s: expected %s, got '%s'", where.c_str(), o.expected, text.c_str());
        c.*(*s) = text;
        return;
    }
    if (is_switch(o) && (text == "true" || text == "false")) {
        c.*std::get<int Config::*>(o.field) = text == "true";
        return;
    }
    const bool is_float = std::holds_alternative<float Config::*>(o.field);
    char* end = nullptr;
    errno = 0;
    const double v = is_float ? std::strtod(text.c_str(), &end) : double(std::strtoll(text.c_str(), &end, 10));
    if (text.empty() || *end != '\0' || errno == ERANGE)
        fail("%s: expected %s%s, got '%s'", where.c_str(), kind_name(o.field), range_text(o).c_str(), text.c_str());
    check_range(o, v, where, "'" + text + "'");
    if (auto f = std::get_if<float Config::*>(&o.field)) c.*(*f) = float(v);
    else if (auto i = std::get_if<int Config::*>(&o.field)) c.*(*i) = int(v);
    else if (auto l = std::get_if<int64_t Config::*>(&o.field)) c.*(*l) = int64_t(v);
    else if (auto u = std::get_if<uint64_t Config::*>(&o.field)) c.*(*u) = uint64_t(std::strtoull(text.c_str(), nullptr, 10));
}

void set_from_json(const Option& o, const nlohmann::json& value, const std::string& where, Config& c) {
    if (std::holds_alternative<std::string Config::*>(o.field)) {
        // An integer is taken as its decimal text, so that {"warmup": 700} reads as -u 700 does.
        if (!value.is_string() && !value.is_number_integer())
            fail("%s: expected a string, got %s", where.c_str(), value.dump().c_str());
        set_from_text(o, value.is_string() ? value.get<std::string>() : value.dump(), where, c);
        return;
    }
    if (is_switch(o) && value.is_boolean()) {
        set_from_text(o, value.get<bool>() ? "true" : "false", where, c);
        return;
    }
    const bool is_float = std::holds_alternative<float Config::*>(o.field);
    if (!value.is_number() || (!is_float && !value.is_number_integer()))
        fail("%s: expected %s%s, got %s", where.c_str(), kind_name(o.field), range_text(o).c_str(), value.dump().c_str());
    set_from_text(o, is_float ? format("%.17g", value.get<double>()) : value.dump(), where, c);
}

nlohmann::json field_to_json(const Option& o, const Config& c) {
    // Floats go through their shortest decimal form that reads back to the same float, so 3e-4 is written
    // 0.0003 and not 0.000300000014, and config.json repeats the run exactly.
    if (auto f = std::get_if<float Config::*>(&o.field)) {
        const float v = c.*(*f);
        for (int digits = 6; digits < 9; ++digits) {
            const double shortest = std::strtod(format("%.*g", digits, double(v)).c_str(), nullptr);
            if (float(shortest) == v) return shortest;
        }
        return std::strtod(format("%.9g", double(v)).c_str(), nullptr);
    }
    return std::visit([&](auto member) { return nlohmann::json(c.*member); }, o.field);
}

}  // namespace

void apply_json_config(const nlohmann::json& object, const std::string& source, Config& c) {
    if (!object.is_object()) fail("%s: expected a JSON object of {\"option\": value}", source.c_str());
    for (const auto& [key, value] : object.items()) {
        const Option* o = find_option("--" + key);
        if (!o && retired_name(key)) fail("%s: option '%s' was retired: %s", source.c_str(), key.c_str(), retired_name(key));
        if (!o || key == "config") fail("%s: unknown option '%s' (see --help for the names)", source.c_str(), key.c_str());
        set_from_json(*o, value, source + ": " + key, c);
    }
}

namespace {

nlohmann::json read_json_config_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) fail("--config %s: cannot open the file", path.c_str());
    // A key given twice would silently keep one of the values: refused, naming it.
    std::vector<std::set<std::string>> keys_of_open_objects;
    const auto refuse_duplicates = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using Event = nlohmann::json::parse_event_t;
        if (event == Event::object_start) keys_of_open_objects.emplace_back();
        if (event == Event::object_end) keys_of_open_objects.pop_back();
        if (event == Event::key && !keys_of_open_objects.back().insert(parsed.get<std::string>()).second)
            fail("%s: the key '%s' is given twice", path.c_str(), parsed.get<std::string>().c_str());
        return true;
    };
    try {
        return nlohmann::json::parse(in, refuse_duplicates);
    } catch (const nlohmann::json::parse_error& e) {
        fail("%s: malformed JSON at byte %zu: %s", path.c_str(), size_t(e.byte), e.what());
    } catch (const nlohmann::json::exception& e) {  // e.g. a number beyond double's range
        fail("%s: malformed JSON: %s", path.c_str(), e.what());
    }
}

// A recipe's options go first, so that the config file and the flags override them.
void apply_recipe(const std::string& name, const std::string& where, Config& c) {
    if (name.empty()) return;
    const nlohmann::json* recipe = find_recipe(name);
    if (!recipe && retired_name(name)) fail("%s: recipe '%s' was retired: %s", where.c_str(), name.c_str(), retired_name(name));
    if (!recipe) fail("%s: unknown recipe '%s' (available: %s)", where.c_str(), name.c_str(), recipe_names().c_str());
    apply_json_config(*recipe, "--recipe " + name, c);
    c.recipe = name;
}

std::string recipe_in(const nlohmann::json& object) {
    return object.is_object() && object.contains("recipe") && object["recipe"].is_string() ? object["recipe"].get<std::string>() : "";
}

}  // namespace

void load_json_config_file(const std::string& path, Config& c) {
    const nlohmann::json object = read_json_config_file(path);
    apply_recipe(recipe_in(object), path + ": recipe", c);
    apply_json_config(object, path, c);
    c.config_file = path;
}

// Order of precedence, lowest first: defaults, the recipe (--recipe, else the config file's), the config
// file (--config), the other flags in the order given.
ParseOutcome parse_command_line(int argc, const char* const* argv, Config& c) {
    struct Given {
        const Option* option;
        std::string value;
    };
    std::vector<Given> given;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i], value;
        if (arg == "--help" || arg == "-h") {
            std::fputs(help_text().c_str(), stdout);
            return ParseOutcome::help_shown;
        }
        bool has_inline_value = false;
        if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
            value = arg.substr(arg.find('=') + 1);
            arg = arg.substr(0, arg.find('='));
            has_inline_value = true;
        }
        const Option* o = find_option(arg);
        if (!o && arg.rfind("--", 0) == 0 && retired_name(arg.substr(2)))
            fail("%s was retired: %s", arg.c_str(), retired_name(arg.substr(2)));
        if (!o) fail("unknown flag '%s' (see --help)", arg.c_str());
        if (!has_inline_value) {
            if (i + 1 >= argc) fail("%s: expected a value after the flag", flag_names(*o).c_str());
            value = argv[++i];
            // "-b -t 64" lacks b's value; a negative number ("-d -1") is a value.
            if (find_option(value) || (value.rfind("--", 0) == 0 && value.size() > 2 && std::isalpha((unsigned char)value[2])))
                fail("%s: expected a value after the flag, got the flag '%s'", flag_names(*o).c_str(), value.c_str());
        }
        given.push_back({o, value});
    }
    std::string config_path, recipe;
    for (const Given& g : given) {
        if (std::string(g.option->long_name) == "config") config_path = g.value;
        if (std::string(g.option->long_name) == "recipe") recipe = g.value;
    }
    nlohmann::json file_options;
    if (!config_path.empty()) file_options = read_json_config_file(config_path);
    if (recipe.empty()) apply_recipe(recipe_in(file_options), config_path + ": recipe", c);
    else apply_recipe(recipe, "--recipe", c);
    if (!config_path.empty()) {
        apply_json_config(file_options, config_path, c);
        c.config_file = config_path;
    }
    for (const Given& g : given)
        if (std::string(g.option->long_name) != "config") set_from_text(*g.option, g.value, flag_names(*g.option), c);
    return ParseOutcome::run;
}

nlohmann::json config_to_json(const Config& c) {
    nlohmann::json j = nlohmann::json::object();
    for (const Option& o : options())
        if (std::string(o.long_name) != "config") j[o.long_name] = field_to_json(o, c);
    return j;
}

std::string help_text() {
    const Config defaults;
    std::string s =
        "usage: train_gpt2 [options]\n"
        "Trains GPT-2 on llm.c token shards. Every option has a long name (also its key in a --config JSON\n"
        "file); llm.c's short flags keep llm.c's meanings. Values follow the flag: -b 8, --lr 1e-3 or --lr=1e-3.\n\n";
    for (const Option& o : options()) {
        std::string def = field_to_json(o, defaults).dump();
        std::string names = o.short_name ? format("  %-4s --%s", o.short_name, o.long_name) : format("       --%s", o.long_name);
        std::string choices = o.choices ? format(" (%s)", o.choices) : "";
        s += format("%-30s %s%s [default %s]\n", names.c_str(), o.help, choices.c_str(), def.c_str());
    }
    s += format("%-30s %s\n", "  -h   --help", "this text");
    s += "\n" + recipes_help();
    return s;
}

}  // namespace coldstart
