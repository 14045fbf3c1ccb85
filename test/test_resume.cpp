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
        " --recipe paper-lionar-best"};
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
        const auto metrics = records_of(test_util::read_jsonl(cut + "/log.jsonl"), "metrics");
        CHECK(metrics.size() == 6);  // steps 0, 3, ..., 15
        CHECK(metrics == records_of(test_util::read_jsonl(ref + "/log.jsonl"), "metrics"));
    }
}
