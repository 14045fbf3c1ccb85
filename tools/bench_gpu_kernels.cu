// Per-kernel times of one GPT-2 layer and the rest of a step at d12 sizes (C=768, NH=12, Vp=50304,
// 124M parameters), in bf16 as training runs them: milliseconds per call (CUDA events, median of 20
// calls after 3 warm-up calls), the bytes each kernel must move at least (GB/s) and the FLOPs of the
// products (TFLOP/s). A benchmark, not a test: nothing is checked.
//   build/tools/bench_gpu_kernels [B (default 16)] [T (default 1024)]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "common/cuda/common.cuh"
#include "common/error.h"
#include "layers/cuda/attention.cuh"
#include "layers/cuda/attention_mma.cuh"
#include "layers/cuda/attention_cudnn.cuh"
#include "layers/cuda/classifier.cuh"
#include "layers/cuda/encoder.cuh"
#include "layers/cuda/gelu.cuh"
#include "layers/cuda/layernorm.cuh"
#include "layers/cuda/matmul.cuh"
#include "model/gpt2_config.h"
#include "optim/cuda/cuda_optimizer.cuh"
#include "optim/cuda/grad_norm.cuh"

using namespace coldstart;
using namespace coldstart::cuda;

namespace {

struct Timer {
    cudaStream_t stream;
    double measure(const std::function<void()>& fn) {
        cudaEvent_t a, b;
        CUDA_CHECK(cudaEventCreate(&a));
        CUDA_CHECK(cudaEventCreate(&b));
        for (int i = 0; i < 3; ++i) fn();
        std::vector<float> ms;
        for (int i = 0; i < 20; ++i) {
            CUDA_CHECK(cudaEventRecord(a, stream));
            fn();
            CUDA_CHECK(cudaEventRecord(b, stream));
            CUDA_CHECK(cudaEventSynchronize(b));
            float t = 0;
            CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
            ms.push_back(t);
        }
        cudaEventDestroy(a);
        cudaEventDestroy(b);
        std::sort(ms.begin(), ms.end());
        return ms[ms.size() / 2];
    }
};

void row(const char* name, double ms, double bytes, double flops) {
    std::printf("%-34s %9.3f ms", name, ms);
    if (bytes > 0) std::printf(" %9.1f GB/s", bytes / ms * 1e-6);
    else std::printf(" %14s", "");
    if (flops > 0) std::printf(" %8.1f TFLOP/s", flops / ms * 1e-9);
    std::printf("\n");
}

template <typename T>
T* device(size_t n) {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    CUDA_CHECK(cudaMemset(p, 0, n * sizeof(T)));
    return static_cast<T*>(p);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const int B = argc > 1 ? std::atoi(argv[1]) : 16, T = argc > 2 ? std::atoi(argv[2]) : 1024;
        const GPT2Config c = config_from_descriptor("d12");
        const int C = c.channels, NH = c.num_heads, V = c.vocab_size, Vp = c.padded_vocab_size;
        const size_t N = size_t(B) * T, P = ParamLayout(c).total;
        cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        std::printf("per-kernel times, GPT-2 124M sizes, bf16, B=%d T=%d (N=%zu positions) on %s\n", B, T, N, prop.name);
        std::printf("%-34s %12s %14s %16s\n", "kernel", "time", "bandwidth", "compute");
        cudaStream_t stream;
        CUDA_CHECK(cudaStreamCreate(&stream));
        Timer timer{stream};
        Matmul mm(stream);
        using T16 = bf16;
        T16 *x = device<T16>(N * 4 * C), *y = device<T16>(N * 4 * C), *z = device<T16>(N * 4 * C), *qkv = device<T16>(N * 3 * C);
        T16 *w = device<T16>(size_t(Vp) * C), *bias = device<T16>(4 * C), *logits = device<T16>(N * Vp);
        float *mean = device<float>(N), *rstd = device<float>(N), *lse = device<float>(N * NH), *dw = device<float>(size_t(Vp) * C);
        float *scratch = device<float>(std::max(layernorm_scratch_floats(int(N), C), bias_backward_scratch_floats(int(N), 4 * C)));
        float *losses = device<float>(N), *att_d = device<float>(N * NH);
        int *tokens = device<int>(N), *targets = device<int>(N), *buckets = device<int>(3 * N + 1);
        const double e = sizeof(T16);

        const double enc = timer.measure([&] { encoder_forward<T16>(x, tokens, w, w, B, T, C, stream); });
        row("encoder forward", enc, 3.0 * N * C * e, 0);
        {
            // one token everywhere is the worst case for the per-token sums; a spread of tokens is typical
            std::vector<int> spread(N);
            for (size_t i = 0; i < N; ++i) spread[i] = int((i * 7919) % size_t(V));
            TokenBuckets tb;
            tb.build(spread.data(), N, Vp);
            std::vector<int> flat = tb.tokens;
            flat.insert(flat.end(), tb.starts.begin(), tb.starts.end());
            flat.insert(flat.end(), tb.positions.begin(), tb.positions.end());
            CUDA_CHECK(cudaMemcpy(buckets, flat.data(), flat.size() * sizeof(int), cudaMemcpyHostToDevice));
            const int U = int(tb.tokens.size());
            row("encoder backward", timer.measure([&] { encoder_backward<T16>(dw, dw, x, buckets, U, B, T, C, stream); }),
                N * C * e + 2.0 * U * C * 4 * 2, 0);
        }
        row("layernorm forward", timer.measure([&] { layernorm_forward<T16>(y, mean, rstd, x, bias, bias, int(N), C, stream); }),
            2.0 * N * C * e, 0);
        row("residual + layernorm forward",
            timer.measure([&] { residual_layernorm_forward<T16>(z, y, mean, rstd, x, qkv, bias, bias, int(N), C, stream); }),
            4.0 * N * C * e, 0);
        row("layernorm backward",
            timer.measure([&] { layernorm_backward<T16>(z, dw, dw + C, y, x, bias, mean, rstd, int(N), C, true, scratch, stream); }),
            4.0 * N * C * e, 0);
        struct Shape {
            const char* name;
            int in, out;
        };
        for (Shape s : {Shape{"qkv", C, 3 * C}, Shape{"attproj", C, C}, Shape{"fc", C, 4 * C}, Shape{"fcproj", 4 * C, C},
                        Shape{"lm head", C, Vp}}) {
            const double flops = 2.0 * N * s.in * s.out;
            T16* out = s.out == Vp ? logits : y;
            std::string n = std::string("matmul forward ") + s.name;
            row(n.c_str(), timer.measure([&] { mm.forward<T16>(out, x, w, s.out == Vp ? nullptr : bias, int(N), s.in, s.out); }), 0,
                flops);
            n = std::string("matmul backward input ") + s.name;
            row(n.c_str(), timer.measure([&] { mm.backward_input<T16>(z, out, w, int(N), s.in, s.out); }), 0, flops);
            n = std::string("matmul backward weight ") + s.name;
            row(n.c_str(), timer.measure([&] { mm.backward_weight<T16>(dw, out, x, int(N), s.in, s.out); }), 0, flops);
            if (s.out != Vp) {
                n = std::string("bias backward ") + s.name;
                row(n.c_str(), timer.measure([&] { bias_backward<T16>(dw, out, int(N), s.out, scratch, stream); }),
                    double(N) * s.out * e, 0);
            }
        }
        row("matmul forward fc + GELU epilogue",
            timer.measure([&] { mm.forward<T16>(y, x, w, bias, int(N), C, 4 * C, z); }), 0, 2.0 * N * C * 4 * C);
        row("gelu forward", timer.measure([&] { gelu_forward<T16>(y, x, N * 4 * C, stream); }), 2.0 * N * 4 * C * e, 0);
        row("gelu backward", timer.measure([&] { gelu_backward_inplace<T16>(y, x, N * 4 * C, stream); }), 3.0 * N * 4 * C * e, 0);
        // causal attention: QK^T and PV over the T(T+1)/2 live scores, 2 FLOPs per multiply-add
        const double att_flops = 2.0 * 2.0 * B * NH * (double(T) * (T + 1) / 2) * (C / NH);
        // the backward counted as 5 products of that size (FlashAttention's count; our split computes 7)
        row("attention forward (tensor cores)", timer.measure([&] { attention_mma_forward(y, lse, qkv, B, T, C, NH, stream); }), 0,
            att_flops);
        row("attention backward (tensor cores)",
            timer.measure([&] { attention_mma_backward(z, x, qkv, y, lse, att_d, B, T, C, NH, stream); }), 0, 2.5 * att_flops);
        row("attention forward (fp32 SIMT)", timer.measure([&] { attention_forward<T16>(y, lse, qkv, B, T, C, NH, stream); }), 0,
            att_flops);
        row("attention backward (fp32 SIMT)",
            timer.measure([&] { attention_backward<T16>(z, x, qkv, y, lse, att_d, B, T, C, NH, stream); }), 0, 2.5 * att_flops);
        if (cudnn_attention_available()) {
            row("attention forward (cuDNN)", timer.measure([&] { cudnn_attention_forward(y, lse, qkv, B, T, C, NH, stream); }), 0,
                att_flops);
            row("attention backward (cuDNN)",
                timer.measure([&] { cudnn_attention_backward(z, x, qkv, y, lse, B, T, C, NH, stream); }), 0, 2.5 * att_flops);
        }
        {
            std::vector<int> t(N);
            for (size_t i = 0; i < N; ++i) t[i] = int(i % size_t(V));
            CUDA_CHECK(cudaMemcpy(targets, t.data(), N * sizeof(int), cudaMemcpyHostToDevice));
        }
        row("classifier (fused, with d logits)",
            timer.measure([&] { classifier_forward<T16>(losses, logits, targets, 1.0f / float(N), N, V, Vp, true, stream); }),
            3.0 * N * Vp * e, 0);
        {
            float *params = device<float>(P), *grads = device<float>(P);
            double* parts = device<double>(kSumOfSquaresParts + 1);  // the result, then the scratch
            auto opt = make_cuda_optimizer(OptimizerConfig{}, parameter_tensors(c), stream);
            row("adamw (124M parameters)", timer.measure([&] { opt->step(params, grads, {1e-4f, 1.0f, 1}); }), 28.0 * P, 0);
            row("grad norm (124M parameters)", timer.measure([&] { sum_of_squares(parts, grads, P, parts + 1, stream); }), 4.0 * P, 0);
            T16* copy = device<T16>(P);
            row("fp32 -> bf16 weights (124M)", timer.measure([&] { convert_floats<T16>(copy, params, P, stream); }), 6.0 * P, 0);
        }
        CUDA_CHECK(cudaDeviceSynchronize());
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
