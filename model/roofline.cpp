#include "model/roofline.h"

#include <algorithm>

#include "common/error.h"

namespace coldstart {

namespace {

constexpr double kBf16 = 2, kF32 = 4, kInt = 4;

// The step's kernels, built from the shapes: N positions, widths in elements.
class StepModel {
public:
    StepModel(const GPT2Config& c, int B, int T)
        : N(double(B) * T), C(c.channels), L(c.num_layers), Vp(c.padded_vocab_size), NH(c.num_heads), hs(c.head_size()),
          T_(T), B_(B), V(c.vocab_size), P(double(ParamLayout(c).total)) {}

    std::vector<KernelCost> kernels() {
        forward();
        backward();
        update();
        return out_;
    }

private:
    void add(const char* name, int calls, double bytes, double flops = 0) { out_.push_back({name, calls, bytes, flops}); }

    // out (N, n_out) = inp (N, n_in) @ W^T (+ bias): inputs read once, output written once.
    void matmul_forward(const char* name, double n_in, double n_out, bool bias, int calls) {
        add(name, calls, (N * n_in + n_in * n_out + (bias ? n_out : 0) + N * n_out) * kBf16, 2 * N * n_in * n_out);
    }
    // dinp (N, n_in) = dout (N, n_out) @ W.
    void matmul_backward_input(const char* name, double n_in, double n_out, int calls) {
        add(name, calls, (N * n_out + n_in * n_out + N * n_in) * kBf16, 2 * N * n_in * n_out);
    }
    // dW (n_out, n_in) += dout^T @ inp: the fp32 gradient read and written.
    void matmul_backward_weight(const char* name, double n_in, double n_out, int calls) {
        add(name, calls, (N * n_out + N * n_in) * kBf16 + 2 * n_in * n_out * kF32, 2 * N * n_in * n_out);
    }

    // The live half of causal attention's T x T scores, per product of width hs: B NH T(T+1)/2 dot products.
    double attention_product_flops() const { return 2.0 * B_ * NH * (double(T_) * (T_ + 1) / 2) * hs; }

    void forward() {
        const double rows = N * C * kBf16, stats = 2 * N * kF32, params = 2 * C * kBf16;
        add("encoder forward", 1, N * kInt + N * C * kBf16 + double(T_) * C * kBf16 + rows);
        add("layernorm forward", 1, 2 * rows + stats + params);
        matmul_forward("matmul forward qkv", C, 3 * C, true, L);
        add("attention forward", L, N * 3 * C * kBf16 + rows + N * NH * kF32, 2 * attention_product_flops());
        matmul_forward("matmul forward attproj", C, C, true, L);
        // the residual add and the layernorm after it: a, b in; the residual, the normalised row, mean, rstd out
        add("residual + layernorm forward", 2 * L, 4 * rows + stats + params);
        matmul_forward("matmul forward fc", C, 4 * C, true, L);
        // -r 1: GELU again in the backward pass, from the stored pre-activation
        add("gelu forward", 2 * L, 2 * N * 4 * C * kBf16);
        matmul_forward("matmul forward fcproj", 4 * C, C, true, L);
        matmul_forward("matmul forward lm head", C, Vp, false, 1);
        // the logits in, d(logits) out in place; targets in, losses out
        add("classifier (fused, with d logits)", 1, 2 * N * Vp * kBf16 + N * kInt + N * kF32);
    }

    void backward() {
        const double rows = N * C * kBf16, stats = 2 * N * kF32;
        const double param_grads = C * kBf16 + 3 * 2 * C * kF32;  // weight in; dweight, dbias, dsum read and written
        matmul_backward_input("matmul backward input lm head", C, Vp, 1);
        matmul_backward_weight("matmul backward weight lm head", C, Vp, 1);
        // dout and inp in, dinp out (the final layernorm overwrites; the others add into the stream's gradient)
        add("layernorm backward (final)", 1, 3 * rows + stats + param_grads);
        matmul_backward_input("matmul backward input fcproj", 4 * C, C, L);
        matmul_backward_weight("matmul backward weight fcproj", 4 * C, C, L);
        add("gelu backward + fc bias", L, 3 * N * 4 * C * kBf16 + 2 * 4 * C * kF32);
        matmul_backward_input("matmul backward input fc", C, 4 * C, L);
        matmul_backward_weight("matmul backward weight fc", C, 4 * C, L);
        add("layernorm backward", 2 * L, 4 * rows + stats + param_grads);
        matmul_backward_input("matmul backward input attproj", C, C, L);
        matmul_backward_weight("matmul backward weight attproj", C, C, L);
        // qkv, out, dout and the logsumexp in, dqkv out; five products of the live scores
        add("attention backward", L, (N * 3 * C + 2 * N * C + N * 3 * C) * kBf16 + N * NH * kF32, 5 * attention_product_flops());
        matmul_backward_input("matmul backward input qkv", C, 3 * C, L);
        matmul_backward_weight("matmul backward weight qkv", C, 3 * C, L);
        add("bias backward qkv", L, N * 3 * C * kBf16 + 2 * 3 * C * kF32);
        // d(stream) and the buckets in; the touched rows of dwte and all of dwpe read and written
        const double touched = std::min(N, double(V));
        add("encoder backward", 1, rows + 3 * N * kInt + 2 * (touched + T_) * C * kF32);
    }

    void update() {
        add("zero grad", 1, P * kF32);
        add("grad norm", 1, P * kF32);
        add("adamw", 1, 7 * P * kF32);  // w, g, m, v in; w, m, v out
        add("fp32 -> bf16 weights", 1, P * (kF32 + kBf16));
    }

    const double N, C;  // positions, channels
    const int L;
    const double Vp, NH, hs;  // padded vocabulary, heads, head size
    const int T_, B_;
    const double V, P;  // vocabulary, parameters
    std::vector<KernelCost> out_;
};

std::string engineering(double x, const char* unit) {
    const char* prefixes[] = {"", "K", "M", "G", "T"};
    int k = 0;
    while (x >= 1000 && k < 4) {
        x /= 1000;
        ++k;
    }
    return format("%.1f %s%s", x, prefixes[k], unit);
}

}  // namespace

std::vector<GpuPeak> roofline_gpus() { return {{"H100 SXM", 3.35e12, 989e12}, {"H200", 4.8e12, 989e12}}; }

std::vector<KernelCost> step_kernels(const GPT2Config& config, int B, int T) { return StepModel(config, B, T).kernels(); }

double bound_seconds(const KernelCost& k, const GpuPeak& gpu) {
    return std::max(k.bytes / gpu.bytes_per_s, k.flops / gpu.flops_per_s);
}

bool memory_bound(const KernelCost& k, const GpuPeak& gpu) { return k.bytes / gpu.bytes_per_s >= k.flops / gpu.flops_per_s; }

double step_bound_seconds(const std::vector<KernelCost>& kernels, const GpuPeak& gpu) {
    double sum = 0;
    for (const KernelCost& k : kernels) sum += k.calls * bound_seconds(k, gpu);
    return sum;
}

std::string roofline_table(const GPT2Config& config, int B, int T) {
    const std::vector<KernelCost> kernels = step_kernels(config, B, T);
    const std::vector<GpuPeak> gpus = roofline_gpus();
    std::string s = format("speed of light of one training step (a model, not a measurement): %s, B=%d, T=%d, bf16, -r 1, AdamW\n",
                           config.describe().c_str(), B, T);
    s += format("%-34s %5s %12s %14s %7s", "kernel", "calls", "bytes/call", "FLOPs/call", "bound");
    for (const GpuPeak& g : gpus) s += format(" %14s", (g.name + " ms").c_str());
    s += "\n";
    for (const KernelCost& k : kernels) {
        s += format("%-34s %5d %12s %14s %7s", k.name.c_str(), k.calls, engineering(k.bytes, "B").c_str(),
                    k.flops > 0 ? engineering(k.flops, "FLOP").c_str() : "-", memory_bound(k, gpus[0]) ? "memory" : "compute");
        for (const GpuPeak& g : gpus) s += format(" %14.3f", 1e3 * k.calls * bound_seconds(k, g));
        s += "\n";
    }
    double bytes = 0, flops = 0;
    for (const KernelCost& k : kernels) {
        bytes += k.calls * k.bytes;
        flops += k.calls * k.flops;
    }
    s += format("%-34s %5s %12s %14s %7s", "step", "", engineering(bytes, "B").c_str(), engineering(flops, "FLOP").c_str(), "");
    for (const GpuPeak& g : gpus) s += format(" %14.3f", 1e3 * step_bound_seconds(kernels, g));
    s += "\n";
    for (const GpuPeak& g : gpus) {
        const double seconds = step_bound_seconds(kernels, g);
        double memory = 0;
        for (const KernelCost& k : kernels)
            if (memory_bound(k, g)) memory += k.calls * bound_seconds(k, g);
        s += format("%s (%.2f TB/s, %.0f TFLOP/s bf16): at least %.2f ms a step of %d tokens (memory-bound kernels %.2f ms, "
                    "compute-bound %.2f ms), at most %.0f tokens/s (model)\n",
                    g.name.c_str(), g.bytes_per_s / 1e12, g.flops_per_s / 1e12, 1e3 * seconds, B * T, 1e3 * memory,
                    1e3 * (seconds - memory), double(B) * T / seconds);
    }
    return s;
}

}  // namespace coldstart
