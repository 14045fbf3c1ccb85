// Sums over the rows of an activation gradient (the bias and layernorm parameter gradients), without
// atomics: the rows are cut into parts whose number is fixed by the row count alone (never by the GPU),
// a kernel that reads the rows writes one fp32 partial sum per part and column, and add_partials adds
// the parts in order. The same bits every run, on every GPU.
//
// column_tile_sums is the device side shared by the kernels that read the rows anyway (the bias
// gradient, the GELU backward): a block (32, kRowGroups) owns 32 chunks of W columns (one 128-bit
// access per lane when W is the pack) of one part; its row groups take every kRowGroups-th row of the
// part, and the groups are then added in order.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "common/cuda/common.cuh"

namespace coldstart::cuda {

// Parts of a column reduction over N rows: at most kMaxColumnParts, at least 64 rows each.
constexpr int kMaxColumnParts = 512;
int column_parts(int N);
inline int rows_per_column_part(int N) { return int(ceil_div(size_t(N), size_t(column_parts(N)))); }

// Up to three sums of equal width taken by one kernel: outputs[s][j] += sum over parts of
// partial[p][s][j], parts added in the order 0, 1, ... (fp32 gradients; a null output is skipped).
struct ColumnOutputs {
    float* out[3];
    int count;  // 1 to 3
};
void add_partials(ColumnOutputs outputs, const float* partial /*parts,count,width*/, int parts, int width, cudaStream_t stream);

constexpr int kRowGroups = 8;

// Block (32, kRowGroups), grid (ceil(width / (32 W)), parts). partial[p][c] = sum over part p's rows r of
// rows[r][c] after visit(chunk, r, c0) has seen (and possibly rewritten) the chunk of row r at column c0.
// width must be a multiple of W.
template <typename T, int W, typename Visit>
__device__ void column_tile_sums(float* partial /*parts,width*/, const T* rows /*N,width*/, int N, int width,
                                 int rows_per_part, Visit visit) {
    __shared__ float group_sums[kRowGroups][32 * W];
    const int lane = threadIdx.x, group = threadIdx.y, p = blockIdx.y;
    const int c0 = (blockIdx.x * 32 + lane) * W;
    const int r1 = min(N, (p + 1) * rows_per_part);
    float sum[W] = {};
    if (c0 < width)
        for (int r = p * rows_per_part + group; r < r1; r += kRowGroups) {
            Vec<T, W> x = load_vec<W>(rows + size_t(r) * width + c0);
            visit(x, r, c0);
            for (int k = 0; k < W; ++k) sum[k] += to_float(x.v[k]);
        }
    for (int k = 0; k < W; ++k) group_sums[group][lane * W + k] = sum[k];
    __syncthreads();
    if (group != 0 || c0 >= width) return;
    for (int k = 0; k < W; ++k) {
        float s = 0.0f;
        for (int g = 0; g < kRowGroups; ++g) s += group_sums[g][lane * W + k];
        sum[k] = s;
    }
    float* out = partial + size_t(p) * width + c0;
    if constexpr (W % 4 == 0) {
        for (int k = 0; k < W; k += 4) store_vec(out + k, Vec<float, 4>{{sum[k], sum[k + 1], sum[k + 2], sum[k + 3]}});
    } else {
        for (int k = 0; k < W; ++k) out[k] = sum[k];
    }
}

inline dim3 column_tile_grid(int width, int W, int N) {
    return dim3(unsigned(ceil_div(size_t(width), size_t(32 * W))), unsigned(column_parts(N)));
}
inline dim3 column_tile_block() { return dim3(32, kRowGroups); }

}  // namespace coldstart::cuda
