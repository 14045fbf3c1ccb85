// The optimizer interface: one step over the flat parameter buffer, tensor by tensor.
//
// Each optimizer (AdamW and, later, its variants, Lion, LionA, LionAR) implements this once for the CPU
// reference and once as CUDA kernels; the training loop only ever sees this interface, so swapping the
// optimizer is a flag. Tensors are described by parameter_tensors(): which take weight decay (matrices),
// and their row structure for per-row methods.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "layers/gpt2_config.h"

namespace coldstart {

class File;

struct OptimizerConfig {
    std::string name = "adamw";
    float beta1 = 0.9f;
    float beta2 = 0.95f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;  // decoupled; applied to matrices (2-D tensors) only
};

struct StepContext {
    float lr;          // the scheduled learning rate of this step
    float grad_scale;  // multiplies every gradient before use (gradient clipping)
    int64_t t;         // 1-based step count, for bias corrections
};

class Optimizer {
public:
    virtual ~Optimizer() = default;
    virtual const char* name() const = 0;
    // params, grads: (ParamLayout.total) flat buffers in the memory of the backend that owns them.
    virtual void step(float* params, const float* grads, const StepContext& ctx) = 0;
    // The optimizer's own state (moments, ...), for checkpoints. The reader checks sizes and names
    // the file on mismatch.
    virtual void save_state(File& f) const = 0;
    virtual void load_state(File& f) = 0;
};

// The CPU reference implementation of the optimizer named in config.name.
std::unique_ptr<Optimizer> make_cpu_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors);

}  // namespace coldstart
