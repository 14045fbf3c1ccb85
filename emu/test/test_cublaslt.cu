// The emulated cuBLASLt against a plain triple loop written from cuBLASLt's documented semantics
// (column-major, op(A) op(B), leading dimensions, alpha and beta, the epilogues), and the calls the library
// refuses: a leading dimension below the rows, an aux leading dimension not divisible by 8, a pointer less
// aligned than the chosen algorithm needs, a matrix that runs past its allocation.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/random.h"

namespace {

struct Problem {
    int m, n, k;
    bool ta, tb;
    int lda, ldb, ldd;
    float alpha, beta;
    cublasLtEpilogue_t epilogue;
};

float gelu(float x) { return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x))); }
float dgelu(float x) {
    const float t = std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
}

// Runs one fp32 matmul through the emulated cuBLASLt; returns its status (the outputs in d and aux).
cublasStatus_t run(const Problem& p, const float* a, const float* b, float* d, const float* bias, float* aux, int aux_ld,
                   uint32_t align = 256) {
    cublasLtHandle_t h;
    cublasLtCreate(&h);
    cublasLtMatmulDesc_t desc;
    cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t ta = p.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &p.epilogue, sizeof p.epilogue);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux);
    const int64_t ld_aux = aux_ld;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof ld_aux);
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, p.ta ? p.k : p.m, p.ta ? p.m : p.k, p.lda);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, p.tb ? p.n : p.k, p.tb ? p.k : p.n, p.ldb);
    cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, p.m, p.n, p.ldd);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof align);
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, ld, ld, pref, 1, &result, &found);
    if (s == CUBLAS_STATUS_SUCCESS && found == 1)
        s = cublasLtMatmul(h, desc, &p.alpha, a, la, b, lb, &p.beta, d, ld, d, ld, &result.algo, nullptr, 0, nullptr);
    else if (s == CUBLAS_STATUS_SUCCESS)
        s = CUBLAS_STATUS_NOT_SUPPORTED;
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(h);
    return s;
}

float* device_copy(const std::vector<float>& h) {
    float* p = nullptr;
    REQUIRE(cudaMalloc(&p, h.size() * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaMemcpy(p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    return p;
}

std::vector<float> host_copy(const float* d, size_t n) {
    std::vector<float> h(n);
    REQUIRE(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
}

std::vector<float> random(coldstart::Rng& rng, size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = 2.0f * float(rng.uniform()) - 1.0f;
    return v;
}

}  // namespace

TEST_CASE("emulated cuBLASLt: op(A) op(B) with leading dimensions, alpha, beta and every epilogue coldstart uses") {
    coldstart::Rng rng(5);
    const cublasLtEpilogue_t epilogues[] = {CUBLASLT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_GELU_AUX,
                                            CUBLASLT_EPILOGUE_GELU_AUX_BIAS, CUBLASLT_EPILOGUE_DGELU};
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (cublasLtEpilogue_t e : epilogues) {
                const int m = 24, n = 7, k = 13;
                Problem p{m, n, k, ta, tb, (ta ? k : m) + 3, (tb ? n : k) + 2, m + 5, 0.75f, e == CUBLASLT_EPILOGUE_DEFAULT ? 0.5f : 0.0f, e};
                CAPTURE(ta); CAPTURE(tb); CAPTURE(int(e));
                const std::vector<float> a = random(rng, size_t(p.lda) * (ta ? m : k)), b = random(rng, size_t(p.ldb) * (tb ? k : n));
                const std::vector<float> d0 = random(rng, size_t(p.ldd) * n), bias = random(rng, size_t(m));
                const int aux_ld = 32;
                const std::vector<float> aux0 = random(rng, size_t(aux_ld) * n);
                float *da = device_copy(a), *db = device_copy(b), *dd = device_copy(d0), *dbias = device_copy(bias), *daux = device_copy(aux0);
                REQUIRE(run(p, da, db, dd, dbias, daux, aux_ld) == CUBLAS_STATUS_SUCCESS);
                const std::vector<float> d = host_copy(dd, d0.size()), aux = host_copy(daux, aux0.size());
                double worst = 0;
                for (int j = 0; j < n; ++j)
                    for (int i = 0; i < m; ++i) {
                        double s = 0;
                        for (int l = 0; l < k; ++l)
                            s += double(ta ? a[size_t(l + i * p.lda)] : a[size_t(i + l * p.lda)]) *
                                 double(tb ? b[size_t(j + l * p.ldb)] : b[size_t(l + j * p.ldb)]);
                        float x = float(p.alpha * s + p.beta * d0[size_t(i + j * p.ldd)]);
                        if (e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) x += bias[size_t(i)];
                        if (e == CUBLASLT_EPILOGUE_DGELU) x *= dgelu(aux0[size_t(i + j * aux_ld)]);
                        if (e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
                            CHECK(std::fabs(aux[size_t(i + j * aux_ld)] - x) < 1e-5f);
                            x = gelu(x);
                        }
                        worst = std::max(worst, double(std::fabs(d[size_t(i + j * p.ldd)] - x)));
                    }
                CHECK(worst < 1e-5);
                // The padding rows between the leading dimension and m are never written.
                for (int j = 0; j < n; ++j)
                    for (int i = m; i < p.ldd; ++i) CHECK(d[size_t(i + j * p.ldd)] == d0[size_t(i + j * p.ldd)]);
                for (float* q : {da, db, dd, dbias, daux}) cudaFree(q);
            }
}

TEST_CASE("emulated cuBLASLt refuses what cuBLASLt refuses") {
    coldstart::Rng rng(6);
    std::vector<float> host = random(rng, 4096);
    float* x = device_copy(host);
    const Problem good{16, 8, 8, false, false, 16, 8, 16, 1.0f, 0.0f, CUBLASLT_EPILOGUE_DEFAULT};
    CHECK(run(good, x, x + 256, x + 512, nullptr, nullptr, 0) == CUBLAS_STATUS_SUCCESS);
    Problem wrong_ld = good;
    wrong_ld.lda = 8;  // below A's 16 rows
    CHECK(run(wrong_ld, x, x + 256, x + 512, nullptr, nullptr, 0) == CUBLAS_STATUS_INVALID_VALUE);
    Problem gelu = good;
    gelu.epilogue = CUBLASLT_EPILOGUE_GELU_AUX;
    CHECK(run(gelu, x, x + 256, x + 512, nullptr, x + 1024, 20) == CUBLAS_STATUS_INVALID_VALUE);  // aux ld not divisible by 8
    CHECK(run(gelu, x, x + 256, x + 512, nullptr, x + 1024, 16) == CUBLAS_STATUS_SUCCESS);
    // A at 4 bytes past a 256-byte boundary: the default preference (256) picks an algorithm that needs 16.
    CHECK(run(good, x + 1, x + 256, x + 512, nullptr, nullptr, 0) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(run(good, x + 1, x + 256, x + 512, nullptr, nullptr, 0, 4) == CUBLAS_STATUS_SUCCESS);  // told the truth
    // D's 8 columns of ld 16 from float 4000 run past the allocation's 4096 floats.
    CHECK(run(good, x, x + 256, x + 4000, nullptr, nullptr, 0) == CUBLAS_STATUS_INVALID_VALUE);
    cudaFree(x);
}
