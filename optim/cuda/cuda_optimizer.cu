#include "optim/cuda/cuda_optimizer.cuh"

#include <utility>

#include "common/error.h"

namespace coldstart::cuda {

std::unique_ptr<CudaOptimizer> make_cuda_optimizer(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                                   cudaStream_t stream, const ParameterShard& shard, SumAcrossRanks sum_across_ranks) {
    if (config.name == "adamw") return make_adamw_cuda(config, tensors, stream, shard);  // nothing per tensor to sum
    if (config.is_lion_family()) return make_lion_cuda(config, tensors, stream, shard, std::move(sum_across_ranks));
    fail("--optimizer: unknown optimizer '%s' (available: adamw, lion, liona, lionar)", config.name.c_str());
}

}  // namespace coldstart::cuda
