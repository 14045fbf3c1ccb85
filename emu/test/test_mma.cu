// The tensor-core wrappers of common/cuda/mma.cuh on the emulated device: mma, ldmatrix and ldmatrix.trans
// against plain loops through the PTX ISA's fragment layouts, cp.async landing only at its wait, and their misuse
// reported with the kernel's file and line.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/cuda/mma.cuh"
#include "emu/internal.h"
#include "emu/test/device_support.h"

namespace {

using namespace emu_test;

using bf16 = __nv_bfloat16;
using namespace coldstart::cuda;

// Small integers and halves: exact in bf16, and every product and sum below is exact in fp32.
std::vector<bf16> matrix(int rows, int cols, int seed) {
    std::vector<bf16> m(size_t(rows) * cols);
    for (size_t i = 0; i < m.size(); ++i) m[i] = __float2bfloat16_rn(float(int((i * 7 + size_t(seed) * 13) % 17) - 8) * 0.5f);
    return m;
}

// ---- the fragment layouts, written out from the PTX ISA's row/col formulas for element i of each fragment ----
// (section "Matrix Fragments for mma.m16n8k16 with floating point type"; g = groupID, t = threadID_in_group)
__device__ int a_row(int lane, int i) { return lane / 4 + (i < 2 || (i >= 4 && i < 6) ? 0 : 8); }
__device__ int a_col(int lane, int i) { return lane % 4 * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
__device__ int b_row(int lane, int i) { return lane % 4 * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
__device__ int b_col(int lane, int) { return lane / 4; }
__device__ int c_row(int lane, int i) { return lane / 4 + (i >= 2 ? 8 : 0); }
__device__ int c_col(int lane, int i) { return lane % 4 * 2 + (i & 1); }

__device__ uint32_t pair(const bf16* m, int ld, int r0, int c0, int r1, int c1) {
    uint16_t lo, hi;
    memcpy(&lo, &m[r0 * ld + c0], 2);
    memcpy(&hi, &m[r1 * ld + c1], 2);
    return uint32_t(lo) | uint32_t(hi) << 16;
}

// D (16x8) = A (16x16, row-major) B (16x8, row-major) + C, each lane building its fragments by the formulas.
__global__ void mma_fragments_kernel(float* d, const bf16* A, const bf16* B, const float* C) {
    const int lane = int(threadIdx.x);
    uint32_t a[4], b[2];
    float acc[4];
    for (int r = 0; r < 4; ++r)  // register r holds elements 2r and 2r + 1
        a[r] = pair(A, 16, a_row(lane, 2 * r), a_col(lane, 2 * r), a_row(lane, 2 * r + 1), a_col(lane, 2 * r + 1));
    for (int r = 0; r < 2; ++r)
        b[r] = pair(B, 8, b_row(lane, 2 * r), b_col(lane, 2 * r), b_row(lane, 2 * r + 1), b_col(lane, 2 * r + 1));
    for (int i = 0; i < 4; ++i) acc[i] = C[c_row(lane, i) * 8 + c_col(lane, i)];
    mma_bf16_16x8x16(acc, a, b);
    for (int i = 0; i < 4; ++i) d[c_row(lane, i) * 8 + c_col(lane, i)] = acc[i];
}

// The same product with the fragments from shared memory through ldmatrix: A row-major; B once stored N x K
// (row n holds column n of B: ldmatrix) and once K x N (ldmatrix.trans). Two 16x8 results side by side make
// d 16x16: columns 0-7 from the first way, 8-15 from the second.
__global__ void mma_ldmatrix_kernel(float* d, const bf16* A, const bf16* B) {
    __shared__ __align__(16) bf16 a_s[16 * 16], bt_s[8 * 16], b_s[16 * 8];
    const int lane = int(threadIdx.x);
    for (int i = lane; i < 256; i += 32) a_s[i] = A[i];
    for (int i = lane; i < 128; i += 32) {
        bt_s[i] = B[(i % 16) * 8 + i / 16];  // bt_s[n][k] = B[k][n]
        b_s[i] = B[i];
    }
    __syncwarp();
    uint32_t a[4], bt[4], b[4];
    // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15)
    ldmatrix_x4(a, &a_s[(lane % 8 + lane / 8 % 2 * 8) * 16 + lane / 16 * 8]);
    // B as N x K: rows n 0-7 at k 0-7 and k 8-15 (matrices 0, 1); matrices 2, 3 repeat them (x4 needs 4)
    ldmatrix_x4(bt, &bt_s[(lane % 8) * 16 + lane / 8 % 2 * 8]);
    // B as K x N, transposed on the load: rows k 0-7 and k 8-15 (matrices 0, 1; 2, 3 repeat them)
    ldmatrix_x4_trans(b, &b_s[(lane % 8 + lane / 8 % 2 * 8) * 8]);
    float first[4] = {}, second[4] = {};
    const uint32_t b_first[2] = {bt[0], bt[1]}, b_second[2] = {b[0], b[1]};
    mma_bf16_16x8x16(first, a, b_first);
    mma_bf16_16x8x16(second, a, b_second);
    for (int i = 0; i < 4; ++i) {
        d[c_row(lane, i) * 16 + c_col(lane, i)] = first[i];
        d[c_row(lane, i) * 16 + 8 + c_col(lane, i)] = second[i];
    }
}

// What each lane receives from four 8x8 matrices stored one after another (32 rows of 8), plain and transposed.
__global__ void ldmatrix_lanes_kernel(uint32_t* plain, uint32_t* transposed, const bf16* m) {
    __shared__ __align__(16) bf16 s[32 * 8];
    const int lane = int(threadIdx.x);
    for (int i = lane; i < 256; i += 32) s[i] = m[i];
    __syncwarp();
    uint32_t r[4], rt[4];
    ldmatrix_x4(r, &s[lane * 8]);  // lane 8m + r: row r of matrix m
    ldmatrix_x4_trans(rt, &s[lane * 8]);
    for (int k = 0; k < 4; ++k) {
        plain[lane * 4 + k] = r[k];
        transposed[lane * 4 + k] = rt[k];
    }
}

// Each thread copies 16 bytes of two groups, looking at its destinations before and after each wait.
// seen[thread][0..3]: the first float of copy 1 before any wait, after wait_group 1, copy 2 there, after wait 0.
__global__ void cp_async_kernel(float* seen, float* zeros, const float* in) {
    __shared__ __align__(16) float first[32 * 4], second[32 * 4], zero_filled[32];
    const int i = int(threadIdx.x);
    cp_async_16(&first[i * 4], &in[i * 4], true);
    cp_async_commit();
    cp_async_16(&second[i * 4], &in[128 + i * 4], true);
    cp_async_4(&zero_filled[i], &in[0], false);
    cp_async_commit();
    seen[i * 4 + 0] = first[i * 4];
    cp_async_wait<1>();
    seen[i * 4 + 1] = first[i * 4];
    seen[i * 4 + 2] = second[i * 4];
    cp_async_wait<0>();
    seen[i * 4 + 3] = second[i * 4];
    zeros[i] = zero_filled[i];
}

// ---- broken on purpose ----

__global__ void cp_async_never_waited_kernel(const float* in) {
    __shared__ __align__(16) float tile[32 * 4];
    cp_async_16(&tile[threadIdx.x * 4], &in[threadIdx.x * 4], true);
    cp_async_commit();
}

// Thread i reads thread i+1's copy after its own wait; with_barrier false leaves out the barrier between.
__global__ void cp_async_barrier_kernel(float* out, const float* in, bool with_barrier) {
    __shared__ __align__(16) float tile[64 * 4];
    const int i = int(threadIdx.x);
    cp_async_16(&tile[i * 4], &in[i * 4], true);
    cp_async_commit();
    cp_async_wait<0>();
    if (with_barrier) __syncthreads();
    out[i] = tile[(i + 1) % 64 * 4];
}

__global__ void mma_lane_exited_kernel(float* out) {
    if (threadIdx.x == 5) return;
    uint32_t a[4] = {}, b[2] = {};
    float d[4] = {};
    mma_bf16_16x8x16(d, a, b);
    out[threadIdx.x] = d[0];
}

__global__ void mma_and_ldmatrix_mixed_kernel(float* out) {
    __shared__ __align__(16) bf16 s[32 * 8];
    uint32_t a[4] = {}, b[2] = {};
    float d[4] = {};
    if (threadIdx.x < 16) mma_bf16_16x8x16(d, a, b);
    else ldmatrix_x4(a, &s[threadIdx.x * 8]);
    out[threadIdx.x] = d[0] + float(a[0]);
}

__global__ void ldmatrix_global_kernel(uint32_t* out, const bf16* m) {
    uint32_t r[4];
    ldmatrix_x4(r, &m[threadIdx.x * 8]);
    out[threadIdx.x] = r[0];
}

float element(uint32_t pair_bits, int high) {
    const uint32_t bits = (high ? pair_bits >> 16 : pair_bits & 0xffffu) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

}  // namespace

TEST_CASE("mma.sync m16n8k16 bf16 (emulated): fragments built by the PTX ISA's layout give A B + C") {
    const std::vector<bf16> A = matrix(16, 16, 1), B = matrix(16, 8, 2);
    std::vector<float> C(16 * 8);
    for (size_t i = 0; i < C.size(); ++i) C[i] = float(i % 5) - 2.0f;
    DeviceVector<bf16> d_A(A), d_B(B);
    DeviceVector<float> d_C(C), d_D(16 * 8);
    mma_fragments_kernel<<<1, 32>>>(d_D.p, d_A.p, d_B.p, d_C.p);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<float> D = d_D.get();
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 8; ++c) {
            double want = C[size_t(r * 8 + c)];
            for (int k = 0; k < 16; ++k)
                want += double(__bfloat162float(A[size_t(r * 16 + k)])) * __bfloat162float(B[size_t(k * 8 + c)]);
            CHECK(D[size_t(r * 8 + c)] == float(want));  // exact: small halves
        }
}

TEST_CASE("ldmatrix.x4 and .trans (emulated) feed mma: A B from shared memory, B stored either way") {
    const std::vector<bf16> A = matrix(16, 16, 3), B = matrix(16, 8, 4);
    DeviceVector<bf16> d_A(A), d_B(B);
    DeviceVector<float> d_D(16 * 16);
    mma_ldmatrix_kernel<<<1, 32>>>(d_D.p, d_A.p, d_B.p);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<float> D = d_D.get();
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 8; ++c) {
            double want = 0;
            for (int k = 0; k < 16; ++k)
                want += double(__bfloat162float(A[size_t(r * 16 + k)])) * __bfloat162float(B[size_t(k * 8 + c)]);
            CHECK(D[size_t(r * 16 + c)] == float(want));
            CHECK(D[size_t(r * 16 + 8 + c)] == float(want));
        }
}

TEST_CASE("ldmatrix.x4 and .trans (emulated): each lane gets the elements the PTX ISA names") {
    std::vector<bf16> m(32 * 8);
    for (size_t i = 0; i < m.size(); ++i) m[i] = __float2bfloat16_rn(float(i));  // element (matrix, row, col) = 64m + 8r + c
    DeviceVector<bf16> d_m(m);
    DeviceVector<uint32_t> plain(128), transposed(128);
    ldmatrix_lanes_kernel<<<1, 32>>>(plain.p, transposed.p, d_m.p);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<uint32_t> p = plain.get(), t = transposed.get();
    for (int lane = 0; lane < 32; ++lane)
        for (int k = 0; k < 4; ++k) {
            CAPTURE(lane);
            CAPTURE(k);
            const int row = lane / 4, col = lane % 4 * 2;  // plain: row lane/4, columns 2(lane%4) and +1
            CHECK(element(p[size_t(lane * 4 + k)], 0) == float(64 * k + 8 * row + col));
            CHECK(element(p[size_t(lane * 4 + k)], 1) == float(64 * k + 8 * row + col + 1));
            // transposed: column lane/4, rows 2(lane%4) and +1
            CHECK(element(t[size_t(lane * 4 + k)], 0) == float(64 * k + 8 * col + row));
            CHECK(element(t[size_t(lane * 4 + k)], 1) == float(64 * k + 8 * (col + 1) + row));
        }
}

TEST_CASE("cp.async (emulated): the bytes land at the wait of their group, not before; src-size 0 fills zeros") {
    std::vector<float> in(256);
    for (size_t i = 0; i < in.size(); ++i) in[i] = float(i) + 1.0f;
    DeviceVector<float> d_in(in), seen(128), zeros(32);
    cp_async_kernel<<<1, 32>>>(seen.p, zeros.p, d_in.p);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<float> s = seen.get(), z = zeros.get();
    for (int i = 0; i < 32; ++i) {
        CAPTURE(i);
        CHECK(std::isnan(s[size_t(i * 4 + 0)]));  // before any wait: the poison
        CHECK(s[size_t(i * 4 + 1)] == in[size_t(i * 4)]);  // wait_group 1: the older group has landed
        CHECK(std::isnan(s[size_t(i * 4 + 2)]));  // the newest has not
        CHECK(s[size_t(i * 4 + 3)] == in[size_t(128 + i * 4)]);
        CHECK(z[size_t(i)] == 0.0f);
    }
}

TEST_CASE("broken kernel: cp.async never waited for") {
    DeviceVector<float> in(std::vector<float>(128, 1.0f));
    cp_async_never_waited_kernel<<<1, 32>>>(in.p);
    const std::string why = failure_and_reset();
    CHECK(contains(why, "never waited for"));
    CHECK(contains(why, "cp_async_never_waited_kernel"));
    CHECK(contains(why, "test_mma.cu:"));
}

TEST_CASE("broken kernel: a barrier missing between cp.async's wait and another thread's read") {
    std::vector<float> in(256);
    for (size_t i = 0; i < in.size(); ++i) in[i] = float(i);
    for (bool with_barrier : {true, false}) {
        CAPTURE(with_barrier);
        DeviceVector<float> d_in(in), out(64);
        cp_async_barrier_kernel<<<1, 64>>>(out.p, d_in.p, with_barrier);
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        int poisoned = 0;
        for (float x : out.get()) poisoned += std::isnan(x);
        if (with_barrier) CHECK(poisoned == 0);
        else CHECK(poisoned > 0);  // thread i reads thread i+1's tile before thread i+1 has waited
    }
}

TEST_CASE("broken kernels: mma with a lane exited, lanes at different tensor-core instructions, ldmatrix from global memory") {
    {
        DeviceVector<float> out(32);
        mma_lane_exited_kernel<<<1, 32>>>(out.p);
        const std::string why = failure_and_reset();
        CHECK(contains(why, "mma.sync.m16n8k16"));
        CHECK(contains(why, "exited"));
        CHECK(contains(why, "test_mma.cu:"));
    }
    {
        DeviceVector<float> out(32);
        mma_and_ldmatrix_mixed_kernel<<<1, 32>>>(out.p);
        const std::string why = failure_and_reset();
        CHECK(contains(why, "disagree"));
        CHECK(contains(why, "ldmatrix.x4"));
    }
    {
        DeviceVector<bf16> m(32 * 8);
        DeviceVector<uint32_t> out(32);
        ldmatrix_global_kernel<<<1, 32>>>(out.p, m.p);
        const std::string why = failure_and_reset();
        CHECK(contains(why, "not inside the block's shared memory"));
        CHECK(contains(why, "test_mma.cu:"));
    }
}
