// The input embedding on the GPU (CPU reference and semantics: layers/encoder.h).
#pragma once

#include <cuda_runtime.h>

#include <vector>

namespace coldstart::cuda {

// out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :]
template <typename T>
void encoder_forward(T* out /*B,T,C*/, const int* tokens /*B,T device*/, const T* wte /*Vp,C*/, const T* wpe /*maxT,C*/,
                     int B, int T_, int C, cudaStream_t stream);

// The positions of a micro-batch grouped by token, built on the host from the tokens the host already
// has: the wte gradient then needs no atomics. Bucket u holds token tokens[u]'s positions
// positions[starts[u] .. starts[u+1]) in increasing order.
struct TokenBuckets {
    std::vector<int> tokens;     // (U) the distinct tokens
    std::vector<int> starts;     // (U+1)
    std::vector<int> positions;  // (B*T)
    void build(const int* tokens_host /*B*T*/, size_t n, int Vp);
    std::vector<int> counts_;    // (Vp) scratch of build
};

// dwte[tok, :] += sum of dout over tok's positions, in increasing position order, one thread per
// (token, channel); dwpe[t, :] += sum over b of dout[b, t, :], one thread per (t, channel). The same
// bits every run, whatever the scheduling. The bucket arrays live in device memory: buckets_device
// is tokens (U), then starts (U+1), then positions (B*T), as TokenBuckets holds them.
template <typename T>
void encoder_backward(float* dwte /*Vp,C*/, float* dwpe /*maxT,C*/, const T* dout /*B,T,C*/, const int* buckets_device,
                      int unique_tokens, int B, int T_, int C, cudaStream_t stream);

}  // namespace coldstart::cuda
