// The NCCL path on the one GPU a test machine has: a one-rank NCCL communicator (host and device
// collectives) and the CUDA backend that reduces each layer's gradient through it on a stream of its
// own, against the plain backend: the same losses and weights bit for bit (a one-rank sum is the
// identity, so any difference is a race between the streams or a tensor reduced at the wrong time).
#include <doctest/doctest.h>

#ifdef COLDSTART_NCCL
#include <cuda_runtime.h>

#include <vector>

#include "backend/cuda_backend.h"
#include "common/random.h"
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
    comm->all_gather(d.get(), {0, 1000});
    REQUIRE(cudaStreamSynchronize(comm->stream()) == cudaSuccess);
    CHECK(same_bits(d.download(), x));
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
                float loss = 0;
                for (int m = 0; m < accum; ++m) {
                    const size_t b = size_t(s * accum + m) * 2;
                    loss += backend->forward_backward(tokens[b].data(), tokens[b + 1].data(), 1.0f / accum, m == accum - 1);
                }
                const float norm = backend->grad_norm();
                backend->optimizer_step({1e-2f, clip_scale(norm, 1.0f), s + 1});
                losses.push_back(loss);
                losses.push_back(norm);
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

std::vector<double> trainer_losses(const std::string& command, const std::string& out) {
    const auto run = test_util::run_command(command + test_util::shakespeare_flags() +
                                            " --device cuda --precision fp32 -z 0 -e d1 -b 2 -t 16 -d 128 -l 1e-3 -c 0.1 -x 4 "
                                            "-v 2 -m 4 -s 0 --threads 1 -o " + out);
    REQUIRE_MESSAGE(run.exit_code == 0, run.output);
    std::vector<double> losses;
    for (const auto& rec : test_util::read_jsonl(out + "/log.jsonl"))
        if (rec["type"] == "train" || rec["type"] == "val") losses.push_back(rec["loss"].get<double>());
    return losses;
}

}  // namespace

// NCCL refuses two ranks on one GPU, so on hardware this needs two GPUs; on the emulated device each process
// has its own device, and the ranks' collectives go through shared memory.
TEST_CASE("nccl: two GPU processes (gradients reduced during the backward) give one process's losses") {
    int devices = 0;
    REQUIRE(cudaGetDeviceCount(&devices) == cudaSuccess);
#ifndef COLDSTART_EMULATED
    if (devices < 2) {
        MESSAGE("one GPU: two NCCL ranks need two GPUs; not run");
        return;
    }
#endif
    test_util::TempDir dir;
    const std::vector<double> one = trainer_losses(cuda_trainer(), dir / "one");
    const std::vector<double> two = trainer_losses("tools/launch_local.sh 2 " + cuda_trainer(), dir / "two");
    REQUIRE(one.size() == two.size());
    for (size_t i = 0; i < one.size(); ++i) CHECK(two[i] == doctest::Approx(one[i]).epsilon(1e-5));
}
#endif  // COLDSTART_NCCL
