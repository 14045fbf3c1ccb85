// The CPU reference backend: Gpt2Cpu for the model, the CPU reference of the chosen optimizer.
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "layers/backend.h"
#include "layers/gpt2_cpu.h"
#include "optim/grad_norm.h"

namespace coldstart {

namespace {

class CpuBackend : public Backend {
public:
    CpuBackend(const GPT2Config& config, int B, int T, const OptimizerConfig& opt)
        : model_(config, B, T), B_(B), T_(T), tensors_(parameter_tensors(config)),
          optimizer_(make_cpu_optimizer(opt, tensors_)) {}

    std::string device_name() const override { return "cpu"; }
    const GPT2Config& config() const override { return model_.config(); }

    void zero_grad() override { model_.zero_grad(); }

    float forward_backward(const int* inputs, const int* targets, float loss_scale) override {
        const float loss = model_.forward(inputs, targets, B_, T_);
        model_.backward(loss_scale);
        return loss;
    }

    float evaluate(const int* inputs, const int* targets) override { return model_.forward(inputs, targets, B_, T_); }

    float grad_norm() override {
        return float(std::sqrt(sum_of_squares(model_.grads().data(), model_.grads().size())));
    }

    void optimizer_step(const StepContext& ctx, StepMeasurement* measure) override {
        float* params = model_.params().data();
        if (!measure) {
            optimizer_->step(params, model_.grads().data(), ctx);
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
        for (RrcSums& r : measure->rrc) {
            const TensorSlice& t = tensors_[r.tensor];
            r.change_sq = model_.linear_output_sq(t.kind, t.layer, update_.data() + t.offset);
        }
    }

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
    Gpt2Cpu model_;
    int B_, T_;
    std::vector<TensorSlice> tensors_;
    std::unique_ptr<Optimizer> optimizer_;
    std::vector<float> update_;  // (params) W_{t+1} - W_t of a measured step, for the RRC
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const GPT2Config& config, int B, int T, const OptimizerConfig& opt) {
    return std::make_unique<CpuBackend>(config, B, T, opt);
}

}  // namespace coldstart
