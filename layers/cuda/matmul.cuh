// Folder layers/cuda/: each layer's CUDA kernels, one file per layer (the CPU reference of each is in
// layers/). May include layers/, model/, common/ and common/cuda/ (tools/check_includes.py).
//
// The fully connected layer on the GPU (CPU reference and semantics: layers/matmul.h), on cuBLASLt:
// out = inp @ weight^T + bias with weight (OC, C) as nn.Linear stores it, all buffers row-major.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <string>

namespace coldstart::cuda {

// One cuBLASLt handle, its workspace and the algorithm chosen for each shape. Products accumulate
// in fp32 (CUBLAS_COMPUTE_32F: tensor cores for bf16, true fp32 FMA for float, never TF32). The
// algorithm for a shape is chosen once by cuBLASLt's heuristic and then reused, so every call of a
// shape runs the same kernel with the same summation order (the same bits every run).
class Matmul {
public:
    explicit Matmul(cudaStream_t stream);
    ~Matmul();
    Matmul(const Matmul&) = delete;
    Matmul& operator=(const Matmul&) = delete;

    // out = inp @ weight^T (+ bias). With pre_gelu (GELU fusion): pre_gelu = inp @ weight^T + bias and
    // out = GELU(pre_gelu), in the epilogue (cuBLASLt's GELU is the tanh approximation); needs OC % 8 == 0.
    template <typename T>
    void forward(T* out /*N,OC*/, const T* inp /*N,C*/, const T* weight /*OC,C*/, const T* bias /*OC or nullptr*/, int N,
                 int C, int OC, T* pre_gelu = nullptr /*N,OC*/);
    // dinp = dout @ weight (overwrites). With pre_gelu (GELU fusion): dinp = GELU'(pre_gelu) * (dout @ weight),
    // where pre_gelu (N,C) is the input of the GELU that produced this layer's input; needs C % 8 == 0.
    template <typename T>
    void backward_input(T* dinp /*N,C*/, const T* dout /*N,OC*/, const T* weight /*OC,C*/, int N, int C, int OC,
                        const T* pre_gelu = nullptr /*N,C*/);
    // dweight += dout^T @ inp, accumulated in the fp32 gradient.
    template <typename T>
    void backward_weight(float* dweight /*OC,C*/, const T* dout /*N,OC*/, const T* inp /*N,C*/, int N, int C, int OC);

    cudaStream_t stream() const { return stream_; }
    size_t workspace_bytes() const { return kWorkspaceBytes; }

private:
    struct Gemm;  // one column-major product D = op(A) op(B) (+ beta D), see matmul.cu
    struct Plan;
    void run(const Gemm& g);

    static constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what cuBLAS recommends on Hopper
    cudaStream_t stream_;
    cublasLtHandle_t handle_ = nullptr;
    void* workspace_ = nullptr;
    std::map<std::string, Plan*> plans_;
};

// dbias += column sums of dout (fp32 gradient), one pass of 128-bit loads, deterministic without atomics
// (column_sums.cuh). The model needs it for the qkv bias only (and the fc bias with GELU fusion): the
// others come with passes that read the same rows anyway (layernorm_backward's dsum, gelu_backward_bias).
// scratch needs bias_backward_scratch_floats(N, OC) floats.
template <typename T>
void bias_backward(float* dbias /*OC*/, const T* dout /*N,OC*/, int N, int OC, float* scratch, cudaStream_t stream);
size_t bias_backward_scratch_floats(int N, int OC);

}  // namespace coldstart::cuda
