// One block per row. Pass 1 keeps a running (max, sum of exp(x - max)) per thread, one exp per
// element, merged across the block in a fixed tree: the row's logsumexp in one read. Pass 2 reads the
// row again (mostly from L2) and writes the gradient. The probabilities never exist in memory, which
// for GPT-2 (50304 columns) saves writing and re-reading the largest activation. Rows are read 16
// bytes per thread per load when Vp and the buffer allow it.
#include "layers/cuda/classifier.cuh"

#include "common/cuda/common.cuh"

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 512;

struct MaxSum {
    float max, sum;  // sum of exp(x - max); max = -inf with sum 0 for no element yet
};

__device__ inline MaxSum merge(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.max, b.max);
    if (m == -INFINITY) return {m, 0.0f};
    return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

__device__ inline void add(MaxSum& s, float x) {
    if (x > s.max) {
        s.sum = s.sum * expf(s.max - x) + 1.0f;  // expf(-inf) = 0 for the first element
        s.max = x;
    } else {
        s.sum += expf(x - s.max);
    }
}

template <typename T, bool kPacked>
__global__ void __launch_bounds__(kThreads) classifier_kernel(float* losses, T* logits, const int* targets, float dloss,
                                                              int V, int Vp, bool write_dlogits) {
    __shared__ float shared_max[32], shared_sum[32];
    __shared__ float target_logit;
    T* row = logits + size_t(blockIdx.x) * Vp;
    const int target = targets[blockIdx.x];
    if (threadIdx.x == 0) target_logit = to_float(row[target]);  // read before any thread overwrites the row

    MaxSum s{-INFINITY, 0.0f};
    if constexpr (kPacked) {
        constexpr int P = Pack<T>::n;
        for (int v0 = threadIdx.x * P; v0 < V; v0 += kThreads * P) {
            const Pack<T> x = *reinterpret_cast<const Pack<T>*>(row + v0);
            for (int k = 0; k < P; ++k)
                if (v0 + k < V) add(s, to_float(x.v[k]));
        }
    } else {
        for (int v = threadIdx.x; v < V; v += kThreads) add(s, to_float(row[v]));
    }
    // Block merge in a fixed order: butterfly within warps, then warp 0 over the warps' results.
    for (int o = 16; o > 0; o >>= 1)
        s = merge(s, {__shfl_xor_sync(0xffffffffu, s.max, o), __shfl_xor_sync(0xffffffffu, s.sum, o)});
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) {
        shared_max[warp] = s.max;
        shared_sum[warp] = s.sum;
    }
    __syncthreads();
    if (warp == 0) {
        s = lane < kThreads / 32 ? MaxSum{shared_max[lane], shared_sum[lane]} : MaxSum{-INFINITY, 0.0f};
        for (int o = 16; o > 0; o >>= 1)
            s = merge(s, {__shfl_xor_sync(0xffffffffu, s.max, o), __shfl_xor_sync(0xffffffffu, s.sum, o)});
        if (lane == 0) {
            shared_max[0] = s.max;
            shared_sum[0] = s.sum;
        }
    }
    __syncthreads();
    const float row_max = shared_max[0], row_sum = shared_sum[0];
    if (threadIdx.x == 0) losses[blockIdx.x] = row_max + logf(row_sum) - target_logit;
    if (!write_dlogits) return;

    const float inv_sum = 1.0f / row_sum;
    auto grad = [&](int v, float x) {
        if (v >= V) return 0.0f;
        const float p = expf(x - row_max) * inv_sum;
        return (p - (v == target ? 1.0f : 0.0f)) * dloss;
    };
    if constexpr (kPacked) {
        constexpr int P = Pack<T>::n;
        for (int v0 = threadIdx.x * P; v0 < Vp; v0 += kThreads * P) {
            Pack<T> x = *reinterpret_cast<const Pack<T>*>(row + v0);
            for (int k = 0; k < P; ++k) x.v[k] = from_float<T>(grad(v0 + k, to_float(x.v[k])));
            *reinterpret_cast<Pack<T>*>(row + v0) = x;
        }
    } else {
        for (int v = threadIdx.x; v < Vp; v += kThreads) row[v] = from_float<T>(grad(v, to_float(row[v])));
    }
}

constexpr int kLossThreads = 1024;

__global__ void __launch_bounds__(kLossThreads) add_mean_loss_kernel(double* sum, const float* losses, int N) {
    __shared__ double shared[32];
    double s = 0;
    for (int i = threadIdx.x; i < N; i += kLossThreads) s += losses[i];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) *sum += double(float(s / double(N)));
}

}  // namespace

void add_mean_loss(double* sum, const float* losses, int N, cudaStream_t stream) {
    add_mean_loss_kernel<<<1, kLossThreads, 0, stream>>>(sum, losses, N);
    KERNEL_CHECK("add_mean_loss_kernel");
}

template <typename T>
void classifier_forward(float* losses, T* logits, const int* targets, float dloss, size_t N, int V, int Vp,
                        bool write_dlogits, cudaStream_t stream) {
    if (N == 0) return;
    if (aligned16(logits) && Vp % Pack<T>::n == 0) {
        classifier_kernel<T, true><<<unsigned(N), kThreads, 0, stream>>>(losses, logits, targets, dloss, V, Vp, write_dlogits);
    } else {
        classifier_kernel<T, false><<<unsigned(N), kThreads, 0, stream>>>(losses, logits, targets, dloss, V, Vp, write_dlogits);
    }
    KERNEL_CHECK("classifier_kernel");
}

template void classifier_forward<float>(float*, float*, const int*, float, size_t, int, int, bool, cudaStream_t);
template void classifier_forward<bf16>(float*, bf16*, const int*, float, size_t, int, int, bool, cudaStream_t);

}  // namespace coldstart::cuda
