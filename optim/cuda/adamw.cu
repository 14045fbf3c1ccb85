// AdamW on the GPU: the math of optim/adamw.cpp (PyTorch's torch.optim.AdamW, with or without momentum
// bias correction, weight decay on the tensors tensor_roles() gives it: matrices only).
//
// An ordinary step is one launch for all tensors: every block belongs to one tensor (blocks are dealt out
// tensor by tensor, a table in device memory says where each tensor's blocks start and whether it takes
// weight decay), so the per-tensor settings cost one binary search per block; each thread moves 4 floats
// of w, g, m and v per access (128-bit loads and stores; a tensor whose offset is not a multiple of 4, or
// misaligned buffers, take one element at a time). A measured step runs the
// same update one block per row instead, so that each block also leaves its row's sums (step_sums.cuh).
// With ZeRO-1 the tables hold each tensor's rows in the shard; AdamW needs nothing from the other shards.
//
// The arithmetic is the CPU reference's, expression for expression. Both compilers contract a*b+c
// into FMAs where they can (GCC does for -march=native), so GPU and CPU steps agree to an ulp or so,
// not always to the bit; the tests compare them at 1e-7.
#include <algorithm>
#include <cmath>

#include "common/cuda/common.cuh"
#include "common/error.h"
#include "optim/cuda/cuda_optimizer.cuh"
#include "optim/cuda/step_sums.cuh"

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 4;  // floats per thread and access: one 128-bit load of each of w, g, m and v
constexpr int kPerThread = 4;
constexpr size_t kPerBlock = size_t(kThreads) * kVec * kPerThread;

struct DeviceTensor {
    size_t offset, numel;  // the rows the shard holds: where they start (from the shard's start), their elements
    unsigned first_block;
    int decay;   // tensor_roles(): takes decoupled weight decay
    int packed;  // offset is a multiple of kVec: its chunks are 16-byte aligned when the buffers are
};

struct AdamWScalars {
    float lr, beta1, beta2, eps, weight_decay;
    float step_size;              // lr / (1 - beta1^t) (lr without bias correction), in double on the host as on the CPU
    float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
};

// One element's update, the CPU reference's arithmetic expression for expression.
__device__ inline void adamw_update(float& w, float& m, float& v, float grad, float decay, const AdamWScalars& s) {
    m = m * s.beta1 + (1.0f - s.beta1) * grad;
    v = v * s.beta2 + (1.0f - s.beta2) * grad * grad;
    const float denom = sqrtf(v) / s.bias_correction2_sqrt + s.eps;
    w = w * decay - s.step_size * (m / denom);
}

// One element in place; returns the old values for a measured step's sums.
struct AdamWElement {
    float grad, m_prev, w_old;
};
__device__ inline AdamWElement adamw_element(float* w, const float* g, float* m, float* v, size_t i, float scale,
                                             float decay, const AdamWScalars& s) {
    const AdamWElement old{g[i] * scale, m[i], w[i]};
    adamw_update(w[i], m[i], v[i], old.grad, decay, s);
    return old;
}

// kVec elements from i with one 128-bit access per buffer.
__device__ inline void adamw_chunk(float* w, const float* g, float* m, float* v, size_t i, float scale, float decay,
                                   const AdamWScalars& s) {
    Vec<float, kVec> wv = load_vec<kVec>(w + i), mv = load_vec<kVec>(m + i), vv = load_vec<kVec>(v + i);
    const Vec<float, kVec> gv = load_vec<kVec>(g + i);
    for (int k = 0; k < kVec; ++k) adamw_update(wv.v[k], mv.v[k], vv.v[k], gv.v[k] * scale, decay, s);
    store_vec(w + i, wv);
    store_vec(m + i, mv);
    store_vec(v + i, vv);
}

// aligned: w, g, m and v are 16-byte aligned, so a packed tensor's chunks are too.
__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, const DeviceTensor* tensors, int count,
                             const DeviceStepGate* gate, AdamWScalars s, bool aligned) {
    if (gate->skip) return;
    const DeviceTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &DeviceTensor::first_block)];
    const float decay = t.decay ? 1.0f - s.lr * s.weight_decay : 1.0f;
    const float scale = gate->grad_scale;
    const size_t base = size_t(blockIdx.x - t.first_block) * kPerBlock;
    for (int k = 0; k < kPerThread; ++k) {
        const size_t j = base + (size_t(k) * kThreads + threadIdx.x) * kVec;
        if (j >= t.numel) break;
        if (aligned && t.packed && j + kVec <= t.numel) {
            adamw_chunk(w, g, m, v, t.offset + j, scale, decay, s);
        } else {
            for (size_t e = j; e < t.numel && e < j + kVec; ++e) adamw_element(w, g, m, v, t.offset + e, scale, decay, s);
        }
    }
}

// A measured step: one block per weight row of every tensor; the same update, and the row's sums.
__global__ void adamw_rows_kernel(float* w, const float* g, float* m, float* v, const TensorRows* rows_table,
                                  const DeviceTensor* tensors, int count, const DeviceStepGate* gate, AdamWScalars s,
                                  RowSumsDevice* row_sums, float* update) {
    __shared__ double shared[32];
    if (gate->skip) return;
    const int k = last_at_or_below(rows_table, count, blockIdx.x, &TensorRows::first);
    const TensorRows t = rows_table[k];
    const float decay = tensors[k].decay ? 1.0f - s.lr * s.weight_decay : 1.0f;
    const float scale = gate->grad_scale;
    const size_t row = t.offset + size_t(blockIdx.x - t.first) * size_t(t.cols);
    ThreadRowSums sums;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x) {
        const size_t i = row + size_t(j);
        const AdamWElement old = adamw_element(w, g, m, v, i, scale, decay, s);
        sums.add_weights(old.w_old, w[i]);
        sums.add_moments(old.grad, old.m_prev, m[i]);
        if (update) update[i] = w[i] - old.w_old;
    }
    store_block_row_sums(sums, row_sums + blockIdx.x, shared);
}

class AdamWCuda : public CudaOptimizer {
public:
    AdamWCuda(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors, const ParameterShard& shard, cudaStream_t stream)
        : config_(config), tensors_(tensors), stream_(stream), sums_(tensors, shard, {}, stream) {
        const std::vector<TensorRole> roles = tensor_roles(config, tensors);
        total_ = total_parameters(tensors);
        begin_ = std::min(shard.begin, total_);
        held_ = std::min(shard.end, total_) - begin_;
        // Every tensor has an entry, a tensor the shard holds no rows of an empty one, so that the table's
        // index is the tensor's, as in the measured-step sums' table.
        std::vector<DeviceTensor> table;
        unsigned blocks = 0;
        for (size_t k = 0; k < tensors.size(); ++k) {
            const TensorSlice& t = tensors[k];
            const RowRange held = rows_in_shard(t, shard);
            const size_t cols = t.numel / size_t(t.rows), numel = (held.last - held.first) * cols;
            const size_t offset = held.empty() ? 0 : t.offset + held.first * cols - begin_;
            table.push_back({offset, numel, blocks, roles[k].decay ? 1 : 0, offset % kVec == 0});
            blocks += unsigned(ceil_div(numel, kPerBlock));
        }
        blocks_ = blocks;
        count_ = int(table.size());
        // One allocation: m and v (the shard's floats each, v 16-byte aligned too), then the tensor table and
        // the gate.
        const size_t m_floats = (held_ + kVec - 1) / kVec * kVec;
        memory_ = device_alloc((m_floats + held_) * sizeof(float) + table.size() * sizeof(DeviceTensor) + sizeof(DeviceStepGate),
                               "optimizer state");
        m_ = static_cast<float*>(memory_.get());
        v_ = m_ + m_floats;
        tensors_device_ = reinterpret_cast<DeviceTensor*>(v_ + held_);
        gate_ = reinterpret_cast<DeviceStepGate*>(tensors_device_ + table.size());
        CUDA_CHECK(cudaMemsetAsync(m_, 0, (m_floats + held_) * sizeof(float), stream_));
        CUDA_CHECK(cudaMemcpyAsync(tensors_device_, table.data(), table.size() * sizeof(DeviceTensor), cudaMemcpyHostToDevice, stream_));
        const DeviceStepGate take{1.0f, 0};
        CUDA_CHECK(cudaMemcpyAsync(gate_, &take, sizeof(take), cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    const OptimizerConfig& config() const override { return config_; }
    DeviceStepGate* gate_device() override { return gate_; }
    size_t state_bytes() const override { return 2 * held_ * sizeof(float); }

    void step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out) override {
        const NvtxRange range("adamw");
        const float b1 = config_.beta1, b2 = config_.beta2;
        const double bias_correction1 = config_.bias_correction ? 1.0 - std::pow(double(b1), double(ctx.t)) : 1.0;
        const AdamWScalars s{ctx.lr, b1, b2, config_.eps, config_.weight_decay, float(double(ctx.lr) / bias_correction1),
                             float(std::sqrt(1.0 - std::pow(double(b2), double(ctx.t))))};
        if (!out.sums && !out.update) {
            if (blocks_ == 0) return;  // a shard of nothing (more ranks than rows to share)
            const bool aligned = aligned16(params) && aligned16(grads) && aligned16(m_) && aligned16(v_);
            adamw_kernel<<<blocks_, kThreads, 0, stream_>>>(params, grads, m_, v_, tensors_device_, count_, gate_, s, aligned);
            KERNEL_CHECK("adamw_kernel");
            return;
        }
        float* update = out.update ? update_buffer() : nullptr;
        if (sums_.total_rows() > 0) {
            adamw_rows_kernel<<<sums_.total_rows(), kThreads, 0, stream_>>>(params, grads, m_, v_, sums_.table(), tensors_device_,
                                                                             count_, gate_, s, sums_.rows(), update);
            KERNEL_CHECK("adamw_rows_kernel");
        }
        if (update)
            CUDA_CHECK(cudaMemcpyAsync(out.update + begin_, update, held_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        if (out.sums) sums_.reduce_and_download(nullptr, out.sums, stream_);
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    std::vector<StateBuffer> state_layout() const override {
        return {{"adamw.m", total_, begin_, begin_ + held_}, {"adamw.v", total_, begin_, begin_ + held_}};
    }
    void read_state(size_t index, float* host) const override {
        CUDA_CHECK(cudaMemcpyAsync(host, index == 0 ? m_ : v_, held_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    void write_state(size_t index, const float* host) override {
        CUDA_CHECK(cudaMemcpyAsync(index == 0 ? m_ : v_, host, held_ * sizeof(float), cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

private:
    float* update_buffer() {  // (held) W_{t+1} - W_t of a measured step; allocated on first use
        if (!update_memory_) update_memory_ = device_alloc(held_ * sizeof(float), "the measured step's update");
        return static_cast<float*>(update_memory_.get());
    }

    OptimizerConfig config_;
    std::vector<TensorSlice> tensors_;
    cudaStream_t stream_;
    StepSumsDevice sums_;
    size_t total_ = 0;  // all parameters
    size_t begin_ = 0;  // the shard: [begin_, begin_ + held_) of the flat parameter buffer
    size_t held_ = 0;
    unsigned blocks_ = 0;
    int count_ = 0;
    DeviceMemory memory_;
    DeviceMemory update_memory_;
    float* m_ = nullptr;                      // (held) first moment of the shard's parameters
    float* v_ = nullptr;                      // (held) second moment
    DeviceTensor* tensors_device_ = nullptr;  // (count) where each tensor is, where its blocks start, its decay
    DeviceStepGate* gate_ = nullptr;          // (1)
};

}  // namespace

std::unique_ptr<CudaOptimizer> make_adamw_cuda(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                               cudaStream_t stream, const ParameterShard& shard) {
    return std::make_unique<AdamWCuda>(config, tensors, shard, stream);
}

}  // namespace coldstart::cuda
