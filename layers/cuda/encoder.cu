// Embedding forward and backward, 16 bytes of T per thread and access where the rows allow (Vec in
// common.cuh). The forward is a gather with one thread per chunk of a row (coalesced along the
// channels). The backward avoids atomics: a token that occurs many times in the batch adds all its
// positions into one row of dwte, so the positions are grouped by token on the host (a counting sort
// of B*T ints, from the tokens the host already has, before the forward is launched) and each (token,
// chunk of channels) is summed by one thread in position order.
#include "layers/cuda/encoder.cuh"

#include <algorithm>

#include "common/cuda/common.cuh"

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 128;

template <typename T, int W>
__global__ void encoder_forward_kernel(T* out, const int* tokens, const T* wte, const T* wpe, int T_, int C, size_t chunks) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= chunks) return;
    const size_t bt = i * W / size_t(C);
    const int c = int(i * W % size_t(C));
    const int t = int(bt % size_t(T_));
    const Vec<T, W> e = load_vec<W>(wte + size_t(tokens[bt]) * C + c), p = load_vec<W>(wpe + size_t(t) * C + c);
    Vec<T, W> y;
    for (int k = 0; k < W; ++k) y.v[k] = from_float<T>(to_float(e.v[k]) + to_float(p.v[k]));
    store_vec(out + bt * C + c, y);
}

// grid (unique tokens, chunk blocks)
template <typename T, int W>
__global__ void encoder_backward_wte_kernel(float* dwte, const T* dout, const int* bucket_tokens, const int* starts,
                                            const int* positions, int C) {
    const int u = blockIdx.x;
    const int c = (blockIdx.y * blockDim.x + threadIdx.x) * W;
    if (c >= C) return;
    float sum[W] = {};
    for (int k = starts[u]; k < starts[u + 1]; ++k) {
        const Vec<T, W> d = load_vec<W>(dout + size_t(positions[k]) * C + c);
        for (int j = 0; j < W; ++j) sum[j] += to_float(d.v[j]);
    }
    add_floats<W>(dwte + size_t(bucket_tokens[u]) * C + c, sum);
}

template <typename T, int W>
__global__ void encoder_backward_wpe_kernel(float* dwpe, const T* dout, int B, int T_, int C) {
    const size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * W;  // over (t, c)
    if (i >= size_t(T_) * C) return;
    float sum[W] = {};
    for (int b = 0; b < B; ++b) {
        const Vec<T, W> d = load_vec<W>(dout + size_t(b) * T_ * C + i);
        for (int j = 0; j < W; ++j) sum[j] += to_float(d.v[j]);
    }
    add_floats<W>(dwpe + i, sum);
}

template <typename T, int W>
void launch_forward(T* out, const int* tokens, const T* wte, const T* wpe, int B, int T_, int C, cudaStream_t stream) {
    const size_t chunks = size_t(B) * T_ * C / W;
    encoder_forward_kernel<T, W><<<unsigned(ceil_div(chunks, kThreads)), kThreads, 0, stream>>>(out, tokens, wte, wpe, T_, C, chunks);
    KERNEL_CHECK("encoder_forward_kernel");
}

template <typename T, int W>
void launch_backward(float* dwte, float* dwpe, const T* dout, const int* buckets, int unique_tokens, int B, int T_, int C,
                     cudaStream_t stream) {
    const int* bucket_tokens = buckets;
    const int* starts = bucket_tokens + unique_tokens;
    const int* positions = starts + unique_tokens + 1;
    const dim3 grid(unsigned(unique_tokens), unsigned(ceil_div(size_t(C), size_t(kThreads) * W)));
    encoder_backward_wte_kernel<T, W><<<grid, kThreads, 0, stream>>>(dwte, dout, bucket_tokens, starts, positions, C);
    KERNEL_CHECK("encoder_backward_wte_kernel");
    encoder_backward_wpe_kernel<T, W><<<unsigned(ceil_div(size_t(T_) * C / W, kThreads)), kThreads, 0, stream>>>(dwpe, dout, B,
                                                                                                               T_, C);
    KERNEL_CHECK("encoder_backward_wpe_kernel");
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
    if (packable<T>(size_t(C), {out, wte, wpe}))
        launch_forward<T, Pack<T>::n>(out, tokens, wte, wpe, B, T_, C, stream);
    else
        launch_forward<T, 1>(out, tokens, wte, wpe, B, T_, C, stream);
}

template <typename T>
void encoder_backward(float* dwte, float* dwpe, const T* dout, const int* buckets_device, int unique_tokens, int B, int T_,
                      int C, cudaStream_t stream) {
    if (packable<T>(size_t(C), {dwte, dwpe, dout}))
        launch_backward<T, Pack<T>::n>(dwte, dwpe, dout, buckets_device, unique_tokens, B, T_, C, stream);
    else
        launch_backward<T, 1>(dwte, dwpe, dout, buckets_device, unique_tokens, B, T_, C, stream);
}

#define INSTANTIATE(T)                                                                                      \
    template void encoder_forward<T>(T*, const int*, const T*, const T*, int, int, int, cudaStream_t);      \
    template void encoder_backward<T>(float*, float*, const T*, const int*, int, int, int, int, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(bf16)

}  // namespace coldstart::cuda
