// Nothing lost: a run killed at any moment (SIGKILL, also inside checkpoint writes) and resumed with -y 1
// ends with the same bits as an uninterrupted run; non-finite steps are skipped and, in a row, stop the
// run with the last checkpoint intact; write failures name the path and keep the last good checkpoint.
#include <doctest/doctest.h>

#include <unistd.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "data/checkpoint.h"
#include "test/test_util.h"

using namespace coldstart;
using nlohmann::json;
using test_util::records_of;
using test_util::run_command;
using test_util::shakespeare_flags;
using test_util::trainer;

namespace {

// Shuffling, gradient accumulation, spike detection, validation and sampling all carry state across
// steps: every piece of it must survive a resume.
const char* kRun = " -e d1 -b 4 -t 16 -d 128 -l 1e-2 -u 4 -k cosine -q 0.1 --shuffle 1 --seed 5 -sl 50 -sg 50 "
                   "-v 8 -m 2 -s 8 -g 4 -n 4 -x 40 --threads 2";

// The losses of every train and val record, in order: what a person reads of a run.
std::vector<json> losses(const std::string& log_path) {
    std::vector<json> out;
    for (const auto& r : test_util::read_jsonl(log_path))
        if (r["type"] == "train" || r["type"] == "val") out.push_back({r["type"], r["step"], r["loss"]});
    return out;
}

// Records without their wall-clock fields, which differ between any two runs.
std::vector<json> untimed(std::vector<json> records) {
    for (json& r : records) {
        r.erase("time");
        r.erase("elapsed_s");
    }
    return records;
}


}  // namespace

TEST_CASE("resume: SIGKILL at 20 moments, inside checkpoint writes too; the resumed run ends with the same bits") {
    test_util::TempDir dir;
    const auto reference = run_command(trainer() + shakespeare_flags() + kRun + " -o " + dir / "ref");
    REQUIRE_MESSAGE(reference.exit_code == 0, reference.output);

    // Kill points inside the checkpoint writes first, then at pseudo-random moments. When a series of
    // killed and resumed runs reaches the end before 20 kills, the next series starts afresh; every
    // series must end with the reference's bits.
    const std::vector<std::string> write_kills = {"model-written:4", "state-written:8", "before-done:8", "model-written:12",
                                                  "state-written:16", "before-done:20", "model-written:24", "state-written:28"};
    Rng rng(2026);
    int killed = 0, attempts = 0;
    for (int series = 0; killed < 20 && attempts < 80; ++series) {
        const std::string out = dir / format("killed%d", series);
        const std::string resume_cmd = trainer() + shakespeare_flags() + kRun + " -y 1 -o " + out;
        while (killed < 20 && attempts < 80 && latest_checkpoint(out) < 40) {
            const std::string kill = size_t(attempts) < write_kills.size() ? "COLDSTART_CRASH_AT=" + write_kills[attempts]
                                                                           : format("timeout -s KILL %.2f", 0.05 + 0.5 * rng.uniform());
            ++attempts;
            const auto r = run_command(kill + " " + resume_cmd);
            CAPTURE(kill);
            CHECK_MESSAGE((r.exit_code == 137 || r.exit_code == 0), r.output);
            killed += r.exit_code == 137;
        }
        const auto last = run_command(resume_cmd);  // finishes whatever is left (or finds it done)
        REQUIRE_MESSAGE(last.exit_code == 0, last.output);
        CAPTURE(series);
        CHECK(test_util::read_bytes(out + "/model_00000040.bin") == test_util::read_bytes(dir / "ref/model_00000040.bin"));
        CHECK(losses(out + "/log.jsonl") == losses(dir / "ref/log.jsonl"));  // appended, never duplicated
        CHECK(records_of(test_util::read_jsonl(out + "/log.jsonl"), "sample").size() == 5);
    }
    CHECK(killed == 20);
}

TEST_CASE("resume: bf16 model files keep fp32 master weights; a changed batch shape is refused") {
    test_util::TempDir dir;
    const std::string flags = shakespeare_flags() + kRun + " --save-bf16 1";
    REQUIRE(run_command(trainer() + flags + " -o " + dir / "ref").exit_code == 0);
    const auto stopped = run_command("COLDSTART_CRASH_AT=model-written:16 " + trainer() + flags + " -o " + dir / "cut");
    REQUIRE(stopped.exit_code == 137);
    const auto resumed = run_command(trainer() + flags + " -y 1 -o " + dir / "cut");
    REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.output);
    CHECK(resumed.output.find("resumed from " + dir / "cut/model_00000012.bin (step 12)") != std::string::npos);
    CHECK(test_util::read_bytes(dir / "cut/model_00000040.bin") == test_util::read_bytes(dir / "ref/model_00000040.bin"));
    CHECK(losses(dir / "cut/log.jsonl") == losses(dir / "ref/log.jsonl"));

    const auto changed = run_command(trainer() + flags + " -y 1 -b 2 -o " + dir / "cut");
    CHECK(changed.exit_code == 1);
    CHECK(changed.output.find("error: " + dir / "cut/state_00000040_00000.bin: the checkpoint was written with batch-size = 4, "
                                                "this run has 2; resuming needs the same") != std::string::npos);
}

TEST_CASE("robustness: a non-finite step is skipped; K in a row stop the run, naming the step and the last checkpoint") {
    test_util::TempDir dir;
    const std::string flags = shakespeare_flags() + " -e d1 -b 4 -t 16 -x 12 -n 2 -s 0 -v 0 -m 1 --threads 2";
    const auto one = run_command(trainer() + flags + " --inject-nonfinite 3 -o " + dir / "one");
    REQUIRE_MESSAGE(one.exit_code == 0, one.output);
    const auto train = records_of(test_util::read_jsonl(dir / "one/log.jsonl"), "train");
    REQUIRE(train.size() == 12);
    CHECK(train[3]["skipped"] == "non-finite loss or gradient norm");
    CHECK(train[3]["loss"].is_null());  // NaN is written as null: the log stays valid JSON
    CHECK_FALSE(train[4].contains("skipped"));
    CHECK(one.output.find("1 steps were skipped") != std::string::npos);

    const auto three = run_command(trainer() + flags + " --inject-nonfinite 5,6,7 --max-bad-steps 3 -o " + dir / "three");
    CHECK(three.exit_code == 1);
    CHECK(three.output.find("error: step 8: 3 steps in a row had a non-finite loss or gradient norm; stopping (the last "
                            "complete checkpoint is " + dir / "three/model_00000006.bin)") != std::string::npos);
    CHECK(latest_checkpoint(dir / "three") == 6);
}

TEST_CASE("robustness: a full disk or a read-only folder is reported with the path; the last checkpoint stays good") {
    test_util::TempDir dir;
    const std::string flags = shakespeare_flags() + " -e d1 -b 4 -t 16 -n 4 -s 0 -v 0 -m 1 --threads 2 -o " + dir / "run";
    REQUIRE(run_command(trainer() + flags + " -x 4").exit_code == 0);
    const std::vector<char> good_model = test_util::read_bytes(dir / "run/model_00000004.bin");

    // The model file (13 MB) fits under the limit, the optimizer state (26 MB) does not.
    const auto full = run_command("bash -c 'ulimit -f 20000; exec " + trainer() + flags + " -x 8 -y 1'");
    CHECK(full.exit_code == 1);
    CHECK(full.output.find("error: " + dir / "run/state_00000008_00000.bin.tmp: write failed: File too large") != std::string::npos);
    CHECK(latest_checkpoint(dir / "run") == 4);
    CHECK(test_util::read_bytes(dir / "run/model_00000004.bin") == good_model);
    CHECK_FALSE(file_exists(dir / "run/state_00000008_00000.bin.tmp"));

    // Root ignores permissions, so the read-only case runs the trainer as the unprivileged user nobody.
    if (getuid() == 0 && run_command("command -v setpriv").exit_code == 0) {
        REQUIRE(run_command("chmod 755 " + dir.path + " && chmod -R a+r " + dir / "run" + " && chmod 555 " + dir / "run").exit_code == 0);
        const auto ro = run_command("setpriv --reuid=65534 --regid=65534 --clear-groups " + trainer() + flags + " -x 8 -y 1");
        CHECK(ro.exit_code == 1);
        CHECK_MESSAGE(ro.output.find("error: cannot open " + dir / "run/config.json.tmp for writing: Permission denied") != std::string::npos,
                      ro.output);
        CHECK(latest_checkpoint(dir / "run") == 4);
        run_command("chmod 755 " + dir / "run");
    } else {
        MESSAGE("read-only folder case not run: needs root and setpriv to act as an unprivileged user");
    }
}

TEST_CASE("resume: every optimizer's state (momentum, held norms, EMAs, row gains) continues bit for bit, metrics too") {
    const std::vector<std::string> optimizers = {
        " --optimizer lion",
        " --optimizer liona -c 0.1",
        " --optimizer lionar --control tensor --center 1 --angle-norm strict -c 0.1",
        " --optimizer lionar --row-gains 1 --rrc-correction norm-ratio --inverse-bias-correction snr -c 0.1",
        " --recipe paper-lionar-best",
        " --optimizer lionar -c 0.1 --rrc-target 0.01 -u 4"};
    test_util::TempDir dir;
    int i = 0;
    for (const std::string& optimizer : optimizers) {
        CAPTURE(optimizer);
        const std::string flags = shakespeare_flags() + " -e d1 -b 4 -t 16 -d 128 -l 1e-2 -x 16 -n 4 -v 8 -m 1 -s 0 --threads 2 "
                                                        "--metrics-every 3" + optimizer;
        const std::string ref = dir / format("ref%d", i), cut = dir / format("cut%d", i);
        ++i;
        REQUIRE(run_command(trainer() + flags + " -o " + ref).exit_code == 0);
        REQUIRE(run_command("COLDSTART_CRASH_AT=state-written:12 " + trainer() + flags + " -o " + cut).exit_code == 137);
        const auto resumed = run_command(trainer() + flags + " -y 1 -o " + cut);
        REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.output);
        CHECK(resumed.output.find("(step 8)") != std::string::npos);
        CHECK(test_util::read_bytes(cut + "/model_00000016.bin") == test_util::read_bytes(ref + "/model_00000016.bin"));
        CHECK(losses(cut + "/log.jsonl") == losses(ref + "/log.jsonl"));
        const auto metrics = untimed(records_of(test_util::read_jsonl(cut + "/log.jsonl"), "metrics"));
        CHECK(metrics.size() == 6);  // steps 0, 3, ..., 15
        CHECK(metrics == untimed(records_of(test_util::read_jsonl(ref + "/log.jsonl"), "metrics")));
    }
}

TEST_CASE("resume: a log shorter than its checkpoint saw is refused, never padded; another run's checkpoint is never resumed") {
    test_util::TempDir dir;
    const std::string flags = shakespeare_flags() + " -e d1 -b 4 -t 16 -l 1e-2 -n 2 -v 0 -m 1 -s 0 --threads 2";
    REQUIRE(run_command(trainer() + flags + " -x 4 -o " + dir / "a").exit_code == 0);

    // The log cut to its run record (as when another run had replaced it): the resume stops and leaves it as it is.
    const std::string log = test_util::read_text(dir / "a/log.jsonl");
    const std::string first_line = log.substr(0, log.find('\n') + 1);
    test_util::write_bytes(dir / "a/log.jsonl", first_line.data(), first_line.size());
    const auto cut = run_command(trainer() + flags + " -x 6 -y 1 -o " + dir / "a");
    CHECK(cut.exit_code == 1);
    CHECK_MESSAGE(test_util::contains(cut.output, "error: cannot resume: " + dir / "a/log.jsonl has " + std::to_string(first_line.size()) +
                                                      " bytes, fewer than the "), cut.output);
    CHECK(test_util::read_text(dir / "a/log.jsonl") == first_line);  // no NUL bytes appended
    test_util::write_bytes(dir / "a/log.jsonl", log.data(), log.size());

    // Another run with the same settings (so the same identity but for its id): its checkpoint, copied in, is refused.
    REQUIRE(run_command(trainer() + flags + " -x 6 -o " + dir / "b").exit_code == 0);
    REQUIRE(run_command("cp " + dir / "b/model_00000006.bin " + dir / "b/state_00000006_00000.bin " + dir / "b/DONE_00000006 " +
                        dir / "a/").exit_code == 0);
    const auto other = run_command(trainer() + flags + " -x 8 -y 1 -o " + dir / "a");
    CHECK(other.exit_code == 1);
    const std::string id_a = test_util::read_jsonl(dir / "a/log.jsonl").front()["run_id"];
    const std::string id_b = test_util::read_jsonl(dir / "b/log.jsonl").front()["run_id"];
    CHECK_MESSAGE(test_util::contains(other.output, "error: " + dir / "a/state_00000006_00000.bin: the checkpoint belongs to another run (run id " +
                                                        id_b + ") than " + dir / "a/log.jsonl (run id " + id_a + ")"), other.output);
    CHECK(test_util::read_text(dir / "a/log.jsonl") == log);

    // Without the stranger's checkpoint the run continues from its own.
    run_command("rm " + dir / "a/DONE_00000006");
    const auto own = run_command(trainer() + flags + " -x 8 -y 1 -o " + dir / "a");
    REQUIRE_MESSAGE(own.exit_code == 0, own.output);
    CHECK(test_util::contains(own.output, "resumed from " + dir / "a/model_00000004.bin (step 4)"));

    // A finished run whose checkpoints were removed (as a sweep does) is not restarted over its log.
    run_command("rm " + dir / "b/DONE_0000000*");
    const std::string log_b = test_util::read_text(dir / "b/log.jsonl");
    const auto removed = run_command(trainer() + flags + " -x 6 -y 1 -o " + dir / "b");
    CHECK(removed.exit_code == 1);
    CHECK(test_util::contains(removed.output, "holds a finished run whose checkpoints were removed"));
    CHECK(test_util::read_text(dir / "b/log.jsonl") == log_b);
}

namespace {

// Starts the trainer in the background, waits until its log has `records` train records, sends the
// signals (with `gap` seconds between them), and returns the trainer's exit status and output.
test_util::CommandResult signal_during_run(const std::string& command, const std::string& log, int records,
                                           const std::vector<std::string>& signals, double gap) {
    std::string script = command + " & pid=$!\nfor i in $(seq 600); do\n"
                         "  [ \"$(grep -c '\"type\":\"train\"' " + log + " 2>/dev/null)\" -ge " + std::to_string(records) +
                         " ] && break\n  sleep 0.05\ndone\n";
    for (size_t i = 0; i < signals.size(); ++i) script += (i ? format("sleep %.2f\n", gap) : "") + "kill -" + signals[i] + " $pid\n";
    script += "wait $pid\n";
    test_util::TempDir scripts;
    test_util::write_bytes(scripts / "signal.sh", script.data(), script.size());
    return run_command("bash " + scripts / "signal.sh");
}

}  // namespace

TEST_CASE("signals: SIGTERM finishes the step and leaves a checkpoint that -y 1 continues bit for bit; a second SIGINT stops at once") {
    test_util::TempDir dir;
    // A constant schedule: the interrupted run (-x 100000) and the shorter reference take the same steps.
    const std::string flags = shakespeare_flags() + " -e d1 -b 4 -t 16 -l 1e-2 -k constant -v 5 -m 1 -s 0 --shuffle 1 --threads 2";
    const auto stopped = signal_during_run(trainer() + flags + " -x 100000 -o " + dir / "cut", dir / "cut/log.jsonl", 8, {"TERM"}, 0);
    CHECK(stopped.exit_code == 143);
    const int64_t at = latest_checkpoint(dir / "cut");
    REQUIRE_MESSAGE(at >= 8, stopped.output);
    CHECK_MESSAGE(test_util::contains(stopped.output, format("stopped by SIGTERM at step %lld: the checkpoint %s holds it", (long long)at,
                                                             checkpoint_files(dir / "cut", at).model.c_str())), stopped.output);

    const int64_t steps = at + 4;
    const auto resumed = run_command(trainer() + flags + format(" -x %lld -y 1 -o ", (long long)steps) + dir / "cut");
    REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.output);
    REQUIRE(run_command(trainer() + flags + format(" -x %lld -o ", (long long)steps) + dir / "ref").exit_code == 0);
    const std::string last = format("/model_%08lld.bin", (long long)steps);
    CHECK(test_util::read_bytes(dir / "cut" + last) == test_util::read_bytes(dir / "ref" + last));
    CHECK(losses(dir / "cut/log.jsonl") == losses(dir / "ref/log.jsonl"));

    // A slow step (B=32, T=64): the second signal comes while the first waits for the step, and ends the run
    // at once, without a checkpoint.
    const auto twice = signal_during_run(trainer() + shakespeare_flags() + " -e d1 -b 32 -t 64 -x 100000 -v 0 -s 0 --threads 2 -o " +
                                             dir / "twice", dir / "twice/log.jsonl", 1, {"INT", "INT"}, 0.2);
    CHECK(twice.exit_code == 130);
    CHECK_MESSAGE(test_util::contains(twice.output, "second signal: stopping at once, without a checkpoint"), twice.output);
    CHECK(latest_checkpoint(dir / "twice") == -1);
}
