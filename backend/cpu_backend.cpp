// The CPU reference backend: Gpt2Cpu for the model, the CPU reference of the chosen optimizer, and the
// data-parallel steps of backend.h through a Communicator (processes on one machine).
#include <cmath>
#include <cstring>

#include "backend/backend.h"
#include "backend/gpt2_cpu.h"
#include "common/error.h"
#include "dist/communicator.h"
#include "optim/grad_norm.h"
#include "optim/partition.h"

namespace coldstart {

namespace {

class CpuBackend : public Backend {
public:
    CpuBackend(const GPT2Config& config, int B, int T, const OptimizerConfig& opt, Communicator* comm, int zero_stage)
        : model_(config, B, T), B_(B), T_(T), tensors_(parameter_tensors(config)), comm_(comm) {
        const bool many = comm_ && comm_->size() > 1;
        sharded_ = many && zero_stage == 1;
        if (sharded_) shards_ = partition_parameters(opt, tensors_, comm_->size());
        ParameterShard shard;
        if (sharded_) shard = {shards_[size_t(comm_->rank())], shards_[size_t(comm_->rank()) + 1]};
        SumAcrossRanks sum;
        if (sharded_) sum = [this](double* v, size_t n) { comm_->all_reduce_sum(v, n); };
        optimizer_ = make_cpu_optimizer(opt, tensors_, shard, std::move(sum));
    }

    std::string device_name() const override { return "cpu"; }
    const GPT2Config& config() const override { return model_.config(); }

    void zero_grad() override {
        model_.zero_grad();
        grads_scattered_ = false;
        loss_sum_ = 0;
        micro_batches_ = 0;
    }

    void forward_backward(const int* inputs, const int* targets, float loss_scale, bool last_micro_batch) override {
        loss_sum_ += model_.forward(inputs, targets, B_, T_);
        ++micro_batches_;
        model_.backward(loss_scale);
        if (last_micro_batch && comm_ && comm_->size() > 1) {
            std::vector<float>& g = model_.grads();
            if (sharded_) {
                comm_->reduce_scatter_sum(g.data(), shards_);  // each process needs only its shard's sum
                grads_scattered_ = true;
            } else {
                comm_->all_reduce_sum(g.data(), g.size());
            }
        }
    }

    float evaluate(const int* inputs, const int* targets) override { return model_.forward(inputs, targets, B_, T_); }

    double step_loss() override { return loss_sum_ / double(micro_batches_); }

    float grad_norm() override {
        const std::vector<float>& g = model_.grads();
        if (!grads_scattered_) return float(std::sqrt(sum_of_squares(g.data(), g.size())));
        const size_t begin = shards_[size_t(comm_->rank())], end = shards_[size_t(comm_->rank()) + 1];
        double sq = sum_of_squares(g.data() + begin, end - begin);
        comm_->all_reduce_sum(&sq, 1);
        return float(std::sqrt(sq));
    }

    void optimizer_step(const StepPlan& plan, StepMeasurement* measure) override {
        const bool many = comm_ && comm_->size() > 1;
        double loss = loss_sum_;
        if (many) comm_->all_reduce_sum(&loss, 1);
        loss = plan.poison_loss ? double(NAN) : loss / double(micro_batches_ * (many ? comm_->size() : 1));
        const float norm = grad_norm();
        report_ = {loss, norm, step_verdict(plan, loss, norm)};
        if (report_.verdict == StepVerdict::taken) step(StepContext{plan.lr, clip_scale(norm, plan.grad_clip), plan.t}, measure);
    }

    StepReport step_report() override { return report_; }

    void next_token_probs(const int* tokens, int n, std::vector<float>& probs) override {
        // Only the last T tokens fit the model's window.
        const int window = n < T_ ? n : T_;
        model_.forward(tokens + (n - window), nullptr, 1, window);
        const int V = config().vocab_size, Vp = config().padded_vocab_size;
        const float* last = model_.probs() + size_t(window - 1) * size_t(Vp);
        probs.assign(last, last + V);
    }

    void get_parameters(float* host) override {
        std::memcpy(host, model_.params().data(), model_.params().size() * sizeof(float));
    }
    void set_parameters(const float* host) override {
        std::memcpy(model_.params().data(), host, model_.params().size() * sizeof(float));
    }
    Optimizer& optimizer() override { return *optimizer_; }

private:
    // The update itself, once the verdict has taken it.
    void step(const StepContext& ctx, StepMeasurement* measure) {
        float* params = model_.params().data();
        const bool many = comm_ && comm_->size() > 1;
        if (!measure) {
            optimizer_->step(params, model_.grads().data(), ctx);
            if (sharded_) comm_->all_gather(params, shards_);
            return;
        }
        measure->tensors.assign(tensors_.size(), TensorStepSums{});
        measure->rrc.clear();
        if (measure->with_rrc) {  // ||W_t X|| needs the weights before the step
            for (size_t k = 0; k < tensors_.size(); ++k)
                if (is_linear_layer(tensors_[k].kind))
                    measure->rrc.push_back({k, 0.0, model_.linear_output_sq(tensors_[k].kind, tensors_[k].layer, params + tensors_[k].offset)});
            update_.resize(model_.params().size());
        }
        optimizer_->step(params, model_.grads().data(), ctx, {measure->tensors.data(), measure->with_rrc ? update_.data() : nullptr});
        if (sharded_) {
            comm_->all_gather(params, shards_);
            if (measure->with_rrc) comm_->all_gather(update_.data(), shards_);
            // Each process summed over its shard's rows: add them up (the struct is a row of doubles).
            static_assert(sizeof(TensorStepSums) % sizeof(double) == 0, "TensorStepSums holds doubles only");
            comm_->all_reduce_sum(reinterpret_cast<double*>(measure->tensors.data()),
                                  measure->tensors.size() * sizeof(TensorStepSums) / sizeof(double));
        }
        for (RrcSums& r : measure->rrc) {
            const TensorSlice& t = tensors_[r.tensor];
            r.change_sq = model_.linear_output_sq(t.kind, t.layer, update_.data() + t.offset);
        }
        if (many) {  // over the tokens of every process's last micro-batch
            std::vector<double> rrc;
            for (const RrcSums& r : measure->rrc) rrc.insert(rrc.end(), {r.change_sq, r.output_sq});
            comm_->all_reduce_sum(rrc.data(), rrc.size());
            for (size_t i = 0; i < measure->rrc.size(); ++i) measure->rrc[i] = {measure->rrc[i].tensor, rrc[2 * i], rrc[2 * i + 1]};
        }
    }

    Gpt2Cpu model_;
    int B_, T_;
    std::vector<TensorSlice> tensors_;
    Communicator* comm_;             // nullptr: this process alone
    bool sharded_ = false;           // ZeRO-1 over several processes
    std::vector<size_t> shards_;     // (processes+1) shard offsets into the flat parameter buffer
    bool grads_scattered_ = false;   // the gradient was reduce-scattered: only this shard's part is summed
    std::unique_ptr<Optimizer> optimizer_;
    std::vector<float> update_;  // (params) W_{t+1} - W_t of a measured step, for the RRC
    double loss_sum_ = 0;        // the step's micro-batch losses, summed in order (as the training loop did)
    int micro_batches_ = 0;      // since zero_grad()
    StepReport report_;          // of the last optimizer_step
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const GPT2Config& config, int B, int T, const OptimizerConfig& opt,
                                          Communicator* comm, int zero_stage) {
    return std::make_unique<CpuBackend>(config, B, T, opt, comm, zero_stage);
}

}  // namespace coldstart
