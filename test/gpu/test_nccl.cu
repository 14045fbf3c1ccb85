// The NCCL path on the one GPU a test machine has: a one-rank NCCL communicator (host and device
// collectives) and the CUDA backend that reduces each layer's gradient through it on a stream of its
// own, against the plain backend: the same losses and weights bit for bit (a one-rank sum is the
// identity, so any difference is a race between the streams or a tensor reduced at the wrong time).
// Where there are two devices (two GPUs, or the emulated device, where each process has its own): the
// trainer on two ranks, replicated (-z 0) and sharded (ZeRO-1, -z 1), against one rank, and ZeRO-1's
// checkpoints resumed on one GPU rank and on the CPU, and the CPU's on two GPU ranks.
#include <doctest/doctest.h>

#ifdef COLDSTART_NCCL
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cuda_backend.h"
#include "common/random.h"
#include "data/model_file.h"
#include "dist/nccl_communicator.cuh"
#include "optim/grad_norm.h"
#include "test/gpu/gpu_test_util.cuh"

using namespace coldstart;
using namespace gpu_test;

TEST_CASE("nccl: one rank's collectives are the identity, on host and device memory") {
    test_util::TempDir dir;
    auto comm = make_nccl_communicator({0, 1, 0, "test"}, Rendezvous{"fs", dir.path, ""});
    CHECK(comm->size() == 1);
    double host[3] = {1.5, -2.0, 1e-300};
    comm->all_reduce_sum(host, 3);
    CHECK(host[0] == 1.5);
    CHECK(host[2] == 1e-300);
    Rng rng(2);
    const Floats x = random_floats<float>(rng, 1000);
    Buffer<float> d(1000);
    d.upload(x);
    comm->all_reduce_sum(d.get(), 1000);
    comm->reduce_scatter_sum(d.get(), {0, 1000});
    comm->reduce_scatter_sum(d.get(), 10, 990, {0, 1000});  // a layer's piece of ZeRO-1's gradient
    comm->all_gather(d.get(), {0, 1000});
    comm->all_gather(d.get(), sizeof(bf16), {0, 2000});      // the bf16 copy of ZeRO-1's weights
    REQUIRE(cudaStreamSynchronize(comm->stream()) == cudaSuccess);
    CHECK(same_bits(d.download(), x));
    Floats weights = x;
    comm->all_gather(weights.data(), {0, 1000});  // host memory: a checkpoint's weights
    CHECK(same_bits(weights, x));
    comm->barrier();
}

TEST_CASE("nccl: the backend that reduces layer by layer through one rank gives the plain backend's bits") {
    const GPT2Config c = test_util::small_model_config();
    const int B = 2, T = 11, accum = 2, steps = 3;
    test_util::TempDir dir;
    auto comm = make_nccl_communicator({0, 1, 0, "test"}, Rendezvous{"fs", dir.path, ""});
    OptimizerConfig opt;
    opt.weight_decay = 0.1f;
    const std::vector<float> params = test_util::random_model_params(c, 4);
    Rng rng(8);
    std::vector<std::vector<int>> tokens;
    for (int i = 0; i < steps * accum * 2; ++i) tokens.push_back(random_ints(rng, size_t(B) * T, c.vocab_size));
    for (const char* precision : {"fp32", "bf16"}) {
        CAPTURE(precision);
        CudaOptions plain{precision, "flash", 1, 0};
        CudaOptions reducing = plain;
        reducing.comm = comm.get();
        reducing.device = comm->device();
        auto run = [&](const CudaOptions& o, Floats& losses, Floats& final_params) {
            auto backend = make_cuda_backend(c, B, T, opt, o);
            backend->set_parameters(params.data());
            for (int s = 0; s < steps; ++s) {
                backend->zero_grad();
                for (int m = 0; m < accum; ++m) {
                    const size_t b = size_t(s * accum + m) * 2;
                    backend->forward_backward(tokens[b].data(), tokens[b + 1].data(), 1.0f / accum, m == accum - 1);
                }
                backend->optimizer_step({1e-2f, s + 1, 1.0f});
                const StepReport report = backend->step_report();
                losses.push_back(float(report.loss));
                losses.push_back(report.norm);
            }
            final_params.resize(ParamLayout(c).total);
            backend->get_parameters(final_params.data());
        };
        Floats losses_a, losses_b, params_a, params_b;
        run(plain, losses_a, params_a);
        run(reducing, losses_b, params_b);
        CHECK(same_bits(losses_a, losses_b));
        CHECK(same_bits(params_a, params_b));
    }
}
#endif  // COLDSTART_NCCL

#ifdef COLDSTART_NCCL
namespace {

// The train and validation losses of a run's log, in order.
std::vector<double> logged_losses(const std::string& out) {
    std::vector<double> losses;
    for (const auto& rec : test_util::read_jsonl(out + "/log.jsonl"))
        if (rec["type"] == "train" || rec["type"] == "val") losses.push_back(rec["loss"].get<double>());
    return losses;
}

// Runs `command flags -o out`, which must succeed; returns its output.
std::string run_trainer(const std::string& command, const std::string& flags, const std::string& out) {
    const auto run = test_util::run_command(command + flags + " -o " + out);
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    return run.output;
}

// Each loss within tolerance (relative) of the other run's; the worst difference is reported.
void check_close(const std::vector<double>& got, const std::vector<double>& want, double tolerance, const char* what) {
    REQUIRE(got.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i] == doctest::Approx(want[i]).epsilon(tolerance));
        worst = std::max(worst, std::fabs(got[i] - want[i]) / std::fabs(want[i]));
    }
    MESSAGE(std::string(what) << ": worst relative difference of the losses " << worst << " (tolerance " << tolerance << ")");
}

// The MiB of a line of the CUDA backend's memory plan ("  optimizer    12.7 MiB ...").
double plan_mib(const std::string& output, const std::string& line) {
    const size_t at = output.find("\n  " + line + " ");
    REQUIRE_MESSAGE(at != std::string::npos, output);
    return std::stod(output.substr(at + 3 + line.size()));
}

std::string two_ranks() { return "tools/launch_local.sh 2 " + cuda_trainer(); }

// Shards of tinyshakespeare's first bytes, one token a byte, and the flags of a byte-level model that
// reads them: a 256-token vocabulary keeps the emulated runs short.
std::string byte_level_data(const std::string& dir) {
    const std::string text = test_util::read_text(test_util::data_path("tinyshakespeare/input.txt"));
    REQUIRE(text.size() > 110000);
    auto shard = [&](const std::string& path, size_t begin, size_t end) {
        test_util::write_shard(path, std::vector<uint16_t>(text.begin() + long(begin), text.begin() + long(end)));
    };
    shard(dir + "/train.bin", 0, 100000);
    shard(dir + "/val.bin", 100000, 110000);
    return " -i " + dir + "/train.bin -j " + dir + "/val.bin --vocab-size 256";
}

// Two NCCL ranks need two GPUs (NCCL refuses two ranks on one); the emulated device gives each process its
// own. Says so, and is false, on one GPU.
bool two_ranks_possible() {
    int devices = 0;
    REQUIRE(cudaGetDeviceCount(&devices) == cudaSuccess);
#ifndef COLDSTART_EMULATED
    if (devices < 2) {
        MESSAGE("one GPU: two NCCL ranks need two GPUs; not run");
        return false;
    }
#endif
    return true;
}

}  // namespace

// NCCL refuses two ranks on one GPU, so on hardware this needs two GPUs; on the emulated device each process
// has its own device, and the ranks' collectives go through shared memory. AdamW, fp32: -z 0 sums the
// gradient in another order, -z 1 too and adds the norm's shard sums; both agree with one process to 1e-5.
TEST_CASE("nccl: two GPU processes, -z 0 (all-reduce) and -z 1 (ZeRO-1: reduce-scatter, all-gather), give one process's losses") {
    if (!two_ranks_possible()) return;
    test_util::TempDir dir;
    const std::string flags = byte_level_data(dir.path) +
                              " --device cuda --precision fp32 -e d1 -b 2 -t 16 -d 128 -l 1e-3 -c 0.1 -x 4 -v 2 -m 4 -s 0 --threads 1";
    run_trainer(cuda_trainer(), flags, dir / "one");
    run_trainer(two_ranks(), flags + " -z 0", dir / "z0");
    const std::string sharded = run_trainer(two_ranks(), flags + " -z 1", dir / "z1");
    const std::vector<double> one = logged_losses(dir / "one");
    check_close(logged_losses(dir / "z0"), one, 1e-5, "adamw fp32, 2 ranks -z 0 vs 1 rank");
    check_close(logged_losses(dir / "z1"), one, 1e-5, "adamw fp32, 2 ranks -z 1 vs 1 rank");
    CHECK(test_util::contains(sharded, "optimizer state 1/2 of -z 0's"));  // fp32: the master weights are what every rank reads
}

// ZeRO-1 with the optimizer that has the most state (LionAR with row gains and the RRC correction: moments,
// norms, EMAs, gains, directions), in bf16 (the all-gather of the bf16 copy), a measured step (the ranks'
// per-tensor sums added). Two ranks against one: 1e-4 (the Lion family's sign steps can flip where the
// gradient's sum rounds otherwise). A 2-rank GPU checkpoint continues on one GPU rank (1e-4) and on the CPU
// (fp32: 1e-3), a CPU checkpoint on two GPU ranks (1e-3).
TEST_CASE("nccl, ZeRO-1: LionAR on two GPU ranks matches one; checkpoints move between 2 GPU ranks, 1 GPU rank and the CPU") {
    if (!two_ranks_possible()) return;
    test_util::TempDir dir;
    const std::string flags = byte_level_data(dir.path) +
                              " -e d1 -b 2 -t 16 -d 128 -l 1e-3 -c 0.1 -v 2 -m 4 -s 0 --threads 1 --optimizer lionar "
                              "--rrc-correction alignment --row-gains 1";
    const std::string gpu = " --device cuda --precision bf16", measured = " --metrics-every 10 --metrics-rrc 0";  // step 0
    const std::string one_out = run_trainer(cuda_trainer(), flags + gpu + measured + " -x 3", dir / "one");
    const std::string two_out = run_trainer(two_ranks(), flags + gpu + measured + " -z 1 -x 2", dir / "two");
    const std::vector<double> one = logged_losses(dir / "one");
    REQUIRE(one.size() == 6);  // validations at steps 0, 2 and 3 around 3 steps
    check_close(logged_losses(dir / "two"), std::vector<double>(one.begin(), one.begin() + 4), 1e-4, "lionar bf16, 2 ranks -z 1 vs 1 rank");
    const auto metrics_one = test_util::records_of(test_util::read_jsonl(dir / "one/log.jsonl"), "metrics");
    const auto metrics_two = test_util::records_of(test_util::read_jsonl(dir / "two/log.jsonl"), "metrics");
    REQUIRE(metrics_one.size() == 1);
    REQUIRE(metrics_two.size() == 1);
    for (const char* field : {"update_norm", "grad_norm"})
        CHECK(metrics_two[0][field].get<double>() == doctest::Approx(metrics_one[0][field].get<double>()).epsilon(1e-4));
    // The memory plan: each rank holds half of the master weights and of the optimizer state.
    CHECK(test_util::contains(two_out, "ZeRO-1       rank 0 of 2 holds parameters [0, "));
    CHECK(test_util::contains(two_out, "optimizer state and master weights 1/2 of -z 0's"));
    CHECK(plan_mib(two_out, "optimizer") == doctest::Approx(plan_mib(one_out, "optimizer") / 2).epsilon(0.02));

    REQUIRE(test_util::run_command("cp -r " + dir / "two " + dir / "on_one && cp -r " + dir / "two " + dir / "on_cpu").exit_code == 0);
    CHECK(test_util::contains(run_trainer(cuda_trainer(), flags + gpu + " -x 3 -y 1", dir / "on_one"), "(step 2)"));
    check_close(logged_losses(dir / "on_one"), one, 1e-4, "lionar bf16, 2 GPU ranks resumed on 1");
    CHECK(test_util::relative_error(load_model_file(dir / "on_one/model_00000003.bin").params,
                                    load_model_file(dir / "one/model_00000003.bin").params) < 1e-4);
    CHECK(test_util::contains(run_trainer("./train_gpt2_cpu", flags + " -x 3 -y 1", dir / "on_cpu"), "(step 2)"));
    check_close(logged_losses(dir / "on_cpu"), one, 1e-3, "lionar, 2 GPU ranks (bf16) resumed on the CPU");
    run_trainer("./train_gpt2_cpu", flags + " -x 2", dir / "cpu");
    CHECK(test_util::contains(run_trainer(two_ranks(), flags + gpu + " -z 1 -x 3 -y 1", dir / "cpu"), "(step 2)"));
    check_close(logged_losses(dir / "cpu"), one, 1e-3, "lionar, the CPU resumed on 2 GPU ranks (bf16)");
}
#endif  // COLDSTART_NCCL
