// The subset of cuBLASLt that coldstart calls, written from the semantics documented in cublasLt.h (the
// comments of each attribute and epilogue), not from our calling code:
//   D = epilogue(alpha * op(A) op(B) + beta * C + bias), column-major, with leading dimensions; C is not
//   read when beta is 0; A and B fp32 or bf16 (the same type), C and D fp32 or bf16 (fp32 if A is),
//   compute and scale type fp32; epilogues DEFAULT, BIAS, GELU, GELU_BIAS, GELU_AUX, GELU_AUX_BIAS (the
//   GELU input stored in the aux matrix) and DGELU (the product times GELU's derivative at the aux matrix);
//   the aux leading dimension divisible by 8 and at least the rows of D; the heuristic's minimum alignment
//   preferences (default 256 bytes), which the chosen algorithm then requires of the pointers it is given.
// What the library would refuse is refused with its status and a line on stderr that says why. Products
// accumulate in fp32, in a fixed order (the same bits every run, on any number of threads).
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "emu/internal.h"

namespace {

struct Handle {
    int magic = 0x1a57;
};

struct MatmulDesc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void* bias = nullptr;
    int32_t bias_type = -1;  // -1: the type of D
    void* aux = nullptr;
    int64_t aux_ld = 0;
    int32_t aux_type = -1;  // -1: the type of D
};

struct Layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};

struct Preference {
    uint64_t workspace = 0;
    uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D
};

// What the emulated "algorithm" needs: the alignment of A, B, C, D (and of bias and aux, as the heuristic saw them).
struct Algo {
    uint32_t magic;
    uint32_t align[6];
};
static_assert(sizeof(Algo) <= sizeof(cublasLtMatmulAlgo_t), "the algorithm fits cuBLASLt's opaque struct");

cublasStatus_t refuse(cublasStatus_t status, const char* call, const char* why) {
    std::fprintf(stderr, "emulated cuBLASLt: %s: %s\n", call, why);
    return status;
}

size_t element_bytes(int32_t type) { return type == CUDA_R_32F ? 4 : 2; }
bool supported_type(int32_t type) { return type == CUDA_R_32F || type == CUDA_R_16BF; }

uint32_t alignment(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    return a == 0 ? 256u : uint32_t(std::min<uintptr_t>(256, a & (~a + 1)));
}

bool has_bias(cublasLtEpilogue_t e) { return (e & CUBLASLT_EPILOGUE_BIAS) == CUBLASLT_EPILOGUE_BIAS; }
bool is_gelu(cublasLtEpilogue_t e) { return e == CUBLASLT_EPILOGUE_GELU || e == CUBLASLT_EPILOGUE_GELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS; }
bool has_aux(cublasLtEpilogue_t e) { return e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_DGELU; }
bool supported_epilogue(cublasLtEpilogue_t e) {
    return e == CUBLASLT_EPILOGUE_DEFAULT || e == CUBLASLT_EPILOGUE_BIAS || is_gelu(e) || e == CUBLASLT_EPILOGUE_DGELU;
}

int32_t resolved(int32_t type, const Layout& d) { return type < 0 ? int32_t(d.type) : type; }

// The checks that the heuristic and the matmul share: shapes, types, leading dimensions, the epilogue.
cublasStatus_t check_problem(const char* call, const MatmulDesc& m, const Layout& a, const Layout& b, const Layout& c, const Layout& d) {
    char why[256];
    const uint64_t am = m.trans_a == CUBLAS_OP_N ? a.rows : a.cols, ak = m.trans_a == CUBLAS_OP_N ? a.cols : a.rows;
    const uint64_t bk = m.trans_b == CUBLAS_OP_N ? b.rows : b.cols, bn = m.trans_b == CUBLAS_OP_N ? b.cols : b.rows;
    if (ak != bk || am != d.rows || bn != d.cols || c.rows != d.rows || c.cols != d.cols) {
        std::snprintf(why, sizeof why, "shapes do not agree: op(A) %llux%llu, op(B) %llux%llu, C %llux%llu, D %llux%llu",
                      (unsigned long long)am, (unsigned long long)ak, (unsigned long long)bk, (unsigned long long)bn,
                      (unsigned long long)c.rows, (unsigned long long)c.cols, (unsigned long long)d.rows, (unsigned long long)d.cols);
        return refuse(CUBLAS_STATUS_INVALID_VALUE, call, why);
    }
    const Layout* layouts[4] = {&a, &b, &c, &d};
    const char* names = "ABCD";
    for (int i = 0; i < 4; ++i)
        if (layouts[i]->ld < int64_t(std::max<uint64_t>(1, layouts[i]->rows))) {
            std::snprintf(why, sizeof why, "matrix %c: leading dimension %lld is below its %llu rows (column-major)", names[i],
                          (long long)layouts[i]->ld, (unsigned long long)layouts[i]->rows);
            return refuse(CUBLAS_STATUS_INVALID_VALUE, call, why);
        }
    if (m.compute != CUBLAS_COMPUTE_32F || m.scale != CUDA_R_32F)
        return refuse(CUBLAS_STATUS_NOT_SUPPORTED, call, "only compute type CUBLAS_COMPUTE_32F with scale type CUDA_R_32F is emulated");
    if (a.type != b.type || !supported_type(a.type) || c.type != d.type || !supported_type(d.type) ||
        (a.type == CUDA_R_32F && d.type != CUDA_R_32F))
        return refuse(CUBLAS_STATUS_NOT_SUPPORTED, call, "types: A and B fp32 or bf16 alike, C and D fp32 or bf16 alike (fp32 if A is)");
    if (!supported_epilogue(m.epilogue)) return refuse(CUBLAS_STATUS_NOT_SUPPORTED, call, "this epilogue is not emulated");
    if (has_bias(m.epilogue) && !supported_type(resolved(m.bias_type, d)))
        return refuse(CUBLAS_STATUS_NOT_SUPPORTED, call, "bias data type: fp32 or bf16");
    if (has_aux(m.epilogue)) {
        if (!supported_type(resolved(m.aux_type, d))) return refuse(CUBLAS_STATUS_NOT_SUPPORTED, call, "aux data type: fp32 or bf16");
        if (m.aux_ld % 8 != 0 || m.aux_ld < int64_t(d.rows)) {
            std::snprintf(why, sizeof why,
                          "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD %lld: must be divisible by 8 and no less than the %llu rows of D",
                          (long long)m.aux_ld, (unsigned long long)d.rows);
            return refuse(CUBLAS_STATUS_INVALID_VALUE, call, why);
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

float load(const void* p, int32_t type, size_t i) {
    return type == CUDA_R_32F ? static_cast<const float*>(p)[i] : __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}
void store(void* p, int32_t type, size_t i, float x) {
    if (type == CUDA_R_32F) static_cast<float*>(p)[i] = x;
    else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(x);
}

constexpr float kSqrt2OverPi = 0.7978845608028654f, kCubic = 0.044715f;
float gelu(float x) { return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x))); }
float gelu_derivative(float x) {
    const float t = std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
}

// A dot product in fp32 with 8 interleaved partial sums (vectorised by the compiler), added in a fixed tree.
float dot(const float* a, const float* b, size_t k) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t l = 0;
    for (; l + 8 <= k; l += 8)
        for (int q = 0; q < 8; ++q) acc[q] += a[l + q] * b[l + q];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; l < k; ++l) s += a[l] * b[l];
    return s;
}

// Everything a matmul needs, copied when it is called (it may run later, on a deferred stream).
struct Gemm {
    MatmulDesc desc;
    Layout a, b, c, d;
    float alpha, beta;
    const void *pa, *pb, *pc;
    void* pd;

    void run() const {
        const size_t m = d.rows, n = d.cols, k = desc.trans_a == CUBLAS_OP_N ? a.cols : a.rows;
        // Small products stay on one thread: waking the others costs more than they would save.
        const bool parallel = double(m) * double(n) * double(k) > double(1 << 22);
        // op(A) as m rows of k, op(B) as n rows of k: every dot product reads two contiguous rows.
        std::vector<float> ap(m * k), bp(n * k);
#pragma omp parallel for if (parallel)
        for (size_t i = 0; i < m; ++i)
            for (size_t l = 0; l < k; ++l)
                ap[i * k + l] = load(pa, a.type, desc.trans_a == CUBLAS_OP_N ? i + l * size_t(a.ld) : l + i * size_t(a.ld));
#pragma omp parallel for if (parallel)
        for (size_t j = 0; j < n; ++j)
            for (size_t l = 0; l < k; ++l)
                bp[j * k + l] = load(pb, b.type, desc.trans_b == CUBLAS_OP_N ? l + j * size_t(b.ld) : j + l * size_t(b.ld));
        const int32_t bias_type = resolved(desc.bias_type, d), aux_type = resolved(desc.aux_type, d);
        const bool bias = has_bias(desc.epilogue), aux = has_aux(desc.epilogue), dgelu = desc.epilogue == CUBLASLT_EPILOGUE_DGELU;
        const bool act = is_gelu(desc.epilogue);
        constexpr size_t kRowBlock = 64;  // rows of op(A) kept in cache while every column of op(B) passes
        const size_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(dynamic) if (parallel)
        for (size_t blk = 0; blk < row_blocks; ++blk) {
            const size_t i0 = blk * kRowBlock, i1 = std::min(m, i0 + kRowBlock);
            for (size_t j = 0; j < n; ++j)
                for (size_t i = i0; i < i1; ++i) {
                    float x = alpha * dot(&ap[i * k], &bp[j * k], k);
                    if (beta != 0.0f) x += beta * load(pc, c.type, i + j * size_t(c.ld));
                    if (bias) x += load(desc.bias, bias_type, i);
                    const size_t ia = i + j * size_t(desc.aux_ld);
                    if (dgelu) x *= gelu_derivative(load(desc.aux, aux_type, ia));
                    if (act) {
                        if (aux) store(desc.aux, aux_type, ia, x);
                        x = gelu(x);
                    }
                    store(pd, d.type, i + j * size_t(d.ld), x);
                }
        }
    }
};

// A matrix's whole extent must lie in one device allocation, as the GPU would read or write it.
bool in_device_memory(const char* what, const void* p, const Layout& l, int32_t type) {
    const size_t extent = l.cols ? ((l.cols - 1) * size_t(l.ld) + l.rows) * element_bytes(type) : 0;
    const emu::Allocation* a = emu::find_allocation(p, extent ? extent : 1);
    if (a && !a->pinned) return true;
    std::fprintf(stderr,
                 "emulated cuBLASLt: cublasLtMatmul: matrix %s (%llu x %llu, ld %lld, %zu bytes from %p) is not inside one device "
                 "allocation\n",
                 what, (unsigned long long)l.rows, (unsigned long long)l.cols, (long long)l.ld, extent, p);
    return false;
}

template <typename T>
cublasStatus_t copy_attribute(T& field, const void* buf, size_t size) {
    if (size != sizeof(T)) return refuse(CUBLAS_STATUS_INVALID_VALUE, "set attribute", "the value's size does not match the attribute's type");
    std::memcpy(&field, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
    *handle = reinterpret_cast<cublasLtHandle_t>(new Handle);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    delete reinterpret_cast<Handle*>(handle);
    return CUBLAS_STATUS_SUCCESS;
}

const char* cublasLtGetStatusString(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "success";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
        case CUBLAS_STATUS_ALLOC_FAILED: return "resource allocation failed";
        case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
        default: return "unknown cuBLAS status";
    }
}
const char* cublasLtGetStatusName(cublasStatus_t status) { return cublasLtGetStatusString(status); }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute, cudaDataType_t scale) {
    auto* d = new MatmulDesc;
    d->compute = compute;
    d->scale = scale;
    *desc = reinterpret_cast<cublasLtMatmulDesc_t>(d);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete reinterpret_cast<MatmulDesc*>(desc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t size) {
    MatmulDesc& d = *reinterpret_cast<MatmulDesc*>(desc);
    switch (attr) {
        case CUBLASLT_MATMUL_DESC_TRANSA: return copy_attribute(d.trans_a, buf, size);
        case CUBLASLT_MATMUL_DESC_TRANSB: return copy_attribute(d.trans_b, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE: return copy_attribute(d.epilogue, buf, size);
        case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return copy_attribute(d.bias, buf, size);
        case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return copy_attribute(d.bias_type, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return copy_attribute(d.aux, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return copy_attribute(d.aux_ld, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: return copy_attribute(d.aux_type, buf, size);
        default: return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulDescSetAttribute", "this attribute is not emulated");
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld) {
    *layout = reinterpret_cast<cublasLtMatrixLayout_t>(new Layout{type, rows, cols, ld});
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete reinterpret_cast<Layout*>(layout);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
    *pref = reinterpret_cast<cublasLtMatmulPreference_t>(new Preference);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete reinterpret_cast<Preference*>(pref);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t size) {
    Preference& p = *reinterpret_cast<Preference*>(pref);
    switch (attr) {
        case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return copy_attribute(p.workspace, buf, size);
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return copy_attribute(p.align[0], buf, size);
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return copy_attribute(p.align[1], buf, size);
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return copy_attribute(p.align[2], buf, size);
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return copy_attribute(p.align[3], buf, size);
        default: return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulPreferenceSetAttribute", "this attribute is not emulated");
    }
}

// One algorithm: it needs each matrix aligned as the preference allows (at most the 16 bytes of a vector
// load, at least one element) and the bias and aux pointers as aligned as they were here.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t* results,
                                              int* found) {
    *found = 0;
    if (requested < 1) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoGetHeuristic", "requestedAlgoCount < 1");
    const MatmulDesc& m = *reinterpret_cast<MatmulDesc*>(desc);
    const Layout &la = *reinterpret_cast<Layout*>(a), &lb = *reinterpret_cast<Layout*>(b), &lc = *reinterpret_cast<Layout*>(c),
                 &ld = *reinterpret_cast<Layout*>(d);
    const cublasStatus_t s = check_problem("cublasLtMatmulAlgoGetHeuristic", m, la, lb, lc, ld);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (has_bias(m.epilogue) && !m.bias)
        return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoGetHeuristic", "a BIAS epilogue without CUBLASLT_MATMUL_DESC_BIAS_POINTER");
    if (has_aux(m.epilogue) && !m.aux)
        return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoGetHeuristic", "an AUX epilogue without CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER");
    const Preference& p = *reinterpret_cast<Preference*>(pref);
    const Layout* layouts[4] = {&la, &lb, &lc, &ld};
    Algo algo{0xa160, {}};
    for (int i = 0; i < 4; ++i) {
        const uint32_t element = uint32_t(element_bytes(layouts[i]->type));
        if (p.align[i] < element) return CUBLAS_STATUS_SUCCESS;  // no algorithm works below one element's alignment
        algo.align[i] = std::min<uint32_t>(16, p.align[i]);
    }
    algo.align[4] = std::min<uint32_t>(16, alignment(m.bias));
    algo.align[5] = std::min<uint32_t>(16, alignment(m.aux));
    std::memset(&results[0], 0, sizeof(results[0]));
    std::memcpy(&results[0].algo, &algo, sizeof(algo));
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha, const void* A, cublasLtMatrixLayout_t a,
                              const void* B, cublasLtMatrixLayout_t b, const void* beta, const void* C, cublasLtMatrixLayout_t c, void* D,
                              cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t* algo, void*, size_t, cudaStream_t stream) {
    const char* call = "cublasLtMatmul";
    if (emu::sticky_error() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    Gemm g;
    g.desc = *reinterpret_cast<MatmulDesc*>(desc);
    g.a = *reinterpret_cast<Layout*>(a);
    g.b = *reinterpret_cast<Layout*>(b);
    g.c = *reinterpret_cast<Layout*>(c);
    g.d = *reinterpret_cast<Layout*>(d);
    const cublasStatus_t s = check_problem(call, g.desc, g.a, g.b, g.c, g.d);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (!algo) return refuse(CUBLAS_STATUS_NOT_SUPPORTED, call, "no algorithm given (the emulation needs the heuristic's)");
    Algo req;
    std::memcpy(&req, algo, sizeof(req));
    if (req.magic != 0xa160) return refuse(CUBLAS_STATUS_INVALID_VALUE, call, "the algorithm did not come from cublasLtMatmulAlgoGetHeuristic");
    const void* pointers[6] = {A, B, C, D, g.desc.bias, g.desc.aux};
    const char* names[6] = {"A", "B", "C", "D", "bias", "aux"};
    for (int i = 0; i < 6; ++i)
        if (pointers[i] && alignment(pointers[i]) < req.align[i]) {
            char why[160];
            std::snprintf(why, sizeof why, "%s at %p is %u-byte aligned, but the algorithm chosen needs %u (the alignment preference or "
                          "the pointer the heuristic saw)", names[i], pointers[i], alignment(pointers[i]), req.align[i]);
            return refuse(CUBLAS_STATUS_INVALID_VALUE, call, why);
        }
    std::memcpy(&g.alpha, alpha, sizeof(float));
    std::memcpy(&g.beta, beta, sizeof(float));
    if (!in_device_memory("A", A, g.a, g.a.type) || !in_device_memory("B", B, g.b, g.b.type) ||
        (g.beta != 0.0f && !in_device_memory("C", C, g.c, g.c.type)) || !in_device_memory("D", D, g.d, g.d.type))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (has_aux(g.desc.epilogue)) {
        const Layout aux{cudaDataType(resolved(g.desc.aux_type, g.d)), g.d.rows, g.d.cols, g.desc.aux_ld};
        if (!in_device_memory("aux", g.desc.aux, aux, aux.type)) return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (has_bias(g.desc.epilogue)) {
        const Layout bias{cudaDataType(resolved(g.desc.bias_type, g.d)), g.d.rows, 1, int64_t(g.d.rows)};
        if (!in_device_memory("bias", g.desc.bias, bias, bias.type)) return CUBLAS_STATUS_INVALID_VALUE;
    }
    g.pa = A;
    g.pb = B;
    g.pc = C;
    g.pd = D;
    emu::enqueue(stream, [g] { g.run(); });
    return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
