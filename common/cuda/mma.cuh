// The tensor-core instructions coldstart uses (sm_80 and later), as small device functions: the warp's
// 16x8x16 bf16 matrix multiply-add (mma.sync), the shared-memory matrix loads that feed it (ldmatrix), and
// asynchronous global -> shared copies (cp.async). They are the project's only inline PTX. Each has an
// emulated twin (COLDSTART_EMULATED, set by emu/prelude.h) written from the PTX ISA's definition, so that the
// emulated device runs the kernels built on them and reports their misuse with the kernel's file and line.
//
// Fragments (PTX ISA 9.0, section "Matrix Fragments for mma.m16n8k16 with floating point type",
// docs.nvidia.com/cuda/parallel-thread-execution/#warp-level-matrix-fragment-mma-16816-float). Each lane of
// the warp holds a few elements of each matrix; with g = lane / 4 (groupID) and t = lane % 4
// (threadID_in_group), and two bf16 per 32-bit register, the lower-indexed element in the low 16 bits:
//   A, 16x16 (M x K), 4 registers:  a[0] = A[g][2t, 2t+1]    a[1] = A[g+8][2t, 2t+1]
//                                   a[2] = A[g][2t+8, 2t+9]  a[3] = A[g+8][2t+8, 2t+9]
//   B, 16x8 (K x N), 2 registers:   b[0] = B[2t, 2t+1][g]    b[1] = B[2t+8, 2t+9][g]
//   C and D, 16x8 fp32, 4 floats:   c[0..1] = C[g][2t, 2t+1] c[2..3] = C[g+8][2t, 2t+1]
// So the D fragments of two neighbouring 16x8 tiles, rounded to bf16 and paired, are the A fragment of the
// 16x16 tile they form: a product's result feeds the next product without leaving the registers.
//
// ldmatrix (section "Warp-level matrix load instruction: ldmatrix", #warp-level-matrix-instructions-ldmatrix):
// .x4 loads four 8x8 bf16 matrices; lane 8m + r gives the address of row r of matrix m (16 contiguous,
// 16-byte aligned bytes in shared memory), and register m of lane l receives row l/4, columns 2(l%4) and
// 2(l%4)+1 of matrix m: exactly the A or B fragment layout above, 8x8 at a time. With .trans it receives
// column l/4, rows 2(l%4) and 2(l%4)+1 instead: a B fragment from a matrix stored K-major.
//
// cp.async (section "Data Movement and Conversion Instructions: cp.async", and cp.async.commit_group and
// cp.async.wait_group after it): each thread's copies are batched into groups by commit; wait_group N returns
// when at most the N newest of the thread's groups are still in flight. The bytes are visible to the issuing
// thread after the wait, and to the other threads only after a barrier that follows it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace coldstart::cuda {

// Two floats as the bf16 pair of one fragment register (lo in the low half), rounded to nearest even.
__device__ inline uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    uint32_t bits;
    memcpy(&bits, &pair, sizeof bits);
    return bits;
}

#ifndef COLDSTART_EMULATED

// d += a b for one 16x8x16 tile: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, fp32 accumulation.
__device__ inline void mma_bf16_16x8x16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The four 8x8 matrices whose rows the lanes address (lane 8m + r: row r of matrix m), into r[m].
// volatile and "memory": a shared-memory read that must stay between the barriers around it.
__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
    const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
}

// The same, each matrix transposed on the way.
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
    const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
}

// Starts a copy of 16 bytes from global to shared memory that bypasses the registers (and L1: .cg). With
// valid false nothing is read and 16 zero bytes land (src-size 0): rows past a tensor's end.
__device__ inline void cp_async_16(void* shared_dst, const void* global_src, bool valid) {
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
    const size_t src = __cvta_generic_to_global(global_src);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}

// The same for 4 bytes (one float), through L1 (.ca: the only caching mode 4-byte copies have).
__device__ inline void cp_async_4(void* shared_dst, const void* global_src, bool valid) {
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
    const size_t src = __cvta_generic_to_global(global_src);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0) : "memory");
}

// Closes this thread's group of copies started since the last commit (an empty group is allowed).
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most the `Pending` newest of this thread's groups are in flight.
template <int Pending>
__device__ inline void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

#else  // COLDSTART_EMULATED

// Each function takes its caller's file and line (default arguments evaluated at the call), so that the
// emulator's reports name the kernel's line, not this header's. mma and ldmatrix are .aligned: the whole
// warp takes part (mask 0xffffffff); a lane missing or exited is reported as at a shuffle.
namespace emulated {

inline float bf16_element(uint32_t pair, int high) {
    const uint32_t bits = (high ? pair >> 16 : pair & 0xffffu) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

struct MmaOperands {
    uint32_t a[4], b[2];
    float c[4];
};

// The warp's operands gathered into whole matrices through the fragment layout above; each D element is the
// sum of its 16 products in k order (exact: a bf16 product fits in fp32), added to C. Real tensor cores add in
// their own order: the last bits differ from a GPU's, and two emulated runs agree.
inline void mma_combine(const emu::WarpLanes& lanes) {
    float A[16][16], B[16][8], C[16][8];
    for (int lane = 0; lane < 32; ++lane) {
        const MmaOperands& op = *static_cast<const MmaOperands*>(lanes.in[lane]);
        const int g = lane / 4, t = lane % 4;
        for (int i = 0; i < 8; ++i) A[g + 8 * (i / 2 % 2)][2 * t + i % 2 + 8 * (i / 4)] = bf16_element(op.a[i / 2], i % 2);
        for (int i = 0; i < 4; ++i) B[2 * t + i % 2 + 8 * (i / 2)][g] = bf16_element(op.b[i / 2], i % 2);
        for (int i = 0; i < 4; ++i) C[g + 8 * (i / 2)][2 * t + i % 2] = op.c[i];
    }
    for (int lane = 0; lane < 32; ++lane) {
        float* d = static_cast<float*>(lanes.out[lane]);
        const int g = lane / 4, t = lane % 4;
        for (int i = 0; i < 4; ++i) {
            const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
            float sum = 0.0f;
            for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
            d[i] = C[row][col] + sum;
        }
    }
}

// Lane 8m + r's input is the address of row r of matrix m; each row is 8 bf16 (16 bytes).
template <bool Trans>
void ldmatrix_combine(const emu::WarpLanes& lanes) {
    for (int m = 0; m < 4; ++m) {
        uint16_t M[8][8];
        for (int r = 0; r < 8; ++r) std::memcpy(M[r], *static_cast<const void* const*>(lanes.in[8 * m + r]), sizeof M[r]);
        for (int lane = 0; lane < 32; ++lane) {
            const int g = lane / 4, t = lane % 4;
            const uint16_t lo = Trans ? M[2 * t][g] : M[g][2 * t], hi = Trans ? M[2 * t + 1][g] : M[g][2 * t + 1];
            static_cast<uint32_t*>(lanes.out[lane])[m] = uint32_t(lo) | uint32_t(hi) << 16;
        }
    }
}

template <bool Trans>
void ldmatrix(uint32_t (&r)[4], const void* row, const char* op, const char* file, int line) {
    emu::require_shared(row, 16, 16, op, file, line);
    emu::warp_collective(0xffffffffu, &row, r, ldmatrix_combine<Trans>, op, file, line);
}

}  // namespace emulated

inline void mma_bf16_16x8x16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
    const emulated::MmaOperands op = {{a[0], a[1], a[2], a[3]}, {b[0], b[1]}, {d[0], d[1], d[2], d[3]}};
    emu::warp_collective(0xffffffffu, &op, d, emulated::mma_combine, "mma.sync.m16n8k16", file, line);
}

inline void ldmatrix_x4(uint32_t (&r)[4], const void* row, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    emulated::ldmatrix<false>(r, row, "ldmatrix.x4", file, line);
}

inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    emulated::ldmatrix<true>(r, row, "ldmatrix.x4.trans", file, line);
}

inline void cp_async_16(void* shared_dst, const void* global_src, bool valid, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
    emu::async_copy(shared_dst, global_src, 16, valid ? 16 : 0, file, line);
}

inline void cp_async_4(void* shared_dst, const void* global_src, bool valid, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    emu::async_copy(shared_dst, global_src, 4, valid ? 4 : 0, file, line);
}

inline void cp_async_commit() { emu::async_commit(); }

template <int Pending>
inline void cp_async_wait() {
    emu::async_wait(Pending);
}

#endif  // COLDSTART_EMULATED

}  // namespace coldstart::cuda
