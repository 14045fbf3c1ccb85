// The command line and JSON config: llm.c's flags, long names, ranges, errors that name the flag.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/flags.h"
#include "config/recipes.h"
#include "config/resolve.h"
#include "test/test_util.h"

using namespace coldstart;
using test_util::error_of;

namespace {

Config parse(std::vector<std::string> args) {
    args.insert(args.begin(), "train_gpt2");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    Config c;
    const ParseOutcome outcome = parse_command_line(int(argv.size()), argv.data(), c);  // errors propagate
    REQUIRE(outcome == ParseOutcome::run);
    return c;
}

std::string parse_error(std::vector<std::string> args) {
    try {
        parse(std::move(args));
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
}

}  // namespace

TEST_CASE("flags: llm.c short flags and long names set the same fields") {
    const Config a = parse({"-i", "tr*.bin", "-j", "va*.bin", "-e", "d4", "-o", "out", "-b", "8", "-t", "64", "-d", "1024",
                            "-x", "100", "-l", "0.001", "-u", "10", "-q", "0.1", "-c", "0.1", "-k", "linear", "-v", "5",
                            "-m", "3", "-s", "7", "-g", "16", "-n", "50"});
    const Config b = parse({"--train-data", "tr*.bin", "--val-data=va*.bin", "--init", "d4", "--output-dir", "out",
                            "--batch-size", "8", "--seq-len", "64", "--total-batch-tokens", "1024", "--max-steps", "100",
                            "--lr", "1e-3", "--warmup", "10", "--final-lr-frac", "0.1", "--weight-decay", "0.1",
                            "--schedule", "linear", "--val-every", "5", "--val-batches", "3", "--sample-every", "7",
                            "--gen-tokens", "16", "--checkpoint-every", "50"});
    CHECK(config_to_json(a) == config_to_json(b));
    CHECK(a.train_data == "tr*.bin");
    CHECK(a.batch_size == 8);
    CHECK(a.total_batch_tokens == 1024);
    CHECK(a.lr == doctest::Approx(1e-3));
    CHECK(a.schedule == "linear");
    CHECK(a.checkpoint_every == 50);
}

TEST_CASE("flags: negative values are values, not flags") {
    CHECK(parse({"-x", "-1"}).max_steps == -1);
    CHECK(parse({"-d", "-1"}).total_batch_tokens == -1);
}

TEST_CASE("flags: errors name the flag and what was expected") {
    CHECK(parse_error({"--bogus", "1"}) == "unknown flag '--bogus' (see --help)");
    CHECK(parse_error({"-b"}) == "-b/--batch-size: expected a value after the flag");
    CHECK(parse_error({"-b", "0"}) == "-b/--batch-size: expected an integer in [1, 1048576], got '0'");
    CHECK(parse_error({"-b", "four"}) == "-b/--batch-size: expected an integer in [1, 1048576], got 'four'");
    CHECK(parse_error({"-b", "4.5"}) == "-b/--batch-size: expected an integer in [1, 1048576], got '4.5'");
    CHECK(parse_error({"-q", "1.5"}) == "-q/--final-lr-frac: expected a number in [0, 1], got '1.5'");
    CHECK(parse_error({"-l", "nan"}).find("-l/--lr: expected a number") == 0);
    CHECK(parse_error({"-k", "exponential"}) ==
          "-k/--schedule: expected one of cosine|linear|constant|trapezoid|wsd, got 'exponential'");
    CHECK(parse_error({"--device", "tpu"}) == "--device: expected one of auto|cpu|cuda, got 'tpu'");
    CHECK(parse_error({"--shuffle", "2"}) == "--shuffle: expected an integer in [0, 1] (or true/false), got '2'");
    CHECK(parse_error({"--seed", "-3"}) == "--seed: expected an integer in [0, 18000000000000000000], got '-3'");
}

TEST_CASE("flags: a flag followed by another flag lacks its value") {
    CHECK(parse_error({"-b", "-t", "64"}) == "-b/--batch-size: expected a value after the flag, got the flag '-t'");
    CHECK(parse_error({"--lr", "--warmup", "5"}) == "-l/--lr: expected a value after the flag, got the flag '--warmup'");
    CHECK(parse_error({"-o", "--frobnicate"}) == "-o/--output-dir: expected a value after the flag, got the flag '--frobnicate'");
    CHECK(parse({"--beta1", "-1"}).beta1 == -1.0f);  // a negative number is still a value
}

TEST_CASE("flags: switches take true and false as well as 1 and 0, on the command line and in a config file") {
    CHECK(parse({"--shuffle", "true"}).shuffle == 1);
    CHECK(parse({"--nesterov", "false", "--center=true"}).center == 1);
    CHECK(parse_error({"--shuffle", "yes"}) == "--shuffle: expected an integer in [0, 1] (or true/false), got 'yes'");
    CHECK(parse_error({"-b", "true"}) == "-b/--batch-size: expected an integer in [1, 1048576], got 'true'");  // not a switch
    test_util::TempDir dir;
    write_text(dir / "c.json", R"({"shuffle": true, "bias-correction": false, "row-gains": 1})");
    const Config c = parse({"--config", dir / "c.json"});
    CHECK(c.shuffle == 1);
    CHECK(c.bias_correction == 0);
    CHECK(c.row_gains == 1);
    write_text(dir / "bad.json", R"({"batch-size": true})");
    CHECK(parse_error({"--config", dir / "bad.json"}) == dir / "bad.json" + ": batch-size: expected an integer in [1, 1048576], got true");
}

TEST_CASE("flags: a config file with a key given twice is refused, naming the key") {
    test_util::TempDir dir;
    write_text(dir / "twice.json", R"({"lr": 1e-3, "batch-size": 4, "lr": 2e-3})");
    CHECK(parse_error({"--config", dir / "twice.json"}) == dir / "twice.json" + ": the key 'lr' is given twice");
    write_text(dir / "once.json", R"({"lr": 1e-3, "batch-size": 4})");
    CHECK(parse({"--config", dir / "once.json"}).batch_size == 4);
}

TEST_CASE("flags: a JSON config file, overridden by flags, round-trips through config_to_json") {
    test_util::TempDir dir;
    write_text(dir / "c.json", R"({"batch-size": 16, "lr": 0.002, "schedule": "trapezoid", "init": "d2"})");
    const Config c = parse({"--config", dir / "c.json", "-b", "32"});
    CHECK(c.batch_size == 32);  // the flag wins, wherever it stands
    CHECK(c.lr == doctest::Approx(0.002));
    CHECK(c.schedule == "trapezoid");
    CHECK(c.init == "d2");
    const Config flag_first = parse({"-b", "32", "--config", dir / "c.json"});
    CHECK(flag_first.batch_size == 32);

    // The written config.json reproduces the run's options.
    write_text(dir / "final.json", config_to_json(c).dump());
    const Config again = parse({"--config", dir / "final.json"});
    CHECK(config_to_json(again) == config_to_json(c));
}

TEST_CASE("flags: JSON config errors name the file and the key") {
    test_util::TempDir dir;
    Config c;
    write_text(dir / "bad.json", "{\"batch-size\": 4,,}");
    try {
        load_json_config_file(dir / "bad.json", c);
        FAIL("malformed JSON was accepted");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find(dir / "bad.json" + ": malformed JSON at byte") == 0);
    }
    write_text(dir / "unknown.json", R"({"batch_size": 4})");
    CHECK_THROWS_WITH_AS(load_json_config_file(dir / "unknown.json", c),
                         (dir / "unknown.json" + ": unknown option 'batch_size' (see --help for the names)").c_str(), Error);
    write_text(dir / "type.json", R"({"batch-size": "4"})");
    CHECK_THROWS_WITH_AS(load_json_config_file(dir / "type.json", c),
                         (dir / "type.json" + ": batch-size: expected an integer in [1, 1048576], got \"4\"").c_str(), Error);
    write_text(dir / "range.json", R"({"final-lr-frac": 2})");
    CHECK_THROWS_WITH_AS(load_json_config_file(dir / "range.json", c),
                         (dir / "range.json" + ": final-lr-frac: expected a number in [0, 1], got '2'").c_str(), Error);
    write_text(dir / "array.json", "[1, 2]");
    CHECK_THROWS_AS(load_json_config_file(dir / "array.json", c), Error);
    CHECK_THROWS_WITH_AS(load_json_config_file(dir / "missing.json", c),
                         ("--config " + dir / "missing.json" + ": cannot open the file").c_str(), Error);
}

TEST_CASE("flags: --help lists every option the parser accepts, with its default") {
    const std::string help = help_text();
    const nlohmann::json all_options = config_to_json(Config{});
    for (const auto& [key, value] : all_options.items()) {
        CHECK_MESSAGE(help.find("--" + key + " ") != std::string::npos, "--help misses --" << key);
        CHECK_MESSAGE(parse_error({"--" + key}) != "unknown flag '--" + key + "' (see --help)", key);
    }
    for (const char* short_flag : {"-i", "-j", "-e", "-o", "-b", "-t", "-d", "-x", "-l", "-u", "-q", "-c", "-k", "-v", "-m", "-s", "-g", "-n"})
        CHECK_MESSAGE(help.find(std::string("  ") + short_flag + " ") != std::string::npos, "--help misses " << short_flag);
}

TEST_CASE("flags: the README documents every option") {
    const std::vector<char> bytes = test_util::read_bytes("README.md");
    const std::string readme(bytes.begin(), bytes.end());
    const nlohmann::json all_options = config_to_json(Config{});
    for (const auto& [key, value] : all_options.items())
        CHECK_MESSAGE(readme.find("| --" + key + " |") != std::string::npos, "README.md's option table misses --" << key);
}

TEST_CASE("flags: --config=FILE works, floats round-trip exactly, non-UTF-8 values are refused") {
    test_util::TempDir dir;
    write_text(dir / "c.json", R"({"batch-size": 16})");
    CHECK(parse({"--config=" + dir / "c.json"}).batch_size == 16);
    const Config c = parse({"--lr", "1.0000001", "-q", "0.3"});
    Config again;
    apply_json_config(nlohmann::json::parse(config_to_json(c).dump()), "config.json", again);
    CHECK(again.lr == c.lr);  // bit for bit: a repeated run uses the same float
    CHECK(again.final_lr_frac == c.final_lr_frac);
    CHECK(config_to_json(c)["final-lr-frac"].dump() == "0.3");  // and the shortest text that does so
    CHECK(parse_error({"-i", "caf\xe9.bin"}) == "-i/--train-data: the value is not valid UTF-8 (config.json could not record it)");
    CHECK(parse({"-i", "caf\xc3\xa9.bin"}).train_data == "caf\xc3\xa9.bin");
}

TEST_CASE("flags: recipes preset the optimizer and schedule; the config file and flags override them") {
    const Config lionar = parse({"--recipe", "paper-lionar-best"});
    CHECK(lionar.recipe == "paper-lionar-best");
    CHECK(lionar.optimizer == "lionar");
    CHECK(lionar.rrc_correction == "alignment");
    CHECK(lionar.angle_norm == "smoothed");
    CHECK(lionar.target_angle == "equilibrium");
    CHECK(lionar.beta2 == doctest::Approx(0.98));
    CHECK(lionar.nesterov == 1);
    CHECK(lionar.inverse_bias_correction == "step");
    CHECK(lionar.warmup == "0");
    CHECK(lionar.schedule == "trapezoid");
    CHECK(lionar.cooldown_frac == doctest::Approx(0.5));
    CHECK(lionar.final_lr_frac == 0.0f);
    CHECK(lionar.weight_decay == doctest::Approx(0.1));
    const Config adamw = parse({"--recipe", "paper-adamw"});
    CHECK(adamw.optimizer == "adamw");
    CHECK(adamw.warmup == "5%");
    CHECK(adamw.bias_correction == 1);
    CHECK(parse({"--recipe", "paper-adamw-nobc"}).bias_correction == 0);
    // A flag wins over the recipe wherever it stands.
    CHECK(parse({"--recipe", "paper-adamw", "-u", "2%"}).warmup == "2%");
    CHECK(parse({"-u", "2%", "--recipe", "paper-adamw"}).warmup == "2%");
    // A config file's recipe is applied before the file's other options; a --recipe flag replaces it.
    test_util::TempDir dir;
    write_text(dir / "c.json", R"({"recipe": "paper-liona", "weight-decay": 0.3})");
    const Config from_file = parse({"--config", dir / "c.json"});
    CHECK(from_file.optimizer == "liona");
    CHECK(from_file.weight_decay == doctest::Approx(0.3));
    CHECK(parse({"--config", dir / "c.json", "--recipe", "paper-adamw"}).optimizer == "adamw");
    CHECK(parse_error({"--recipe", "nope"}).find("--recipe: unknown recipe 'nope' (available: paper-adamw, ") == 0);
    // The written config.json repeats a recipe run exactly.
    write_text(dir / "final.json", config_to_json(lionar).dump());
    CHECK(config_to_json(parse({"--config", dir / "final.json"})) == config_to_json(lionar));
    CHECK(help_text().find("paper-lionar ") != std::string::npos);
    // The recipes under the paper's names: LionA (l2), LionAR (rotational), with the RRC correction, the best.
    CHECK(recipe_names() == "paper-adamw, paper-adamw-nobc, paper-lion, paper-liona, paper-lionar, paper-lionar-rrc, paper-lionar-best");
    const Config plain = parse({"--recipe", "paper-lionar"});
    CHECK(plain.optimizer == "lionar");
    CHECK(plain.rrc_correction == "none");
    CHECK(plain.nesterov == 0);
    CHECK(plain.warmup == "5%");
    CHECK(parse({"--recipe", "paper-lionar-rrc"}).rrc_correction == "alignment");
    CHECK(parse({"--recipe", "paper-liona"}).optimizer == "liona");
}

TEST_CASE("flags: names retired when the Lion family took the paper's names say what to use now") {
    CHECK(parse_error({"--recipe", "paper-lionar-plain"}) ==
          "--recipe: recipe 'paper-lionar-plain' was retired: LionAR with the RRC correction and ordinary momentum is now "
          "--recipe paper-lionar-rrc");
    CHECK(parse_error({"--recipe", "paper-liona-hm"}).find("--recipe: recipe 'paper-liona-hm' was retired: its optimizer") == 0);
    CHECK(parse_error({"--snr-estimator", "alignment"}) ==
          "--snr-estimator was retired: the RRC correction is now an option of lionar: --rrc-correction alignment|norm-ratio (none: off)");
    // An old run's config.json holds every option, snr-estimator among them: it is refused, not read with new meanings.
    test_util::TempDir dir;
    write_text(dir / "old.json", R"({"optimizer": "liona", "snr-estimator": "alignment"})");
    CHECK(parse_error({"--config", dir / "old.json"}) == dir / "old.json" + ": option 'snr-estimator' was retired: the RRC "
          "correction is now an option of lionar: --rrc-correction alignment|norm-ratio (none: off)");
    CHECK(config_to_json(parse({})).contains("rrc-correction"));
    CHECK_FALSE(config_to_json(parse({})).contains("snr-estimator"));
}

TEST_CASE("flags: -u takes warmup steps or a percentage of the run's steps") {
    for (const char* ok : {"0", "700", "5%", "2.5%", "100%", "0%"}) CHECK_MESSAGE(is_warmup_text(ok), ok);
    for (const char* bad : {"", "%", "5%%", "-3", "1e3", "101%", "abc", "5 %", ".%", "1.5"}) CHECK_MESSAGE(!is_warmup_text(bad), bad);
    CHECK(warmup_steps("5%", 200) == 10);
    CHECK(warmup_steps("2.5%", 200) == 5);
    CHECK(warmup_steps("700", 1000) == 700);
    CHECK(warmup_steps("0%", 1000) == 0);
    CHECK(parse({"-u", "20%"}).warmup == "20%");
    CHECK(parse_error({"-u", "5 %"}) == "-u/--warmup: expected steps (700) or a percentage of the run's steps (5%), got '5 %'");
    test_util::TempDir dir;
    write_text(dir / "c.json", R"({"warmup": 700})");
    CHECK(parse({"--config", dir / "c.json"}).warmup == "700");
}

TEST_CASE("flags: optimizer defaults resolve per optimizer; --nesterov sets beta1 = beta2^2; contradictions are named") {
    auto resolved = [](std::vector<std::string> args) {
        Config c = parse(std::move(args));
        resolve_optimizer_defaults(c);
        return c;
    };
    const Config adamw = resolved({});
    CHECK(adamw.beta1 == 0.9f);
    CHECK(adamw.beta2 == 0.95f);
    const Config lion = resolved({"--optimizer", "lion"});
    CHECK(lion.beta1 == 0.9f);
    CHECK(lion.beta2 == 0.99f);
    const Config nesterov = resolved({"--optimizer", "lionar", "--beta2", "0.98", "--nesterov", "1"});
    CHECK(nesterov.beta1 == 0.98f * 0.98f);
    // Resolved values are what config.json records; reading it back resolves to the same options.
    Config again = parse({});
    apply_json_config(nlohmann::json::parse(config_to_json(nesterov).dump()), "config.json", again);
    resolve_optimizer_defaults(again);
    CHECK(config_to_json(again) == config_to_json(nesterov));
    CHECK(error_of([&] { resolved({"--optimizer", "lion", "--nesterov", "1", "--beta1", "0.9"}); }) ==
          "--nesterov 1 sets beta1 = beta2^2 = 0.9801; --beta1 0.9 contradicts it (leave --beta1 out)");
    CHECK(error_of([&] { resolved({"--nesterov", "1"}); }) ==
          "--nesterov 1 applies to the lion family (lion, liona, lionar), not to --optimizer adamw");

    auto invalid = [&](std::vector<std::string> args, float peak_lr = 1e-3f) {
        return error_of([&] { validate_optimizer_config(optimizer_config(resolved(std::move(args))), peak_lr); });
    };
    CHECK(invalid({"--optimizer", "liona"}) == "(no error)");
    CHECK(invalid({"--optimizer", "lionar", "-c", "0.1"}) == "(no error)");
    CHECK(invalid({"--optimizer", "lionar"}) ==
          "--target-angle equilibrium (lionar's default): Lion's equilibrium angle needs a weight decay above 0 (-c), or give "
          "--target-angle lr");
    CHECK(invalid({"--optimizer", "lionar", "--target-angle", "lr"}) == "(no error)");
    CHECK(invalid({"--optimizer", "lionar", "-c", "0.1", "--inverse-bias-correction", "snr"}).find("--inverse-bias-correction snr corrects") == 0);
    CHECK(invalid({"--optimizer", "lionar", "-c", "0.1", "--inverse-bias-correction", "snr", "--rrc-correction", "norm-ratio"}) ==
          "(no error)");
    CHECK(invalid({"--optimizer", "liona", "--rrc-correction", "alignment"}) ==
          "--rrc-correction applies to lionar, the rotational Lion (this run: --optimizer liona)");
    CHECK(invalid({"--optimizer", "liona", "--center", "1"}).find("--center, --control-embeddings and --control apply to lionar") == 0);
    CHECK(invalid({"--inverse-bias-correction", "step"}) ==
          "--inverse-bias-correction applies to lion, liona and lionar (this run: --optimizer adamw)");
    CHECK(invalid({"--optimizer", "lionar", "--row-gains", "1", "--control", "tensor"}).find("--row-gains 1 needs per-row") == 0);
    CHECK(invalid({"--optimizer", "lionar", "-c", "0.1", "--rrc-target", "0.01"}) == "(no error)");
    CHECK(invalid({"--optimizer", "liona", "--rrc-target", "0.01"}) == "(no error)");
    CHECK(invalid({"--optimizer", "lion", "--rrc-target", "0.01"}) ==
          "--rrc-target applies to liona and lionar, whose steps have a controlled size (this run: --optimizer lion)");
    CHECK(invalid({"--optimizer", "lionar", "-c", "0.1", "--rrc-target", "0.01", "--rrc-correction", "alignment"})
              .find("--rrc-target and --rrc-correction both set the step's size") == 0);
    CHECK(invalid({"--optimizer", "lionar", "-c", "0.1", "--rrc-target", "0.01", "--row-gains", "1"}).find("--rrc-target scales the step") == 0);
    CHECK(parse_error({"--rrc-target", "2"}).find("--rrc-target") == 0);
    CHECK(invalid({"--optimizer", "lionar", "--target-angle", "lr"}, 2.0f).find("-l 2: lionar turns each controlled row by 2 radians per step") == 0);
    CHECK(parse_error({"--optimizer", "sgd"}) == "--optimizer: expected one of adamw|lion|liona|lionar, got 'sgd'");
}
