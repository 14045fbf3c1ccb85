// Flash-style attention with an online softmax, in fp32 arithmetic on shared-memory tiles.
//
// Shape of the work: one block of 4 warps takes a tile of 32 rows (queries in the forward and the dQ
// pass, keys in the dK/dV pass) of one (batch, head) and sweeps the tiles of the other side that the
// causal mask leaves. Each warp owns 8 of the 32 rows. Scores are computed with lane j taking column
// j of the 32-wide tile (so the softmax statistics are warp reductions), and the outputs are
// accumulated with lane d taking head dimensions d, d+32, ... (so the row's result is spread over the
// warp and stored coalesced). Tiles live in shared memory as floats with rows padded to hs+1 floats:
// lanes reading 32 different rows at the same column then hit 32 different banks.
//
// Why not tensor cores here: this kernel must also run the fp32 mode that is compared with the CPU
// reference at 1e-5, and a plain fp32 kernel is the one that can be checked by reading it. The bf16
// training path can take cuDNN's fused attention instead (--attention cudnn, attention_cudnn.cu).
//
// The backward is FlashAttention-2's, split in two passes so that nothing is summed by atomics:
//   D[i]     = dout_i . out_i                          (prepare kernel)
//   P[i, j]  = exp(scale * q_i . k_j - lse[i]),  dP[i, j] = dout_i . v_j,  dS = P * (dP - D[i])
//   dV_j = sum_i P[i, j] dout_i,  dK_j = scale * sum_i dS[i, j] q_i   (per key tile, over query tiles)
//   dQ_i = scale * sum_j dS[i, j] k_j                                 (per query tile, over key tiles)
#include "layers/cuda/attention.cuh"

#include "common/cuda/common.cuh"
#include "common/error.h"

namespace coldstart::cuda {
namespace {

constexpr int kTile = 32;        // rows and columns of a tile
constexpr int kWarps = 4;        // warps per block
constexpr int kRows = kTile / kWarps;  // rows per warp
constexpr unsigned kFull = 0xffffffffu;

// Head layout inside qkv (B,T,3C): query of (b, t, h) at (b*T + t)*3C + h*hs, key at +C, value at +2C.
struct Heads {
    int T, C, NH, hs;
    __device__ size_t qkv_row(int b, int t) const { return (size_t(b) * T + t) * 3 * size_t(C); }
    __device__ size_t out_row(int b, int t) const { return (size_t(b) * T + t) * size_t(C); }
    __device__ size_t stat(int b, int h, int t) const { return (size_t(b) * NH + h) * T + t; }
};

// Copies rows [t0, t0 + 32) of one head's slice (at column offset `part`: 0 = query, C = key,
// 2C = value; of a (B,T,row_stride) buffer) into a [32][hs+1] float tile; rows past T become 0.
template <typename T>
__device__ void load_tile(float* tile, const T* src, size_t row_stride, int part, int b, int h, int t0, const Heads& L) {
    const int ld = L.hs + 1;
    for (int i = threadIdx.x; i < kTile * L.hs; i += kWarps * 32) {
        const int r = i / L.hs, d = i % L.hs, t = t0 + r;
        tile[r * ld + d] = t < L.T ? to_float(src[(size_t(b) * L.T + t) * row_stride + part + size_t(h) * L.hs + d]) : 0.0f;
    }
}

template <typename T, int DPL>
__global__ void __launch_bounds__(kWarps * 32) attention_forward_kernel(T* out, float* lse, const T* qkv, Heads L, float scale) {
    extern __shared__ float smem[];
    const int ld = L.hs + 1;
    float* q_s = smem;
    float* k_s = q_s + kTile * ld;
    float* v_s = k_s + kTile * ld;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * kTile;  // the longest rows first: better tail balance
    const int h = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t stride = 3 * size_t(L.C);

    load_tile(q_s, qkv, stride, 0, b, h, q0, L);
    float m[kRows], l[kRows], o[kRows][DPL];
    for (int r = 0; r < kRows; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int k = 0; k < DPL; ++k) o[r][k] = 0.0f;
    }
    const int last_q = min(q0 + kTile, L.T) - 1;
    for (int k0 = 0; k0 <= last_q; k0 += kTile) {
        __syncthreads();  // the previous key tile is no longer read
        load_tile(k_s, qkv, stride, L.C, b, h, k0, L);
        load_tile(v_s, qkv, stride, 2 * L.C, b, h, k0, L);
        __syncthreads();
        float s[kRows] = {};
        for (int d = 0; d < L.hs; ++d) {
            const float kd = k_s[lane * ld + d];
            for (int r = 0; r < kRows; ++r) s[r] += q_s[(warp * kRows + r) * ld + d] * kd;
        }
        const int tk = k0 + lane;
        for (int r = 0; r < kRows; ++r) {
            const int tq = q0 + warp * kRows + r;
            // Masked: the future (tk > tq) and rows past T. Every real row has its own key in
            // every tile it visits (k0 <= q0 <= tq), so its running max is finite from the first tile.
            const float score = tq < L.T && tk <= tq ? s[r] * scale : -INFINITY;
            const float m_new = fmaxf(m[r], warp_max(score));
            const float p = score == -INFINITY ? 0.0f : expf(score - m_new);
            const float correction = m[r] == -INFINITY ? 0.0f : expf(m[r] - m_new);
            l[r] = l[r] * correction + warp_sum(p);
            m[r] = m_new;
            for (int k = 0; k < DPL; ++k) o[r][k] *= correction;
            for (int j = 0; j < kTile; ++j) {
                const float pj = __shfl_sync(kFull, p, j);
                for (int k = 0; k < DPL; ++k) {
                    const int d = lane + 32 * k;
                    if (d < L.hs) o[r][k] += pj * v_s[j * ld + d];
                }
            }
        }
    }
    for (int r = 0; r < kRows; ++r) {
        const int tq = q0 + warp * kRows + r;
        if (tq >= L.T) continue;
        const float inv = 1.0f / l[r];
        for (int k = 0; k < DPL; ++k) {
            const int d = lane + 32 * k;
            if (d < L.hs) out[L.out_row(b, tq) + size_t(h) * L.hs + d] = from_float<T>(o[r][k] * inv);
        }
        if (lane == 0) lse[L.stat(b, h, tq)] = m[r] + logf(l[r]);
    }
}

// One warp per (b, t, h): D = dout . out over the head's hs dimensions.
template <typename T>
__global__ void attention_backward_prepare_kernel(float* D, const T* dout, const T* out, Heads L, int rows) {
    const int row = blockIdx.x * kWarps + threadIdx.x / 32;  // over (b, t, h) in that order
    if (row >= rows) return;
    const int lane = threadIdx.x % 32;
    const int h = row % L.NH, bt = row / L.NH, b = bt / L.T, t = bt % L.T;
    const size_t o = L.out_row(b, t) + size_t(h) * L.hs;
    float sum = 0.0f;
    for (int d = lane; d < L.hs; d += 32) sum += to_float(dout[o + d]) * to_float(out[o + d]);
    sum = warp_sum(sum);
    if (lane == 0) D[L.stat(b, h, t)] = sum;
}

// Key tile k0: dK and dV of its 32 keys, summed over every query tile at or after it.
template <typename T, int DPL>
__global__ void __launch_bounds__(kWarps * 32) attention_backward_kv_kernel(T* dqkv, const T* dout, const T* qkv,
                                                                            const float* lse, const float* D, Heads L,
                                                                            float scale) {
    extern __shared__ float smem[];
    const int ld = L.hs + 1;
    float* k_s = smem;
    float* v_s = k_s + kTile * ld;
    float* q_s = v_s + kTile * ld;
    float* do_s = q_s + kTile * ld;
    float* lse_s = do_s + kTile * ld;
    float* d_s = lse_s + kTile;
    const int k0 = blockIdx.x * kTile;  // the longest sweeps (early keys) get the low block indices
    const int h = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t stride = 3 * size_t(L.C);

    load_tile(k_s, qkv, stride, L.C, b, h, k0, L);
    load_tile(v_s, qkv, stride, 2 * L.C, b, h, k0, L);
    float dk[kRows][DPL] = {}, dv[kRows][DPL] = {};
    for (int q0 = k0; q0 < L.T; q0 += kTile) {
        __syncthreads();
        load_tile(q_s, qkv, stride, 0, b, h, q0, L);
        load_tile(do_s, dout, size_t(L.C), 0, b, h, q0, L);
        if (threadIdx.x < kTile) {
            const int t = q0 + threadIdx.x;
            lse_s[threadIdx.x] = t < L.T ? lse[L.stat(b, h, t)] : 0.0f;
            d_s[threadIdx.x] = t < L.T ? D[L.stat(b, h, t)] : 0.0f;
        }
        __syncthreads();
        // lane = query i of the tile; rows r = this warp's keys
        float s[kRows] = {}, dp[kRows] = {};
        for (int d = 0; d < L.hs; ++d) {
            const float qd = q_s[lane * ld + d], dod = do_s[lane * ld + d];
            for (int r = 0; r < kRows; ++r) {
                s[r] += k_s[(warp * kRows + r) * ld + d] * qd;
                dp[r] += v_s[(warp * kRows + r) * ld + d] * dod;
            }
        }
        const int tq = q0 + lane;
        float p[kRows], ds[kRows];
        for (int r = 0; r < kRows; ++r) {
            const int tk = k0 + warp * kRows + r;
            const bool live = tq < L.T && tk <= tq;
            p[r] = live ? expf(s[r] * scale - lse_s[lane]) : 0.0f;
            ds[r] = p[r] * (dp[r] - d_s[lane]);
        }
        for (int i = 0; i < kTile; ++i) {
            float qi[DPL], doi[DPL];
            for (int k = 0; k < DPL; ++k) {
                const int d = lane + 32 * k;
                qi[k] = d < L.hs ? q_s[i * ld + d] : 0.0f;
                doi[k] = d < L.hs ? do_s[i * ld + d] : 0.0f;
            }
            for (int r = 0; r < kRows; ++r) {
                const float pi = __shfl_sync(kFull, p[r], i), dsi = __shfl_sync(kFull, ds[r], i);
                for (int k = 0; k < DPL; ++k) {
                    dv[r][k] += pi * doi[k];
                    dk[r][k] += dsi * qi[k];
                }
            }
        }
    }
    for (int r = 0; r < kRows; ++r) {
        const int tk = k0 + warp * kRows + r;
        if (tk >= L.T) continue;
        const size_t row = L.qkv_row(b, tk) + size_t(h) * L.hs;
        for (int k = 0; k < DPL; ++k) {
            const int d = lane + 32 * k;
            if (d >= L.hs) continue;
            dqkv[row + L.C + d] = from_float<T>(dk[r][k] * scale);
            dqkv[row + 2 * size_t(L.C) + d] = from_float<T>(dv[r][k]);
        }
    }
}

// Query tile q0: dQ of its 32 queries, summed over the key tiles at or before it.
template <typename T, int DPL>
__global__ void __launch_bounds__(kWarps * 32) attention_backward_q_kernel(T* dqkv, const T* dout, const T* qkv,
                                                                           const float* lse, const float* D, Heads L,
                                                                           float scale) {
    extern __shared__ float smem[];
    const int ld = L.hs + 1;
    float* q_s = smem;
    float* do_s = q_s + kTile * ld;
    float* k_s = do_s + kTile * ld;
    float* v_s = k_s + kTile * ld;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * kTile;
    const int h = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t stride = 3 * size_t(L.C);

    load_tile(q_s, qkv, stride, 0, b, h, q0, L);
    load_tile(do_s, dout, size_t(L.C), 0, b, h, q0, L);
    float row_lse[kRows], row_d[kRows];
    for (int r = 0; r < kRows; ++r) {
        const int tq = q0 + warp * kRows + r;
        row_lse[r] = tq < L.T ? lse[L.stat(b, h, tq)] : 0.0f;
        row_d[r] = tq < L.T ? D[L.stat(b, h, tq)] : 0.0f;
    }
    float dq[kRows][DPL] = {};
    const int last_q = min(q0 + kTile, L.T) - 1;
    for (int k0 = 0; k0 <= last_q; k0 += kTile) {
        __syncthreads();
        load_tile(k_s, qkv, stride, L.C, b, h, k0, L);
        load_tile(v_s, qkv, stride, 2 * L.C, b, h, k0, L);
        __syncthreads();
        // lane = key j of the tile; rows r = this warp's queries
        float s[kRows] = {}, dp[kRows] = {};
        for (int d = 0; d < L.hs; ++d) {
            const float kd = k_s[lane * ld + d], vd = v_s[lane * ld + d];
            for (int r = 0; r < kRows; ++r) {
                s[r] += q_s[(warp * kRows + r) * ld + d] * kd;
                dp[r] += do_s[(warp * kRows + r) * ld + d] * vd;
            }
        }
        const int tk = k0 + lane;
        for (int r = 0; r < kRows; ++r) {
            const int tq = q0 + warp * kRows + r;
            const bool live = tq < L.T && tk <= tq;
            const float p = live ? expf(s[r] * scale - row_lse[r]) : 0.0f;
            const float ds = p * (dp[r] - row_d[r]);
            for (int j = 0; j < kTile; ++j) {
                const float dsj = __shfl_sync(kFull, ds, j);
                for (int k = 0; k < DPL; ++k) {
                    const int d = lane + 32 * k;
                    if (d < L.hs) dq[r][k] += dsj * k_s[j * ld + d];
                }
            }
        }
    }
    for (int r = 0; r < kRows; ++r) {
        const int tq = q0 + warp * kRows + r;
        if (tq >= L.T) continue;
        const size_t row = L.qkv_row(b, tq) + size_t(h) * L.hs;
        for (int k = 0; k < DPL; ++k) {
            const int d = lane + 32 * k;
            if (d < L.hs) dqkv[row + d] = from_float<T>(dq[r][k] * scale);
        }
    }
}

Heads check_heads(int T_, int C, int NH) {
    if (NH <= 0 || C % NH != 0) fail("attention: %d channels do not split into %d heads", C, NH);
    const int hs = C / NH;
    if (hs > 128) fail("attention: head size %d is above the 128 the CUDA kernel supports (GPT-2 uses 64)", hs);
    return {T_, C, NH, hs};
}

// Launches kernel with `tiles` float tiles of [32][hs+1] plus `extra` floats of dynamic shared memory,
// raising the kernel's limit above the default 48 KiB when a head size of 128 needs it.
template <typename Kernel, typename... Args>
void launch_tiles(Kernel kernel, const char* name, int tiles, int extra, const Heads& L, int B, cudaStream_t stream,
                  Args... args) {
    const size_t smem = (size_t(tiles) * kTile * (L.hs + 1) + size_t(extra)) * sizeof(float);
    if (smem > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const dim3 grid(unsigned(ceil_div(size_t(L.T), kTile)), unsigned(L.NH), unsigned(B));
    kernel<<<grid, kWarps * 32, smem, stream>>>(args...);
    KERNEL_CHECK(name);
}

template <typename T, int DPL>
void forward_dpl(T* out, float* lse, const T* qkv, int B, const Heads& L, cudaStream_t stream) {
    const float scale = 1.0f / sqrtf(float(L.hs));
    launch_tiles(attention_forward_kernel<T, DPL>, "attention_forward_kernel", 3, 0, L, B, stream, out, lse, qkv, L, scale);
}

template <typename T, int DPL>
void backward_dpl(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* D, int B, const Heads& L,
                  cudaStream_t stream) {
    const float scale = 1.0f / sqrtf(float(L.hs));
    launch_tiles(attention_backward_kv_kernel<T, DPL>, "attention_backward_kv_kernel", 4, 2 * kTile, L, B, stream, dqkv, dout,
                 qkv, lse, D, L, scale);
    launch_tiles(attention_backward_q_kernel<T, DPL>, "attention_backward_q_kernel", 4, 0, L, B, stream, dqkv, dout, qkv, lse,
                 D, L, scale);
}

}  // namespace

template <typename T>
void attention_forward(T* out, float* lse, const T* qkv, int B, int T_, int C, int NH, cudaStream_t stream) {
    const Heads L = check_heads(T_, C, NH);
    switch ((L.hs + 31) / 32) {  // head dimensions per lane
        case 1: forward_dpl<T, 1>(out, lse, qkv, B, L, stream); break;
        case 2: forward_dpl<T, 2>(out, lse, qkv, B, L, stream); break;
        case 3: forward_dpl<T, 3>(out, lse, qkv, B, L, stream); break;
        default: forward_dpl<T, 4>(out, lse, qkv, B, L, stream); break;
    }
}

template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const float* lse, float* scratch, int B, int T_,
                        int C, int NH, cudaStream_t stream) {
    const Heads L = check_heads(T_, C, NH);
    const int rows = B * T_ * NH;
    attention_backward_prepare_kernel<<<unsigned(ceil_div(size_t(rows), kWarps)), kWarps * 32, 0, stream>>>(scratch, dout, out,
                                                                                                            L, rows);
    KERNEL_CHECK("attention_backward_prepare_kernel");
    switch ((L.hs + 31) / 32) {
        case 1: backward_dpl<T, 1>(dqkv, dout, qkv, lse, scratch, B, L, stream); break;
        case 2: backward_dpl<T, 2>(dqkv, dout, qkv, lse, scratch, B, L, stream); break;
        case 3: backward_dpl<T, 3>(dqkv, dout, qkv, lse, scratch, B, L, stream); break;
        default: backward_dpl<T, 4>(dqkv, dout, qkv, lse, scratch, B, L, stream); break;
    }
}

template void attention_forward<float>(float*, float*, const float*, int, int, int, int, cudaStream_t);
template void attention_forward<bf16>(bf16*, float*, const bf16*, int, int, int, int, cudaStream_t);
template void attention_backward<float>(float*, const float*, const float*, const float*, const float*, float*, int, int, int,
                                        int, cudaStream_t);
template void attention_backward<bf16>(bf16*, const bf16*, const bf16*, const bf16*, const float*, float*, int, int, int, int,
                                       cudaStream_t);

}  // namespace coldstart::cuda
