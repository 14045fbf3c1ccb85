// GELU (tanh approximation) on the GPU; CPU reference and semantics: layers/gelu.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace coldstart::cuda {

template <typename T>
void gelu_forward(T* out /*N*/, const T* inp /*N*/, size_t N, cudaStream_t stream);

// d = GELU'(inp) * d, in place: d holds d(out) on entry and d(inp) on return. It overwrites (the
// CPU reference accumulates into a zeroed buffer; the model never needs the sum).
template <typename T>
void gelu_backward_inplace(T* d /*N*/, const T* inp /*N*/, size_t N, cudaStream_t stream);

}  // namespace coldstart::cuda
