// sample: text from a trained model, with a prompt, as nanoGPT's sample.py does it (the same options:
// start, num samples, max new tokens, temperature, top-k, seed). Runs on the CPU reference path.
#include <omp.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/sampling.h"
#include "common/error.h"
#include "common/random.h"
#include "data/checkpoint.h"
#include "data/model_file.h"
#include "data/tokenizer.h"

using namespace coldstart;

namespace {

const char* const kUsage = R"(usage: sample -e MODEL [options]

Generates text from a model file (llm.c format), or from a run folder's newest complete checkpoint.

  -e MODEL                a model file, or a run's output folder (-o of train_gpt2)
  --tokenizer T           bytes, a folder with encoder.json and vocab.bpe, or gpt2_tokenizer.bin (decodes
                          only: no prompt); default: the run folder's config.json's tokenizer
  --start TEXT            the prompt (FILE:path reads it from a file); default: none, the text starts
                          after the end-of-text token (a newline for bytes)
  --num-samples N         samples to draw (default 1)
  --max-new-tokens N      tokens per sample (default 64)
  --temperature X         > 0; below 1 is more conservative, above 1 more random (default 0.8)
  --top-k K               draw only from the K most likely tokens; 0: all (default 200)
  --seed S                random seed (default 1337)
  --threads N             CPU threads; 0: OpenMP's default
  --help                  this text
)";

struct Options {
    std::string model, tokenizer, start;
    long num_samples = 1, max_new_tokens = 64, top_k = 200, threads = 0;
    double temperature = 0.8;
    unsigned long long seed = 1337;
};

double parse_number(const std::string& flag, const char* text, double min, double max, bool integer) {
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(text, &end);
    if (*text == '\0' || *end != '\0' || errno == ERANGE || !(value >= min && value <= max) || (integer && value != double(long(value))))
        fail("%s: expected %s from %g to %g, got '%s'", flag.c_str(), integer ? "an integer" : "a number", min, max, text);
    return value;
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        }
        if (i + 1 >= argc) fail("%s: expected a value after the flag (see --help)", arg.c_str());
        const char* value = argv[++i];
        if (arg == "-e") o.model = value;
        else if (arg == "--tokenizer") o.tokenizer = value;
        else if (arg == "--start") o.start = value;
        else if (arg == "--num-samples") o.num_samples = long(parse_number(arg, value, 1, 1e6, true));
        else if (arg == "--max-new-tokens") o.max_new_tokens = long(parse_number(arg, value, 1, 1e6, true));
        else if (arg == "--temperature") o.temperature = parse_number(arg, value, 1e-3, 100, false);
        else if (arg == "--top-k") o.top_k = long(parse_number(arg, value, 0, 1e6, true));
        else if (arg == "--seed") o.seed = (unsigned long long)parse_number(arg, value, 0, 9e15, true);
        else if (arg == "--threads") o.threads = long(parse_number(arg, value, 0, 4096, true));
        else fail("unknown flag '%s' (see --help)", arg.c_str());
    }
    if (o.model.empty()) fail("-e: no model given: a model file or a run's output folder");
    return o;
}

// A run folder's newest complete checkpoint and the tokenizer its run was given.
void resolve_run_folder(Options& o) {
    if (!file_exists(o.model + "/config.json") && latest_checkpoint(o.model) < 0) return;  // a model file
    const int64_t step = latest_checkpoint(o.model);
    if (step < 0) fail("-e %s: the run folder holds no complete checkpoint", o.model.c_str());
    if (o.tokenizer.empty() && file_exists(o.model + "/config.json")) {
        const nlohmann::json config = nlohmann::json::parse(read_whole_file(o.model + "/config.json"), nullptr, false);
        if (config.is_object() && config.value("tokenizer", "") != "") o.tokenizer = config["tokenizer"];
    }
    o.model = checkpoint_files(o.model, step).model;
}

std::string read_start(const std::string& start) {
    return start.rfind("FILE:", 0) == 0 ? read_whole_file(start.substr(5)) : start;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        Options o = parse_options(argc, argv);
        if (o.threads > 0) omp_set_num_threads(int(o.threads));
        resolve_run_folder(o);
        const LoadedModel model = load_model_file(o.model);
        if (o.tokenizer.empty()) fail("--tokenizer: none given, and %s is not in a run folder that names one", o.model.c_str());
        const Tokenizer tokenizer = Tokenizer::load(o.tokenizer);
        if (tokenizer.vocab_size() != model.config.vocab_size)
            fail("--tokenizer %s: %d tokens, but %s has a vocabulary of %d", o.tokenizer.c_str(), tokenizer.vocab_size(), o.model.c_str(),
                 model.config.vocab_size);
        const std::string prompt = read_start(o.start);
        if (!prompt.empty() && !tokenizer.can_encode())
            fail("--start: the tokenizer %s can only decode; a prompt needs a folder with encoder.json and vocab.bpe, or bytes",
                 o.tokenizer.c_str());
        std::vector<int> context = {sample_start_token(&tokenizer, model.config.vocab_size)};
        for (const int t : tokenizer.encode(prompt)) context.push_back(t);

        // The optimizer is never stepped; the backend needs one.
        const std::unique_ptr<Backend> backend = make_cpu_backend(model.config, 1, model.config.max_seq_len, OptimizerConfig{});
        backend->set_parameters(model.params.data());
        Rng rng(o.seed);
        for (long i = 0; i < o.num_samples; ++i) {
            const std::vector<int> tokens = generate(*backend, context, int(o.max_new_tokens), rng, float(o.temperature), int(o.top_k));
            std::printf("%s%s\n---------------\n", prompt.c_str(), tokenizer.decode(tokens).c_str());
        }
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
