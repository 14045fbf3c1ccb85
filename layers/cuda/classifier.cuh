// The fused softmax cross-entropy on the GPU (CPU reference and semantics: layers/classifier.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace coldstart::cuda {

// For each row n of logits (N, Vp), over its first V columns: losses[n] = logsumexp - logit[target].
// With dlogits, the same kernel then overwrites the row in place with
// dloss * (softmax - onehot(target)), zeros in the padded columns: the probabilities are never stored.
// Without (evaluation), the logits are left as they were. targets must lie in [0, V) (the caller
// checks on the host, where the tokens come from).
template <typename T>
void classifier_forward(float* losses /*N*/, T* logits_to_dlogits /*N,Vp*/, const int* targets /*N device*/, float dloss,
                        size_t N, int V, int Vp, bool write_dlogits, cudaStream_t stream);

// *sum += the mean of losses (N), summed in double in a fixed order and rounded to float as the CPU model
// rounds its mean: a step's loss is summed over its micro-batches on the device, and read once.
void add_mean_loss(double* sum /*1 device*/, const float* losses /*N*/, int N, cudaStream_t stream);

}  // namespace coldstart::cuda
