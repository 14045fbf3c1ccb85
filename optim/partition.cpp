#include "optim/partition.h"

#include <algorithm>

#include "common/error.h"

namespace coldstart {

std::vector<size_t> partition_parameters(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors, int ranks) {
    if (ranks < 1) fail("partition: %d ranks", ranks);
    const std::vector<TensorRole> roles = tensor_roles(config, tensors);
    std::vector<size_t> cuts = {0};  // every place a shard may begin, ascending
    size_t total = 0;
    for (size_t k = 0; k < tensors.size(); ++k) {
        const TensorSlice& t = tensors[k];
        const bool whole = t.rows == 1 || (roles[k].controlled && config.control == ControlScope::tensor);
        const size_t cols = t.numel / size_t(t.rows);
        if (!whole)
            for (int r = 1; r < t.rows; ++r) cuts.push_back(t.offset + size_t(r) * cols);
        total = t.offset + t.numel;
        cuts.push_back(total);
    }
    std::vector<size_t> offsets = {0};
    for (int r = 1; r < ranks; ++r) {
        const size_t target = size_t((long double)total * r / ranks);
        auto at = std::lower_bound(cuts.begin(), cuts.end(), target);
        if (at != cuts.begin() && (at == cuts.end() || *at - target > target - *(at - 1))) --at;  // the nearer cut
        offsets.push_back(std::max(*at, offsets.back()));
    }
    offsets.push_back(total);
    return offsets;
}

size_t total_parameters(const std::vector<TensorSlice>& tensors) {
    return tensors.empty() ? 0 : tensors.back().offset + tensors.back().numel;
}

RowRange rows_in_shard(const TensorSlice& t, const ParameterShard& shard) {
    const size_t cols = t.numel / size_t(t.rows);
    const size_t begin = std::max(shard.begin, t.offset), end = std::min(shard.end, t.offset + t.numel);
    if (begin >= end) return {};
    // Shards are cut between rows: begin and end fall on row boundaries of t.
    return {(begin - t.offset) / cols, (end - t.offset + cols - 1) / cols};
}

}  // namespace coldstart
