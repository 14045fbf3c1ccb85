// GELU (tanh approximation) on the GPU; CPU reference and semantics: layers/gelu.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace coldstart::cuda {

template <typename T>
void gelu_forward(T* out /*N*/, const T* inp /*N*/, size_t N, cudaStream_t stream);

// d = GELU'(inp) * d in place, and dbias += the column sums of the new d as stored: the backward of the
// MLP's GELU and of the bias of the product before it in one pass over the rows. d holds d(out) on entry
// and d(inp) on return (it overwrites: the CPU reference accumulates into a zeroed buffer, the model never
// needs the sum). Deterministic without atomics (column_sums.cuh); scratch needs
// gelu_backward_scratch_floats(N, OC) floats.
template <typename T>
void gelu_backward_bias(T* d /*N,OC*/, float* dbias /*OC*/, const T* inp /*N,OC*/, int N, int OC, float* scratch,
                        cudaStream_t stream);
size_t gelu_backward_scratch_floats(int N, int OC);

}  // namespace coldstart::cuda
