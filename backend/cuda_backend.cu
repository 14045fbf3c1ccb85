// The CUDA backend: GPT-2's forward and backward as kernels and cuBLASLt products, in the order of the
// CPU model (backend/gpt2_cpu.cpp), which is its oracle. Read forward() and backward() side by side
// with Gpt2Cpu::forward and Gpt2Cpu::backward.
//
// Memory, as llm.c: one allocation for the parameters (the bf16 copy, then the fp32 master weights), one
// for the gradients (fp32), one for the activations and every scratch buffer, carved in a fixed order;
// the optimizer owns one for its state. The plan is printed when the backend is made.
//
// Several processes (data parallel, NCCL): each layer's gradient is summed across them as soon as the
// backward pass has finished it. With ZeRO-1 (-z 1) each process keeps only its shard of the fp32 master
// weights and of the optimizer state (optim/partition.h, the CPU backend's cut), receives only its shard's
// summed gradient (a reduce-scatter), steps it, and the bf16 copy is all-gathered before the next forward.
//
// Differences from the CPU model, each for speed and each with the same result up to rounding:
//   - the residual add and the layernorm after it are one kernel (residual_layernorm_forward);
//   - the classifier writes d(logits) during the forward pass (fused softmax cross-entropy);
//   - attention stores only each row's logsumexp, not the T x T probabilities;
//   - with -r 1 / -r 2 the GELU output / layernorm outputs are kept for one layer only and
//     recomputed in the backward pass (same kernels, same inputs: the same bits as -r 0);
//   - activation gradients overwrite their buffers instead of accumulating into zeroed ones;
//   - bias gradients come with passes that read the same rows anyway: attproj's and fcproj's with the
//     layernorm backward that writes the residual stream's gradient, fc's with the GELU backward.
//
// No host round trip in a training step: the micro-batches' losses are summed on the device, the token
// buckets of the encoder backward are built from the host's copy of the tokens, the pinned staging
// buffers alternate (a buffer is refilled only once the copies from it have run), and the gradient
// norm, the verdict (optim/step_gate.h) and the clip scale are computed on the device, where the
// optimizer's kernels read them. The host waits once per step, in step_report(), for the numbers it logs.
#include "backend/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/error.h"
#ifdef COLDSTART_NCCL
#include "dist/nccl_communicator.cuh"
#endif
#include "common/cuda/common.cuh"
#include "layers/classifier.h"
#include "layers/cuda/attention.cuh"
#include "layers/cuda/attention_mma.cuh"
#include "layers/cuda/attention_cudnn.cuh"
#include "layers/cuda/classifier.cuh"
#include "layers/cuda/encoder.cuh"
#include "layers/cuda/gelu.cuh"
#include "layers/cuda/layernorm.cuh"
#include "layers/cuda/matmul.cuh"
#include "optim/cuda/cuda_optimizer.cuh"
#include "optim/cuda/grad_norm.cuh"
#include "optim/cuda/rrc.cuh"
#include "optim/partition.h"
#include "optim/rrc.h"
#include "optim/update_metrics.h"

namespace coldstart {

bool cuda_backend_has_cudnn() { return cuda::cudnn_attention_available(); }

namespace {

using namespace cuda;

// Hands out 256-byte-aligned pieces of one allocation. Run once without memory to size it.
class Carver {
public:
    explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
    template <typename U>
    U* take(size_t n) {
        used_ = (used_ + 255) / 256 * 256;
        U* p = base_ ? reinterpret_cast<U*>(base_ + used_) : nullptr;
        used_ += n * sizeof(U);
        return p;
    }
    size_t used() const { return used_; }

private:
    char* base_;
    size_t used_ = 0;
};

std::string mib(size_t bytes) { return format("%.1f MiB", double(bytes) / double(1 << 20)); }

template <typename T>
class CudaBackendImpl final : public CudaBackend {
public:
    CudaBackendImpl(const GPT2Config& config, int B, int T_, const OptimizerConfig& opt, const CudaOptions& options)
        : config_(config), layout_(config), tensors_(parameter_tensors(config)), B_(B), T_(T_), options_(options),
          rrc_on_(options.rrc || opt.rrc_target > 0) {
        validate_config(config, "model");
        if (T_ > config.max_seq_len)
            fail("sequence length %d exceeds the model's maximum sequence length %d", T_, config.max_seq_len);
        if (options.recompute < 0 || options.recompute > 2) fail("-r %d: expected 0, 1 or 2", options.recompute);
        if (options.attention == "cudnn" && !cudnn_attention_available())
            fail("--attention cudnn: %s", cudnn_missing_reason());
        if (options.attention == "cudnn" && sizeof(T) != 2)
            fail("--attention cudnn: cuDNN's fused attention needs --precision bf16");
        if (options.gelu_fusion && (4 * config.channels) % 8 != 0)
            fail("--gelu-fusion 1: needs 4C (%d) to be a multiple of 8", 4 * config.channels);
        CUDA_CHECK(cudaSetDevice(options.device));
        cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, options.device));
        device_name_ = prop.name;
        CUDA_CHECK(cudaStreamCreate(&stream_));
        CUDA_CHECK(cudaEventCreateWithFlags(&to_comm_, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&from_comm_, cudaEventDisableTiming));
        for (Staging& st : staging_) CUDA_CHECK(cudaEventCreateWithFlags(&st.copied, cudaEventDisableTiming));
        matmul_ = std::make_unique<Matmul>(stream_);
        shard_processes(opt);

        const std::vector<bool> controlled = rrc_controlled(opt, tensors_);
        for (size_t k = 0; k < tensors_.size(); ++k) {
            rrc_slot_.push_back(is_linear_layer(tensors_[k].kind) ? int(linear_.size()) : -1);
            if (is_linear_layer(tensors_[k].kind)) linear_.push_back(k);
            if (controlled[k]) controlled_.push_back(k);
        }
        // Size everything first, check that it fits, then allocate.
        const size_t P = layout_.total;
        Carver param_sizing(nullptr);
        carve_parameters(param_sizing);
        const size_t param_bytes = param_sizing.used();
        Carver sizing(nullptr);
        carve(sizing);
        // AdamW keeps two floats a parameter of the shard, the Lion family one (and per-row norms, EMAs and,
        // with row gains, a copy of the controlled weights: counted when the optimizer is made).
        Carver rrc_sizing(nullptr);
        if (rrc_on_) carve_rrc(rrc_sizing);
        const size_t rrc_bytes = rrc_sizing.used() + (rrc_on_ ? rrc_parts_bytes() : 0);
        const size_t act_bytes = sizing.used(), grad_bytes = P * sizeof(float);
        const size_t state_floats = opt.name == "adamw" ? 2 : opt.row_gains ? 2 : 1;  // per parameter
        const size_t opt_bytes = state_floats * shard_size() * sizeof(float);
        size_t free_bytes = 0, total_bytes = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        // cuDNN's attention workspace (its deterministic backward's is the size of the B*NH*T*T scores):
        // reserved below, before any step, so that the check counts it and no step allocates.
        const bool cudnn = options.attention == "cudnn";
        const size_t cudnn_bytes = cudnn ? cudnn_attention_workspace_bytes(B, T_, config.channels, config.num_heads) : 0;
        const size_t need = param_bytes + grad_bytes + opt_bytes + act_bytes + cudnn_bytes + rrc_bytes;
        plan_ = format("cuda memory plan on %s (%s free of %s), precision %s, recompute %d, attention %s%s:\n", prop.name,
                       mib(free_bytes).c_str(), mib(total_bytes).c_str(), options.precision.c_str(), options.recompute,
                       options.attention.c_str(),
                       options.attention != "flash" ? "" : tensor_core_attention() ? " (tensor cores)" : " (fp32 SIMT)");
        const char* shard = sharded_ ? " of this rank's shard" : "";
        plan_ += format("  parameters   %12s  fp32 master weights%s\n", mib(param_bytes).c_str(),
                        sizeof(T) == sizeof(float) ? ""
                        : sharded_                 ? " of this rank's shard + bf16 copy of all for the matrix work"
                                                   : " + bf16 copy for the matrix work");
        plan_ += format("  gradients    %12s  fp32\n", mib(grad_bytes).c_str());
        plan_ += format("  optimizer    %12s  %s state (fp32, at most)%s\n", mib(opt_bytes).c_str(), opt.name.c_str(), shard);
        if (sharded_) plan_ += zero_plan_line(state_floats);
        plan_ += format("  activations  %12s  B=%d T=%d, with backward scratch%s\n", mib(act_bytes).c_str(), B, T_,
                        rrc_on_ ? " and each layer's MLP output (for the RRC)" : "");
        if (cudnn) plan_ += format("  cuDNN        %12s  attention workspace\n", mib(cudnn_bytes).c_str());
        if (rrc_on_)
            plan_ += format("  rrc          %12s  the weights before the step (fp32), the update (%s), Gram matrices, sums\n",
                            mib(rrc_bytes).c_str(), sizeof(T) == sizeof(float) ? "fp32" : "bf16");
        plan_ += format("  cuBLASLt     %12s  workspace\n", mib(matmul_->workspace_bytes()).c_str());
        plan_ += format("  total        %12s\n", mib(need + matmul_->workspace_bytes()).c_str());
        if (need > free_bytes)
            fail("the run needs %s of GPU memory but %s are free: try a smaller -b, or -r 2 (recompute)\n%s", mib(need).c_str(),
                 mib(free_bytes).c_str(), plan_.c_str());

        if (cudnn) cudnn_attention_reserve(B, T_, config.channels, config.num_heads);
        param_memory_ = device_alloc(param_bytes, "parameters");
        Carver param_carver(param_memory_.get());
        carve_parameters(param_carver);
        grad_memory_ = device_alloc(grad_bytes, "gradients");
        grads_ = static_cast<float*>(grad_memory_.get());
        act_memory_ = device_alloc(act_bytes, "activations");
        Carver carver(act_memory_.get());
        carve(carver);
        // Activations start as NaN (all bytes 0xFF): a kernel that reads what no kernel wrote gives a
        // NaN loss, which the tests see, instead of silently reading zeros.
        CUDA_CHECK(cudaMemsetAsync(act_memory_.get(), 0xFF, act_bytes, stream_));
        const size_t BT = size_t(B) * T_;
        host_memory_ = pinned_alloc(sizeof(StepReport) + sizeof(double) + size_t(config.padded_vocab_size) * sizeof(T),
                                    "host read-back buffers");
        h_report_ = static_cast<StepReport*>(host_memory_.get());
        h_double_ = reinterpret_cast<double*>(h_report_ + 1);
        h_row_ = reinterpret_cast<T*>(h_double_ + 1);
        const size_t staged_ints = 2 * BT + 3 * BT + 1;  // tokens, targets, buckets
        staging_memory_ = pinned_alloc(2 * staged_ints * sizeof(int), "host staging buffers");
        for (int k = 0; k < 2; ++k) {
            Staging& st = staging_[k];
            st.tokens = static_cast<int*>(staging_memory_.get()) + size_t(k) * staged_ints;
            st.targets = st.tokens + BT;
            st.buckets = st.targets + BT;
        }
        SumAcrossRanks sum;  // LionAR's and LionA's per-tensor sums, over the ranks that share tensors
        if (sharded_) sum = [this](double* values, size_t n) { sum_across_ranks(values, n); };
        optimizer_ = make_cuda_optimizer(opt, tensors_, stream_, {shard_begin(), shard_end()}, std::move(sum));
        if (rrc_on_) allocate_rrc();
        CUDA_CHECK(cudaMemsetAsync(grads_, 0, grad_bytes, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        std::fputs(plan_.c_str(), stdout);
    }

    ~CudaBackendImpl() override {
        if (stream_) cudaStreamSynchronize(stream_);
        optimizer_.reset();
        matmul_.reset();
        param_memory_.reset();
        grad_memory_.reset();
        act_memory_.reset();
        host_memory_.reset();
        rrc_sums_.reset();
        rrc_memory_.reset();
        h_rrc_memory_.reset();
        staging_memory_.reset();
        for (Staging& st : staging_)
            if (st.copied) cudaEventDestroy(st.copied);
        if (to_comm_) cudaEventDestroy(to_comm_);
        if (from_comm_) cudaEventDestroy(from_comm_);
        if (stream_) cudaStreamDestroy(stream_);
    }

    std::string device_name() const override { return device_name_; }
    const GPT2Config& config() const override { return config_; }
    Optimizer& optimizer() override { return *optimizer_; }
    std::string memory_plan() const override { return plan_; }

    void zero_grad() override {
        CUDA_CHECK(cudaMemsetAsync(grads_, 0, layout_.total * sizeof(float), stream_));
        CUDA_CHECK(cudaMemsetAsync(a_.loss_sum, 0, sizeof(double), stream_));
        micro_batches_ = 0;
        grads_scattered_ = false;
    }

    void forward_backward(const int* inputs, const int* targets, float loss_scale, bool last_micro_batch) override {
        forward(inputs, targets, B_, T_, Mode::train, loss_scale / float(size_t(B_) * T_));
        add_mean_loss(a_.loss_sum, a_.losses, B_ * T_, stream_);
        ++micro_batches_;
        backward(last_micro_batch && options_.comm);
        grads_scattered_ = last_micro_batch && sharded_;
    }

    float evaluate(const int* inputs, const int* targets) override {
        const NvtxRange range("evaluate");
        forward(inputs, targets, B_, T_, Mode::evaluate, 0.0f);
        CUDA_CHECK(cudaMemsetAsync(a_.eval_loss, 0, sizeof(double), stream_));
        add_mean_loss(a_.eval_loss, a_.losses, B_ * T_, stream_);
        return float(read_double(a_.eval_loss));
    }

    double step_loss() override { return read_double(a_.loss_sum) / double(micro_batches_); }

    float grad_norm() override {
        const NvtxRange range("grad norm");
        gradient_squares();
        return float(std::sqrt(read_double(a_.norm_result)));
    }

    // The norm, the verdict and the clip scale on the device, then the optimizer's launches, which read
    // them there: nothing waits for the host. A measured step (--metrics-every) also gets the per-tensor sums,
    // and with the RRC each linear layer's ||dW X||^2 and ||W X||^2 (rrc_pass); direct RRC control
    // (--rrc-target) first scales each controlled layer's step to the target, from the RRC of this step's own
    // update (one more product per layer; optim/rrc.h says why). A skipped step leaves dW = 0, which the
    // control's scale leaves as it is (rrc_step_scale is 1 for an empty step). With ZeRO-1 the optimizer steps
    // this rank's shard, and a measured step's sums (over the shard's rows) are added over the ranks. Until
    // the weights are published at the end, the weights the forward pass used stay readable (weight_before).
    void optimizer_step(const StepPlan& plan, StepMeasurement* measure) override {
        const NvtxRange range("optimizer");
        const bool rrc = measure && measure->with_rrc, control = !controlled_.empty();
        if (rrc && !rrc_on_)
            fail("the RRC needs a CUDA backend made with CudaOptions::rrc (the trainer sets it for --metrics-rrc 1)");
        if (options_.comm) sum_across_ranks(a_.loss_sum, 1);  // the step's loss over all processes
        gradient_squares();
        gate_step(optimizer_->gate_device(), a_.report, a_.norm_result, a_.loss_sum, double(micro_batches_) * processes(), plan,
                  stream_);
        StepOutputs out;
        if (measure) {
            measure->tensors.assign(tensors_.size(), TensorStepSums{});
            measure->rrc.clear();
            out.sums = measure->tensors.data();
        }
        if (rrc || control) keep_weights_before();
        // The CUDA optimizers read the clip scale from the gate, not from the context.
        optimizer_->step(master_, grads_ + shard_begin(), StepContext{plan.lr, 1.0f, plan.t}, out);
        if (control) {
            rrc_pass(controlled_);
            for (size_t k : controlled_) scale_controlled_step(k, plan.rrc_target);
        }
        if (rrc) rrc_pass(linear_);  // of the step taken: after the control
        publish_weights();
        if (measure && sharded_) sum_step_sums(measure->tensors);
        if (rrc) download_rrc(*measure);
    }

    StepReport step_report() override {
        CUDA_CHECK(cudaMemcpyAsync(h_report_, a_.report, sizeof(StepReport), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        return *h_report_;
    }

    void next_token_probs(const int* tokens, int n, std::vector<float>& probs) override {
        const NvtxRange range("sample");
        const int window = n < T_ ? n : T_;  // only the last T tokens fit the model's window
        forward(tokens + (n - window), nullptr, 1, window, Mode::sample, 0.0f);
        const int V = config_.vocab_size, Vp = config_.padded_vocab_size;
        CUDA_CHECK(cudaMemcpyAsync(h_row_, a_.logits, size_t(Vp) * sizeof(T), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        std::vector<float> row(Vp);
        for (int v = 0; v < Vp; ++v) row[v] = to_float(h_row_[v]);
        cpu::classifier_forward(nullptr, row.data(), nullptr, 1, V, Vp);  // the CPU reference's softmax
        probs.assign(row.begin(), row.begin() + V);
    }

    // fp32: the weights the kernels read are the master weights, complete on every rank. bf16 with
    // ZeRO-1: each rank holds its shard of them, and the host gathers the others' (every rank calls it).
    void get_parameters(float* host) override {
        if constexpr (sizeof(T) == sizeof(float))
            CUDA_CHECK(cudaMemcpyAsync(host, params_, layout_.total * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        else
            CUDA_CHECK(cudaMemcpyAsync(host + shard_begin(), master_, shard_size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        if (sizeof(T) != sizeof(float) && sharded_) gather_on_host(host);
    }

    // Every rank takes its shard of host into its master weights; bf16 with ZeRO-1 then gathers the bf16
    // copy (every rank calls it, with the same values).
    void set_parameters(const float* host) override {
        if constexpr (sizeof(T) == sizeof(float)) {
            CUDA_CHECK(cudaMemcpyAsync(params_, host, layout_.total * sizeof(float), cudaMemcpyHostToDevice, stream_));
        } else {
            CUDA_CHECK(cudaMemcpyAsync(master_, host + shard_begin(), shard_size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
            publish_weights();
        }
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    void get_gradients(float* host) override {
        CUDA_CHECK(cudaMemcpyAsync(host, grads_, layout_.total * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    void get_logits(float* host) override {
        const size_t n = size_t(last_B_) * last_T_ * config_.padded_vocab_size;
        std::vector<T> staged(n);
        CUDA_CHECK(cudaMemcpyAsync(staged.data(), a_.logits, n * sizeof(T), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        for (size_t i = 0; i < n; ++i) host[i] = to_float(staged[i]);
    }

private:
    enum class Mode { train, evaluate, sample };

    // Device buffers, carved from one allocation for the largest micro-batch (B_, T_). Layer-stacked
    // buffers hold layer l at l * B_*T_ * width, whatever the current micro-batch.
    struct Activations {
        T* encoded;      // (B,T,C) token + position embedding
        T* ln1;          // (L,B,T,C); (B,T,C) with -r 2
        float* ln1_mean; // (L,B,T)
        float* ln1_rstd; // (L,B,T)
        T* qkv;          // (L,B,T,3C)
        T* atty;         // (L,B,T,C) attention output before the projection
        float* lse;      // (L,B,NH,T) logsumexp of each attention row; layers lse_stride() apart
        T* residual2;    // (L,B,T,C) residual after attention
        T* ln2;          // (L,B,T,C); (B,T,C) with -r 2
        float* ln2_mean; // (L,B,T)
        float* ln2_rstd; // (L,B,T)
        T* fch;          // (L,B,T,4C) fc output before GELU
        T* fch_gelu;     // (L,B,T,4C); (B,T,4C) with -r 1 or 2
        T* residual3;    // (L,B,T,C) the layer's output
        T* lnf;          // (B,T,C)
        float* lnf_mean; // (B,T)
        float* lnf_rstd; // (B,T)
        T* logits;       // (B,T,Vp) logits, then d(logits) in place
        float* losses;   // (B,T)
        T* scratch;      // (B,T,C) attention projection output before the residual add (and the MLP's without the RRC)
        T* mlp_out;      // (L,B,T,C) with the RRC: each layer's MLP output before the residual add (fcprojw's, kept)
        // backward
        T* dresidual;    // (B,T,C) gradient flowing down the residual stream
        T* dln;          // (B,T,C) gradient of a layernorm output
        T* datty;        // (B,T,C)
        T* dqkv;         // (B,T,3C)
        T* dfch;         // (B,T,4C) d(fch_gelu), then d(fch) in place
        float* att_d;    // (B,NH,T) attention backward: dout . out per row
        float* reduce;   // column-reduction partials (layernorm and bias gradients)
        double* norm_parts;   // (kSumOfSquaresParts)
        double* norm_result;  // (1) the gradient's sum of squares
        double* loss_sum;     // (1) the step's micro-batch mean losses, summed (over all processes in optimizer_step)
        double* eval_loss;    // (1) evaluate()'s mean loss
        StepReport* report;   // (1) the last optimizer_step's loss, norm and verdict
        int* tokens;     // (B,T)
        int* targets;    // (B,T)
        int* buckets;    // (3*B*T+1) the encoder backward's tokens, starts, positions
    };

    // The weights the kernels read (all of them), then the fp32 master weights of the shard (bf16; in
    // fp32 the weights the kernels read are the master weights).
    void carve_parameters(Carver& c) {
        params_ = c.take<T>(layout_.total);
        if constexpr (sizeof(T) == sizeof(float)) master_ = params_ ? reinterpret_cast<float*>(params_) + shard_begin() : nullptr;
        else master_ = c.take<float>(shard_size());
    }

    void carve(Carver& c) {
        const size_t L = config_.num_layers, C = config_.channels, NH = config_.num_heads, Vp = config_.padded_vocab_size;
        const size_t BT = size_t(B_) * T_, BTC = layer_stride(C);
        const size_t ln_layers = options_.recompute >= 2 ? 1 : L, gelu_layers = options_.recompute >= 1 ? 1 : L;
        a_.encoded = c.take<T>(BTC);
        a_.ln1 = c.take<T>(ln_layers * BTC);
        a_.ln1_mean = c.take<float>(L * BT);
        a_.ln1_rstd = c.take<float>(L * BT);
        a_.qkv = c.take<T>(L * BTC * 3);
        a_.atty = c.take<T>(L * BTC);
        a_.lse = c.take<float>(L * lse_stride());
        a_.residual2 = c.take<T>(L * BTC);
        a_.ln2 = c.take<T>(ln_layers * BTC);
        a_.ln2_mean = c.take<float>(L * BT);
        a_.ln2_rstd = c.take<float>(L * BT);
        a_.fch = c.take<T>(L * BTC * 4);
        a_.fch_gelu = c.take<T>(gelu_layers * BTC * 4);
        a_.residual3 = c.take<T>(L * BTC);
        a_.lnf = c.take<T>(BTC);
        a_.lnf_mean = c.take<float>(BT);
        a_.lnf_rstd = c.take<float>(BT);
        a_.logits = c.take<T>(BT * Vp);
        a_.losses = c.take<float>(BT);
        a_.scratch = c.take<T>(BTC);
        a_.mlp_out = rrc_on_ ? c.take<T>(L * BTC) : nullptr;
        a_.dresidual = c.take<T>(BTC);
        a_.dln = c.take<T>(BTC);
        a_.datty = c.take<T>(BTC);
        a_.dqkv = c.take<T>(BTC * 3);
        a_.dfch = c.take<T>(BTC * 4);
        a_.att_d = c.take<float>(BT * NH);
        a_.reduce = c.take<float>(std::max({layernorm_scratch_floats(int(BT), int(C)), bias_backward_scratch_floats(int(BT), int(4 * C)),
                                            gelu_backward_scratch_floats(int(BT), int(4 * C))}));
        a_.norm_parts = c.take<double>(kSumOfSquaresParts);
        a_.norm_result = c.take<double>(1);
        a_.loss_sum = c.take<double>(1);
        a_.eval_loss = c.take<double>(1);
        a_.report = c.take<StepReport>(1);
        a_.tokens = c.take<int>(BT);
        a_.targets = c.take<int>(BT);
        a_.buckets = c.take<int>(3 * BT + 1);
    }

    // Per-layer views. Layers are 256 bytes apart at least (a stride rounded up to 128 elements): every
    // activation then starts 256-byte aligned whatever the shapes and -r, so cuBLASLt is told the same
    // alignment, picks the same algorithm and gives the same bits for -r 0, 1 and 2.
    size_t layer_stride(size_t width) const { return (size_t(B_) * T_ * width + 127) / 128 * 128; }
    size_t BTC() const { return layer_stride(config_.channels); }
    // The logsumexp rows of a layer start 256-byte aligned too: cuDNN's graph declares its stats tensor
    // 16-byte aligned, which B*T*NH floats per layer would break for odd layers when B*T*NH % 4 != 0.
    size_t lse_stride() const { return layer_stride(config_.num_heads); }
    size_t BT() const { return size_t(B_) * T_; }
    T* ln1(int l) const { return options_.recompute >= 2 ? a_.ln1 : a_.ln1 + l * BTC(); }
    T* ln2(int l) const { return options_.recompute >= 2 ? a_.ln2 : a_.ln2 + l * BTC(); }
    T* fch_gelu(int l) const { return options_.recompute >= 1 ? a_.fch_gelu : a_.fch_gelu + l * BTC() * 4; }
    T* mlp_out(int l) const { return a_.mlp_out ? a_.mlp_out + l * BTC() : a_.scratch; }
    const T* residual_in(int l) const { return l == 0 ? a_.encoded : a_.residual3 + (l - 1) * BTC(); }
    const T* param(ParamTensor k, size_t layer_offset = 0) const { return params_ + layout_.offsets[k] + layer_offset; }
    float* grad(ParamTensor k, size_t layer_offset = 0) const { return grads_ + layout_.offsets[k] + layer_offset; }

    // Copies a micro-batch's tokens (and targets, and for training the encoder backward's buckets, built
    // here from the host's tokens) to the device through the next of the two pinned staging buffers. The
    // buffer was last filled two micro-batches ago: waiting for its copies to have run costs nothing in a
    // steady stream, and it is what makes refilling it safe without a synchronisation per micro-batch.
    void upload_tokens(const int* inputs, const int* targets, size_t n, bool with_buckets) {
        const int V = config_.vocab_size;
        for (size_t i = 0; i < n; ++i) {
            if (inputs[i] < 0 || inputs[i] >= V) fail("input token %d at position %zu is outside the vocabulary [0, %d)", inputs[i], i, V);
            if (targets && (targets[i] < 0 || targets[i] >= V))
                fail("target %d at position %zu is outside the vocabulary [0, %d)", targets[i], i, V);
        }
        Staging& st = staging_[next_staging_];
        next_staging_ = 1 - next_staging_;
        CUDA_CHECK(cudaEventSynchronize(st.copied));
        std::memcpy(st.tokens, inputs, n * sizeof(int));
        CUDA_CHECK(cudaMemcpyAsync(a_.tokens, st.tokens, n * sizeof(int), cudaMemcpyHostToDevice, stream_));
        if (targets) {
            std::memcpy(st.targets, targets, n * sizeof(int));
            CUDA_CHECK(cudaMemcpyAsync(a_.targets, st.targets, n * sizeof(int), cudaMemcpyHostToDevice, stream_));
        }
        if (with_buckets) {
            buckets_.build(inputs, n, config_.padded_vocab_size);
            const size_t U = buckets_.tokens.size();
            std::memcpy(st.buckets, buckets_.tokens.data(), U * sizeof(int));
            std::memcpy(st.buckets + U, buckets_.starts.data(), (U + 1) * sizeof(int));
            std::memcpy(st.buckets + 2 * U + 1, buckets_.positions.data(), n * sizeof(int));
            CUDA_CHECK(cudaMemcpyAsync(a_.buckets, st.buckets, (2 * U + 1 + n) * sizeof(int), cudaMemcpyHostToDevice, stream_));
        }
        CUDA_CHECK(cudaEventRecord(st.copied, stream_));
    }

    // A device double read now: a round trip, for the values that are read outside a training step.
    double read_double(const double* device) {
        CUDA_CHECK(cudaMemcpyAsync(h_double_, device, sizeof(double), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        return *h_double_;
    }

    // --attention flash: the tensor-core kernels for bf16 at head size 64 or 128, else the fp32 SIMT kernel.
    bool tensor_core_attention() const {
        return sizeof(T) == 2 && attention_mma_supports(config_.channels, config_.num_heads);
    }

    // cuDNN builds a plan per shape, and the sampler's length changes every token: it takes our kernel.
    void attention_forward_layer(T* out, float* lse, const T* qkv, int B, int T_now, Mode mode) {
        if constexpr (sizeof(T) == 2) {
            if (options_.attention == "cudnn" && mode != Mode::sample) {
                cudnn_attention_forward(out, lse, qkv, B, T_now, config_.channels, config_.num_heads, stream_);
                return;
            }
            if (tensor_core_attention()) {
                attention_mma_forward(out, lse, qkv, B, T_now, config_.channels, config_.num_heads, stream_);
                return;
            }
        }
        attention_forward(out, lse, qkv, B, T_now, config_.channels, config_.num_heads, stream_);
    }

    void attention_backward_layer(T* dqkv, const T* dout, const T* qkv, const T* out, const float* lse, int B, int T_now) {
        const int C = config_.channels, NH = config_.num_heads;
        if constexpr (sizeof(T) == 2) {
            if (options_.attention == "cudnn") {
                cudnn_attention_backward(dqkv, dout, qkv, out, lse, B, T_now, C, NH, stream_);
                return;
            }
            if (tensor_core_attention()) {
                attention_mma_backward(dqkv, dout, qkv, out, lse, a_.att_d, B, T_now, C, NH, stream_);
                return;
            }
        }
        attention_backward(dqkv, dout, qkv, out, lse, a_.att_d, B, T_now, C, NH, stream_);
    }

    // Runs the model on (B, T_now) tokens. train: also writes d(logits) with dloss per position;
    // evaluate: losses only; sample: logits of the last position only (in logits' first row). Nothing
    // here waits for the device.
    void forward(const int* inputs, const int* targets, int B, int T_now, Mode mode, float dloss) {
        const NvtxRange range("forward");
        const int C = config_.channels, L = config_.num_layers, V = config_.vocab_size, Vp = config_.padded_vocab_size;
        const int N = B * T_now;  // positions
        upload_tokens(inputs, targets, size_t(N), mode == Mode::train);
        last_B_ = B;
        last_T_ = T_now;
        encoder_forward(a_.encoded, a_.tokens, param(WTE), param(WPE), B, T_now, C, stream_);
        layernorm_forward(ln1(0), a_.ln1_mean, a_.ln1_rstd, a_.encoded, param(LN1W), param(LN1B), N, C, stream_);
        for (int l = 0; l < L; ++l) {
            const NvtxRange layer_range("layer forward", l);
            const size_t lC = size_t(l) * C, lCC = lC * C;
            const T* residual = residual_in(l);
            T* qkv = a_.qkv + l * BTC() * 3;
            T* atty = a_.atty + l * BTC();
            T* residual2 = a_.residual2 + l * BTC();
            T* fch = a_.fch + l * BTC() * 4;
            T* residual3 = a_.residual3 + l * BTC();
            matmul_->forward(qkv, ln1(l), param(QKVW, 3 * lCC), param(QKVB, 3 * lC), N, C, 3 * C);
            attention_forward_layer(atty, a_.lse + l * lse_stride(), qkv, B, T_now, mode);
            matmul_->forward(a_.scratch, atty, param(ATTPROJW, lCC), param(ATTPROJB, lC), N, C, C);
            residual_layernorm_forward(residual2, ln2(l), a_.ln2_mean + l * BT(), a_.ln2_rstd + l * BT(), residual, a_.scratch,
                                       param(LN2W, lC), param(LN2B, lC), N, C, stream_);
            if (options_.gelu_fusion) {
                matmul_->forward(fch_gelu(l), ln2(l), param(FCW, 4 * lCC), param(FCB, 4 * lC), N, C, 4 * C, fch);
            } else {
                matmul_->forward(fch, ln2(l), param(FCW, 4 * lCC), param(FCB, 4 * lC), N, C, 4 * C);
                gelu_forward(fch_gelu(l), fch, size_t(N) * 4 * C, stream_);
            }
            matmul_->forward(mlp_out(l), fch_gelu(l), param(FCPROJW, 4 * lCC), param(FCPROJB, lC), N, 4 * C, C);
            // The next layernorm (the next layer's first, or the final one) is fused with this add.
            const bool last = l == L - 1;
            T* next_ln = last ? a_.lnf : ln1(l + 1);
            float* next_mean = last ? a_.lnf_mean : a_.ln1_mean + (l + 1) * BT();
            float* next_rstd = last ? a_.lnf_rstd : a_.ln1_rstd + (l + 1) * BT();
            const T* next_w = last ? param(LNFW) : param(LN1W, lC + C);
            const T* next_b = last ? param(LNFB) : param(LN1B, lC + C);
            residual_layernorm_forward(residual3, next_ln, next_mean, next_rstd, residual2, mlp_out(l), next_w, next_b, N, C,
                                       stream_);
        }
        const NvtxRange classifier_range("classifier");
        if (mode == Mode::sample) {  // only the last position's next token is wanted
            matmul_->forward(a_.logits, a_.lnf + size_t(N - 1) * C, param(WTE), static_cast<const T*>(nullptr), 1, C, Vp);
            return;
        }
        matmul_->forward(a_.logits, a_.lnf, param(WTE), static_cast<const T*>(nullptr), N, C, Vp);  // lm head tied to wte
        classifier_forward(a_.losses, a_.logits, a_.targets, dloss, size_t(N), V, Vp, mode == Mode::train, stream_);
    }

    // With reduce (the step's last micro-batch, several processes), each tensor's gradient is summed
    // across the processes as soon as it is final, on the communicator's stream.
    void backward(bool reduce) {
        const NvtxRange range("backward");
        const int B = last_B_, T_now = last_T_;
        const int C = config_.channels, L = config_.num_layers, Vp = config_.padded_vocab_size;
        const int N = B * T_now;
        // d(logits) is already in logits (the fused classifier wrote it).
        matmul_->backward_input(a_.dln, a_.logits, param(WTE), N, C, Vp);
        matmul_->backward_weight(grad(WTE), a_.logits, a_.lnf, N, C, Vp);
        // The stream's gradient that this writes, d(residual3) of the last layer, is its fcproj bias's too.
        layernorm_backward(a_.dresidual, grad(LNFW), grad(LNFB), grad(FCPROJB, size_t(L - 1) * C), a_.dln,
                           a_.residual3 + (L - 1) * BTC(), param(LNFW), a_.lnf_mean, a_.lnf_rstd, N, C, false, a_.reduce, stream_);
        if (reduce) reduce_gradients({LNFW, LNFB}, -1);
        for (int l = L - 1; l >= 0; --l) {
            const NvtxRange layer_range("layer backward", l);
            const size_t lC = size_t(l) * C, lCC = lC * C;
            const T* residual = residual_in(l);
            const T* fch = a_.fch + l * BTC() * 4;
            const T* residual2 = a_.residual2 + l * BTC();
            // dresidual holds d(residual3); residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))).
            if (options_.recompute >= 2)
                layernorm_forward(ln2(l), a_.ln2_mean + l * BT(), a_.ln2_rstd + l * BT(), residual2, param(LN2W, lC), param(LN2B, lC),
                                  N, C, stream_);
            if (options_.recompute >= 1) recompute_gelu(l, N);
            matmul_->backward_input(a_.dfch, a_.dresidual, param(FCPROJW, 4 * lCC), N, 4 * C, C,
                                    options_.gelu_fusion ? fch : nullptr);
            matmul_->backward_weight(grad(FCPROJW, 4 * lCC), a_.dresidual, fch_gelu(l), N, 4 * C, C);
            if (options_.gelu_fusion) bias_backward(grad(FCB, 4 * lC), a_.dfch, N, 4 * C, a_.reduce, stream_);
            else gelu_backward_bias(a_.dfch, grad(FCB, 4 * lC), fch, N, 4 * C, a_.reduce, stream_);
            matmul_->backward_input(a_.dln, a_.dfch, param(FCW, 4 * lCC), N, C, 4 * C);
            matmul_->backward_weight(grad(FCW, 4 * lCC), a_.dfch, ln2(l), N, C, 4 * C);
            // Adding the layernorm path turns d(residual3) into d(residual2) in place: attproj's bias gradient.
            layernorm_backward(a_.dresidual, grad(LN2W, lC), grad(LN2B, lC), grad(ATTPROJB, lC), a_.dln, residual2, param(LN2W, lC),
                               a_.ln2_mean + l * BT(), a_.ln2_rstd + l * BT(), N, C, true, a_.reduce, stream_);
            // residual2 = residual + attproj(attention(qkv(ln1(residual)))).
            const T* atty = a_.atty + l * BTC();
            matmul_->backward_input(a_.datty, a_.dresidual, param(ATTPROJW, lCC), N, C, C);
            matmul_->backward_weight(grad(ATTPROJW, lCC), a_.dresidual, atty, N, C, C);
            const T* qkv = a_.qkv + l * BTC() * 3;
            const float* lse = a_.lse + l * lse_stride();
            attention_backward_layer(a_.dqkv, a_.datty, qkv, atty, lse, B, T_now);
            if (options_.recompute >= 2)
                layernorm_forward(ln1(l), a_.ln1_mean + l * BT(), a_.ln1_rstd + l * BT(), residual, param(LN1W, lC), param(LN1B, lC), N,
                                  C, stream_);
            matmul_->backward_input(a_.dln, a_.dqkv, param(QKVW, 3 * lCC), N, C, 3 * C);
            matmul_->backward_weight(grad(QKVW, 3 * lCC), a_.dqkv, ln1(l), N, C, 3 * C);
            bias_backward(grad(QKVB, 3 * lC), a_.dqkv, N, 3 * C, a_.reduce, stream_);
            // d(residual) is d(residual3) of the layer below: its fcproj bias's gradient.
            layernorm_backward(a_.dresidual, grad(LN1W, lC), grad(LN1B, lC), l > 0 ? grad(FCPROJB, lC - C) : nullptr, a_.dln,
                               residual, param(LN1W, lC), a_.ln1_mean + l * BT(), a_.ln1_rstd + l * BT(), N, C, true, a_.reduce,
                               stream_);
            if (reduce) reduce_gradients({LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB}, l);
        }
        encoder_backward(grad(WTE), grad(WPE), a_.dresidual, a_.buckets, int(buckets_.tokens.size()), B, T_now, C, stream_);
        if (reduce) {
            reduce_gradients({WTE, WPE}, -1);
            compute_waits_for_comm();  // whatever comes next (the norm, the step) sees the summed gradient
        }
    }

    // GELU(fc) of layer l again, exactly as the forward made it, for -r 1 and 2. With -ge 1 the forward took it
    // from cuBLASLt's epilogue, from the fp32 product before rounding and with cuBLASLt's own GELU, which our
    // kernel on the stored pre-activation cannot reproduce: so the fc product is redone with the same epilogue
    // (the same inputs and alignments: the same algorithm and bits; it rewrites fch with what fch holds).
    void recompute_gelu(int l, int N) {
        const int C = config_.channels;
        const size_t lC = size_t(l) * C, lCC = lC * C;
        T* fch = a_.fch + l * BTC() * 4;
        if (options_.gelu_fusion)
            matmul_->forward(fch_gelu(l), ln2(l), param(FCW, 4 * lCC), param(FCB, 4 * lC), N, C, 4 * C, fch);
        else
            gelu_forward(fch_gelu(l), fch, size_t(N) * 4 * C, stream_);
    }

    // ---- the RRC (--metrics-rrc 1) and direct RRC control (--rrc-target) ----

    // The RRC's buffers, carved from one allocation: the weights before the step (fp32: every weight, which the
    // kernels read from the master weights themselves; bf16: this rank's shard of the master weights, the bf16
    // copy keeping the rest until the step publishes), the update dW of every weight rounded to T for the
    // products (with ZeRO-1 each rank computes its shard's and they are gathered), and two (in, in) Gram matrices.
    void carve_rrc(Carver& c) {
        size_t gram_in = 0;
        for (size_t k : linear_)
            if (rrc_by_gram(tensors_[k].cols, tensors_[k].rows)) gram_in = std::max(gram_in, size_t(tensors_[k].cols));
        before_ = c.take<float>(sizeof(T) == sizeof(float) ? layout_.total : shard_size());
        delta_ = c.take<T>(layout_.total);
        gram_ = c.take<float>(gram_in * gram_in);
        weight_gram_ = c.take<float>(gram_in * gram_in);
    }

    // Two segments of partial sums per linear layer (change, output): a Gram form's block sums, or a product's
    // one sum per token.
    std::vector<unsigned> rrc_segment_counts() const {
        std::vector<unsigned> counts;
        for (size_t k : linear_) {
            const unsigned n = rrc_by_gram(tensors_[k].cols, tensors_[k].rows) ? unsigned(kFrobeniusParts) : unsigned(BT());
            counts.insert(counts.end(), {n, n});
        }
        return counts;
    }
    size_t rrc_parts_bytes() const {  // RrcSumsDevice's: the partial sums, the results and their offsets
        const std::vector<unsigned> counts = rrc_segment_counts();
        size_t parts = 0;
        for (unsigned c : counts) parts += c;
        return (parts + 2 * counts.size() + 1) * sizeof(double);
    }

    void allocate_rrc() {
        Carver sizing(nullptr);
        carve_rrc(sizing);
        rrc_memory_ = device_alloc(sizing.used(), "the RRC's buffers");
        Carver carver(rrc_memory_.get());
        carve_rrc(carver);
        rrc_sums_ = std::make_unique<RrcSumsDevice>(rrc_segment_counts(), stream_);
        h_rrc_memory_ = pinned_alloc(rrc_sums_->results() * sizeof(double), "the RRC's sums on the host");
        h_rrc_ = static_cast<double*>(h_rrc_memory_.get());
    }

    // A weight as the forward pass read it, during optimizer_step after the optimizer has moved the master
    // weights: the bf16 copy, refreshed only when the step publishes the weights at its end; in fp32, where the
    // kernels read the master weights themselves, the copy taken before the step.
    const T* weight_before(size_t offset) const {
        if constexpr (sizeof(T) == sizeof(float)) return before_ + offset;
        else return params_ + offset;
    }
    const T* weight_before(ParamTensor k, size_t layer_offset) const { return weight_before(layout_.offsets[k] + layer_offset); }
    const float* master_before() const { return sizeof(T) == sizeof(float) ? before_ + shard_begin() : before_; }  // (shard)

    // fp32: every weight (the step moves its shard of them in place, the publication the others); bf16: the
    // shard's master weights (the bf16 copy keeps them all until the publication).
    void keep_weights_before() {
        if constexpr (sizeof(T) == sizeof(float))
            CUDA_CHECK(cudaMemcpyAsync(before_, params_, layout_.total * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
        else
            CUDA_CHECK(cudaMemcpyAsync(before_, master_, shard_size() * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
    }

    // delta_ = the step's update of every weight, in T: each rank its shard's, gathered with ZeRO-1 (in T's
    // precision, as the weights are: the update is rounded once, relative to itself).
    void gather_update() {
        difference(delta_ + shard_begin(), master_, master_before(), shard_size(), stream_);
        all_gather_shards(delta_);
    }

    // Direct RRC control of tensor k: this rank's part of it (its shard's rows) moves kappa times as far,
    // kappa from the layer's sums (the same on every rank).
    void scale_controlled_step(size_t k, double target) {
        const TensorSlice& t = tensors_[k];
        const size_t first = std::max(t.offset, shard_begin()), last = std::min(t.offset + t.numel, shard_end());
        if (first >= last) return;
        scale_step(master_ + (first - shard_begin()), master_before() + (first - shard_begin()), last - first,
                   rrc_sums_->sums() + 2 * rrc_slot_[k], target, stream_);
    }

    // ||dW X||^2 and ||W X||^2 of the linear layers `which` (indices of tensors_) into their results of
    // rrc_sums_, summed over the tokens of every process's last micro-batch.
    void rrc_pass(const std::vector<size_t>& which) {
        const NvtxRange range("rrc");
        gather_update();
        for (size_t k : which) layer_rrc(k);
        rrc_sums_->reduce(stream_);
        if (options_.comm) sum_across_ranks(rrc_sums_->sums(), rrc_sums_->results());
    }

    // One layer on this process's last micro-batch, in the form optim/rrc.h picks for its shape: by the Gram
    // matrix G = X^T X of its inputs, ||A X||^2 = <A^T A, G> (fp32 products of the T inputs, summed in double);
    // or (fcprojw) by the product X dW^T over the tokens, and ||W X|| from the MLP output that the forward pass
    // kept with its bias: rounded once to T there (in bf16 2^-8 relative per element, which moves a norm over
    // many elements far less), the bias subtracted in fp32.
    void layer_rrc(size_t k) {
        const TensorSlice& t = tensors_[k];
        const int N = last_B_ * last_T_, in = t.cols, out = t.rows;
        double* change = rrc_sums_->segment(2 * size_t(rrc_slot_[k]));
        double* output = rrc_sums_->segment(2 * size_t(rrc_slot_[k]) + 1);
        const T* x = layer_input(t.kind, t.layer);
        const T* delta = delta_ + t.offset;
        if (rrc_by_gram(in, out)) {
            CUDA_CHECK(cudaMemsetAsync(gram_, 0, size_t(in) * in * sizeof(float), stream_));
            matmul_->backward_weight(gram_, x, x, N, in, in);  // += X^T X
            gram_form(change, delta, out, in);
            gram_form(output, weight_before(t.offset), out, in);
            return;
        }
        if (t.kind != FCPROJW) fail("%s: the RRC by the product needs the layer's kept output, which only fcprojw has", t.name.c_str());
        T* product = a_.dfch;  // (N, out), out < in <= 4C: the backward's scratch, free until the next forward
        matmul_->forward(product, x, delta, static_cast<const T*>(nullptr), N, in, out);
        row_square_sums(change, product, static_cast<const T*>(nullptr), N, out, stream_);
        row_square_sums(output, mlp_out(t.layer), weight_before(FCPROJB, size_t(t.layer) * out), N, out, stream_);
    }

    // The block sums of <A^T A, G> for A (rows, in) and the Gram matrix in gram_.
    void gram_form(double* parts, const T* A, int rows, int in) {
        CUDA_CHECK(cudaMemsetAsync(weight_gram_, 0, size_t(in) * in * sizeof(float), stream_));
        matmul_->backward_weight(weight_gram_, A, A, rows, in, in);  // += A^T A
        frobenius_parts(parts, weight_gram_, gram_, size_t(in) * in, stream_);
    }

    // The inputs X of a linear layer as its product in the forward pass read them (in T). All are kept with
    // -r 0. With -r 2 the layernorm outputs (qkvw's, fcw's inputs) and with -r 1 or 2 the GELU output (fcprojw's)
    // are recomputed here as the backward pass recomputes them: the same kernels on the same kept values and
    // weights (weight_before), the same bits. With -ge 1 the forward took the GELU from cuBLASLt's epilogue, on
    // the fp32 pre-activation; here our GELU kernel runs on the kept pre-activation (rounded to T) rather than a
    // second fc product: in bf16 an element can differ by one rounding (2^-8), in fp32 by the last bits of tanh.
    const T* layer_input(ParamTensor kind, int l) {
        const int N = last_B_ * last_T_, C = config_.channels;
        const size_t lC = size_t(l) * C;
        switch (kind) {
            case QKVW:
                if (options_.recompute >= 2)
                    layernorm_forward(ln1(l), a_.ln1_mean + l * BT(), a_.ln1_rstd + l * BT(), residual_in(l), weight_before(LN1W, lC),
                                      weight_before(LN1B, lC), N, C, stream_);
                return ln1(l);
            case ATTPROJW: return a_.atty + l * BTC();
            case FCW:
                if (options_.recompute >= 2)
                    layernorm_forward(ln2(l), a_.ln2_mean + l * BT(), a_.ln2_rstd + l * BT(), a_.residual2 + l * BTC(),
                                      weight_before(LN2W, lC), weight_before(LN2B, lC), N, C, stream_);
                return ln2(l);
            case FCPROJW:
                if (options_.recompute >= 1) gelu_forward(fch_gelu(l), a_.fch + l * BTC() * 4, size_t(N) * 4 * C, stream_);
                return fch_gelu(l);
            case WTE: return a_.lnf;  // the tied lm head's input: the final layernorm's output
            default: fail("%s is not the weight of a linear layer", kParamTensorNames[kind]);
        }
    }

    // The measured step's one copy of the RRC's sums (two per linear layer) to the host.
    void download_rrc(StepMeasurement& measure) {
        CUDA_CHECK(cudaMemcpyAsync(h_rrc_, rrc_sums_->sums(), rrc_sums_->results() * sizeof(double), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        for (size_t j = 0; j < linear_.size(); ++j) measure.rrc.push_back({linear_[j], h_rrc_[2 * j], h_rrc_[2 * j + 1]});
    }

    // Sums the gradients of `kinds` (of `layer`, or the whole tensor for -1) across the processes, once
    // the backend's stream has computed them; the backward pass goes on meanwhile. With ZeRO-1 each
    // tensor's piece is reduce-scattered: every rank receives the sums of the part that falls in its
    // shard (a piece may straddle two shards; shards are cut between rows, not between layers).
    void reduce_gradients(std::initializer_list<ParamTensor> kinds, int layer) {
#ifdef COLDSTART_NCCL
        comm_waits_for_compute();
        options_.comm->begin_group();
        for (ParamTensor k : kinds) {
            const size_t per_layer = layer < 0 ? layout_.sizes[k] : layout_.sizes[k] / size_t(config_.num_layers);
            const size_t offset = layout_.offsets[k] + (layer < 0 ? 0 : size_t(layer) * per_layer);
            if (sharded_) options_.comm->reduce_scatter_sum(grads_, offset, offset + per_layer, shards_);
            else options_.comm->all_reduce_sum(grads_ + offset, per_layer);
        }
        options_.comm->end_group();
#else
        fail("several processes on GPUs need a build with NCCL (%zu tensors of layer %d)", kinds.size(), layer);
#endif
    }

    // The gradient's sum of squares into a_.norm_result, on the device: after ZeRO-1's reduce-scatter a rank
    // holds the summed gradient of its shard only, so each sums its shard's squares (in a fixed order) and
    // one reduction adds the ranks' sums.
    void gradient_squares() {
        if (grads_scattered_) {
            sum_of_squares(a_.norm_result, grads_ + shard_begin(), shard_size(), a_.norm_parts, stream_);
            sum_across_ranks(a_.norm_result, 1);
        } else {
            sum_of_squares(a_.norm_result, grads_, layout_.total, a_.norm_parts, stream_);
        }
    }

    int processes() const {
#ifdef COLDSTART_NCCL
        return options_.comm ? options_.comm->size() : 1;
#else
        return 1;  // several processes need NCCL (reduce_gradients says so)
#endif
    }

    cudaStream_t comm_stream() const {
#ifdef COLDSTART_NCCL
        return options_.comm->stream();
#else
        fail("several processes on GPUs need a build with NCCL");
#endif
    }

    // The two streams hand work to each other through events: the communicator's stream waits for what
    // the backend's has issued so far, or the backend's for the collectives issued so far.
    void comm_waits_for_compute() {
        CUDA_CHECK(cudaEventRecord(to_comm_, stream_));
        CUDA_CHECK(cudaStreamWaitEvent(comm_stream(), to_comm_, 0));
    }
    void compute_waits_for_comm() {
        CUDA_CHECK(cudaEventRecord(from_comm_, comm_stream()));
        CUDA_CHECK(cudaStreamWaitEvent(stream_, from_comm_, 0));
    }

    // ZeRO-1 (-z 1 with several processes): the shards of optim/partition.h, as the CPU backend cuts them.
    // Otherwise one shard of everything: the same code steps all parameters.
    void shard_processes(const OptimizerConfig& opt) {
        shards_ = {0, layout_.total};
        rank_ = 0;
#ifdef COLDSTART_NCCL
        if (!options_.comm || options_.comm->size() == 1 || options_.zero_stage != 1) return;
        shards_ = partition_parameters(opt, tensors_, options_.comm->size());
        rank_ = options_.comm->rank();
        sharded_ = true;
#endif
    }
    size_t shard_begin() const { return shards_[size_t(rank_)]; }
    size_t shard_end() const { return shards_[size_t(rank_) + 1]; }
    size_t shard_size() const { return shard_end() - shard_begin(); }

    // The memory plan's line for ZeRO-1: what this rank holds, and what it saves against -z 0 (its master
    // weights and optimizer state are the shard's; in fp32 the master weights are the weights every rank reads).
    std::string zero_plan_line(size_t state_floats) const {
        const size_t P = layout_.total, sharded_floats = state_floats + (sizeof(T) == sizeof(float) ? 0 : 1);
        const size_t saved = (P - shard_size()) * sharded_floats * sizeof(float);
        return format("  ZeRO-1       rank %d of %zu holds parameters [%zu, %zu) (%.1f%%): %s 1/%zu of -z 0's, %s less\n", rank_,
                      shards_.size() - 1, shard_begin(), shard_end(), 100.0 * double(shard_size()) / double(P),
                      sizeof(T) == sizeof(float) ? "optimizer state" : "optimizer state and master weights", shards_.size() - 1,
                      mib(saved).c_str());
    }

    // Sums device values (doubles) over the ranks, in the order of the backend's stream.
    void sum_across_ranks(double* values, size_t n) {
#ifdef COLDSTART_NCCL
        comm_waits_for_compute();
        options_.comm->all_reduce_sum(values, n);
        compute_waits_for_comm();
#else
        fail("several processes on GPUs need a build with NCCL (%zu values to sum)", n);
#endif
    }

    // A measured step's per-tensor sums (host memory): each rank summed over its shard's rows.
    void sum_step_sums(std::vector<TensorStepSums>& sums) {
        static_assert(sizeof(TensorStepSums) % sizeof(double) == 0, "TensorStepSums holds doubles only");
#ifdef COLDSTART_NCCL
        options_.comm->all_reduce_sum(reinterpret_cast<double*>(sums.data()), sums.size() * sizeof(TensorStepSums) / sizeof(double));
#endif
    }

    // The weights the kernels read, complete on every rank before the next forward: each rank rounds its
    // shard of the fp32 master weights into the bf16 copy (in fp32 they are that copy), and with ZeRO-1
    // the shards are all-gathered, in the bf16 copy's precision (half of fp32's bytes).
    void publish_weights() {
        if constexpr (sizeof(T) != sizeof(float))
            if (shard_size() > 0) convert_floats(params_ + shard_begin(), master_, shard_size(), stream_);
        all_gather_shards(params_);
    }

    // With ZeRO-1: every rank's shard of a (parameters) buffer of T to every rank, once the compute stream
    // has written this rank's; the compute stream then waits for it.
    void all_gather_shards(T* buffer) {
        if (!sharded_) return;
#ifdef COLDSTART_NCCL
        comm_waits_for_compute();
        options_.comm->all_gather(buffer, sizeof(T), shards_);
        compute_waits_for_comm();
#endif
    }

    // The fp32 master weights of the other shards into host (this rank's part is there already).
    void gather_on_host(float* host) {
#ifdef COLDSTART_NCCL
        options_.comm->all_gather(host, shards_);
#endif
    }

    GPT2Config config_;
    ParamLayout layout_;
    std::vector<TensorSlice> tensors_;
    int B_, T_;
    CudaOptions options_;
    std::string device_name_, plan_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<Matmul> matmul_;
    std::unique_ptr<CudaOptimizer> optimizer_;
    cudaEvent_t to_comm_ = nullptr;    // recorded on stream_ for the communicator's stream to wait for
    cudaEvent_t from_comm_ = nullptr;  // recorded on the communicator's stream for stream_ to wait for
    std::vector<size_t> shards_;       // (ranks+1) ZeRO-1's shards of the flat parameter buffer; {0, P}: one
    int rank_ = 0;                     // this process's shard
    bool sharded_ = false;             // ZeRO-1 over several processes
    bool grads_scattered_ = false;     // the step's gradient was reduce-scattered: only this shard's part is summed
    DeviceMemory param_memory_, grad_memory_, act_memory_;
    PinnedMemory host_memory_;
    T* params_ = nullptr;      // (P) what the kernels read: the bf16 copy, or the fp32 master weights themselves
    float* master_ = nullptr;  // (shard) fp32 master weights of [shard_begin(), shard_end()), llm.c order; in fp32 a view into params_
    float* grads_ = nullptr;   // (P) fp32
    Activations a_{};
    // Pinned host memory for one micro-batch's uploads; two alternate (upload_tokens).
    struct Staging {
        int* tokens = nullptr;   // (B,T)
        int* targets = nullptr;  // (B,T)
        int* buckets = nullptr;  // (3*B*T+1) the encoder backward's tokens, starts, positions
        cudaEvent_t copied = nullptr;  // recorded after the copies from this buffer
    };
    PinnedMemory staging_memory_;
    Staging staging_[2];
    int next_staging_ = 0;
    // pinned host read-back
    StepReport* h_report_ = nullptr;  // (1)
    double* h_double_ = nullptr;      // (1) read_double's
    T* h_row_ = nullptr;              // (Vp) one row of logits for sampling
    TokenBuckets buckets_;            // of the last micro-batch uploaded for training
    int micro_batches_ = 0;           // since zero_grad()
    int last_B_ = 0, last_T_ = 0;  // the micro-batch of the last forward
    // the RRC and direct RRC control
    bool rrc_on_;                          // keep and allocate what they need (CudaOptions::rrc, or direct control)
    std::vector<size_t> linear_;           // the tensors whose RRC is measured (is_linear_layer), in order
    std::vector<size_t> controlled_;       // those under direct RRC control (optim/rrc.h; empty without it)
    std::vector<int> rrc_slot_;            // (tensors) a linear tensor's index in linear_, else -1
    DeviceMemory rrc_memory_;
    float* before_ = nullptr;              // (P in fp32, shard in bf16) the weights before a step that takes the RRC
    T* delta_ = nullptr;                   // (P) the step's update dW, rounded to T
    float* gram_ = nullptr;                // (in, in) X^T X of one layer's inputs
    float* weight_gram_ = nullptr;         // (in, in) A^T A, A = dW or W
    std::unique_ptr<RrcSumsDevice> rrc_sums_;  // 2 results per linear layer: ||dW X||^2, ||W X||^2
    PinnedMemory h_rrc_memory_;
    double* h_rrc_ = nullptr;              // (2 * linear layers) pinned copy of rrc_sums_'s results
};

}  // namespace

std::unique_ptr<CudaBackend> make_cuda_backend(const GPT2Config& config, int B, int T, const OptimizerConfig& opt,
                                               const CudaOptions& options) {
    if (options.precision == "fp32") return std::make_unique<CudaBackendImpl<float>>(config, B, T, opt, options);
    if (options.precision == "bf16") return std::make_unique<CudaBackendImpl<cuda::bf16>>(config, B, T, opt, options);
    fail("--precision %s: expected bf16 or fp32", options.precision.c_str());
}

}  // namespace coldstart
