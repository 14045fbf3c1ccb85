// Per-kernel times of one training step at GPT-2 124M sizes (C=768, NH=12, Vp=50304, 124M parameters), in
// bf16 as training runs them: for every kernel of the speed-of-light model (model/roofline.h), the
// measured time of one call (CUDA events, median of 20 calls after 3 warm-up calls) beside the model's
// lower bound on this GPU and the fraction of that speed of light reached; then the step's sums. A
// benchmark, not a test: nothing is checked. The bounds are a model; the times are measurements.
//   build/tools/bench_gpu_kernels [B (default 16)] [T (default 1024)]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
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
#include "model/roofline.h"
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

template <typename T>
T* device(size_t n) {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    CUDA_CHECK(cudaMemset(p, 0, n * sizeof(T)));
    return static_cast<T*>(p);
}

// The model's peaks of this GPU (an H200 by name; anything else is measured against the H100 SXM's).
GpuPeak peak_for(const std::string& device_name) {
    const std::vector<GpuPeak> gpus = roofline_gpus();
    return device_name.find("H200") != std::string::npos ? gpus[1] : gpus[0];
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const int B = argc > 1 ? std::atoi(argv[1]) : 16, T = argc > 2 ? std::atoi(argv[2]) : 1024;
        const GPT2Config c = config_from_descriptor("d12");
        const int C = c.channels, NH = c.num_heads, V = c.vocab_size, Vp = c.padded_vocab_size;
        const size_t N = size_t(B) * T, P = ParamLayout(c).total;
        const int n = int(N);
        cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        const GpuPeak gpu = peak_for(prop.name);
        std::printf("per-kernel times (measured, CUDA events) against the speed of light (model/roofline.h, the %s's "
                    "%.2f TB/s and %.0f TFLOP/s): GPT-2 124M, bf16, B=%d T=%d (N=%zu) on %s\n",
                    gpu.name.c_str(), gpu.bytes_per_s / 1e12, gpu.flops_per_s / 1e12, B, T, N, prop.name);
        cudaStream_t stream;
        CUDA_CHECK(cudaStreamCreate(&stream));
        Timer timer{stream};
        Matmul mm(stream);
        using T16 = bf16;
        T16 *x = device<T16>(N * 4 * C), *y = device<T16>(N * 4 * C), *z = device<T16>(N * 4 * C), *qkv = device<T16>(N * 3 * C);
        T16 *w = device<T16>(size_t(Vp) * C), *bias = device<T16>(4 * C), *logits = device<T16>(N * Vp);
        float *mean = device<float>(N), *rstd = device<float>(N), *lse = device<float>(N * NH), *dw = device<float>(size_t(Vp) * C);
        float* scratch = device<float>(std::max({layernorm_scratch_floats(n, C), bias_backward_scratch_floats(n, 4 * C),
                                                 gelu_backward_scratch_floats(n, 4 * C)}));
        float *losses = device<float>(N), *att_d = device<float>(N * NH);
        int *tokens = device<int>(N), *targets = device<int>(N), *buckets = device<int>(3 * N + 1);
        float *params = device<float>(P), *grads = device<float>(P);
        double* parts = device<double>(kSumOfSquaresParts + 1);  // the result, then the scratch
        T16* weights16 = device<T16>(P);
        auto adamw = make_cuda_optimizer(OptimizerConfig{}, parameter_tensors(c), stream);
        {
            std::vector<int> t(N);
            for (size_t i = 0; i < N; ++i) t[i] = int(i % size_t(V));
            CUDA_CHECK(cudaMemcpy(targets, t.data(), N * sizeof(int), cudaMemcpyHostToDevice));
        }
        // A spread of tokens, as text has: the encoder backward's buckets.
        std::vector<int> spread(N);
        for (size_t i = 0; i < N; ++i) spread[i] = int((i * 7919) % size_t(V));
        TokenBuckets tb;
        tb.build(spread.data(), N, Vp);
        std::vector<int> flat = tb.tokens;
        flat.insert(flat.end(), tb.starts.begin(), tb.starts.end());
        flat.insert(flat.end(), tb.positions.begin(), tb.positions.end());
        CUDA_CHECK(cudaMemcpy(buckets, flat.data(), flat.size() * sizeof(int), cudaMemcpyHostToDevice));
        const int U = int(tb.tokens.size());

        // One call of each kernel of the model, by the model's names.
        std::map<std::string, std::function<void()>> calls = {
            {"encoder forward", [&] { encoder_forward<T16>(x, tokens, w, w, B, T, C, stream); }},
            {"layernorm forward", [&] { layernorm_forward<T16>(y, mean, rstd, x, bias, bias, n, C, stream); }},
            {"attention forward", [&] { attention_mma_forward(y, lse, qkv, B, T, C, NH, stream); }},
            {"residual + layernorm forward",
             [&] { residual_layernorm_forward<T16>(z, y, mean, rstd, x, qkv, bias, bias, n, C, stream); }},
            {"gelu forward", [&] { gelu_forward<T16>(y, x, N * 4 * C, stream); }},
            {"classifier (fused, with d logits)",
             [&] { classifier_forward<T16>(losses, logits, targets, 1.0f / float(N), N, V, Vp, true, stream); }},
            {"layernorm backward (final)",
             [&] { layernorm_backward<T16>(z, dw, dw + C, dw + 2 * C, y, x, bias, mean, rstd, n, C, false, scratch, stream); }},
            {"gelu backward + fc bias", [&] { gelu_backward_bias<T16>(y, dw, x, n, 4 * C, scratch, stream); }},
            {"layernorm backward",
             [&] { layernorm_backward<T16>(z, dw, dw + C, dw + 2 * C, y, x, bias, mean, rstd, n, C, true, scratch, stream); }},
            {"attention backward", [&] { attention_mma_backward(z, x, qkv, y, lse, att_d, B, T, C, NH, stream); }},
            {"bias backward qkv", [&] { bias_backward<T16>(dw, qkv, n, 3 * C, scratch, stream); }},
            {"encoder backward", [&] { encoder_backward<T16>(dw, dw, x, buckets, U, B, T, C, stream); }},
            {"zero grad", [&] { CUDA_CHECK(cudaMemsetAsync(grads, 0, P * sizeof(float), stream)); }},
            {"grad norm", [&] { sum_of_squares(parts, grads, P, parts + 1, stream); }},
            {"adamw", [&] { adamw->step(params, grads, {1e-4f, 1.0f, 1}); }},
            {"fp32 -> bf16 weights", [&] { convert_floats<T16>(weights16, params, P, stream); }},
        };
        struct Shape {
            const char* name;
            int in, out;
        };
        for (Shape s : {Shape{"qkv", C, 3 * C}, Shape{"attproj", C, C}, Shape{"fc", C, 4 * C}, Shape{"fcproj", 4 * C, C},
                        Shape{"lm head", C, Vp}}) {
            T16* out = s.out == Vp ? logits : y;
            const T16* b = s.out == Vp ? nullptr : bias;
            calls[std::string("matmul forward ") + s.name] = [=, &mm] { mm.forward<T16>(out, x, w, b, n, s.in, s.out); };
            calls[std::string("matmul backward input ") + s.name] = [=, &mm] { mm.backward_input<T16>(z, out, w, n, s.in, s.out); };
            calls[std::string("matmul backward weight ") + s.name] = [=, &mm] { mm.backward_weight<T16>(dw, out, x, n, s.in, s.out); };
        }

        std::printf("%-34s %5s %11s %11s %9s %7s\n", "kernel", "calls", "measured", "bound", "of bound", "bound");
        double measured_step = 0, bound_step = 0;
        for (const KernelCost& k : step_kernels(c, B, T)) {
            const double bound_ms = 1e3 * bound_seconds(k, gpu);
            bound_step += k.calls * bound_ms;
            const auto call = calls.find(k.name);
            if (call == calls.end()) {
                std::printf("%-34s %5d %11s %8.3f ms %9s %7s\n", k.name.c_str(), k.calls, "not measured", bound_ms, "",
                            memory_bound(k, gpu) ? "memory" : "compute");
                continue;
            }
            const double ms = timer.measure(call->second);
            measured_step += k.calls * ms;
            std::printf("%-34s %5d %8.3f ms %8.3f ms %8.0f%% %7s\n", k.name.c_str(), k.calls, ms, bound_ms, 100.0 * bound_ms / ms,
                        memory_bound(k, gpu) ? "memory" : "compute");
        }
        std::printf("step: the kernels' measured times add up to %.2f ms (%.0f tokens/s), their speed of light to %.2f ms "
                    "(%.0f tokens/s, a model): %.0f%% of the speed of light\n",
                    measured_step, 1e3 * double(N) / measured_step, bound_step, 1e3 * double(N) / bound_step,
                    100.0 * bound_step / measured_step);
        // Alternatives the step can take instead (measured only).
        const double gelu_epilogue = timer.measure([&] { mm.forward<T16>(y, x, w, bias, n, C, 4 * C, z); });
        std::printf("other: matmul forward fc + GELU epilogue (-ge 1): %.3f ms\n", gelu_epilogue);
        std::printf("other: attention forward (fp32 SIMT): %.3f ms\n",
                    timer.measure([&] { attention_forward<T16>(y, lse, qkv, B, T, C, NH, stream); }));
        std::printf("other: attention backward (fp32 SIMT): %.3f ms\n",
                    timer.measure([&] { attention_backward<T16>(z, x, qkv, y, lse, att_d, B, T, C, NH, stream); }));
        if (cudnn_attention_available()) {
            std::printf("other: attention forward (cuDNN): %.3f ms\n",
                        timer.measure([&] { cudnn_attention_forward(y, lse, qkv, B, T, C, NH, stream); }));
            std::printf("other: attention backward (cuDNN): %.3f ms\n",
                        timer.measure([&] { cudnn_attention_backward(z, x, qkv, y, lse, B, T, C, NH, stream); }));
        }
        CUDA_CHECK(cudaDeviceSynchronize());
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
