#include "model/mfu.h"

#include "common/error.h"

namespace coldstart {

double peak_bf16_flops(const std::string& name) {
    auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
    if (has("H200")) return 989e12;                          // same compute as the H100 SXM, more memory
    if (has("H100")) return has("PCIe") ? 756e12 : 989e12;   // "NVIDIA H100 80GB HBM3" is the SXM part
    if (has("A100")) return 312e12;
    return 0;
}

double flops_per_token(const GPT2Config& c, size_t num_params, int T) {
    return 6.0 * double(num_params) + 6.0 * double(c.num_layers) * double(c.channels) * double(T);
}

std::string mfu_text(const std::string& device_name, bool bf16, double flops_per_token, double tokens_per_s) {
    if (!bf16) return "MFU n/a (fp32)";
    const double peak = peak_bf16_flops(device_name);
    if (peak == 0) return "MFU n/a (unknown GPU)";
    return format("%.1f%% bf16 MFU", 100.0 * flops_per_token * tokens_per_s / peak);
}

}  // namespace coldstart
