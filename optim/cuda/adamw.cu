// One launch for all tensors: every block belongs to one tensor (blocks are dealt out tensor by
// tensor, a table in device memory says where each tensor's blocks start), so the per-tensor settings
// (weight decay for matrices only) cost one binary search per block and no host round trip per tensor.
//
// The arithmetic is the CPU reference's, expression for expression. Both compilers contract a*b+c
// into FMAs where they can (GCC does for -march=native), so GPU and CPU steps agree to an ulp or so,
// not always to the bit; the tests compare them at 1e-7.
#include "optim/cuda/adamw.cuh"

#include <cmath>

#include "common/error.h"
#include "layers/cuda/common.cuh"

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr size_t kPerBlock = size_t(kThreads) * kPerThread;

struct DeviceTensor {
    size_t offset, numel;
    unsigned first_block;
    int is_matrix;
};

struct AdamWScalars {
    float lr, beta1, beta2, eps, weight_decay;
    float step_size;              // lr / (1 - beta1^t), computed in double on the host as on the CPU
    float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
};

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, const DeviceTensor* tensors, int count,
                             const float* grad_scale, AdamWScalars s) {
    int lo = 0, hi = count - 1;  // the last tensor whose first block is <= this block
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (tensors[mid].first_block <= blockIdx.x) lo = mid;
        else hi = mid - 1;
    }
    const DeviceTensor t = tensors[lo];
    const float decay = t.is_matrix ? 1.0f - s.lr * s.weight_decay : 1.0f;
    const float scale = *grad_scale;
    const size_t base = size_t(blockIdx.x - t.first_block) * kPerBlock + threadIdx.x;
    for (int k = 0; k < kPerThread; ++k) {
        const size_t j = base + size_t(k) * kThreads;
        if (j >= t.numel) break;
        const size_t i = t.offset + j;
        const float grad = g[i] * scale;
        const float mi = m[i] * s.beta1 + (1.0f - s.beta1) * grad;
        const float vi = v[i] * s.beta2 + (1.0f - s.beta2) * grad * grad;
        const float denom = sqrtf(vi) / s.bias_correction2_sqrt + s.eps;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - s.step_size * (mi / denom);
    }
}

class AdamWCuda : public CudaOptimizer {
public:
    AdamWCuda(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors, cudaStream_t stream)
        : config_(config), stream_(stream) {
        std::vector<DeviceTensor> table;
        unsigned blocks = 0;
        for (const TensorSlice& t : tensors) {
            table.push_back({t.offset, t.numel, blocks, t.is_matrix ? 1 : 0});
            total_ += t.numel;
            blocks += unsigned(ceil_div(t.numel, kPerBlock));
        }
        blocks_ = blocks;
        count_ = int(table.size());
        // One allocation: m and v (total floats each), then the tensor table and the gradient scale.
        const size_t bytes = 2 * total_ * sizeof(float) + table.size() * sizeof(DeviceTensor) + sizeof(float);
        CUDA_CHECK(cudaMalloc(&memory_, bytes));
        m_ = static_cast<float*>(memory_);
        v_ = m_ + total_;
        tensors_ = reinterpret_cast<DeviceTensor*>(v_ + total_);
        grad_scale_ = reinterpret_cast<float*>(tensors_ + table.size());
        CUDA_CHECK(cudaMemsetAsync(m_, 0, 2 * total_ * sizeof(float), stream_));
        CUDA_CHECK(cudaMemcpyAsync(tensors_, table.data(), table.size() * sizeof(DeviceTensor), cudaMemcpyHostToDevice, stream_));
        const float one = 1.0f;
        CUDA_CHECK(cudaMemcpyAsync(grad_scale_, &one, sizeof(float), cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    ~AdamWCuda() override { cudaFree(memory_); }

    const char* name() const override { return "adamw"; }
    float* grad_scale_device() override { return grad_scale_; }
    size_t state_bytes() const override { return 2 * total_ * sizeof(float); }

    void step(float* params, const float* grads, const StepContext& ctx) override {
        const NvtxRange range("adamw");
        const float b1 = config_.beta1, b2 = config_.beta2;
        const double bias_correction1 = 1.0 - std::pow(double(b1), double(ctx.t));
        AdamWScalars s{ctx.lr, b1, b2, config_.eps, config_.weight_decay, float(double(ctx.lr) / bias_correction1),
                       float(std::sqrt(1.0 - std::pow(double(b2), double(ctx.t))))};
        adamw_kernel<<<blocks_, kThreads, 0, stream_>>>(params, grads, m_, v_, tensors_, count_, grad_scale_, s);
        KERNEL_CHECK("adamw_kernel");
    }

    void save_state(File& f) const override {
        std::vector<float> host(total_);
        for (const float* moment : {m_, v_}) {
            CUDA_CHECK(cudaMemcpyAsync(host.data(), moment, total_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
            CUDA_CHECK(cudaStreamSynchronize(stream_));
            f.write_all(host.data(), total_ * sizeof(float));
        }
    }

    void load_state(File& f) override {
        std::vector<float> host(total_);
        f.read_exact(host.data(), total_ * sizeof(float), "AdamW first moment");
        CUDA_CHECK(cudaMemcpy(m_, host.data(), total_ * sizeof(float), cudaMemcpyHostToDevice));
        f.read_exact(host.data(), total_ * sizeof(float), "AdamW second moment");
        CUDA_CHECK(cudaMemcpy(v_, host.data(), total_ * sizeof(float), cudaMemcpyHostToDevice));
    }

private:
    OptimizerConfig config_;
    cudaStream_t stream_;
    size_t total_ = 0;
    unsigned blocks_ = 0;
    int count_ = 0;
    void* memory_ = nullptr;
    float* m_ = nullptr;               // (total) first moment
    float* v_ = nullptr;               // (total) second moment
    DeviceTensor* tensors_ = nullptr;  // (count) where each tensor is and where its blocks start
    float* grad_scale_ = nullptr;      // (1)
};

}  // namespace

std::unique_ptr<CudaOptimizer> make_cuda_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                                   cudaStream_t stream) {
    if (config.name == "adamw") return std::make_unique<AdamWCuda>(config, tensors, stream);
    fail("--optimizer: unknown optimizer '%s' for the CUDA backend (available: adamw)", config.name.c_str());
}

}  // namespace coldstart::cuda
