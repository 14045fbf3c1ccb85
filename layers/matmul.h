// Folder layers/: one header per GPT-2 layer (encoder, layernorm, matmul, attention, gelu, residual,
// classifier), each with a plain fp32 C++ forward and backward that is the specification and the test
// oracle of its CUDA kernels in layers/cuda/. A layer knows no optimizer, no file and no backend: layers/
// may include model/ and common/ (layers/cuda/ also common/cuda/), never optim/ (tools/check_includes.py).
// This layer is the folder's main file because it is nearly all of a step's time.
//
// The fully connected layer of GPT-2: out = inp @ weight^T + bias, with weight stored OC x C as in
// PyTorch's nn.Linear (and in llm.c's checkpoints).
//
// It is nearly all of the CPU time of a training step, so both directions run on one cache-blocked
// GEMM with packed operands and a register-tiled micro-kernel instead of a plain loop nest (see
// matmul.cpp). Every output element is computed by exactly one thread in a fixed summation order, so
// the results are bitwise identical whatever the number of OpenMP threads.
#pragma once

#include <cstddef>

namespace coldstart::cpu {

// Overwrites out with inp @ weight^T + bias; bias may be nullptr (the tied lm head has none).
void matmul_forward(float* out /*N,OC*/, const float* inp /*N,C*/, const float* weight /*OC,C*/,
                    const float* bias /*OC or nullptr*/, size_t N, int C, int OC);

// Accumulates the gradients of matmul_forward:
//   dinp += dout @ weight        (skipped when dinp is nullptr, e.g. for a first layer)
//   dweight += dout^T @ inp
//   dbias += column sums of dout (skipped when dbias is nullptr)
void matmul_backward(float* dinp /*N,C or nullptr*/, float* dweight /*OC,C*/, float* dbias /*OC or nullptr*/,
                     const float* dout /*N,OC*/, const float* inp /*N,C*/, const float* weight /*OC,C*/,
                     size_t N, int C, int OC);

}  // namespace coldstart::cpu
