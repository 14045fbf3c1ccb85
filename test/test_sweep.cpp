// The study tools end to end: tools/sweep.py on tiny real runs (the table, skipping what has finished,
// SIGKILL and relaunch, divergence), on a stand-in trainer whose numbers are known (early-training update
// statistics, one run per GPU), malformed grids; tools/plot_study.py and tools/plot_metrics.py on the results.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "test/test_util.h"

using coldstart::file_exists;
using nlohmann::json;
using test_util::contains;
using test_util::records_of;
using test_util::run_command;

namespace {

std::string tool(const std::string& name) { return test_util::python() + " tools/" + name; }

// The folder that holds tinyshakespeare/, for the grids' ${DATA}.
std::string data_root() {
    const std::string dir = test_util::data_path("tinyshakespeare");
    return dir.substr(0, dir.size() - std::strlen("/tinyshakespeare"));
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream f(path);
    REQUIRE_MESSAGE(f.good(), "cannot write " << path);
    f << text;
}

json read_json(const std::string& path) {
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), "cannot read " << path);
    return json::parse(f);
}

std::vector<std::string> list_dir(const std::string& path) {
    std::vector<std::string> names;
    if (DIR* d = opendir(path.c_str())) {
        while (dirent* e = readdir(d))
            if (e->d_name[0] != '.') names.push_back(e->d_name);
        closedir(d);
    }
    return names;
}

// Seven tiny real runs with today's flags: AdamW at two learning rates x two warmups, a group with other
// flags and its own warmup axis, one run whose loss turns non-finite (the trainer stops, exit 1) and one
// whose loss explodes but stays finite (diverged by the threshold, exit 0).
json real_grid(const std::string& output) {
    return {{"comment", "test grid"},
            {"output", output},
            {"trainer", test_util::trainer()},
            {"flags",
             {{"train-data", "${DATA}/tinyshakespeare/tiny_shakespeare_train.bin"},
              {"val-data", "${DATA}/tinyshakespeare/tiny_shakespeare_val.bin"},
              {"init", "d1"}, {"batch-size", 2}, {"seq-len", 8}, {"max-steps", 24}, {"val-every", 8}, {"val-batches", 2},
              {"sample-every", 0}, {"threads", 2}, {"checkpoint-every", 4}, {"checkpoint-keep", 1}}},
            {"axes", {{"-u", {0, 8}}}},
            {"groups",
             {{{"name", "adamw"}, {"axes", {{"lr", {3e-3, 1e-2}}}}},
              {{"name", "adamw-beta1-0.5"}, {"flags", {{"beta1", 0.5}}}, {"axes", {{"lr", {1e-2}}, {"-u", {0}}}}},
              {{"name", "nonfinite"}, {"flags", {{"max-bad-steps", 2}}}, {"axes", {{"lr", {1e30}}, {"-u", {0}}}}},
              {{"name", "explodes"}, {"axes", {{"lr", {1e4}}, {"-u", {0}}}}}}}};
}

std::string sweep_command(const std::string& grid_path, const std::string& extra = "") {
    return "env DATA=" + data_root() + " " + tool("sweep.py") + " " + grid_path + extra;
}

// What must not depend on how often a sweep was interrupted: everything but timings and attempts.
json comparable(const json& table) {
    json out = json::array();
    for (const auto& row : table) {
        json r = row;
        r.erase("wall_s");
        out.push_back(r);
    }
    return out;
}

// The train and val losses of a run's log, in order.
std::vector<json> losses(const std::string& log_path) {
    std::vector<json> out;
    for (const auto& r : test_util::read_jsonl(log_path))
        if (r["type"] == "train" || r["type"] == "val") out.push_back({r["type"], r["step"], r["loss"]});
    return out;
}

// The uninterrupted sweep of real_grid, run once and shared by the tests that compare against it.
struct ReferenceSweep {
    test_util::TempDir dir;
    std::string grid, output;
    test_util::CommandResult result;
    ReferenceSweep() : grid(dir / "grid.json"), output(dir / "out") {
        write_text(grid, real_grid(output).dump(2));
        result = run_command(sweep_command(grid));
    }
};
const ReferenceSweep& reference_sweep() {
    static const ReferenceSweep sweep;  // its folder is removed at exit
    return sweep;
}

// Launches a shell command in its own process group, so that the test can SIGKILL the whole group.
pid_t launch_group(const std::string& command, const std::string& output_path) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        const int fd = open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), (char*)nullptr);  // pid = the command's
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

// A run of the sweep in `output` that has a checkpoint but no result yet: a trainer is mid-run.
std::string run_in_progress(const std::string& output) {
    for (const auto& name : list_dir(output + "/runs")) {
        const std::string dir = output + "/runs/" + name;
        if (file_exists(dir + "/result.json")) continue;
        for (const auto& file : list_dir(dir))  // DONE_%08d, not the DONE_%08d.tmp it is written as
            if (file.rfind("DONE_", 0) == 0 && file.find(".tmp") == std::string::npos) return dir;
    }
    return "";
}

size_t finished_runs(const std::string& output) {
    size_t n = 0;
    for (const auto& name : list_dir(output + "/runs")) n += file_exists(output + "/runs/" + name + "/result.json");
    return n;
}

// Whether the run folder's lock is free (no sweep or trainer holds it), waiting up to `seconds`.
bool lock_released(const std::string& run_dir, double seconds) {
    const int fd = open((run_dir + "/.lock").c_str(), O_RDWR);
    if (fd < 0) return false;
    bool free = false;
    for (auto start = std::chrono::steady_clock::now();
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            flock(fd, LOCK_UN);
            free = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    close(fd);
    return free;
}

// Width and height of a PNG file, or {0, 0} if it is not one.
std::pair<int, int> png_size(const std::string& path) {
    const std::vector<char> bytes = file_exists(path) ? test_util::read_bytes(path) : std::vector<char>();
    if (bytes.size() < 24 || std::memcmp(bytes.data(), "\x89PNG\r\n\x1a\n", 8) != 0) return {0, 0};
    auto be32 = [&](size_t at) {
        return int((uint8_t(bytes[at]) << 24) | (uint8_t(bytes[at + 1]) << 16) | (uint8_t(bytes[at + 2]) << 8) | uint8_t(bytes[at + 3]));
    };
    return {be32(16), be32(20)};
}

void check_png(const std::string& path) {
    const auto [width, height] = png_size(path);
    CHECK_MESSAGE(width >= 400, path);
    CHECK_MESSAGE(height >= 200, path);
    CHECK_MESSAGE(test_util::read_bytes(path).size() > 10000, path);  // drawn, not a blank canvas
}

}  // namespace

TEST_CASE("sweep: runs every configuration, tables final loss and divergence; a relaunch skips what finished") {
    const ReferenceSweep& ref = reference_sweep();
    REQUIRE_MESSAGE(ref.result.exit_code == 0, ref.result.output);
    CHECK(contains(ref.result.output, "[7/7]"));
    CHECK(contains(ref.result.output, "eta "));
    const json table = read_json(ref.output + "/results.json");
    REQUIRE(table.size() == 7);

    std::set<std::string> groups_and_settings;
    for (const auto& row : table) {
        CAPTURE(row.dump());
        const std::string dir = ref.output + "/" + row["dir"].get<std::string>();
        groups_and_settings.insert(row["group"].get<std::string>() + " " + row["lr"].dump() + " " + row["u"].dump());
        CHECK(row["name"].get<std::string>().rfind(row["group"].get<std::string>() + "_", 0) == 0);  // then the axes
        CHECK(contains(row["name"].get<std::string>(), "_u0_") != contains(row["name"].get<std::string>(), "_u8_"));
        const auto log = test_util::read_jsonl(dir + "/log.jsonl");
        const auto val = records_of(log, "val");
        for (const auto& file : list_dir(dir)) CHECK_MESSAGE(file.rfind("model_", 0) != 0, "checkpoints of a finished run are removed");
        if (row["group"] == "nonfinite") {
            CHECK(row["status"] == "diverged");
            CHECK(row["diverged"] == true);
            CHECK(row["exit_code"] == 1);
            CHECK(contains(row["error"].get<std::string>(), "non-finite"));
            CHECK(row["final_val_loss"].is_null());
            CHECK(row["nonfinite_steps"] == 2);
        } else if (row["group"] == "explodes") {
            CHECK(row["status"] == "diverged");
            CHECK(row["exit_code"] == 0);
            CHECK(row["final_val_loss"].get<double>() > val[0]["loss"].get<double>());  // above the loss at the start
        } else {
            CHECK(row["status"] == "ok");
            CHECK(row["diverged"] == false);
            CHECK(row["steps_done"] == 24);
            REQUIRE(val.size() == 4);
            CHECK(val.back()["step"] == 24);
            CHECK(row["final_val_loss"] == val.back()["loss"]);  // the same double, bit for bit
            CHECK(row["final_val_loss"].get<double>() < val[0]["loss"].get<double>());
            CHECK(row["warmup_frac"].get<double>() == doctest::Approx(row["u"].get<int>() / 24.0));
        }
    }
    CHECK(groups_and_settings == std::set<std::string>{"adamw 0.003 0", "adamw 0.003 8", "adamw 0.01 0", "adamw 0.01 8",
                                                       "adamw-beta1-0.5 0.01 0", "explodes 10000.0 0", "nonfinite 1e+30 0"});

    // The CSV holds the same rows and values.
    std::ifstream csv(ref.output + "/results.csv");
    std::string header, line;
    std::getline(csv, header);
    CHECK(header.rfind("name,group,optimizer,recipe,lr,warmup,warmup_frac,seed,status,diverged,final_val_loss,", 0) == 0);
    std::map<std::string, std::string> csv_losses;  // name -> final_val_loss (the 11th column; none before it holds a comma)
    while (std::getline(csv, line)) {
        std::vector<std::string> cells;
        std::stringstream cells_text(line);
        for (std::string cell; cells.size() < 11 && std::getline(cells_text, cell, ',');) cells.push_back(cell);
        REQUIRE(cells.size() == 11);
        csv_losses[cells[0]] = cells[10];
    }
    REQUIRE(csv_losses.size() == 7);
    for (const auto& row : table) {
        CAPTURE(row["name"]);
        if (row["final_val_loss"].is_number()) CHECK(std::stod(csv_losses[row["name"]]) == row["final_val_loss"].get<double>());
        else CHECK(csv_losses[row["name"]].empty());
    }

    // Relaunching changes nothing in the run folders and starts no trainer.
    std::map<std::string, long long> mtimes;
    for (const auto& run : list_dir(ref.output + "/runs"))
        for (const auto& file : list_dir(ref.output + "/runs/" + run)) {
            struct stat st;
            REQUIRE(stat((ref.output + "/runs/" + run + "/" + file).c_str(), &st) == 0);
            mtimes[run + "/" + file] = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        }
    const auto again = run_command(sweep_command(ref.grid));
    REQUIRE_MESSAGE(again.exit_code == 0, again.output);
    CHECK_FALSE(contains(again.output, "started"));
    CHECK(contains(again.output, "[7/7] "));
    for (const auto& [file, mtime] : mtimes) {
        struct stat st;
        REQUIRE(stat((ref.output + "/runs/" + file).c_str(), &st) == 0);
        CHECK_MESSAGE(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec == mtime, file << " was rewritten");
    }
    CHECK(read_json(ref.output + "/results.json") == table);
}

TEST_CASE("sweep: SIGKILL of the sweep and its trainer, then of the sweep alone; the relaunched sweep ends with the same table") {
    const ReferenceSweep& ref = reference_sweep();
    REQUIRE_MESSAGE(ref.result.exit_code == 0, ref.result.output);
    test_util::TempDir dir;
    const std::string output = dir / "out";
    const std::string command = sweep_command(ref.grid, " --output " + output);

    // Kill 1: the whole process group (sweep and trainer) while the first run is mid-way. Kill 2: only the
    // sweep, while a later run is mid-way; its trainer must die with it and free the run's lock.
    for (int kill_number = 1; kill_number <= 2; ++kill_number) {
        CAPTURE(kill_number);
        const size_t finished_before = finished_runs(output);
        const pid_t pid = launch_group(command, dir / "sweep_output.txt");
        std::string victim;
        for (int i = 0; i < 6000 && victim.empty(); ++i) {  // up to 30 s
            if (finished_runs(output) >= finished_before + size_t(kill_number - 1)) victim = run_in_progress(output);
            if (victim.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        REQUIRE_MESSAGE(!victim.empty(), "no run was seen mid-way");
        kill(kill_number == 1 ? -pid : pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status));
        CHECK_MESSAGE(lock_released(victim, 5.0), "the trainer of " << victim << " outlived its sweep");
        CHECK_FALSE(file_exists(victim + "/result.json"));
    }
    const auto finish = run_command(command);
    REQUIRE_MESSAGE(finish.exit_code == 0, finish.output);
    CHECK_FALSE(contains(finish.output, "waiting"));

    const json table = read_json(output + "/results.json");
    const json expected = read_json(ref.output + "/results.json");
    CHECK(comparable(table) == comparable(expected));
    int resumed = 0;
    for (const auto& row : table) {
        const std::string run_dir = output + "/" + row["dir"].get<std::string>();
        CHECK(losses(run_dir + "/log.jsonl") == losses(ref.output + "/" + row["dir"].get<std::string>() + "/log.jsonl"));
        std::ifstream out(run_dir + "/trainer_output.txt");
        const std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
        resumed += contains(text, "resumed from ");
    }
    CHECK(resumed == 2);  // each killed run continued from its checkpoint
}

TEST_CASE("sweep: --dry-run lists the runs with stable names and runs nothing; --shard and --only select") {
    const ReferenceSweep& ref = reference_sweep();
    REQUIRE_MESSAGE(ref.result.exit_code == 0, ref.result.output);
    test_util::TempDir dir;
    const auto dry = run_command(sweep_command(ref.grid, " --dry-run --output " + dir / "out"));
    REQUIRE_MESSAGE(dry.exit_code == 0, dry.output);
    CHECK(contains(dry.output, "7 runs (of 7 in "));
    for (const auto& row : read_json(ref.output + "/results.json")) {
        CHECK(contains(dry.output, row["name"].get<std::string>() + "  [to run]  "));
        CHECK(contains(dry.output, "--lr "));
    }
    CHECK(contains(dry.output, " -o " + dir / "out/runs/"));
    CHECK(contains(dry.output, "--train-data " + data_root() + "/tinyshakespeare/tiny_shakespeare_train.bin"));
    CHECK_FALSE(file_exists(dir / "out"));
    const auto done = run_command(sweep_command(ref.grid, " --dry-run"));
    CHECK(contains(done.output, "[finished]"));
    CHECK_FALSE(contains(done.output, "[to run]"));

    const auto shard = run_command(sweep_command(ref.grid, " --dry-run --shard 1/3"));
    CHECK(contains(shard.output, "2 runs (of 7 in "));  // runs 2 and 3 (0-based) of 7
    CHECK(contains(shard.output, "adamw_lr0.01_u0_"));
    const auto only = run_command(sweep_command(ref.grid, " --dry-run --only ^explodes"));
    CHECK(contains(only.output, "1 runs (of 7 in "));
}

TEST_CASE("sweep: a malformed grid is refused with one line naming the file, the field and what was expected") {
    test_util::TempDir dir;
    struct Case {
        std::string grid, extra, expected;
    };
    const std::string out = dir / "out";
    const std::string good_group = R"([{"name": "a", "axes": {"lr": [0.001]}}])";
    const std::string grid = dir / "g.json";
    const std::vector<Case> cases = {
        {R"({"output": "OUT", "groups": [})", "", grid + ": malformed JSON at line 1"},
        {R"({"groups": GROUP})", "", grid + ": output is missing"},
        {R"({"output": "OUT", "grops": GROUP})", "", grid + ": the grid has unknown field 'grops'"},
        {R"({"output": "OUT", "groups": [{"axes": {}}]})", "", grid + ": groups[0].name expected a name of letters"},
        {R"({"output": "OUT", "groups": [{"name": "a", "axes": {"lr": 0.001}}]})", "",
         grid + ": groups[0].axes.lr expected a non-empty list of values, got 0.001"},
        {R"({"output": "OUT", "flags": {"lr": [1]}, "groups": GROUP})", "", grid + ": flags.lr expected a string, number or boolean, got [1]"},
        {R"({"output": "OUT", "flags": {"-o": "x"}, "groups": GROUP})", "", grid + ": flags.-o is set by the sweep itself"},
        {R"({"output": "OUT", "flags": {"lr": 1}, "groups": [{"name": "a", "flags": {"lr": 2}, "axes": {"lr": [3]}}]})", "",
         grid + ": groups[0].flags.lr is also an axis of this group"},
        {R"({"output": "OUT", "flags": {"train-data": "${COLDSTART_NOT_SET}/x.bin"}, "groups": GROUP})", "",
         "flag train-data of group a: ${COLDSTART_NOT_SET} is not set (export COLDSTART_NOT_SET=...)"},
        {R"({"output": "OUT", "groups": [{"name": "a"}, {"name": "a"}]})", "", grid + ": groups 'a' and 'a' both contain the run a_"},
        {R"({"output": "OUT", "collect": {"early_steps": 0}, "groups": GROUP})", "", grid + ": collect.early_steps expected a positive integer, got 0"},
        {R"({"output": "OUT", "groups": GROUP})", " --shard 3/2", "--shard 3/2: expected K/N with 0 <= K < N"},
        {R"({"output": "OUT", "groups": GROUP})", " --gpus many", "--gpus many: expected a number or auto"},
        {R"({"output": "OUT", "trainer": "DIR/no_trainer", "groups": GROUP})", "",
         "the trainer " + dir / "no_trainer is not an executable file (grid field 'trainer' or --trainer; build it with make)"},
    };
    for (const Case& c : cases) {
        std::string text = c.grid;
        for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{{"OUT", out}, {"GROUP", good_group}, {"DIR", dir.path}})
            for (size_t at; (at = text.find(from)) != std::string::npos;) text.replace(at, from.size(), to);
        write_text(grid, text);
        const auto r = run_command(tool("sweep.py") + " " + grid + c.extra);
        CAPTURE(text);
        CHECK(r.exit_code == 1);
        CHECK_MESSAGE(r.output.rfind("error: ", 0) == 0, r.output);
        CHECK_MESSAGE(contains(r.output, c.expected), "expected '" << c.expected << "' in: " << r.output);
        CHECK_MESSAGE(std::count(r.output.begin(), r.output.end(), '\n') == 1, "one line: " << r.output);
        CHECK_MESSAGE(!file_exists(out), "output written despite the error");
    }
}

namespace {

// A grid for the stand-in trainer (test/fixtures/fake_trainer.py): two optimizers, learning rates around
// each one's optimum (adamw: 10^-2.5, lionar: 10^-3), with and without warmup; adamw at lr 0.1 without warmup
// diverges.
json fake_grid(const std::string& output) {
    return {{"output", output},
            {"trainer", "test/fixtures/fake_trainer.py"},
            {"flags", {{"max-steps", 20}, {"fake-sleep", 0.2}}},
            {"axes", {{"-u", {0, "10%"}}}},
            {"collect", {{"early_steps", 5}}},
            {"groups",
             {{{"name", "adamw"}, {"flags", {{"optimizer", "adamw"}}}, {"axes", {{"lr", {1e-3, 3e-3, 1e-2, 0.1}}}}},
              {{"name", "lionar"}, {"flags", {{"optimizer", "lionar"}}}, {"axes", {{"lr", {1e-4, 1e-3, 1e-2}}}}}}}};
}

// Max and mean of a measure over the weight matrices and steps < k, computed here from the log.
std::pair<double, double> early(const std::vector<json>& log, const std::string& measure, int k) {
    double max = -1, sum = 0;
    int n = 0;
    for (const auto& r : records_of(log, "metrics")) {
        if (r["step"].get<int>() >= k) continue;
        for (const auto& [name, t] : r["tensors"].items()) {
            const std::string kind = name.substr(name.find('.') + 1);  // h3.qkvw -> qkvw; wte -> wte
            const bool matrix = kind == "wte" || kind == "wpe" || kind == "qkvw" || kind == "attprojw" || kind == "fcw" || kind == "fcprojw";
            if (!matrix || !t.contains(measure) || !t[measure].is_number()) continue;
            max = std::max(max, t[measure].get<double>());
            sum += t[measure].get<double>();
            ++n;
        }
    }
    return {max, sum / n};
}

}  // namespace

TEST_CASE("sweep: one run per GPU with its CUDA_VISIBLE_DEVICES; early update statistics; the study's three figures") {
    test_util::TempDir dir;
    const std::string output = dir / "out";
    write_text(dir / "grid.json", fake_grid(output).dump());
    const auto r = run_command("env -u CUDA_VISIBLE_DEVICES " + tool("sweep.py") + " " + dir / "grid.json --gpus 2");
    CHECK(r.exit_code == 0);
    REQUIRE_MESSAGE(contains(r.output, "14 runs, 2 at a time on GPUs 0,1"), r.output);
    const json table = read_json(output + "/results.json");
    REQUIRE(table.size() == 14);

    std::set<std::string> devices;
    std::vector<std::pair<double, double>> spans;
    for (const auto& row : table) {
        CAPTURE(row["name"]);
        const std::string run_dir = output + "/" + row["dir"].get<std::string>();
        const bool diverges = row["lr"] == 0.1 && row["warmup"] == 0;
        CHECK(row["status"] == (diverges ? "diverged" : "ok"));
        CHECK(row["warmup_frac"] == (row["warmup"] == 0 ? 0.0 : 0.1));
        if (diverges) continue;
        const json env = read_json(run_dir + "/fake_env.json");
        devices.insert(env["CUDA_VISIBLE_DEVICES"].get<std::string>());
        spans.push_back({env["start"], env["end"]});

        const auto log = test_util::read_jsonl(run_dir + "/log.jsonl");
        for (const std::string m : {"angle", "angle_rows", "rel_update", "rrc"}) {
            const auto [max, mean] = early(log, m, 5);
            CHECK(row["early_" + m + "_max"].get<double>() == doctest::Approx(max).epsilon(1e-12));
            CHECK(row["early_" + m + "_mean"].get<double>() == doctest::Approx(mean).epsilon(1e-12));
        }
        // Closed forms of the stand-in: at step 0 a layer-1 matrix turns by 20 lr w, the whole model by 100 lr w.
        const double lr = row["lr"], w = row["warmup"] == 0 ? 1.0 : 0.5;
        CHECK(row["early_angle_max"].get<double>() == doctest::Approx(20 * lr * w));
        CHECK(row["early_rrc_max"].get<double>() == doctest::Approx(40 * lr * w));
        CHECK(row["early_update_norm_max"].get<double>() == doctest::Approx(100 * lr * w));
        CHECK(row["early_steps_measured"] == 5);
    }
    CHECK(devices == std::set<std::string>{"0", "1"});
    size_t most_at_once = 0;  // runs alive when one of them starts
    for (const auto& [start, end] : spans)
        most_at_once = std::max(most_at_once, size_t(std::count_if(spans.begin(), spans.end(), [&](const auto& other) {
                                    return other.first <= start && start < other.second;
                                })));
    CHECK(most_at_once == 2);

    // The study's figures pick each optimizer's best learning rate per warmup and mark the diverged run.
    const auto study = run_command(tool("plot_study.py") + " " + output);
    REQUIRE_MESSAGE(study.exit_code == 0, study.output);
    CHECK(contains(study.output, "loss_vs_warmup.png: adamw: 0% 4.5005 (lr 0.003), 10% 4.0005 (lr 0.003); "
                                 "lionar: 0% 4.5000 (lr 0.001), 10% 4.0000 (lr 0.001)"));
    CHECK(contains(study.output, "loss_vs_lr.png: 2 panels (0%, 10%), 14 configurations, 1 diverged"));
    CHECK(contains(study.output, "early_updates.png: adamw: lr 0.003, no warmup vs warmup 10%; lionar: lr 0.001, no warmup vs warmup 10%"));
    for (const char* png : {"loss_vs_warmup.png", "loss_vs_lr.png", "early_updates.png"}) check_png(output + "/plots/" + png);

    // Per-layer figures of one run: a log scale where values span decades, linear for a cosine; LionAR's
    // step scale only where the log has it; undefined (null) values do not stop the plot.
    std::string lionar, adamw;
    for (const auto& row : table) {
        if (row["group"] == "lionar" && row["lr"] == 1e-3 && row["warmup"] == 0) lionar = output + "/" + row["dir"].get<std::string>();
        if (row["group"] == "adamw" && row["lr"] == 1e-3 && row["warmup"] == 0) adamw = output + "/" + row["dir"].get<std::string>();
    }
    const auto metrics = run_command(tool("plot_metrics.py") + " " + lionar + " -o " + dir / "lionar_plots");
    REQUIRE_MESSAGE(metrics.exit_code == 0, metrics.output);
    CHECK(contains(metrics.output, "angle: 7 kinds, 12 tensors, 20 steps, log scale"));
    CHECK(contains(metrics.output, "rrc: 5 kinds, 9 tensors, 20 steps, log scale"));
    CHECK(contains(metrics.output, "grad_mom_cos: 6 kinds, 10 tensors, 20 steps, linear scale"));
    CHECK(contains(metrics.output, "snr_scale: 6 kinds"));
    CHECK(contains(metrics.output, "global: update_norm, grad_norm_unclipped, grad_norm, lr -> "));
    for (const char* png : {"angle.png", "angle_heatmap.png", "rel_update.png", "rrc_heatmap.png", "grad_mom_cos_heatmap.png",
                            "snr_scale.png", "global.png"})
        check_png(dir / "lionar_plots/" + png);
    const auto adamw_metrics = run_command(tool("plot_metrics.py") + " " + adamw + "/log.jsonl --max-step 10 --measures angle,snr_scale");
    REQUIRE_MESSAGE(adamw_metrics.exit_code == 0, adamw_metrics.output);
    CHECK(contains(adamw_metrics.output, "angle: 7 kinds, 12 tensors, 10 steps, linear scale"));  // 10 steps span 20x
    CHECK(contains(adamw_metrics.output, "snr_scale: not in the log"));
    CHECK_FALSE(file_exists(adamw + "/plots/snr_scale.png"));
    CHECK_FALSE(file_exists(adamw + "/plots/rrc.png"));
    check_png(adamw + "/plots/angle.png");
    const auto unknown = run_command(tool("plot_metrics.py") + " " + adamw + " --measures angel");
    CHECK(unknown.exit_code == 1);
    CHECK(contains(unknown.output, "error: --measures: unknown measure 'angel' (expected some of angle, angle_rows,"));
}

TEST_CASE("plots: a log without metrics records, and a table without finished runs, are refused with a clear line") {
    const ReferenceSweep& ref = reference_sweep();
    REQUIRE_MESSAGE(ref.result.exit_code == 0, ref.result.output);
    const std::string run_dir = ref.output + "/" + read_json(ref.output + "/results.json")[0]["dir"].get<std::string>();
    const auto r = run_command(tool("plot_metrics.py") + " " + run_dir);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.output, "error: " + run_dir + "/log.jsonl: no metrics records (train with --metrics-every N to log them)"));

    test_util::TempDir dir;
    write_text(dir / "results.json", "[]");
    const auto empty = run_command(tool("plot_study.py") + " " + dir.path);
    CHECK(empty.exit_code == 1);
    CHECK(contains(empty.output, "error: " + dir / "results.json: no finished run with a final validation loss to plot"));

    // The real sweep's table has no metrics yet: the loss figures are drawn, the early-update panels say why not.
    const auto study = run_command(tool("plot_study.py") + " " + ref.output + " -o " + dir / "plots");
    REQUIRE_MESSAGE(study.exit_code == 0, study.output);
    CHECK(contains(study.output, "early_updates.png: adamw: lr "));
    CHECK(contains(study.output, "no metrics records"));
    check_png(dir / "plots/loss_vs_warmup.png");
}

TEST_CASE("sweep: the shipped grids: smoke runs end to end with the real trainer; cpu_study and gpu_study expand") {
    test_util::TempDir dir;
    const std::string env = "DATA=" + data_root() + " ";
    const auto smoke = run_command(env + tool("sweep.py") + " tools/grids/smoke.json --output " + dir / "smoke");
    REQUIRE_MESSAGE(smoke.exit_code == 0, smoke.output);
    const json table = read_json(dir / "smoke/results.json");
    REQUIRE(table.size() == 4);
    for (const auto& row : table) {
        CAPTURE(row["name"]);
        CHECK(row["status"] == "ok");
        CHECK(row["final_val_loss"].get<double>() < 10.7);  // it learned from the initial ~10.83
        CHECK(row["early_steps_measured"].get<int>() > 0);  // the trainer's metrics records were read
        CHECK(row["early_angle_max"].get<double>() > 0);
        CHECK(row["early_rrc_max"].get<double>() > 0);
    }
    const auto plots = run_command(tool("plot_study.py") + " " + dir / "smoke");
    REQUIRE_MESSAGE(plots.exit_code == 0, plots.output);
    for (const char* png : {"loss_vs_warmup.png", "loss_vs_lr.png", "early_updates.png"}) check_png(dir / "smoke/plots/" + png);

    const auto cpu = run_command(env + tool("sweep.py") + " tools/grids/cpu_study.json --dry-run --output " + dir / "cpu");
    REQUIRE_MESSAGE(cpu.exit_code == 0, cpu.output);
    CHECK(contains(cpu.output, "38 runs"));
    // The probes' runs are the study's (the same flags, the same names), so the study reuses them.
    const auto probe = run_command(env + tool("sweep.py") + " tools/grids/cpu_study_probe.json --dry-run --output " + dir / "cpu");
    REQUIRE_MESSAGE(probe.exit_code == 0, probe.output);
    CHECK(contains(probe.output, "15 runs"));
    int shared = 0;
    std::istringstream lines(probe.output);
    for (std::string line; std::getline(lines, line);)
        if (contains(line, "[to run]")) {
            const std::string name = line.substr(0, line.find(' '));
            shared += contains(cpu.output, name + " ") ? 1 : 0;
        }
    CHECK(shared == 7);  // each optimizer's probed learning rates that the study keeps, at the probe's warmup
    const auto gpu = run_command(env + tool("sweep.py") + " tools/grids/gpu_study.json --dry-run --output " + dir / "gpu");
    REQUIRE_MESSAGE(gpu.exit_code == 0, gpu.output);
}

TEST_CASE("plots: one run's train and validation loss; the gradient norm before clipping; B_noise that is not positive") {
    test_util::TempDir dir;
    const auto run = run_command(test_util::trainer() + test_util::shakespeare_flags() +
                                 " -e d1 -b 4 -t 16 -l 1e-2 --threads 2 -x 6 -v 3 -m 1 -s 0 -o " + dir / "run");
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    const auto log = test_util::read_jsonl(dir / "run/log.jsonl");
    const auto plot = run_command(tool("plot_run.py") + " " + dir / "run");
    REQUIRE_MESSAGE(plot.exit_code == 0, plot.output);
    CHECK(contains(plot.output, coldstart::format("loss: train %.4f at step 5, val %.4f at step 6 -> %s",
                                                  records_of(log, "train").back()["loss"].get<double>(),
                                                  records_of(log, "val").back()["loss"].get<double>(), (dir / "run/plots/loss.png").c_str())));
    check_png(dir / "run/plots/loss.png");

    // A log whose metrics hold three B_noise estimates, one of them negative, and train records with the
    // gradient norm before clipping.
    std::string text;
    for (int s = 0; s < 3; ++s) {
        text += json{{"type", "train"}, {"step", s}, {"loss", 5.0 - s}, {"grad_norm", 3.0 + s}}.dump() + "\n";
        text += json{{"type", "metrics"}, {"step", s}, {"lr", 1e-3}, {"update_norm", 0.1}, {"grad_norm", 1.0},
                     {"b_noise", s == 1 ? -40.0 : 100.0 * (s + 1)}, {"tensors", {{"wte", {{"angle", 0.01 * (s + 1)}}}}}}
                    .dump() + "\n";
    }
    write_text(dir / "noise.jsonl", text);
    const auto metrics = run_command(tool("plot_metrics.py") + " " + dir / "noise.jsonl --measures angle -o " + dir / "noise");
    REQUIRE_MESSAGE(metrics.exit_code == 0, metrics.output);
    CHECK_MESSAGE(contains(metrics.output, "global: update_norm, grad_norm_unclipped, grad_norm, b_noise, lr -> " + dir / "noise/global.png" +
                                               " (B_noise: 1 of 3 estimates not positive, left out)"), metrics.output);

    // An interpreter without matplotlib gets one line that names it and the one to use.
    run_command("mkdir -p " + dir / "hidden/matplotlib && echo 'raise ImportError(\"hidden\")' > " + dir / "hidden/matplotlib/__init__.py");
    const auto without = run_command("PYTHONPATH=" + dir / "hidden " + tool("plot_run.py") + " " + dir / "run");
    CHECK(without.exit_code == 1);
    CHECK_MESSAGE(contains(without.output, "plot_run.py: " + test_util::python() + " has no matplotlib; run the tool with an interpreter "
                                                                                   "that has them"), without.output);
}
