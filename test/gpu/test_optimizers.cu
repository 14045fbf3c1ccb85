// The Lion family on the GPU against its CPU reference (optim/lion.cpp), option by option: plain Lion,
// LionA (the l2 rule, with and without the momentum changes), LionAR per row and per tensor, strict and
// smoothed, with centring, row gains, both target angles, the RRC correction with both estimators and
// both inverse bias corrections; the measured-step sums reduced on
// the device (AdamW's too) against the CPU's; the state interchanged with the CPU optimizer; ZeRO-1's
// shards stepping side by side against the unsharded optimizer.
//
// Tolerances: both sides compute in fp32 with double sums, the GPU's in another order (block trees), and
// FMA contraction may differ in the last bit; a sign that rounds the other way (|b1 m + (1-b1) g| near 0)
// moves one element by a step. Parameters after 6 steps: 1e-5 relative; sums: 1e-4 (the adamw test's).
#include <doctest/doctest.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "optim/cuda/cuda_optimizer.cuh"
#include "optim/lion.h"
#include "optim/partition.h"
#include "test/gpu/gpu_test_util.cuh"

using namespace coldstart;
using namespace gpu_test;

namespace {

struct Case {
    std::string what;
    OptimizerConfig config;
};

std::vector<Case> cases() {
    auto lion = [](const char* name) { return test_util::test_optimizer(name); };
    std::vector<Case> out = {{"lion", lion("lion")}, {"liona", lion("liona")}};
    OptimizerConfig c = lion("liona");
    c.beta2 = 0.98f;
    c.beta1 = 0.98f * 0.98f;  // Nesterov
    c.inverse_bias_correction = InverseBiasCorrection::step;
    out.push_back({"liona, b 0.98, Nesterov, inverse bias correction (i)", c});
    out.push_back({"lionar per row: the defaults (smoothed, equilibrium angle)", lion("lionar")});
    c = lion("lionar");
    c.angle_norm = AngleNorm::strict;
    c.target_angle = TargetAngle::lr;
    out.push_back({"lionar per row, strict, angle = lr", c});
    c = lion("lionar");
    c.center = true;
    c.row_gains = true;
    out.push_back({"lionar per row, centred, row gains", c});
    c = lion("lionar");
    c.control = ControlScope::tensor;
    c.center = true;
    c.control_embeddings = true;
    c.angle_norm = AngleNorm::strict;
    out.push_back({"lionar per tensor, strict, centred, embeddings controlled", c});
    c = lion("lionar");
    c.rrc_correction = RrcCorrection::alignment;
    out.push_back({"lionar, RRC correction by alignment", c});
    c = lion("lionar");
    c.rrc_correction = RrcCorrection::norm_ratio;
    c.inverse_bias_correction = InverseBiasCorrection::snr;
    c.row_gains = true;
    out.push_back({"lionar, RRC correction by norm ratio, inverse bias correction (ii), row gains", c});
    c = lion("lionar");
    c.control = ControlScope::tensor;
    c.rrc_correction = RrcCorrection::alignment;
    out.push_back({"lionar per tensor, smoothed, RRC correction", c});
    c = lion("lionar");
    c.beta2 = 0.98f;
    c.beta1 = 0.98f * 0.98f;  // Nesterov
    c.inverse_bias_correction = InverseBiasCorrection::step;
    c.rrc_correction = RrcCorrection::alignment;
    out.push_back({"lionar as paper-lionar-best: b 0.98, Nesterov, inverse bias correction (i), RRC correction", c});
    return out;
}

Floats flat_sums(const TensorStepSums& s) {
    return {float(s.w_sq), float(s.d_sq), float(s.w_dot_d), float(s.g_sq), float(s.g_dot_mprev), float(s.mprev_sq),
            float(s.m_sq), float(s.row_angle_sq), float(s.rows), float(s.snr_scale)};
}

}  // namespace

TEST_CASE("cuda Lion family: every option's steps, measured sums and state equal the CPU reference's; a skipped step changes nothing") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const size_t P = ParamLayout(c).total;
    for (const Case& k : cases()) {
        CAPTURE(k.what);
        Rng rng(17);
        Floats params = random_floats<float>(rng, P, -0.2f, 0.2f);
        Buffer<float> d_params(P), d_grads(P);
        d_params.upload(params);
        LionCpu cpu(k.config, tensors);
        auto gpu = cuda::make_cuda_optimizer(k.config, tensors, 0);
        auto step_both = [&](const StepContext& ctx, const StepOutputs& cpu_out, const StepOutputs& gpu_out) {
            const Floats grads = random_floats<float>(rng, P);
            d_grads.upload(grads);
            const cuda::DeviceStepGate gate{ctx.grad_scale, 0};  // the CUDA optimizers read the clip scale there
            REQUIRE(cudaMemcpy(gpu->gate_device(), &gate, sizeof(gate), cudaMemcpyHostToDevice) == cudaSuccess);
            gpu->step(d_params, d_grads, ctx, gpu_out);
            cpu.step(params.data(), grads.data(), ctx, cpu_out);
        };
        // A step the device's gate skips leaves the weights and every state buffer as they were, at the first
        // step too (no centring, no held norms recorded).
        auto snapshot = [&] {
            Floats all = d_params.download();
            for (size_t b = 0; b < gpu->state_layout().size(); ++b) {
                Floats x(gpu->state_layout()[b].count);
                gpu->read_state(b, x.data());
                all.insert(all.end(), x.begin(), x.end());
            }
            return all;
        };
        auto skipped_step = [&](int t) {
            const Floats before = snapshot();
            d_grads.upload(random_floats<float>(rng, P));
            const cuda::DeviceStepGate gate{0.5f, 1};
            REQUIRE(cudaMemcpy(gpu->gate_device(), &gate, sizeof(gate), cudaMemcpyHostToDevice) == cudaSuccess);
            gpu->step(d_params, d_grads, {1e-2f, 0.5f, t}, {});
            CHECK_MESSAGE(same_bits(snapshot(), before), "a skipped step at t = " << t << " changed the weights or the state");
        };
        skipped_step(1);
        // The first step measured too: the centring of the first step belongs to its update.
        std::vector<TensorStepSums> cpu_sums(tensors.size()), gpu_sums(tensors.size());
        Floats cpu_update(P), gpu_update(P);
        step_both({1e-2f, 0.8f, 1}, {cpu_sums.data(), cpu_update.data()}, {gpu_sums.data(), gpu_update.data()});
        for (int t = 2; t <= 6; ++t) step_both({1e-2f * (1.0f + 0.1f * float(t)), 0.7f + 0.05f * float(t), t}, {}, {});
        skipped_step(7);
        const Floats gpu_params = d_params.download();
        MESSAGE(k.what << ": relative error after 6 steps " << rel(gpu_params, params));
        CHECK(rel(gpu_params, params) < 1e-5);
        CHECK(rel(gpu_update, cpu_update) < 1e-4);
        for (size_t i = 0; i < tensors.size(); ++i)
            CHECK_MESSAGE(rel(flat_sums(gpu_sums[i]), flat_sums(cpu_sums[i])) < 1e-4, tensors[i].name << ": first-step sums differ");
        // A later measured step.
        step_both({1e-2f, 1.0f, 7}, {cpu_sums.data(), nullptr}, {gpu_sums.data(), nullptr});
        for (size_t i = 0; i < tensors.size(); ++i)
            CHECK_MESSAGE(rel(flat_sums(gpu_sums[i]), flat_sums(cpu_sums[i])) < 1e-4, tensors[i].name << ": step-7 sums differ");
        // The state buffers: the same names and sizes, equal values, and a GPU state loads into the CPU.
        const auto layout = cpu.state_layout(), gpu_layout = gpu->state_layout();
        REQUIRE(layout.size() == gpu_layout.size());
        for (size_t b = 0; b < layout.size(); ++b) {
            CAPTURE(layout[b].name);
            CHECK(gpu_layout[b].name == layout[b].name);
            REQUIRE(gpu_layout[b].count == layout[b].count);
            Floats x(layout[b].count), y(layout[b].count);
            cpu.read_state(b, x.data());
            gpu->read_state(b, y.data());
            CHECK(rel(y, x) < 1e-5);
        }
        test_util::TempDir dir;
        {
            File f(dir / "gpu.state", "wb");
            save_optimizer_state(*gpu, f);
            f.close();
        }
        LionCpu loaded(k.config, tensors);
        File f(dir / "gpu.state", "rb");
        CHECK(load_optimizer_state(loaded, f) == f.size());
    }
}

TEST_CASE("cuda optimizers: an unknown optimizer is refused by name") {
    OptimizerConfig c;
    c.name = "sgd";
    CHECK_THROWS_WITH_AS(cuda::make_cuda_optimizer(c, parameter_tensors(test_util::small_model_config()), 0),
                         "--optimizer: unknown optimizer 'sgd' (available: adamw, lion, liona, lionar)", Error);
}

namespace {

// ZeRO-1's ranks as threads that take turns on the one device: a rank runs while it holds the turn and
// gives it up while it waits for the others, so that one thread at a time drives the (emulated) device.
// sum() is what a communicator gives the optimizers: an all-reduce of device values, in rank order.
class TakingTurns {
public:
    explicit TakingTurns(int ranks) : ranks_(ranks), slots_(size_t(ranks)) {}

    // Runs body(rank) on a thread per rank; returns each rank's error ("" if none). A rank that fails
    // releases the others from their waits.
    std::vector<std::string> run(const std::function<void(int)>& body) {
        std::vector<std::string> errors(static_cast<size_t>(ranks_));
        std::vector<std::thread> threads;
        for (int r = 0; r < ranks_; ++r)
            threads.emplace_back([&, r] {
                try {
                    take_turn(r);
                    body(r);
                } catch (const std::exception& e) {
                    errors[size_t(r)] = e.what();
                    std::lock_guard<std::mutex> lock(mu_);
                    broken_ = true;
                }
                std::lock_guard<std::mutex> lock(mu_);
                if (holder_ == r) holder_ = -1;
                cv_.notify_all();
            });
        for (auto& t : threads) t.join();
        return errors;
    }

    void sum(int rank, double* values, size_t n) {
        std::vector<double> host(n);
        check(cudaMemcpy(host.data(), values, n * sizeof(double), cudaMemcpyDeviceToHost));
        {
            std::unique_lock<std::mutex> lock(mu_);
            slots_[size_t(rank)] = host;
            holder_ = -1;
            meet(lock);
            std::fill(host.begin(), host.end(), 0.0);
            for (const auto& slot : slots_)
                for (size_t i = 0; i < n; ++i) host[i] += slot[i];
            meet(lock);  // nobody overwrites a slot before everyone has read it
        }
        take_turn(rank);
        check(cudaMemcpy(values, host.data(), n * sizeof(double), cudaMemcpyHostToDevice));
    }

private:
    static void check(cudaError_t e) {
        if (e != cudaSuccess) throw std::runtime_error(cudaGetErrorString(e));
    }
    void take_turn(int rank) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return holder_ < 0 || broken_; });
        if (broken_) throw std::runtime_error("another rank failed");
        holder_ = rank;
    }
    void meet(std::unique_lock<std::mutex>& lock) {
        const uint64_t generation = generation_;
        if (++arrived_ == ranks_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
            return;
        }
        cv_.notify_all();  // the turn was given up
        cv_.wait(lock, [&] { return generation_ != generation || broken_; });
        if (broken_) throw std::runtime_error("another rank failed");
    }

    int ranks_;
    std::vector<std::vector<double>> slots_;
    std::mutex mu_;
    std::condition_variable cv_;
    int holder_ = -1, arrived_ = 0;
    uint64_t generation_ = 0;
    bool broken_ = false;
};

}  // namespace

// As the CPU suite's test of the CPU optimizers' shards (test/test_distributed.cpp): two shards cut as
// optim/partition.h cuts them (inside h0.fcw, or before it when it is controlled as a whole), each
// stepping its part of the master weights against its part of the gradient, with the per-tensor sums
// (LionA's counts, LionAR's signal estimate) summed across them. Bit for bit the unsharded optimizer's,
// but where the RRC correction adds a tensor's two halves in another order (1e-6); the measured step's
// sums, added over the shards as the backend adds them, 1e-9; the state file written by both shards
// loads into the unsharded optimizer.
TEST_CASE("cuda optimizers, ZeRO-1: shards stepping side by side give the unsharded optimizer's steps, sums and state") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const size_t P = ParamLayout(c).total;
    const int ranks = 2, steps = 2;
    OptimizerConfig rows = test_util::test_optimizer("lionar");
    rows.row_gains = true;
    rows.rrc_correction = RrcCorrection::alignment;
    OptimizerConfig whole_tensors = test_util::test_optimizer("lionar");
    whole_tensors.control = ControlScope::tensor;
    whole_tensors.center = true;
    whole_tensors.control_embeddings = true;
    Rng rng(23);
    const Floats initial = random_floats<float>(rng, P, -0.2f, 0.2f);
    std::vector<std::unique_ptr<Buffer<float>>> grads;
    for (int s = 0; s < steps; ++s) {
        grads.push_back(std::make_unique<Buffer<float>>(P));
        grads.back()->upload(random_floats<float>(rng, P));
    }
    auto context = [](int s) { return StepContext{1e-2f, 0.8f, s + 1}; };
    auto set_scale = [](cuda::CudaOptimizer& o, float scale) {
        const cuda::DeviceStepGate gate{scale, 0};  // the CUDA optimizers read the clip scale there
        if (cudaMemcpy(o.gate_device(), &gate, sizeof(gate), cudaMemcpyHostToDevice) != cudaSuccess)
            throw std::runtime_error("cannot set the gradient scale");
    };
    for (const OptimizerConfig& opt : {test_util::test_optimizer("adamw"), test_util::test_optimizer("liona"), rows, whole_tensors}) {
        CAPTURE(opt.name);
        CAPTURE(opt.control == ControlScope::rows);
        const bool exact = !opt.has_rrc_correction();
        Buffer<float> all(P);
        all.upload(initial);
        auto one = cuda::make_cuda_optimizer(opt, tensors, 0);
        std::vector<TensorStepSums> one_sums(tensors.size());
        for (int s = 0; s < steps; ++s) {
            set_scale(*one, context(s).grad_scale);
            one->step(all, *grads[size_t(s)], context(s), s == steps - 1 ? StepOutputs{one_sums.data(), nullptr} : StepOutputs{});
        }

        const std::vector<size_t> offsets = partition_parameters(opt, tensors, ranks);
        TakingTurns turns(ranks);
        std::vector<std::unique_ptr<cuda::CudaOptimizer>> shards;
        std::vector<std::unique_ptr<Buffer<float>>> masters;
        std::vector<std::vector<TensorStepSums>> sums(ranks, std::vector<TensorStepSums>(tensors.size()));
        for (int r = 0; r < ranks; ++r) {
            const size_t begin = offsets[size_t(r)], end = offsets[size_t(r) + 1];
            shards.push_back(cuda::make_cuda_optimizer(opt, tensors, 0, {begin, end},
                                                       [&turns, r](double* v, size_t n) { turns.sum(r, v, n); }));
            masters.push_back(std::make_unique<Buffer<float>>(end - begin));
            masters.back()->upload(Floats(initial.begin() + long(begin), initial.begin() + long(end)));
        }
        const std::vector<std::string> errors = turns.run([&](int r) {
            for (int s = 0; s < steps; ++s) {
                set_scale(*shards[size_t(r)], context(s).grad_scale);
                const StepOutputs out = s == steps - 1 ? StepOutputs{sums[size_t(r)].data(), nullptr} : StepOutputs{};
                shards[size_t(r)]->step(*masters[size_t(r)], grads[size_t(s)]->get() + offsets[size_t(r)], context(s), out);
            }
        });
        REQUIRE(errors == std::vector<std::string>(size_t(ranks)));
        Floats sharded(P);
        for (int r = 0; r < ranks; ++r) {
            const Floats part = masters[size_t(r)]->download();
            std::copy(part.begin(), part.end(), sharded.begin() + long(offsets[size_t(r)]));
        }
        const Floats expected = all.download();
        const std::string control = !opt.is_angular() ? "" : opt.control == ControlScope::rows ? " per row" : " per tensor";
        MESSAGE(opt.name << control << ": shards against one, relative error " << rel(sharded, expected));
        if (exact) CHECK(same_bits(sharded, expected));
        else CHECK(rel(sharded, expected) < 1e-6);
        // The measured step's sums, added over the shards as the backend adds them.
        constexpr size_t fields = sizeof(TensorStepSums) / sizeof(double);
        for (size_t k = 0; k < tensors.size(); ++k) {
            CAPTURE(tensors[k].name);
            const double* want = reinterpret_cast<const double*>(&one_sums[k]);
            for (size_t f = 0; f < fields; ++f) {
                double added = 0;
                for (int r = 0; r < ranks; ++r) added += reinterpret_cast<const double*>(&sums[size_t(r)][k])[f];
                CHECK(added == doctest::Approx(want[f]).epsilon(1e-9));
            }
        }
        // The shards write one state file together, and the unsharded optimizer reads it.
        test_util::TempDir dir;
        File(dir / "state.bin", "wb").close();
        for (const auto& shard : shards) {
            File f(dir / "state.bin", "r+b");
            save_optimizer_state(*shard, f);
            f.close();
        }
        auto loaded = cuda::make_cuda_optimizer(opt, tensors, 0);
        File f(dir / "state.bin", "rb");
        CHECK(load_optimizer_state(*loaded, f) == f.size());
        const std::vector<StateBuffer> layout = one->state_layout();
        for (size_t b = 0; b < layout.size(); ++b) {
            CAPTURE(layout[b].name);
            Floats read(layout[b].count), want(layout[b].count);
            loaded->read_state(b, read.data());
            one->read_state(b, want.data());
            if (exact) CHECK(same_bits(read, want));
            else CHECK(rel(read, want) < 1e-6);
        }
    }
}
