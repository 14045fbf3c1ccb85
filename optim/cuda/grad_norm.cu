// The sum of squares runs over all ~10^8 gradients once per step: memory-bound, so a fixed grid of
// 1024 blocks streams the buffer 16 bytes per thread and load, and each thread keeps a double partial
// (exact enough that the order barely matters, and the order is fixed anyway). The conversion to bf16
// reads 8 floats and writes one 16-byte pack per thread.
#include "optim/cuda/grad_norm.cuh"

#include "common/cuda/common.cuh"

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 256;

// W = 4 (aligned x): chunks of 4 floats, the last n % 4 elements by the first threads of block 0.
template <int W>
__global__ void sum_of_squares_partial_kernel(double* partial, const float* x, size_t n) {
    __shared__ double shared[32];
    double s = 0.0;
    const size_t chunks = n / W, stride = size_t(gridDim.x) * blockDim.x;
    for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < chunks; i += stride) {
        const Vec<float, W> v = load_vec<W>(x + i * W);
        for (int k = 0; k < W; ++k) s += double(v.v[k]) * double(v.v[k]);
    }
    if (blockIdx.x == 0 && threadIdx.x < n % W) {
        const double tail = x[chunks * W + threadIdx.x];
        s += tail * tail;
    }
    s = block_sum(s, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_parts_kernel(double* result, const double* partial, int parts) {
    __shared__ double shared[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < parts; i += blockDim.x) s += partial[i];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) *result = s;
}

__global__ void gate_step_kernel(DeviceStepGate* gate, StepReport* report, const double* norm_sq, const double* loss_sum,
                                 double loss_count, StepPlan plan) {
    const float norm = float(sqrt(*norm_sq));
    const double loss = plan.poison_loss ? double(NAN) : *loss_sum / loss_count;
    const StepVerdict verdict = step_verdict(plan, loss, norm);
    *gate = {clip_scale(norm, plan.grad_clip), verdict != StepVerdict::taken};
    *report = {loss, norm, verdict};
}

// Thread i converts elements [i W, i W + W), 4 floats per load; the one whose chunk passes n (and every
// thread for W = 1) converts one element at a time.
template <typename T, int W>
__global__ void convert_kernel(T* dst, const float* src, size_t n) {
    const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * W;
    if constexpr (W % 4 == 0) {
        if (i + W <= n) {
            Vec<T, W> out;
            for (int k = 0; k < W; k += 4) {
                const Vec<float, 4> x = load_vec<4>(src + i + k);
                for (int j = 0; j < 4; ++j) out.v[k + j] = from_float<T>(x.v[j]);
            }
            store_vec(dst + i, out);
            return;
        }
    }
    for (size_t j = i; j < n && j < i + W; ++j) dst[j] = from_float<T>(src[j]);
}

}  // namespace

void sum_of_squares(double* result, const float* x, size_t n, double* scratch, cudaStream_t stream) {
    if (aligned16(x))
        sum_of_squares_partial_kernel<4><<<kSumOfSquaresParts, kThreads, 0, stream>>>(scratch, x, n);
    else
        sum_of_squares_partial_kernel<1><<<kSumOfSquaresParts, kThreads, 0, stream>>>(scratch, x, n);
    KERNEL_CHECK("sum_of_squares_partial_kernel");
    sum_parts_kernel<<<1, 1024, 0, stream>>>(result, scratch, kSumOfSquaresParts);
    KERNEL_CHECK("sum_parts_kernel");
}

void gate_step(DeviceStepGate* gate, StepReport* report, const double* norm_sq, const double* loss_sum, double loss_count,
               const StepPlan& plan, cudaStream_t stream) {
    gate_step_kernel<<<1, 1, 0, stream>>>(gate, report, norm_sq, loss_sum, loss_count, plan);
    KERNEL_CHECK("gate_step_kernel");
}

template <typename T>
void convert_floats(T* dst, const float* src, size_t n, cudaStream_t stream) {
    constexpr int W = Pack<T>::n;
    if (aligned16(dst) && aligned16(src)) {
        convert_kernel<T, W><<<unsigned(ceil_div(ceil_div(n, W), kThreads)), kThreads, 0, stream>>>(dst, src, n);
    } else {
        convert_kernel<T, 1><<<unsigned(ceil_div(n, kThreads)), kThreads, 0, stream>>>(dst, src, n);
    }
    KERNEL_CHECK("convert_kernel");
}

template void convert_floats<bf16>(bf16*, const float*, size_t, cudaStream_t);
template void convert_floats<float>(float*, const float*, size_t, cudaStream_t);

}  // namespace coldstart::cuda
