// The device scripts without a GPU. tools/gpu_check.sh with stub stages (GPU_CHECK_STUBS): every stage
// reports in the summary table, in order, whatever the ones before did (failed, timed out, were
// skipped); a stage runs only on what this call's build made; the build's record sets the library path;
// the budget and the caps hold; $OUT keeps to the device tool's limits (8 files, 2 folders down); the
// exit status says whether every stage passed. tools/bench_gpu.sh and tools/sanitize_gpu.sh with fake
// programs in place of the trainer, PyTorch, ncu and compute-sanitizer: the retry on the memory plan's
// refusal, a log that keeps both halves, the timeouts, the verdicts and exit statuses.
#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <sstream>

#include "common/error.h"
#include "test/test_util.h"

using namespace coldstart;
using test_util::contains;
using test_util::run_command;

namespace {

const std::vector<std::string> kStages = {"env", "build", "test-gpu", "bench", "sanitize"};

struct Check {
    int exit_code = -1;
    std::string output;
    std::map<std::string, std::string> verdict, headline;  // by stage, from the summary table
    std::vector<std::string> rows;                         // the table's stage names, in order
    std::string summary_file;
};

// Runs gpu_check with the stub stages `bodies` (stage -> shell script body, run as stubs/<stage>.sh in
// stubs/) in a fresh folder.
Check run_gpu_check(const test_util::TempDir& dir, const std::map<std::string, std::string>& bodies, const std::string& env = "") {
    const std::string stubs = dir / "stubs", out = dir / "out";
    make_directories(stubs);
    for (const auto& [stage, body] : bodies) {
        const std::string script = "#!/usr/bin/env bash\n" + body + "\n";
        test_util::write_bytes(stubs + "/" + stage + ".sh", script.data(), script.size());
    }
    REQUIRE(run_command("chmod +x " + stubs + "/*.sh").exit_code == 0);
    Check c;
    const auto run = run_command(env + " GPU_CHECK_STUBS=" + stubs + " OUT=" + out + " tools/gpu_check.sh");
    c.exit_code = run.exit_code;
    c.output = run.output;
    const std::regex row(R"(^(\S+) +(ok|FAIL\(\d+\)|FAIL|timeout|skipped|unavailable) +\d+  (.+)$)");
    std::istringstream lines(run.output.substr(run.output.find("== gpu_check summary")));
    for (std::string line; std::getline(lines, line);) {
        std::smatch m;
        if (!std::regex_match(line, m, row)) continue;
        c.rows.push_back(m[1]);
        c.verdict[m[1]] = m[2];
        c.headline[m[1]] = m[3];
    }
    if (file_exists(out + "/summary.txt")) c.summary_file = read_whole_file(out + "/summary.txt");
    return c;
}

void check_table(const Check& c) {
    INFO(c.output);
    std::vector<std::string> expected = kStages;
    expected.push_back("files");
    CHECK(c.rows == expected);
    CHECK(contains(c.output, "stage     verdict      seconds  headline\n"));
    // The table is the last thing printed, and summary.txt holds it.
    REQUIRE(!c.summary_file.empty());
    CHECK(c.output.size() >= c.summary_file.size());
    CHECK(c.output.compare(c.output.size() - c.summary_file.size(), c.summary_file.size(), c.summary_file) == 0);
}

}  // namespace

TEST_CASE("gpu_check: a failed build does not stop the suite; stages whose binary was not built now are skipped, naming it") {
    test_util::TempDir dir;
    make_directories(dir / "stubs");
    // A trainer left by an earlier build: not this call's, so bench and sanitize must not run on it.
    REQUIRE(run_command("touch -d 2020-01-01 " + dir / "stubs/train_gpt2").exit_code == 0);
    // The build's record (build/cuda.mk) says where cuDNN and NCCL were found: the stages after it get
    // those folders on LD_LIBRARY_PATH and the cuDNN setting.
    const std::string cuda_mk = "CUDNN_FOUND := 1\nCUDNN_LIBS := -L/wheels/cudnn/lib -l:libcudnn.so.9 -Xlinker -rpath,/wheels/cudnn/lib\n"
                                "NCCL_FOUND := 0\nNCCL_LIBS := \nCUDA_HOME := /nowhere\n";
    make_directories(dir / "stubs/build");
    make_directories(dir / "wheels");
    const Check c = run_gpu_check(dir, {{"env", "echo 'name, driver_version, memory.total [MiB]'; echo 'NVIDIA H200, 580.159.04, 143771 MiB';"
                                                " echo 'nvcc: /usr/local/cuda/bin/nvcc, release 13.0'; echo 'torch 2.11.0+cu130, CUDA 13.0, GPU visible to torch: True'"},
                                        {"build", "printf '" + cuda_mk + "' | sed 's|/wheels|" + dir / "wheels" + "|g' > build/cuda.mk; mkdir -p " +
                                                      dir / "wheels/cudnn/lib" + "; : > build/test_gpu; echo 'make: *** [train_gpt2] Error 1'; exit 2"},
                                        {"test-gpu", "echo \"cudnn $CUDNN_ON, path $LD_LIBRARY_PATH\"; echo '5 passed, 1 failed'; exit 1"},
                                        {"bench", "touch ran-bench"},
                                        {"sanitize", "touch ran-sanitize"}});
    check_table(c);
    INFO(c.output);
    CHECK(c.exit_code == 1);
    CHECK(c.output.rfind("gpu_check: stubs mode, budget 60 s", 0) == 0);  // the first line says how it runs
    CHECK(c.verdict.at("env") == "ok");
    CHECK(c.headline.at("env") == "NVIDIA H200, 580.159.04; release 13.0; torch 2.11.0+cu130");
    CHECK(c.verdict.at("build") == "FAIL(2)");
    CHECK(c.headline.at("build") == "built: test_gpu; NOT built: train_gpt2; sm_90, cuDNN on, NCCL off (build/cuda.mk)");
    CHECK(contains(read_whole_file(dir / "out/test_gpu.log"), "cudnn 1, path " + dir / "wheels/cudnn/lib"));
    CHECK(c.verdict.at("test-gpu") == "FAIL(1)");
    CHECK(c.headline.at("test-gpu") == "5 passed, 1 failed");
    for (const char* stage : {"bench", "sanitize"}) {
        CHECK(c.verdict.at(stage) == "skipped");
        CHECK(c.headline.at(stage) == "needs train_gpt2 (not built)");
    }
    CHECK_FALSE(file_exists(dir / "stubs/ran-bench"));
    CHECK_FALSE(file_exists(dir / "stubs/ran-sanitize"));
    // One full log per stage and the summary, nothing deeper.
    CHECK(c.verdict.at("files") == "ok");
    CHECK(c.headline.at("files") == "6 in $OUT, 0 more than 2 folders down (limits: 8 files, 2 folders)");
    CHECK(contains(read_whole_file(dir / "out/build.log"), "make: *** [train_gpt2] Error 1"));
    CHECK(contains(read_whole_file(dir / "out/test_gpu.log"), "5 passed, 1 failed"));
}

TEST_CASE("gpu_check: a hung stage is stopped at its cap and the next ones run; an unavailable tool is not a failure") {
    test_util::TempDir dir;
    const std::string build = "mkdir -p build && : > build/test_gpu && : > train_gpt2";
    const std::map<std::string, std::string> passing = {{"env", "true"},
                                                        {"build", build},
                                                        {"test-gpu", "echo '7 passed, 0 failed'"},
                                                        {"bench", "echo 'bench: coldstart 1234 tok/s (B=64, MFU 40%)'"},
                                                        {"sanitize", "echo 'sanitize-gpu: compute-sanitizer unavailable on this machine'; exit 77"}};
    const Check ok = run_gpu_check(dir, passing);
    check_table(ok);
    CHECK(ok.exit_code == 0);
    CHECK(ok.verdict.at("sanitize") == "unavailable");
    CHECK(ok.headline.at("sanitize") == "compute-sanitizer unavailable on this machine");
    CHECK(ok.headline.at("bench") == "coldstart 1234 tok/s (B=64, MFU 40%)");
    CHECK(ok.headline.at("test-gpu") == "7 passed, 0 failed");

    std::map<std::string, std::string> hung = passing;
    hung["test-gpu"] = "echo started; sleep 60";
    test_util::TempDir dir2;
    const auto t0 = std::chrono::steady_clock::now();
    const Check c = run_gpu_check(dir2, hung, "GPU_CHECK_STUB_CAP=2");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    check_table(c);
    CHECK(c.exit_code == 1);
    CHECK(c.verdict.at("test-gpu") == "timeout");
    CHECK(c.verdict.at("bench") == "ok");
    CHECK(c.verdict.at("sanitize") == "unavailable");
    CHECK(seconds < 30);
    CHECK(contains(read_whole_file(dir2 / "out/test_gpu.log"), "== test-gpu: timed out after 2 s"));
}

TEST_CASE("gpu_check: files beyond the device tool's limits fail the call; a stage the budget cannot fit is skipped and says so") {
    test_util::TempDir dir;
    const Check c = run_gpu_check(dir, {{"env", "true"},
                                        {"build", "mkdir -p build && : > build/test_gpu && : > train_gpt2"},
                                        {"test-gpu", "mkdir -p \"$OUT/a/b/c\" && : > \"$OUT/a/b/c/deep.txt\" && : > \"$OUT/a/b/ok.txt\""},
                                        {"bench", "for i in 1 2 3; do : > \"$OUT/extra$i.txt\"; done"},
                                        {"sanitize", "true"}});
    check_table(c);
    CHECK(c.exit_code == 1);
    CHECK(c.verdict.at("files") == "FAIL");
    CHECK(c.headline.at("files") == "11 in $OUT, 1 more than 2 folders down (limits: 8 files, 2 folders)");

    // 36 s: too little for env once the later stages' minimums, their grace and the summary are kept
    // (15 + 4 * 6 s); the build and the rest still run.
    test_util::TempDir dir2;
    const Check tight = run_gpu_check(dir2, {{"env", "true"},
                                             {"build", "mkdir -p build && : > build/test_gpu && : > train_gpt2"},
                                             {"test-gpu", "echo '1 passed, 0 failed'"},
                                             {"bench", "true"},
                                             {"sanitize", "true"}},
                                      "GPU_CHECK_SECONDS=36");
    check_table(tight);
    CHECK(tight.exit_code == 1);
    CHECK(tight.verdict.at("env") == "skipped");
    CHECK(tight.headline.at("env") == "budget spent (0 s left, needs 1)");
    for (const char* stage : {"build", "test-gpu", "bench", "sanitize"}) CHECK(tight.verdict.at(stage) == "ok");
}

namespace {

// A folder laid out like the repository for one device script (tools/NAME copied in), with fake
// programs in place of the GPU's: `fakes` maps a path in the folder to a shell script body.
std::string fake_repo(const test_util::TempDir& dir, const std::string& script, const std::map<std::string, std::string>& fakes) {
    make_directories(dir / "tools");
    REQUIRE(run_command("cp tools/" + script + " " + dir / "tools/").exit_code == 0);
    for (const auto& [path, body] : fakes) {
        const std::string full = dir / path, text = "#!/usr/bin/env bash\n" + body + "\n";
        make_directories(full.substr(0, full.rfind('/')));
        test_util::write_bytes(full, text.data(), text.size());
        REQUIRE(run_command("chmod +x " + full).exit_code == 0);
    }
    return dir / ("tools/" + script);
}

// A trainer that prints 10 step lines at 1001..1010 tokens/s, or, at B=64, the memory plan's refusal
// exactly as backend/cuda_backend.cu words it. A step takes 100 ms, measuring every step 102 ms, with the RRC
// 112 ms, and every 10 steps with the RRC 101.5 ms (a script that passed the wrong flags shows other costs).
const char* kFakeTrainer = R"sh(b=; prev=; every=0; rrc=1
for a in "$@"; do [ "$prev" = -b ] && b=$a; [ "$prev" = --metrics-every ] && every=$a; [ "$prev" = --metrics-rrc ] && rrc=$a; prev=$a; done
if [ "$b" = 64 ]; then echo "error: the run needs 90000.0 MiB of GPU memory but 80000.0 MiB are free: try a smaller -b, or -r 2 (recompute)"; exit 1; fi
case "$every $rrc" in "1 0") ms=102.0 ;; "1 1") ms=112.0 ;; "10 1") ms=101.5 ;; *) ms=100.0 ;; esac
for i in 1 2 3 4 5 6 7 8 9 10; do echo "step $i/10 | loss 10.0 | norm 1.0 | lr 6.00e-04 | $ms ms | $((1000 + i)) tok/s | 40.0% bf16 MFU | eta 0s"; done)sh";

// bench_gpu.sh in a fresh fake repository with `fakes`, `changes` replacing some, `env` before it; its
// stdout and stderr appended to one log as gpu_check does; the output is that log.
test_util::CommandResult run_bench(std::map<std::string, std::string> fakes, const std::map<std::string, std::string>& changes,
                                   const std::string& env) {
    test_util::TempDir dir;
    for (const auto& [path, body] : changes) fakes[path] = body;
    const std::string script = fake_repo(dir, "bench_gpu.sh", fakes), log = dir / "bench.log";
    return run_command(env + " PYTHON=" + dir / "python" + " NCU=" + dir / "ncu" + " DATA=/nowhere BENCH_STEPS=10 " + script + " >> " +
                       log + " 2>&1; status=$?; cat " + log + "; exit $status");
}

}  // namespace

TEST_CASE("bench_gpu.sh: retries a smaller batch on the memory plan's refusal, keeps both halves of its log, times PyTorch out alone") {
    const std::map<std::string, std::string> fakes = {
        {"train_gpt2", kFakeTrainer},
        {"python", "echo 'compiling...' >&2; echo 'torch tokens/s: 2016'"},
        {"build/tools/bench_gpu_kernels", "echo 'layernorm forward    0.010 ms'"},
        {"ncu", "echo '==ERROR== Failed to initialize the profiler: LibraryNotLoaded'; exit 1"}};
    const auto run = run_bench(fakes, {}, "");
    const std::string& log = run.output;
    INFO(log);
    CHECK(run.exit_code == 0);
    CHECK(contains(log, "bench: B=64 does not fit in GPU memory, trying a smaller batch"));
    CHECK(contains(log, "coldstart tokens/s: 1008 (B=32, median of steps 6..10; 40.0% bf16 MFU"));
    CHECK(contains(log, "compiling...\ntorch tokens/s: 2016"));
    CHECK(contains(log, "ratio coldstart / PyTorch: 0.50 (1008 vs 2016 tokens/s"));
    CHECK(contains(log, "metrics every 1 step(s) without the RRC: 102.00 ms a step against 100.00 ms without: +2.0 %"));
    CHECK(contains(log, "metrics every 1 step(s) with the RRC: 112.00 ms a step against 100.00 ms without: +12.0 %"));
    CHECK(contains(log, "metrics every 10 step(s) with the RRC: 101.50 ms a step against 100.00 ms without: +1.5 %"));
    CHECK(contains(log, "ncu: unavailable on this machine (==ERROR== Failed to initialize the profiler: LibraryNotLoaded); the per-kernel table above is from CUDA events"));
    CHECK(log.substr(log.rfind("bench: ")) ==
          "bench: coldstart 1008 tok/s (B=32, MFU 40.0%); PyTorch 2016 tok/s, ratio 0.50; kernels: CUDA events; metrics +2.0 % every 1, "
          "+12.0 % every 1 with RRC, +1.5 % every 10 with RRC (targets with RRC: 15 % every 1, 3 % every 10); "
          "ncu unavailable on this machine\n");

    // PyTorch hangs (a cold torch.compile past its timeout): reported, not our failure.
    const auto timed_out = run_bench(fakes, {{"python", "sleep 30"}}, "BENCH_TORCH_SECONDS=2 BENCH_SKIP_METRICS=1");
    INFO(timed_out.output);
    CHECK(timed_out.exit_code == 0);
    CHECK(contains(timed_out.output, "PyTorch reference: no figure (exit 124, timed out after 2 s)"));
    CHECK(contains(timed_out.output, "bench: coldstart 1008 tok/s (B=32, MFU 40.0%); PyTorch n/a;"));

    // Our trainer failing for another reason than memory: no smaller batch, exit status 1.
    const auto failed = run_bench(fakes, {{"train_gpt2", "echo 'error: cudaMalloc failed: unknown error'; exit 1"}}, "BENCH_SKIP_TORCH=1");
    INFO(failed.output);
    CHECK(failed.exit_code == 1);
    CHECK(contains(failed.output, "bench: the trainer failed at B=64 (exit 1)"));
    CHECK_FALSE(contains(failed.output, "B=32"));

    // The emulated device: a tiny run, labelled as emulated.
    const auto emulated = run_bench({{"train_gpt2_emu", kFakeTrainer}}, {}, "BENCH_EMULATED=1");
    INFO(emulated.output);
    CHECK(emulated.exit_code == 0);
    CHECK(contains(emulated.output, "\nbench: emulated 1006 tok/s at d2 B=2 T=32 (emulated, not a GPU figure; no PyTorch ratio)\n"));
}

TEST_CASE("sanitize_gpu.sh: a sanitizer that refuses the device is unavailable (77), not a failure; errors fail; the budget is kept") {
    const auto sanitize = [](const std::string& fake, const std::string& env = "") {
        test_util::TempDir dir;
        const std::string script = fake_repo(dir, "sanitize_gpu.sh", {{"cs", fake}});
        return run_command(env + " COMPUTE_SANITIZER=" + dir / "cs" + " DATA=/nowhere " + script);
    };
    const auto refused = sanitize("echo '========= Error: Device not supported'; echo 'error: cudaMalloc failed: unknown error (999)'; exit 99");
    CHECK(refused.exit_code == 77);
    CHECK(contains(refused.output, "sanitize-gpu: compute-sanitizer unavailable on this machine (it refuses the device: Device not supported)"));
    const auto clean = sanitize("echo '========= ERROR SUMMARY: 0 errors'", "ATTENTIONS='flash cudnn'");
    CHECK(clean.exit_code == 0);
    CHECK(contains(clean.output, "ok   memcheck --precision bf16 --attention cudnn"));
    CHECK(contains(clean.output, "sanitize-gpu: 8 of 8 runs clean\n"));
    const auto dirty = sanitize(R"sh(case " $* " in *" racecheck "*) echo '========= Race reported'; echo '========= RACECHECK SUMMARY: 1 hazard'; exit 99 ;; esac
echo '========= ERROR SUMMARY: 0 errors')sh");
    CHECK(dirty.exit_code == 1);
    CHECK(contains(dirty.output, "sanitize-gpu: 4 of 6 runs clean, 2 FAILED\n"));
    const auto short_budget = sanitize("sleep 1; echo '========= ERROR SUMMARY: 0 errors'", "SANITIZE_SECONDS=12");
    CHECK(short_budget.exit_code == 124);
    CHECK(contains(short_budget.output, "of 6 runs clean, "));
    CHECK(contains(short_budget.output, " not run (no time left)\n"));
}
