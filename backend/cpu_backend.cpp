// The CPU reference backend: Gpt2Cpu for the model, the CPU reference of the chosen optimizer, and the
// data-parallel steps of backend.h through a Communicator (processes on one machine).
#include <cmath>
#include <cstring>

#include "backend/backend.h"
#include "backend/gpt2_cpu.h"
#include "common/error.h"
#include "dist/communicator.h"
#include "layers/matmul.h"
#include "optim/grad_norm.h"
#include "optim/partition.h"
#include "optim/rrc.h"

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
        const std::vector<bool> controlled = rrc_controlled(opt, tensors_);
        for (size_t k = 0; k < tensors_.size(); ++k) {
            if (is_linear_layer(tensors_[k].kind)) linear_.push_back(k);
            if (controlled[k]) controlled_.push_back(k);
        }
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
        if (report_.verdict == StepVerdict::taken) step(StepContext{plan.lr, clip_scale(norm, plan.grad_clip), plan.t, plan.rrc_target}, measure);
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
        const bool rrc = measure && measure->with_rrc, control = !controlled_.empty();
        if (rrc || control) before_ = model_.params();  // W_t: the RRC's W, and dW = W_{t+1} - W_t
        if (measure) {
            measure->tensors.assign(tensors_.size(), TensorStepSums{});
            measure->rrc.clear();
        }
        optimizer_->step(params, model_.grads().data(), ctx, {measure ? measure->tensors.data() : nullptr, nullptr});
        if (sharded_) {
            comm_->all_gather(params, shards_);
            // Each process summed over its shard's rows: add them up (the struct is a row of doubles).
            static_assert(sizeof(TensorStepSums) % sizeof(double) == 0, "TensorStepSums holds doubles only");
            if (measure)
                comm_->all_reduce_sum(reinterpret_cast<double*>(measure->tensors.data()),
                                      measure->tensors.size() * sizeof(TensorStepSums) / sizeof(double));
        }
        // Direct RRC control scales the optimizer's step dW of each controlled layer to the target RRC, from this
        // step's own RRC (optim/rrc.h says why).
        if (control)
            for (const RrcSums& s : rrc_sums(controlled_)) {
                const TensorSlice& t = tensors_[s.tensor];
                const double kappa = rrc_step_scale(ctx.rrc_target, s.change_sq, s.output_sq);
                scale_step(params + t.offset, before_.data() + t.offset, t.numel, float(kappa));
            }
        if (rrc) measure->rrc = rrc_sums(linear_);  // of the step taken: after the control
    }

    // ||dW X||^2 and ||W X||^2 of the linear layers `which` (indices of tensors_), over the tokens of every
    // process's last micro-batch.
    std::vector<RrcSums> rrc_sums(const std::vector<size_t>& which) {
        std::vector<RrcSums> sums;
        for (size_t k : which) sums.push_back(layer_rrc_sums(k));
        if (comm_ && comm_->size() > 1) {
            std::vector<double> flat;
            for (const RrcSums& r : sums) flat.insert(flat.end(), {r.change_sq, r.output_sq});
            comm_->all_reduce_sum(flat.data(), flat.size());
            for (size_t i = 0; i < sums.size(); ++i) sums[i] = {sums[i].tensor, flat[2 * i], flat[2 * i + 1]};
        }
        return sums;
    }

    // One layer's sums on this process's last micro-batch, in the form optim/rrc.h picks for its shape.
    RrcSums layer_rrc_sums(size_t k) {
        const TensorSlice& t = tensors_[k];
        const LinearActivations a = model_.linear_activations(t.kind, t.layer);
        const size_t N = size_t(model_.batch_tokens());
        const float* w = before_.data() + t.offset;
        const float* w_new = model_.params().data() + t.offset;
        delta_.resize(t.numel);  // (out, in) dW, the difference of the stored fp32 values
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < t.numel; ++i) delta_[i] = w_new[i] - w[i];
        if (rrc_by_gram(a.in_features, a.out_features)) {
            const size_t in = size_t(a.in_features);
            gram_.assign(in * in, 0.0f);
            cpu::matmul_backward(nullptr, gram_.data(), nullptr, a.inputs, a.inputs, nullptr, N, a.in_features, a.in_features);
            return {k, gram_quadratic(delta_.data(), a), gram_quadratic(w, a)};
        }
        if (!a.kept_output) fail("%s: the RRC by the product needs the layer's kept output", t.name.c_str());
        product_.resize(N * size_t(a.out_features));  // (N, out) X dW^T
        cpu::matmul_forward(product_.data(), a.inputs, delta_.data(), nullptr, N, a.in_features, a.out_features);
        const float* bias = before_.data() + model_.layout().offsets[linear_bias(t.kind)] + size_t(t.layer) * size_t(a.out_features);
        return {k, sum_of_squares(product_.data(), product_.size()), sum_of_squares_without_bias(a.kept_output, bias, N, a.out_features)};
    }

    // ||A X||^2 = <A^T A, G> for A (out, in) and the Gram matrix G = X^T X in gram_.
    double gram_quadratic(const float* A, const LinearActivations& a) {
        const size_t in = size_t(a.in_features);
        weight_gram_.assign(in * in, 0.0f);
        cpu::matmul_backward(nullptr, weight_gram_.data(), nullptr, A, A, nullptr, size_t(a.out_features), a.in_features, a.in_features);
        return dot_product(weight_gram_.data(), gram_.data(), in * in);
    }

    Gpt2Cpu model_;
    int B_, T_;
    std::vector<TensorSlice> tensors_;
    Communicator* comm_;             // nullptr: this process alone
    bool sharded_ = false;           // ZeRO-1 over several processes
    std::vector<size_t> shards_;     // (processes+1) shard offsets into the flat parameter buffer
    bool grads_scattered_ = false;   // the gradient was reduce-scattered: only this shard's part is summed
    std::unique_ptr<Optimizer> optimizer_;
    std::vector<size_t> linear_;      // the tensors whose RRC is measured (is_linear_layer)
    std::vector<size_t> controlled_;  // those under direct RRC control (optim/rrc.h; empty without it)
    std::vector<float> before_;       // (params) W_t of a step that takes the RRC
    std::vector<float> delta_;        // (out, in) one layer's dW
    std::vector<float> gram_;         // (in, in) X^T X of one layer's inputs
    std::vector<float> weight_gram_;  // (in, in) A^T A
    std::vector<float> product_;      // (N, out) X dW^T of a layer that takes the product
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
