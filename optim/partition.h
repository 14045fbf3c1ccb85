// ZeRO-1: the parameters (and with them the optimizer state and fp32 master weights) cut into one
// contiguous shard per rank. A cut may fall only where the optimizer's work splits cleanly: between
// rows, never inside a row that LionA/LionAR normalise, never inside a tensor that is controlled as a whole
// (--control tensor) or a vector (its statistics stay on one rank), so a shard's step needs nothing from
// the other ranks but the per-tensor sums, which are reduced once per step.
#pragma once

#include <cstddef>
#include <vector>

#include "optim/optimizer.h"

namespace coldstart {

struct ParameterShard {
    size_t begin = 0, end = SIZE_MAX;  // [begin, end) of the flat parameter buffer; the default is all of it
    bool contains_all(size_t total) const { return begin == 0 && end >= total; }
};

// The number of parameters of the flat buffer the tensors cut (the end of the last one).
size_t total_parameters(const std::vector<TensorSlice>& tensors);

// Offsets (ranks+1, from 0 to the total) of the shards, each as close to total/ranks elements as the
// allowed cuts let it be.
std::vector<size_t> partition_parameters(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors, int ranks);

// The rows [first, last) of tensor t inside the shard (empty: first == last).
struct RowRange {
    size_t first = 0, last = 0;
    bool empty() const { return first == last; }
};
RowRange rows_in_shard(const TensorSlice& t, const ParameterShard& shard);

}  // namespace coldstart
