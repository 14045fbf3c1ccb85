// cuBLASLt glue. Row-major X (rows, cols) is column-major X^T with the same leading dimension, so
//   out (N,OC)  = inp @ W^T   is  out^T (OC,N)  = W^T[col-major (C,OC)]^T . inp^T   (m=OC, n=N,  k=C)
//   dinp (N,C)  = dout @ W    is  dinp^T (C,N)  = W^T (C,OC) . dout^T (OC,N)        (m=C,  n=N,  k=OC)
//   dW (OC,C)  += dout^T @ inp is  dW^T (C,OC) += inp^T (C,N) . (dout^T (OC,N))^T    (m=C,  n=OC, k=N)
// Alignment: per-layer slices of the flat parameter buffer start wherever the layout puts them (for
// C = 72, not on 256 bytes), so each call tells cuBLASLt the alignment its pointers really have
// instead of letting the heuristic assume 256 bytes.
#include "layers/cuda/matmul.cuh"

#include <algorithm>

#include "common/cuda/common.cuh"
#include "common/error.h"
#include "layers/cuda/column_sums.cuh"

namespace coldstart::cuda {

#define CUBLAS_CHECK(call)                                                                                     \
    do {                                                                                                       \
        const cublasStatus_t cublas_check_status_ = (call);                                                    \
        if (cublas_check_status_ != CUBLAS_STATUS_SUCCESS)                                                     \
            throw_library_error("cuBLASLt", #call, int(cublas_check_status_),                                  \
                                cublasLtGetStatusString(cublas_check_status_),                                 \
                                cublas_check_status_ == CUBLAS_STATUS_ALLOC_FAILED                             \
                                    ? "out of GPU memory: try a smaller -b or -r 2"                            \
                                    : "see the shape in the next error line, if any; a bug in the caller",     \
                                __FILE__, __LINE__);                                                           \
    } while (0)

namespace {

template <typename T> constexpr cudaDataType_t data_type();
template <> constexpr cudaDataType_t data_type<float>() { return CUDA_R_32F; }
template <> constexpr cudaDataType_t data_type<bf16>() { return CUDA_R_16BF; }

uint32_t alignment(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (a == 0) return 256;
    return uint32_t(std::min<uintptr_t>(256, a & (~a + 1)));  // lowest set bit
}

}  // namespace

struct Matmul::Gemm {
    int m, n, k;
    bool trans_a, trans_b;
    const void* a;
    int lda;
    const void* b;
    int ldb;
    void* d;
    int ldd;
    cudaDataType_t ab_type, d_type;
    float beta;  // 0: overwrite D, 1: accumulate into it
    cublasLtEpilogue_t epilogue;
    const void* bias;  // or nullptr
    const void* aux;   // GELU input for GELU_AUX / DGELU, or nullptr
    int ld_aux;

    std::string key() const {
        return format("%d %d %d %d %d %d %d %d %d %d %g %d %d %d %u %u %u %u %u", m, n, k, trans_a, trans_b, lda, ldb, ldd,
                      int(ab_type), int(d_type), beta, int(epilogue), bias != nullptr, ld_aux, alignment(a), alignment(b),
                      alignment(d), alignment(bias), alignment(aux));
    }
};

struct Matmul::Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    ~Plan() {
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (desc) cublasLtMatmulDescDestroy(desc);
    }
};

Matmul::Matmul(cudaStream_t stream) : stream_(stream) {
    CUBLAS_CHECK(cublasLtCreate(&handle_));
    CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
}

Matmul::~Matmul() {
    for (auto& [key, plan] : plans_) delete plan;
    if (workspace_) cudaFree(workspace_);
    if (handle_) cublasLtDestroy(handle_);
}

void Matmul::run(const Gemm& g) {
    const std::string key = g.key();
    Plan*& plan = plans_[key];
    const bool fresh = plan == nullptr;
    if (fresh) {
        plan = new Plan;
        CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &g.epilogue, sizeof(g.epilogue)));
        if (g.bias) {
            const int32_t bias_type = g.d_type;
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
        }
        if (g.aux) {
            const int64_t ld = g.ld_aux;
            const int32_t aux_type = g.d_type;
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof(ld)));
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &aux_type, sizeof(aux_type)));
        }
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, g.ab_type, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, g.lda));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, g.ab_type, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ldb));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->d, g.d_type, g.m, g.n, g.ldd));
    }
    // Pointers are set on every call (they change; the plan's key holds only their alignment). The
    // heuristic reads them for alignment, so they are set before it runs.
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof(g.aux)));
    if (fresh) {
        cublasLtMatmulPreference_t pref;
        CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        const size_t ws = kWorkspaceBytes;
        const uint32_t align_a = alignment(g.a), align_b = alignment(g.b), align_d = alignment(g.d);
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof(align_d)));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d)));
        cublasLtMatmulHeuristicResult_t result{};
        int found = 0;
        const cublasStatus_t status =
            cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, pref, 1, &result, &found);
        cublasLtMatmulPreferenceDestroy(pref);
        if (status != CUBLAS_STATUS_SUCCESS || found == 0) {
            const std::string shape = key;
            delete plan;
            plans_.erase(key);
            fail("cuBLASLt found no algorithm (status %d, %s) for m=%d n=%d k=%d (key: %s); a shape or alignment it "
                 "does not support",
                 int(status), cublasLtGetStatusString(status), g.m, g.n, g.k, shape.c_str());
        }
        plan->algo = result.algo;
    }
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &alpha, g.a, plan->a, g.b, plan->b, &g.beta, g.d, plan->d, g.d, plan->d,
                                &plan->algo, workspace_, kWorkspaceBytes, stream_));
}

template <typename T>
void Matmul::forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC, T* pre_gelu) {
    if (pre_gelu && OC % 8 != 0) fail("matmul: GELU fusion needs the output width (%d) to be a multiple of 8", OC);
    const cublasLtEpilogue_t epilogue = pre_gelu ? (bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
                                                 : (bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
    run({OC, N, C, true, false, weight, C, inp, C, out, OC, data_type<T>(), data_type<T>(), 0.0f, epilogue, bias, pre_gelu, OC});
}

template <typename T>
void Matmul::backward_input(T* dinp, const T* dout, const T* weight, int N, int C, int OC, const T* pre_gelu) {
    if (pre_gelu && C % 8 != 0) fail("matmul: GELU fusion needs the input width (%d) to be a multiple of 8", C);
    run({C, N, OC, false, false, weight, C, dout, OC, dinp, C, data_type<T>(), data_type<T>(), 0.0f,
         pre_gelu ? CUBLASLT_EPILOGUE_DGELU : CUBLASLT_EPILOGUE_DEFAULT, nullptr, pre_gelu, C});
}

template <typename T>
void Matmul::backward_weight(float* dweight, const T* dout, const T* inp, int N, int C, int OC) {
    run({C, OC, N, false, true, inp, C, dout, OC, dweight, C, data_type<T>(), CUDA_R_32F, 1.0f, CUBLASLT_EPILOGUE_DEFAULT,
         nullptr, nullptr, 0});
}

// ---- bias gradient: column sums, 128-bit loads, deterministic (column_sums.cuh) ----
namespace {

template <typename T, int W>
__global__ void __launch_bounds__(32 * kRowGroups)
    bias_backward_kernel(float* partial, const T* dout, int N, int OC, int rows_per_part) {
    column_tile_sums<T, W>(partial, dout, N, OC, rows_per_part, [](Vec<T, W>&, int, int) {});
}

template <typename T, int W>
void launch_bias_backward(float* dbias, const T* dout, int N, int OC, float* scratch, cudaStream_t stream) {
    bias_backward_kernel<T, W><<<column_tile_grid(OC, W, N), column_tile_block(), 0, stream>>>(scratch, dout, N, OC,
                                                                                               rows_per_column_part(N));
    KERNEL_CHECK("bias_backward_kernel");
    add_partials({{dbias}, 1}, scratch, column_parts(N), OC, stream);
}

}  // namespace

size_t bias_backward_scratch_floats(int N, int OC) { return size_t(column_parts(N)) * size_t(OC); }

template <typename T>
void bias_backward(float* dbias, const T* dout, int N, int OC, float* scratch, cudaStream_t stream) {
    if (packable<T>(size_t(OC), {dout}))
        launch_bias_backward<T, Pack<T>::n>(dbias, dout, N, OC, scratch, stream);
    else
        launch_bias_backward<T, 1>(dbias, dout, N, OC, scratch, stream);
}

#define INSTANTIATE(T)                                                                                              \
    template void Matmul::forward<T>(T*, const T*, const T*, const T*, int, int, int, T*);                         \
    template void Matmul::backward_input<T>(T*, const T*, const T*, int, int, int, const T*);                      \
    template void Matmul::backward_weight<T>(float*, const T*, const T*, int, int, int);                           \
    template void bias_backward<T>(float*, const T*, int, int, float*, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(bf16)

}  // namespace coldstart::cuda
