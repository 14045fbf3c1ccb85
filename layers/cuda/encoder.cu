// Embedding forward and backward. The forward is a gather with one thread per output element
// (coalesced along the channels). The backward avoids atomics: a token that occurs many times in the
// batch adds all its positions into one row of dwte, so the positions are grouped by token on the
// host (a counting sort of B*T ints, done while the GPU runs the forward) and each (token, channel)
// is summed by one thread in position order.
#include "layers/cuda/encoder.cuh"

#include <algorithm>

#include "common/cuda/common.cuh"

namespace coldstart::cuda {
namespace {

template <typename T>
__global__ void encoder_forward_kernel(T* out, const int* tokens, const T* wte, const T* wpe, int T_, int C, size_t n) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const size_t bt = i / size_t(C);
    const int c = int(i % size_t(C));
    const int t = int(bt % size_t(T_));
    out[i] = from_float<T>(to_float(wte[size_t(tokens[bt]) * C + c]) + to_float(wpe[size_t(t) * C + c]));
}

// grid (unique tokens, channel blocks)
template <typename T>
__global__ void encoder_backward_wte_kernel(float* dwte, const T* dout, const int* bucket_tokens, const int* starts,
                                            const int* positions, int C) {
    const int u = blockIdx.x;
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float sum = 0.0f;
    for (int k = starts[u]; k < starts[u + 1]; ++k) sum += to_float(dout[size_t(positions[k]) * C + c]);
    dwte[size_t(bucket_tokens[u]) * C + c] += sum;
}

template <typename T>
__global__ void encoder_backward_wpe_kernel(float* dwpe, const T* dout, int B, int T_, int C) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over (t, c)
    if (i >= size_t(T_) * C) return;
    float sum = 0.0f;
    for (int b = 0; b < B; ++b) sum += to_float(dout[size_t(b) * T_ * C + i]);
    dwpe[i] += sum;
}

}  // namespace

void TokenBuckets::build(const int* tokens_host, size_t n, int Vp) {
    counts_.assign(size_t(Vp) + 1, 0);
    for (size_t i = 0; i < n; ++i) ++counts_[size_t(tokens_host[i]) + 1];
    tokens.clear();
    starts.assign(1, 0);
    for (int v = 0; v < Vp; ++v)
        if (counts_[size_t(v) + 1] > 0) {
            tokens.push_back(v);
            starts.push_back(starts.back() + counts_[size_t(v) + 1]);
        }
    // counts_[v] becomes the next free slot of token v (exclusive prefix sum), then a stable scatter.
    for (int v = 0; v < Vp; ++v) counts_[size_t(v) + 1] += counts_[size_t(v)];
    positions.resize(n);
    for (size_t i = 0; i < n; ++i) positions[size_t(counts_[size_t(tokens_host[i])]++)] = int(i);
}

template <typename T>
void encoder_forward(T* out, const int* tokens, const T* wte, const T* wpe, int B, int T_, int C, cudaStream_t stream) {
    const size_t n = size_t(B) * T_ * C;
    const int threads = 256;
    encoder_forward_kernel<<<unsigned(ceil_div(n, threads)), threads, 0, stream>>>(out, tokens, wte, wpe, T_, C, n);
    KERNEL_CHECK("encoder_forward_kernel");
}

template <typename T>
void encoder_backward(float* dwte, float* dwpe, const T* dout, const int* buckets_device, int unique_tokens, int B, int T_,
                      int C, cudaStream_t stream) {
    const int threads = 128;
    const int* bucket_tokens = buckets_device;
    const int* starts = bucket_tokens + unique_tokens;
    const int* positions = starts + unique_tokens + 1;
    const dim3 grid(unsigned(unique_tokens), unsigned(ceil_div(size_t(C), threads)));
    encoder_backward_wte_kernel<<<grid, threads, 0, stream>>>(dwte, dout, bucket_tokens, starts, positions, C);
    KERNEL_CHECK("encoder_backward_wte_kernel");
    encoder_backward_wpe_kernel<<<unsigned(ceil_div(size_t(T_) * C, 256)), 256, 0, stream>>>(dwpe, dout, B, T_, C);
    KERNEL_CHECK("encoder_backward_wpe_kernel");
}

#define INSTANTIATE(T)                                                                                      \
    template void encoder_forward<T>(T*, const int*, const T*, const T*, int, int, int, cudaStream_t);      \
    template void encoder_backward<T>(float*, float*, const T*, const int*, int, int, int, int, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(bf16)

}  // namespace coldstart::cuda
