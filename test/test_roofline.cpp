// The speed-of-light model (model/roofline.h) against values computed by hand for GPT-2 124M (d12) at
// B=64, T=1024, bf16: N = 65536 positions, C = 768, Vp = 50304, 12 heads of 64, 124,475,904 parameters.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "model/roofline.h"

using namespace coldstart;

namespace {

std::map<std::string, KernelCost> by_name(const std::vector<KernelCost>& kernels) {
    std::map<std::string, KernelCost> m;
    for (const KernelCost& k : kernels) m.emplace(k.name, k);
    return m;
}

}  // namespace

TEST_CASE("roofline: d12 at B=64, T=1024: bytes, FLOPs and bounds of hand-computed kernels") {
    const GPT2Config c = config_from_descriptor("d12");
    const auto kernels = step_kernels(c, 64, 1024);
    const auto k = by_name(kernels);
    REQUIRE(k.size() == kernels.size());  // every name once
    // qkv: 2 N C 3C FLOPs; inp, W, bias in and out once, bf16
    CHECK(k.at("matmul forward qkv").flops == 2.0 * 65536 * 768 * 2304);
    CHECK(k.at("matmul forward qkv").bytes == 2.0 * (65536.0 * 768 + 768.0 * 2304 + 2304 + 65536.0 * 2304));
    CHECK(k.at("matmul forward qkv").calls == 12);
    // the lm head: 2 N C Vp = 5.06 TFLOP
    CHECK(k.at("matmul forward lm head").flops == 5063766441984.0);
    // the weight gradient adds into fp32: read and written
    CHECK(k.at("matmul backward weight attproj").bytes == 2.0 * 2 * 65536 * 768 + 2.0 * 768 * 768 * 4);
    // causal attention: QK^T and PV over the T(T+1)/2 live scores of 64 x 12 heads, head size 64
    CHECK(k.at("attention forward").flops == 103179878400.0);
    CHECK(k.at("attention backward").flops == 2.5 * 103179878400.0);
    // layernorm forward: the rows in and out (bf16), mean and rstd out (fp32), weight and bias in
    CHECK(k.at("layernorm forward").bytes == 201853952.0);
    // AdamW: w, g, m, v in, w, m, v out, fp32: 28 bytes a parameter
    CHECK(k.at("adamw").bytes == 28.0 * 124475904);

    const GpuPeak h100 = roofline_gpus()[0], h200 = roofline_gpus()[1];
    CHECK(h100.bytes_per_s == 3.35e12);
    CHECK(h200.bytes_per_s == 4.8e12);
    CHECK(h200.flops_per_s == 989e12);
    // qkv is compute-bound: 231.9 GFLOP / 989 TFLOP/s = 0.2345 ms a call; layernorm memory-bound
    CHECK_FALSE(memory_bound(k.at("matmul forward qkv"), h100));
    CHECK(bound_seconds(k.at("matmul forward qkv"), h100) == doctest::Approx(2.0 * 65536 * 768 * 2304 / 989e12));
    CHECK(memory_bound(k.at("layernorm forward"), h100));
    CHECK(bound_seconds(k.at("layernorm forward"), h100) == doctest::Approx(201853952.0 / 3.35e12));
    // The step: the sum of calls x bounds; H200's faster memory only helps the memory-bound kernels.
    double sum = 0;
    for (const KernelCost& x : kernels) sum += x.calls * std::max(x.bytes / 3.35e12, x.flops / 989e12);
    CHECK(step_bound_seconds(kernels, h100) == doctest::Approx(sum));
    CHECK(step_bound_seconds(kernels, h200) < step_bound_seconds(kernels, h100));
    // The matrix products alone are 6 N x (parameters in matrices, the tied lm head counted as wte):
    // 6 x 65536 x (85M + 38.6M): the step cannot take less than 49 ms on either GPU.
    CHECK(step_bound_seconds(kernels, h200) > 0.049);
    const std::string table = roofline_table(c, 64, 1024);
    CHECK(table.find("a model, not a measurement") != std::string::npos);
    CHECK(table.find("tokens/s (model)") != std::string::npos);
}
