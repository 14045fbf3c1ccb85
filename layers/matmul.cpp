// A small GEMM in the style of BLIS/GotoBLAS, specialised to what GPT-2 needs:
//
//   c[M, Ncols] += A[M, K] @ B[K, Ncols]     (c row-major; A and B read through arbitrary strides)
//
// which covers all three products with no transposed copies of whole matrices:
//   forward  out     += inp  @ weight^T   (A = inp,    B = weight read column-wise)
//   backward dinp    += dout @ weight     (A = dout,   B = weight)
//   backward dweight += dout^T @ inp      (A = dout read column-wise, B = inp)
//
// Why this shape: a plain loop nest re-reads the whole weight matrix from L3/DRAM for every few rows
// of inp and is limited by memory bandwidth. Here c is cut into large blocks (one OpenMP task each).
// For every depth slice a task copies ("packs") its slice of B into panels of kTileCols contiguous
// columns, so the micro-kernel reads B with unit stride from L1. The micro-kernel holds a kTileRows x
// kTileCols tile of c in vector registers; per depth step it loads kTileVecs vectors of B and
// broadcasts one value of A per row, so each loaded value feeds kTileRows or kTileVecs FMAs. A is
// mostly read in place (its values are broadcast one at a time, so any stride works); see
// multiply_block for when it is packed.
//
// Determinism: each element of c is computed by one thread as c + (sum over depth slice 0) + (sum over
// slice 1) + ..., each slice summed in k order starting from 0. That sequence depends only on
// kBlockDepth, not on which block or tile the element falls in, so the block sizes may (and do) adapt
// to the thread count for load balance without changing a single bit of the result.
#include "layers/matmul.h"

#include <omp.h>

#include <algorithm>
#include <vector>

namespace coldstart::cpu {
namespace {

// 8 floats = one AVX2 register. The unaligned, may_alias type lets us load from any float pointer.
constexpr int kLanes = 8;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float)), aligned(sizeof(float)), may_alias));

// Register tile: 6 x 16 needs 12 accumulators + 2 B vectors + 1 broadcast = 15 of AVX2's 16 registers.
constexpr int kTileRows = 6;
constexpr int kTileVecs = 2;
constexpr int kTileCols = kTileVecs * kLanes;

// Depth slice: a packed B panel (kBlockDepth x kTileCols = 16 KiB) stays in L1 while the kernel sweeps
// a block of A rows. Fixed, because it sets the summation order.
constexpr size_t kBlockDepth = 256;
// Largest blocks of c: the packed B block (256 x 512 floats, 512 KiB) and the A rows being swept
// (256 x 256 floats, 256 KiB) share a 1 MiB L2. Large blocks amortise the packing: each packed B
// value is reused by up to 256 rows. (Measured on Zen 4: 72 x 128 blocks ran ~15% slower.)
constexpr size_t kMaxBlockRows = 256;
constexpr size_t kMaxBlockCols = 512;

size_t ceil_div(size_t n, size_t d) { return (n + d - 1) / d; }
size_t round_up(size_t n, size_t multiple) { return ceil_div(n, multiple) * multiple; }

// A matrix read through strides: element (i, k) is data[i * row_stride + k * col_stride].
struct StridedMatrix {
    const float* data;
    size_t row_stride;
    size_t col_stride;
    float at(size_t i, size_t k) const { return data[i * row_stride + k * col_stride]; }
    StridedMatrix offset(size_t i, size_t k) const {
        return {&data[i * row_stride + k * col_stride], row_stride, col_stride};
    }
};

// c[rows, cols] (leading dimension ldc) += a[0 : kTileRows, 0 : depth] @ b_panel, where b_panel is
// depth x kTileCols, packed and zero-padded. a must have kTileRows readable rows; only the first
// rows <= kTileRows rows and cols <= kTileCols columns of the result are added to c.
void micro_kernel(size_t depth, const StridedMatrix& a, const float* b_panel, float* c, size_t ldc, int rows,
                  int cols) {
    Vec acc[kTileRows][kTileVecs] = {};
    const float* a_k = a.data;
    for (size_t k = 0; k < depth; ++k, a_k += a.col_stride, b_panel += kTileCols) {
        Vec b[kTileVecs];
#pragma GCC unroll 4
        for (int v = 0; v < kTileVecs; ++v) b[v] = *reinterpret_cast<const Vec*>(b_panel + v * kLanes);
#pragma GCC unroll 8
        for (int r = 0; r < kTileRows; ++r) {
            const float a_rk = a_k[r * a.row_stride];
#pragma GCC unroll 4
            for (int v = 0; v < kTileVecs; ++v) acc[r][v] += b[v] * a_rk;
        }
    }
    if (rows == kTileRows && cols == kTileCols) {
        for (int r = 0; r < kTileRows; ++r)
            for (int v = 0; v < kTileVecs; ++v) *reinterpret_cast<Vec*>(c + r * ldc + v * kLanes) += acc[r][v];
        return;
    }
    float tile[kTileRows][kTileCols];  // ragged edge: add only the valid part
    for (int r = 0; r < kTileRows; ++r)
        for (int v = 0; v < kTileVecs; ++v) *reinterpret_cast<Vec*>(&tile[r][v * kLanes]) = acc[r][v];
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < cols; ++j) c[r * ldc + j] += tile[r][j];
}

// Packs a[0 : rows, 0 : depth] as consecutive depth x kTileRows tiles, zero-padding the last one.
void pack_row_tiles(std::vector<float>& packed, const StridedMatrix& a, size_t rows, size_t depth) {
    packed.assign(round_up(rows, kTileRows) * depth, 0.0f);
    for (size_t t = 0; t < rows; t += kTileRows) {
        float* tile = packed.data() + t * depth;
        for (size_t k = 0; k < depth; ++k)
            for (size_t r = 0; r < std::min<size_t>(kTileRows, rows - t); ++r) tile[k * kTileRows + r] = a.at(t + r, k);
    }
}

// Packs b[0 : depth, 0 : cols] as consecutive depth x kTileCols panels, zero-padding the last. The
// loop order follows whichever stride of b is contiguous, so reads are sequential either way.
void pack_b(float* packed, const StridedMatrix& b, size_t depth, size_t cols) {
    for (size_t p = 0; p < cols; p += kTileCols, packed += depth * kTileCols) {
        const size_t panel_cols = std::min<size_t>(kTileCols, cols - p);
        if (panel_cols < kTileCols) std::fill(packed, packed + depth * kTileCols, 0.0f);
        if (b.col_stride == 1) {
            for (size_t k = 0; k < depth; ++k)
                for (size_t j = 0; j < panel_cols; ++j) packed[k * kTileCols + j] = b.at(k, p + j);
        } else {
            for (size_t j = 0; j < panel_cols; ++j)
                for (size_t k = 0; k < depth; ++k) packed[k * kTileCols + j] = b.at(k, p + j);
        }
    }
}

// One task: c[0 : rows, 0 : cols] += a[0 : rows, 0 : K] @ b[0 : K, 0 : cols] (all already offset).
void multiply_block(float* c, size_t ldc, const StridedMatrix& a, const StridedMatrix& b, size_t K, size_t rows,
                    size_t cols) {
    // Per-thread buffers, grown once and reused by every later call on the same thread.
    thread_local std::vector<float> b_packed, a_packed;
    b_packed.resize(kBlockDepth * round_up(cols, kTileCols));
    // Rows of A contiguous along k are read in place. A read down its columns (dout^T) is packed: a tile
    // would touch `depth` cache lines OC floats apart, and for GPT-2's OC (multiples of 256 bytes) they
    // fall into a few L1 sets and evict each other. A ragged last tile is always packed (zero padding).
    const size_t direct_rows = a.col_stride == 1 ? rows / kTileRows * kTileRows : 0;
    for (size_t k0 = 0; k0 < K; k0 += kBlockDepth) {
        const size_t depth = std::min(kBlockDepth, K - k0);
        pack_b(b_packed.data(), b.offset(k0, 0), depth, cols);
        const StridedMatrix a_slice = a.offset(0, k0);
        pack_row_tiles(a_packed, a_slice.offset(direct_rows, 0), rows - direct_rows, depth);
        auto packed_tile = [&](size_t row) { return StridedMatrix{a_packed.data() + row * depth, 1, kTileRows}; };
        for (size_t jp = 0; jp < cols; jp += kTileCols) {
            const float* b_panel = b_packed.data() + jp * depth;
            const int tile_cols = int(std::min<size_t>(kTileCols, cols - jp));
            for (size_t ip = 0; ip < rows; ip += kTileRows) {
                const StridedMatrix a_tile = ip < direct_rows ? a_slice.offset(ip, 0) : packed_tile(ip - direct_rows);
                const int tile_rows = int(std::min<size_t>(kTileRows, rows - ip));
                micro_kernel(depth, a_tile, b_panel, c + ip * ldc + jp, ldc, tile_rows, tile_cols);
            }
        }
    }
}

// Block sizes for c[M, Ncols]: as large as kMaxBlock*, and enough column blocks that the number of
// blocks is a multiple of the thread count where possible (equal work per thread). Rows are rounded to
// whole register tiles, columns to whole panels.
struct BlockPlan {
    size_t rows, cols;
};

BlockPlan plan_blocks(size_t M, size_t Ncols) {
    const size_t threads = size_t(omp_get_max_threads());
    const size_t row_blocks = ceil_div(M, kMaxBlockRows);
    size_t col_blocks = ceil_div(Ncols, kMaxBlockCols);
    const size_t most_col_blocks = ceil_div(Ncols, kTileCols);
    while (row_blocks * col_blocks % threads != 0 && col_blocks < most_col_blocks) ++col_blocks;
    return {round_up(ceil_div(M, row_blocks), kTileRows), round_up(ceil_div(Ncols, col_blocks), kTileCols)};
}

// c[M, Ncols] (leading dimension ldc) += a[M, K] @ b[K, Ncols], parallel over blocks of c.
void gemm_accumulate(float* c, size_t ldc, const StridedMatrix& a, const StridedMatrix& b, size_t M, size_t Ncols,
                     size_t K) {
    if (M == 0 || Ncols == 0) return;
    const BlockPlan plan = plan_blocks(M, Ncols);
    const size_t row_blocks = ceil_div(M, plan.rows), col_blocks = ceil_div(Ncols, plan.cols);
#pragma omp parallel for schedule(dynamic)
    for (size_t task = 0; task < row_blocks * col_blocks; ++task) {
        const size_t i0 = task % row_blocks * plan.rows, j0 = task / row_blocks * plan.cols;
        multiply_block(c + i0 * ldc + j0, ldc, a.offset(i0, 0), b.offset(0, j0), K, std::min(plan.rows, M - i0),
                       std::min(plan.cols, Ncols - j0));
    }
}

// out[n, :] = bias (or 0), the starting value the GEMM accumulates onto.
void fill_rows_with_bias(float* out /*N,OC*/, const float* bias /*OC or nullptr*/, size_t N, int OC) {
#pragma omp parallel for
    for (size_t n = 0; n < N; ++n) {
        float* row = out + n * OC;
        if (bias) std::copy(bias, bias + OC, row);
        else std::fill(row, row + OC, 0.0f);
    }
}

// dbias[o] += sum over n of dout[n, o]; parallel over column chunks, rows summed in order.
void accumulate_column_sums(float* dbias /*OC*/, const float* dout /*N,OC*/, size_t N, int OC) {
    constexpr int kChunk = 64;
#pragma omp parallel for
    for (int o0 = 0; o0 < OC; o0 += kChunk) {
        const int o1 = std::min(OC, o0 + kChunk);
        for (size_t n = 0; n < N; ++n) {
            const float* row = dout + n * OC;
#pragma omp simd
            for (int o = o0; o < o1; ++o) dbias[o] += row[o];
        }
    }
}

}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, size_t N, int C, int OC) {
    fill_rows_with_bias(out, bias, N, OC);
    // B(k, j) = weight[j, k]: weight^T without forming it.
    gemm_accumulate(out, OC, {inp, size_t(C), 1}, {weight, 1, size_t(C)}, N, OC, C);
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, size_t N, int C, int OC) {
    if (dinp) gemm_accumulate(dinp, C, {dout, size_t(OC), 1}, {weight, size_t(C), 1}, N, C, OC);
    // A(o, n) = dout[n, o]: dout^T without forming it.
    gemm_accumulate(dweight, C, {dout, 1, size_t(OC)}, {inp, size_t(C), 1}, OC, C, N);
    if (dbias) accumulate_column_sums(dbias, dout, N, OC);
}

}  // namespace coldstart::cpu
