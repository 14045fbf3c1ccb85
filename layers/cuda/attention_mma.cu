// FlashAttention-2 on tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulation), for head sizes D = 64, 128.
//
// Tile plan. A block is 4 warps and owns 64 rows of one (batch, head): queries in the forward and the dQ pass,
// keys in the dK/dV pass. Each warp owns 16 of them, the M of its products, and keeps their accumulators in
// registers from the first tile to the last. The block sweeps the tiles of the other side that the causal mask
// leaves (keys 0 .. its last query; queries its first key .. T-1), `Step` rows at a time: 64 in the forward,
// and in the backward 64 for D = 64 and 32 for D = 128 (where the dK and dV accumulators alone take 128 registers
// per lane). Per step, with S the warp's 16 x Step scores:
//   forward   S = Q K^T; online softmax (running max m and sum l per row, fp32); O += P V
//   dK, dV    S^T = K Q^T, dP^T = V dO^T; P^T = exp(scale S^T - lse); dS^T = P^T (dP^T - D); dV += P^T dO; dK += dS^T Q
//   dQ        S = Q K^T, dP = dO V^T;     P = exp(scale S - lse);     dS = P (dP - D);        dQ += dS K
// with D = rowsum(dO * O) from a prepare kernel, as in attention.cu; the T x T matrices never leave the registers.
// A product's fp32 result becomes the next product's A operand in place (mma.cuh: D tiles 2k, 2k+1 = A tile k),
// so P and dS are never written to shared memory.
//
// Memory. Tiles move global -> shared with cp.async, double-buffered on the swept side: the copies of step j+1
// run while step j computes. A block's own rows are loaded once (Q of the forward into registers; K and V of
// the dK/dV pass stay in shared memory and are read by ldmatrix at each step, which keeps registers for the
// accumulators). Rows past T are zero-filled by the copies and masked where they would count. Shared tiles are
// row-major with each row's 16-byte chunks XOR-permuted by the row (chunk c of row r at c ^ (r % 8)): the 8 rows
// that one ldmatrix matrix, or one round of copies, touches then lie in 8 different bank groups.
//
// Scores are kept in log2 units (scale * log2(e) folded into one multiply-add before exp2); lse is stored in
// natural units, as attention.cu stores it. The backward is deterministic: every sum has a fixed order, no atomics.
#include "layers/cuda/attention_mma.cuh"

#include <cuda_bf16.h>

#include <initializer_list>

#include "common/cuda/mma.cuh"
#include "common/error.h"

namespace coldstart::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // the rows a block owns
constexpr float kLog2e = 1.44269504088896340736f;
constexpr unsigned kFull = 0xffffffffu;

template <int D>
constexpr int kBackwardStep = D == 64 ? 64 : 32;

// One (batch, head) slice: query of token t at qkv[(b*T + t)*3C + h*D], key at +C, value at +2C.
struct Heads {
    int T, C, NH;
    template <int D>
    __device__ size_t qkv_head(int b, int h) const { return size_t(b) * T * 3 * size_t(C) + size_t(h) * D; }
    template <int D>
    __device__ size_t out_head(int b, int h) const { return size_t(b) * T * size_t(C) + size_t(h) * D; }
    __device__ size_t stats(int b, int h) const { return (size_t(b) * NH + h) * T; }
};

// ---- shared-memory tiles ----

// Element (row, col) of a swizzled tile with D columns.
template <int D>
__device__ inline int swizzle(int row, int col) {
    return row * D + (((col >> 3) ^ (row & 7)) << 3) + (col & 7);
}

// Starts the copies of rows [t0, t0 + Rows) of a head's D columns (src: its row 0; rows `stride` apart) into a
// swizzled tile; rows at or past T are zero-filled.
template <int Rows, int D>
__device__ void load_tile(bf16* tile /*Rows,D*/, const bf16* src, size_t stride, int t0, int T) {
    constexpr int chunks = D / 8;  // 16-byte chunks per row
    static_assert(Rows * chunks % kThreads == 0, "whole rounds of copies");
#pragma unroll
    for (int k = 0; k < Rows * chunks / kThreads; ++k) {
        const int i = k * kThreads + int(threadIdx.x), r = i / chunks, c = i % chunks;
        const bool valid = t0 + r < T;
        cp_async_16(&tile[swizzle<D>(r, 8 * c)], src + size_t(valid ? t0 + r : 0) * stride + 8 * c, valid);
    }
}

// Starts the copies of stats[t0, t0 + Rows) (one float per row) into shared memory; entries past T become 0.
template <int Rows>
__device__ void load_stats(float* dst /*Rows*/, const float* stats, int t0, int T) {
    const int r = int(threadIdx.x);
    if (r < Rows) cp_async_4(&dst[r], stats + (t0 + r < T ? t0 + r : 0), t0 + r < T);
}

// ---- fragments (layouts: common/cuda/mma.cuh) ----

// The A fragment of the 16x16 block at (row0, col0) of a tile: ldmatrix's matrices are (rows 0-7, cols 0-7),
// (8-15, 0-7), (0-7, 8-15), (8-15, 8-15), the order of a[0..3].
template <int D>
__device__ void load_a(uint32_t (&a)[4], const bf16* tile, int row0, int col0) {
    const int lane = int(threadIdx.x) % 32;
    ldmatrix_x4(a, &tile[swizzle<D>(row0 + lane % 8 + lane / 8 % 2 * 8, col0 + lane / 16 * 8)]);
}

// B fragments of two neighbouring 16x8 tiles from a tile stored N x K (B[k][n] = tile[n][k]): rows n0..n0+15,
// columns k0..k0+15. b[0..1] are the tile of n0..n0+7, b[2..3] that of n0+8..n0+15.
template <int D>
__device__ void load_b(uint32_t (&b)[4], const bf16* tile, int n0, int k0) {
    const int lane = int(threadIdx.x) % 32;
    ldmatrix_x4(b, &tile[swizzle<D>(n0 + lane % 8 + lane / 16 * 8, k0 + lane / 8 % 2 * 8)]);
}

// The same from a tile stored K x N (B[k][n] = tile[k][n]), transposed by ldmatrix: rows k0..k0+15, columns n0..n0+15.
template <int D>
__device__ void load_b_trans(uint32_t (&b)[4], const bf16* tile, int k0, int n0) {
    const int lane = int(threadIdx.x) % 32;
    ldmatrix_x4_trans(b, &tile[swizzle<D>(k0 + lane % 8 + lane / 8 % 2 * 8, n0 + lane / 16 * 8)]);
}

__device__ inline void mma_pair(float (&left)[4], float (&right)[4], const uint32_t (&a)[4], const uint32_t (&b)[4]) {
    const uint32_t b_left[2] = {b[0], b[1]}, b_right[2] = {b[2], b[3]};
    mma_bf16_16x8x16(left, a, b_left);
    mma_bf16_16x8x16(right, a, b_right);
}

// acc (16 x N, as N/8 tiles) += A_k B_k: one k-step of 16, B_k the columns k0..k0+15 of N rows of a tile stored N x K.
template <int D, int N>
__device__ void mma_step_nk(float (&acc)[N / 8][4], const uint32_t (&a)[4], const bf16* tile, int k0) {
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
        uint32_t b[4];
        load_b<D>(b, tile, 16 * n, k0);
        mma_pair(acc[2 * n], acc[2 * n + 1], a, b);
    }
}

// acc (16 x D) += A_k B_k with B_k the rows k0..k0+15 of a tile stored K x N (all D columns).
template <int D>
__device__ void mma_step_kn(float (&acc)[D / 8][4], const uint32_t (&a)[4], const bf16* tile, int k0) {
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
        uint32_t b[4];
        load_b_trans<D>(b, tile, k0, 16 * n);
        mma_pair(acc[2 * n], acc[2 * n + 1], a, b);
    }
}

// The A fragment of columns 16k..16k+15 of an fp32 accumulator (tiles 2k and 2k+1), rounded to bf16.
template <int N>
__device__ void accumulator_to_a(uint32_t (&a)[4], const float (&acc)[N / 8][4], int k) {
    a[0] = pack_bf16x2(acc[2 * k][0], acc[2 * k][1]);
    a[1] = pack_bf16x2(acc[2 * k][2], acc[2 * k][3]);
    a[2] = pack_bf16x2(acc[2 * k + 1][0], acc[2 * k + 1][1]);
    a[3] = pack_bf16x2(acc[2 * k + 1][2], acc[2 * k + 1][3]);
}

// Where element i of accumulator tile n sits in the warp's 16 x N block: row (0..15) and column.
__device__ inline int acc_row(int i) { return int(threadIdx.x) % 32 / 4 + 8 * (i / 2); }
__device__ inline int acc_col(int n, int i) { return 8 * n + 2 * (int(threadIdx.x) % 4) + i % 2; }

// Sets to -infinity the scores whose key comes after its query. s is the warp's 16 x N block, rows from row0 and
// columns from col0. In the dK/dV pass the rows are keys and the columns queries, which also masks the queries at
// or past T (zero padding whose lse and D are 0).
template <bool RowsAreKeys, int N>
__device__ void mask_scores(float (&s)[N / 8][4], int row0, int col0, int T) {
#pragma unroll
    for (int n = 0; n < N / 8; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int row = row0 + acc_row(i), col = col0 + acc_col(n, i);
            const bool masked = RowsAreKeys ? row > col || col >= T : col > row;
            if (masked) s[n][i] = -INFINITY;
        }
}

// Writes the warp's 16 x D accumulator block times row_scale (per half: rows 0-7, 8-15) as bf16 into rows
// row0.. of a head's slice (dst: its row 0; rows `stride` apart); rows at or past T are left alone.
template <int D>
__device__ void store_rows(bf16* dst, size_t stride, const float (&acc)[D / 8][4], const float (&row_scale)[2], int row0, int T) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int row = row0 + acc_row(2 * half);
        if (row >= T) continue;
#pragma unroll
        for (int n = 0; n < D / 8; ++n)
            *reinterpret_cast<__nv_bfloat162*>(dst + size_t(row) * stride + acc_col(n, 0)) =
                __floats2bfloat162_rn(acc[n][2 * half] * row_scale[half], acc[n][2 * half + 1] * row_scale[half]);
    }
}

// ---- forward ----

// FlashAttention's online softmax over one step of scores s (this lane: rows g and g+8 of the warp's 16, two
// columns of each 8-wide tile). Raises each row's running max m (log2 units) with the step's scores, rescales o
// and l by what the raise costs, and turns s into exp2(s * scale_log2 - m). l holds this lane's part of each
// row's sum; the four lanes of a row add theirs at the end.
template <int N, int D>
__device__ void online_softmax(float (&s)[N / 8][4], float (&m)[2], float (&l)[2], float (&o)[D / 8][4], float scale_log2) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        float step_max = -INFINITY;
#pragma unroll
        for (int n = 0; n < N / 8; ++n) step_max = fmaxf(step_max, fmaxf(s[n][2 * half], s[n][2 * half + 1]));
        step_max = fmaxf(step_max, __shfl_xor_sync(kFull, step_max, 1));  // the row's four lanes
        step_max = fmaxf(step_max, __shfl_xor_sync(kFull, step_max, 2));
        // Every row has its key 0 live in the first step (the mask leaves key <= query), so m is finite from then
        // on; at the first step exp2(-inf - m) = 0 drops the empty start.
        const float m_new = fmaxf(m[half], step_max * scale_log2);
        const float correction = exp2f(m[half] - m_new);
        m[half] = m_new;
        l[half] *= correction;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            o[n][2 * half] *= correction;
            o[n][2 * half + 1] *= correction;
        }
#pragma unroll
        for (int n = 0; n < N / 8; ++n)
#pragma unroll
            for (int i = 2 * half; i < 2 * half + 2; ++i) {
                s[n][i] = exp2f(fmaf(s[n][i], scale_log2, -m_new));
                l[half] += s[n][i];
            }
    }
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_mma_forward_kernel(bf16* out, float* lse, const bf16* qkv, Heads L,
                                                                       float scale_log2) {
    constexpr int Step = kRows;  // keys per step: the diagonal step is then the last, and the only one masked
    extern __shared__ bf16 smem[];
    bf16* q_s = smem;               // (kRows, D)
    bf16* kv_s = q_s + kRows * D;   // (2 buffers, K then V, Step, D)
    const int q_tile = int(gridDim.x - 1 - blockIdx.x);  // the longest rows first: better tail balance
    const int q0 = q_tile * kRows, h = int(blockIdx.y), b = int(blockIdx.z);
    const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    const size_t stride = 3 * size_t(L.C);
    const bf16* q_src = qkv + L.qkv_head<D>(b, h);
    const bf16* k_src = q_src + L.C;
    const bf16* v_src = q_src + 2 * L.C;
    const auto load_kv = [&](int step) {
        bf16* k_s = kv_s + step % 2 * 2 * Step * D;
        load_tile<Step, D>(k_s, k_src, stride, step * Step, L.T);
        load_tile<Step, D>(k_s + Step * D, v_src, stride, step * Step, L.T);
    };

    load_tile<kRows, D>(q_s, q_src, stride, q0, L.T);
    cp_async_commit();
    load_kv(0);
    cp_async_commit();
    cp_async_wait<1>();  // Q has landed (K and V of step 0 may still be in flight)
    __syncthreads();
    uint32_t q[D / 16][4];  // the warp's 16 queries as A fragments, for every step
#pragma unroll
    for (int k = 0; k < D / 16; ++k) load_a<D>(q[k], q_s, 16 * warp, 16 * k);

    float o[D / 8][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int steps = q_tile + 1;  // keys 0 .. q0 + kRows - 1
    for (int j = 0; j < steps; ++j) {
        cp_async_wait<0>();
        __syncthreads();  // step j's tiles have landed for every thread; step j-1's buffer is free
        if (j + 1 < steps) load_kv(j + 1);
        cp_async_commit();
        const bf16* k_s = kv_s + j % 2 * 2 * Step * D;
        const bf16* v_s = k_s + Step * D;
        float s[Step / 8][4] = {};
#pragma unroll
        for (int k = 0; k < D / 16; ++k) mma_step_nk<D, Step>(s, q[k], k_s, 16 * k);
        if (j == q_tile) mask_scores<false, Step>(s, q0 + 16 * warp, j * Step, L.T);
        online_softmax<Step, D>(s, m, l, o, scale_log2);
#pragma unroll
        for (int k = 0; k < Step / 16; ++k) {
            uint32_t p[4];
            accumulator_to_a<Step>(p, s, k);
            mma_step_kn<D>(o, p, v_s, 16 * k);
        }
    }

    float inv_l[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        l[half] += __shfl_xor_sync(kFull, l[half], 1);
        l[half] += __shfl_xor_sync(kFull, l[half], 2);
        inv_l[half] = 1.0f / l[half];
        const int t = q0 + 16 * warp + acc_row(2 * half);
        if (lane % 4 == 0 && t < L.T) lse[L.stats(b, h) + t] = (m[half] + log2f(l[half])) / kLog2e;
    }
    store_rows<D>(out + L.out_head<D>(b, h), size_t(L.C), o, inv_l, q0 + 16 * warp, L.T);
}

// ---- backward ----

// Dsum[b, h, t] = dout . out over the head's D dimensions: D/8 lanes per row, one 16-byte load of each tensor per
// lane, summed over the lanes by a fixed butterfly. Rows over (b, t, h) in that order.
template <int D>
__global__ void __launch_bounds__(kThreads) attention_mma_prepare_kernel(float* Dsum, const bf16* dout, const bf16* out,
                                                                       Heads L, int rows) {
    constexpr int lanes = D / 8;
    const int row = int((blockIdx.x * kThreads + threadIdx.x) / lanes), part = int(threadIdx.x) % lanes;
    const bool valid = row < rows;  // no early return: the shuffles below need the whole warp
    float sum = 0.0f;
    if (valid) {
        const int h = row % L.NH, bt = row / L.NH;
        const size_t offset = size_t(bt) * L.C + size_t(h) * D + 8 * part;
        const Pack<bf16> x = *reinterpret_cast<const Pack<bf16>*>(dout + offset);
        const Pack<bf16> y = *reinterpret_cast<const Pack<bf16>*>(out + offset);
#pragma unroll
        for (int k = 0; k < 8; ++k) sum += to_float(x.v[k]) * to_float(y.v[k]);
    }
#pragma unroll
    for (int o = lanes / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(kFull, sum, o);
    if (valid && part == 0) {
        const int h = row % L.NH, bt = row / L.NH;
        Dsum[L.stats(bt / L.T, h) + bt % L.T] = sum;
    }
}

// Key tile k0 (64 keys): their dK and dV, summed over the query steps from k0 to T.
template <int D>
__global__ void __launch_bounds__(kThreads) attention_mma_backward_kv_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                                                           const float* lse, const float* Dsum, Heads L,
                                                                           float scale, float scale_log2) {
    constexpr int Step = kBackwardStep<D>;  // queries per step
    extern __shared__ bf16 smem[];
    bf16* k_s = smem;                                  // (kRows, D)
    bf16* v_s = k_s + kRows * D;                       // (kRows, D)
    bf16* qdo_s = v_s + kRows * D;                     // (2 buffers, Q then dO, Step, D)
    float* stats_s = reinterpret_cast<float*>(qdo_s + 2 * 2 * Step * D);  // (2 buffers, lse then D, Step)
    const int k0 = int(blockIdx.x) * kRows;  // the longest sweeps (early keys) get the low block indices
    const int h = int(blockIdx.y), b = int(blockIdx.z), warp = int(threadIdx.x) / 32;
    const size_t stride = 3 * size_t(L.C);
    const bf16* q_src = qkv + L.qkv_head<D>(b, h);
    const bf16* do_src = dout + L.out_head<D>(b, h);
    const float* lse_src = lse + L.stats(b, h);
    const float* d_src = Dsum + L.stats(b, h);
    const auto load_step = [&](int step) {  // queries k0 + step * Step ..
        const int t0 = k0 + step * Step;
        bf16* q_s = qdo_s + step % 2 * 2 * Step * D;
        float* st = stats_s + step % 2 * 2 * Step;
        load_tile<Step, D>(q_s, q_src, stride, t0, L.T);
        load_tile<Step, D>(q_s + Step * D, do_src, size_t(L.C), t0, L.T);
        load_stats<Step>(st, lse_src, t0, L.T);
        load_stats<Step>(st + Step, d_src, t0, L.T);
    };

    load_tile<kRows, D>(k_s, q_src + L.C, stride, k0, L.T);
    load_tile<kRows, D>(v_s, q_src + 2 * L.C, stride, k0, L.T);
    load_step(0);
    cp_async_commit();
    float dk[D / 8][4] = {}, dv[D / 8][4] = {};
    const int steps = int((L.T - k0 + Step - 1) / Step);
    for (int j = 0; j < steps; ++j) {
        cp_async_wait<0>();
        __syncthreads();
        if (j + 1 < steps) load_step(j + 1);
        cp_async_commit();
        const int q0 = k0 + j * Step;
        const bf16* q_s = qdo_s + j % 2 * 2 * Step * D;
        const bf16* do_s = q_s + Step * D;
        const float* lse_s = stats_s + j % 2 * 2 * Step;
        const float* d_s = lse_s + Step;
        // S^T = K Q^T and dP^T = V dO^T for the warp's 16 keys: A from K and V in shared memory, one k-step at a time.
        float s[Step / 8][4] = {}, dp[Step / 8][4] = {};
#pragma unroll
        for (int k = 0; k < D / 16; ++k) {
            uint32_t a[4];
            load_a<D>(a, k_s, 16 * warp, 16 * k);
            mma_step_nk<D, Step>(s, a, q_s, 16 * k);
            load_a<D>(a, v_s, 16 * warp, 16 * k);
            mma_step_nk<D, Step>(dp, a, do_s, 16 * k);
        }
        if (q0 < k0 + kRows || q0 + Step > L.T) mask_scores<true, Step>(s, k0 + 16 * warp, q0, L.T);
        // P^T = exp(scale S^T - lse) into s, dS^T = P^T (dP^T - D) into dp; column c is query q0 + c.
#pragma unroll
        for (int n = 0; n < Step / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int c = acc_col(n, i);
                s[n][i] = exp2f(fmaf(s[n][i], scale_log2, -lse_s[c] * kLog2e));
                dp[n][i] = s[n][i] * (dp[n][i] - d_s[c]);
            }
        // dV += P^T dO and dK += dS^T Q: k runs over the step's queries, B from dO and Q stored queries x D.
#pragma unroll
        for (int k = 0; k < Step / 16; ++k) {
            uint32_t a[4];
            accumulator_to_a<Step>(a, s, k);
            mma_step_kn<D>(dv, a, do_s, 16 * k);
            accumulator_to_a<Step>(a, dp, k);
            mma_step_kn<D>(dk, a, q_s, 16 * k);
        }
    }
    const size_t row0 = L.qkv_head<D>(b, h);
    const float dk_scale[2] = {scale, scale}, one[2] = {1.0f, 1.0f};
    store_rows<D>(dqkv + row0 + L.C, stride, dk, dk_scale, k0 + 16 * warp, L.T);
    store_rows<D>(dqkv + row0 + 2 * L.C, stride, dv, one, k0 + 16 * warp, L.T);
}

// Query tile q0 (64 queries): their dQ, summed over the key steps from 0 to the tile's last query.
template <int D>
__global__ void __launch_bounds__(kThreads) attention_mma_backward_q_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                                                          const float* lse, const float* Dsum, Heads L,
                                                                          float scale, float scale_log2) {
    constexpr int Step = kBackwardStep<D>;  // keys per step
    extern __shared__ bf16 smem[];
    bf16* q_s = smem;                 // (kRows, D)
    bf16* do_s = q_s + kRows * D;     // (kRows, D)
    bf16* kv_s = do_s + kRows * D;    // (2 buffers, K then V, Step, D)
    const int q0 = int(gridDim.x - 1 - blockIdx.x) * kRows;
    const int h = int(blockIdx.y), b = int(blockIdx.z), warp = int(threadIdx.x) / 32;
    const size_t stride = 3 * size_t(L.C);
    const bf16* q_src = qkv + L.qkv_head<D>(b, h);
    const auto load_kv = [&](int step) {
        bf16* k_s = kv_s + step % 2 * 2 * Step * D;
        load_tile<Step, D>(k_s, q_src + L.C, stride, step * Step, L.T);
        load_tile<Step, D>(k_s + Step * D, q_src + 2 * L.C, stride, step * Step, L.T);
    };

    load_tile<kRows, D>(q_s, q_src, stride, q0, L.T);
    load_tile<kRows, D>(do_s, dout + L.out_head<D>(b, h), size_t(L.C), q0, L.T);
    cp_async_commit();
    load_kv(0);
    cp_async_commit();
    // Each lane's two rows' lse (log2 units) and D, while the tiles are in flight.
    float row_lse[2], row_d[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int t = q0 + 16 * warp + acc_row(2 * half);
        row_lse[half] = t < L.T ? lse[L.stats(b, h) + t] * kLog2e : 0.0f;
        row_d[half] = t < L.T ? Dsum[L.stats(b, h) + t] : 0.0f;
    }
    cp_async_wait<1>();
    __syncthreads();
    uint32_t q[D / 16][4], d_o[D / 16][4];  // the warp's 16 queries and their dout, as A fragments
#pragma unroll
    for (int k = 0; k < D / 16; ++k) {
        load_a<D>(q[k], q_s, 16 * warp, 16 * k);
        load_a<D>(d_o[k], do_s, 16 * warp, 16 * k);
    }

    float dq[D / 8][4] = {};
    const int keys = min(q0 + kRows, L.T);
    const int steps = (keys + Step - 1) / Step;
    for (int j = 0; j < steps; ++j) {
        cp_async_wait<0>();
        __syncthreads();
        if (j + 1 < steps) load_kv(j + 1);
        cp_async_commit();
        const int k0 = j * Step;
        const bf16* k_s = kv_s + j % 2 * 2 * Step * D;
        const bf16* v_s = k_s + Step * D;
        float s[Step / 8][4] = {}, dp[Step / 8][4] = {};
#pragma unroll
        for (int k = 0; k < D / 16; ++k) {
            mma_step_nk<D, Step>(s, q[k], k_s, 16 * k);
            mma_step_nk<D, Step>(dp, d_o[k], v_s, 16 * k);
        }
        if (k0 + Step > q0) mask_scores<false, Step>(s, q0 + 16 * warp, k0, L.T);
        // P = exp(scale S - lse) into s, dS = P (dP - D) into dp.
#pragma unroll
        for (int n = 0; n < Step / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                s[n][i] = exp2f(fmaf(s[n][i], scale_log2, -row_lse[i / 2]));
                dp[n][i] = s[n][i] * (dp[n][i] - row_d[i / 2]);
            }
        // dQ += dS K: k runs over the step's keys, B from K stored keys x D.
#pragma unroll
        for (int k = 0; k < Step / 16; ++k) {
            uint32_t a[4];
            accumulator_to_a<Step>(a, dp, k);
            mma_step_kn<D>(dq, a, k_s, 16 * k);
        }
    }
    const float dq_scale[2] = {scale, scale};
    store_rows<D>(dqkv + L.qkv_head<D>(b, h), stride, dq, dq_scale, q0 + 16 * warp, L.T);
}

// ---- launches ----

Heads check(int T_, int C, int NH, std::initializer_list<const void*> pointers) {
    if (!attention_mma_supports(C, NH))
        fail("attention (tensor cores): %d channels in %d heads: head size must be 64 or 128", C, NH);
    for (const void* p : pointers)
        if (!aligned16(p)) fail("attention (tensor cores): a buffer at %p is not 16-byte aligned", p);
    return {T_, C, NH};
}

template <typename Kernel, typename... Args>
void launch(Kernel kernel, const char* name, dim3 grid, size_t smem, cudaStream_t stream, Args... args) {
    if (smem > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    kernel<<<grid, kThreads, smem, stream>>>(args...);
    KERNEL_CHECK(name);
}

template <int D>
void forward(bf16* out, float* lse, const bf16* qkv, int B, const Heads& L, cudaStream_t stream) {
    const size_t smem = size_t(kRows + 2 * 2 * kRows) * D * sizeof(bf16);
    const dim3 grid(unsigned(ceil_div(size_t(L.T), kRows)), unsigned(L.NH), unsigned(B));
    const float scale_log2 = kLog2e / sqrtf(float(D));
    launch(attention_mma_forward_kernel<D>, "attention_mma_forward_kernel", grid, smem, stream, out, lse, qkv, L, scale_log2);
}

template <int D>
void backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, float* Dsum, int B,
              const Heads& L, cudaStream_t stream) {
    const int rows = B * L.T * L.NH;
    const dim3 prepare_grid(unsigned(ceil_div(size_t(rows) * (D / 8), kThreads)));
    launch(attention_mma_prepare_kernel<D>, "attention_mma_prepare_kernel", prepare_grid, 0, stream, Dsum, dout, out, L, rows);
    constexpr int Step = kBackwardStep<D>;
    const size_t kv_smem = size_t(2 * kRows + 2 * 2 * Step) * D * sizeof(bf16) + 2 * 2 * Step * sizeof(float);
    const size_t q_smem = size_t(2 * kRows + 2 * 2 * Step) * D * sizeof(bf16);
    const dim3 grid(unsigned(ceil_div(size_t(L.T), kRows)), unsigned(L.NH), unsigned(B));
    const float scale = 1.0f / sqrtf(float(D)), scale_log2 = scale * kLog2e;
    launch(attention_mma_backward_kv_kernel<D>, "attention_mma_backward_kv_kernel", grid, kv_smem, stream, dqkv, dout, qkv, lse,
           static_cast<const float*>(Dsum), L, scale, scale_log2);
    launch(attention_mma_backward_q_kernel<D>, "attention_mma_backward_q_kernel", grid, q_smem, stream, dqkv, dout, qkv, lse,
           static_cast<const float*>(Dsum), L, scale, scale_log2);
}

}  // namespace

bool attention_mma_supports(int C, int NH) { return NH > 0 && C % NH == 0 && (C / NH == 64 || C / NH == 128); }

void attention_mma_forward(bf16* out, float* lse, const bf16* qkv, int B, int T_, int C, int NH, cudaStream_t stream) {
    const Heads L = check(T_, C, NH, {out, qkv});
    if (C / NH == 64) forward<64>(out, lse, qkv, B, L, stream);
    else forward<128>(out, lse, qkv, B, L, stream);
}

void attention_mma_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, float* scratch,
                            int B, int T_, int C, int NH, cudaStream_t stream) {
    const Heads L = check(T_, C, NH, {dqkv, dout, qkv, out});
    if (C / NH == 64) backward<64>(dqkv, dout, qkv, out, lse, scratch, B, L, stream);
    else backward<128>(dqkv, dout, qkv, out, lse, scratch, B, L, stream);
}

}  // namespace coldstart::cuda
