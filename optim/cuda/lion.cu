// Lion, LionA and LionAR on the GPU: the math of optim/lion.cpp (the formulas are in optim/lion.h), the
// same state buffers, the same scalars (optim/lion_math.h), step by step.
//
// The launches of one step, none of which waits for the host:
//   LionAR's RRC correction only: per controlled row the partial sums ||g||^2, <g, m>, ||m||^2 (one block
//   a row), then one block per controlled tensor adds its rows in a fixed order and updates the
//   signal-fraction EMA and the step scale k on the device;
//   LionA only: per row of every tensor the count of non-zero signs (one block a row), then one block per
//   tensor adds its rows in a fixed order (integers in double: exact) and one thread per tensor turns the
//   count into the step length of the l2 rule;
//   tensors that are not controlled: Lion's elementwise step (one launch over all of them, 128-bit
//   accesses);
//   controlled tensors, per row: one fused block a row (u, momentum, <x,u> and |x|^2, the radial
//   removal, centring, |u|, the step, the renormalisation, the gain): everything the row needs stays in
//   shared memory; per tensor (--control tensor): the same phases as separate launches over all rows,
//   each followed by a fixed-order reduction per tensor, since the whole tensor's sums are needed between
//   them.
// The first step also centres rows and records the held norms (one block a row). Every kernel that writes
// the weights or the state returns at once when the device's gate skips the step. A measured step runs
// the plain step one block a row too, and every kernel leaves its rows' sums for step_sums.cuh.
// With ZeRO-1 the optimizer steps one shard (optim/partition.h: cut between rows, never inside a row or a
// tensor controlled whole): the tables hold the rows the shard holds, and the only sums that need rows of
// other ranks, LionAR's signal estimate and LionA's counts, go through one reduction over the ranks each
// per step (sum_across_ranks), every rank taking part whether it holds rows of such tensors or not.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "common/cuda/common.cuh"
#include "common/error.h"
#include "optim/cuda/cuda_optimizer.cuh"
#include "optim/cuda/step_sums.cuh"
#include "optim/lion_math.h"

namespace coldstart::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 4;  // floats per thread and access in the elementwise step: one 128-bit load of w, g and m
constexpr int kPerThread = 4;
constexpr size_t kPerBlock = size_t(kThreads) * kVec * kPerThread;
constexpr int kMaxControlledCols = 16384;  // two rows of floats: 128 KB of shared memory (A100: 163 KB, H100: 227 KB)

// The tables hold the tensors (their rows) that the shard holds; a per-tensor array is indexed by the
// tensor's ordinal among all plain or all controlled tensors, so that it has the same length on every rank
// and one reduction sums it over the ranks.
struct PlainTensor {
    size_t offset, numel;  // the rows held: where they start (from the shard's start), their elements
    unsigned first_block;  // among the blocks of the elementwise launch
    unsigned first_row;    // among the rows of the plain tensors held
    unsigned sums_row;     // its first row in the measured-step row sums
    int rows, cols;        // rows held
    int decay;
    int ordinal;           // among all plain tensors (LionA's counts and step lengths)
    size_t tensor_numel;   // the whole tensor's elements (LionA's rule)
    int packed;            // offset is a multiple of kVec: its chunks are 16-byte aligned when the buffers are
};

struct ControlledTensor {
    size_t offset;       // of the rows held, from the shard's start
    size_t element;      // its first element among the controlled elements held (directions, scratch)
    unsigned first_row;  // its first row among the controlled rows held
    unsigned sums_row;   // its first row in the measured-step row sums
    unsigned group;      // its first group held (per row: one a row; per tensor: one)
    int rows, cols;      // rows held
    int ordinal;         // among all controlled tensors (per-tensor sums, LionAR's k)
};

struct LionScalars {
    float b1, b2, weight_decay;
    float plain_lr;         // lr * the inverse bias correction's ramp
    double ramped_lr;       // the same in double, the base of LionA's l2 rule
    double theta;           // the target angle times the ramp (the RRC correction multiplies it by k)
    float gain_lr;
    double rho, rho_correction;
    int center, smoothed, gains, rrc;
};

__device__ inline float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }
// Lion's update direction, as optim/lion.cpp writes it, for the step and for LionA's count.
__device__ inline float lion_direction(float b1, float m_prev, float grad) { return sign_of(b1 * m_prev + (1.0f - b1) * grad); }

// ---- tensors that take plain Lion steps ----

struct PlainElement {
    float grad, m_prev, w_old;
};
// One element's Lion step on values; step: the sign step's length (lr, or LionA's rule); decay: 1 - lr wd, or 1.
__device__ inline void lion_update(float& w, float& m, float grad, float step, float decay, const LionScalars& s) {
    const float u = lion_direction(s.b1, m, grad);
    w = w * decay - step * u;
    m = s.b2 * m + (1.0f - s.b2) * grad;
}

// One element in place; returns the old values for a measured step's sums.
__device__ inline PlainElement lion_element(float* w, const float* g, float* m, size_t i, float scale, float step, float decay,
                                            const LionScalars& s) {
    const PlainElement old{g[i] * scale, m[i], w[i]};
    lion_update(w[i], m[i], old.grad, step, decay, s);
    return old;
}

// The step length of a plain tensor: Lion's lr, or LionA's from its count (l2_steps: null for Lion).
__device__ inline float plain_step_length(const PlainTensor& t, const float* l2_steps, const LionScalars& s) {
    return l2_steps ? l2_steps[t.ordinal] : s.plain_lr;
}

// aligned: w, g and m are 16-byte aligned, so a packed tensor's chunks of kVec are too.
__global__ void lion_plain_kernel(float* w, const float* g, float* m, const PlainTensor* tensors, int count,
                                  const DeviceStepGate* gate, const float* l2_steps, LionScalars s, bool aligned) {
    if (gate->skip) return;
    const PlainTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &PlainTensor::first_block)];
    const float decay = t.decay ? 1.0f - s.plain_lr * s.weight_decay : 1.0f;
    const float step = plain_step_length(t, l2_steps, s);
    const float scale = gate->grad_scale;
    const size_t base = size_t(blockIdx.x - t.first_block) * kPerBlock;
    for (int k = 0; k < kPerThread; ++k) {
        const size_t j = base + (size_t(k) * kThreads + threadIdx.x) * kVec;
        if (j >= t.numel) break;
        const size_t i = t.offset + j;
        if (aligned && t.packed && j + kVec <= t.numel) {
            Vec<float, kVec> wv = load_vec<kVec>(w + i), mv = load_vec<kVec>(m + i);
            const Vec<float, kVec> gv = load_vec<kVec>(g + i);
            for (int e = 0; e < kVec; ++e) lion_update(wv.v[e], mv.v[e], gv.v[e] * scale, step, decay, s);
            store_vec(w + i, wv);
            store_vec(m + i, mv);
        } else {
            for (size_t e = j; e < t.numel && e < j + kVec; ++e) lion_element(w, g, m, t.offset + e, scale, step, decay, s);
        }
    }
}

// A measured step: one block per row of the plain tensors, the same step, and the row's sums.
__global__ void lion_plain_rows_kernel(float* w, const float* g, float* m, const PlainTensor* tensors, int count,
                                       const DeviceStepGate* gate, const float* l2_steps, LionScalars s, RowSumsDevice* row_sums,
                                       float* update) {
    __shared__ double shared[32];
    const PlainTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &PlainTensor::first_row)];
    const unsigned r = blockIdx.x - t.first_row;
    const float decay = t.decay ? 1.0f - s.plain_lr * s.weight_decay : 1.0f;
    const float step = plain_step_length(t, l2_steps, s);
    if (gate->skip) return;
    const float scale = gate->grad_scale;
    const size_t row = t.offset + size_t(r) * size_t(t.cols);
    ThreadRowSums sums;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x) {
        const size_t i = row + size_t(j);
        const PlainElement old = lion_element(w, g, m, i, scale, step, decay, s);
        sums.add_weights(old.w_old, w[i]);
        sums.add_moments(old.grad, old.m_prev, m[i]);
        if (update) update[i] = w[i] - old.w_old;
    }
    store_block_row_sums(sums, row_sums + t.sums_row + r, shared);
}

// LionA, per row of the plain tensors (one block a row): the count of the row's non-zero signs.
__global__ void nonzero_signs_rows_kernel(const float* g, const float* m, const PlainTensor* tensors, int count,
                                          const DeviceStepGate* gate, LionScalars s, double* per_row) {
    __shared__ double shared[32];
    const PlainTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &PlainTensor::first_row)];
    const size_t row = t.offset + size_t(blockIdx.x - t.first_row) * size_t(t.cols);
    if (gate->skip) return;
    const float scale = gate->grad_scale;
    double n = 0;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x)
        n += lion_direction(s.b1, m[row + size_t(j)], g[row + size_t(j)] * scale) != 0.0f;
    n = block_sum(n, shared);
    if (threadIdx.x == 0) per_row[blockIdx.x] = n;
}

// LionA, one thread per plain tensor held: the step length of the l2 rule from the whole tensor's count.
__global__ void l2_steps_kernel(const double* nonzero, const PlainTensor* tensors, int count, LionScalars s, float* steps) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= count) return;
    const PlainTensor& t = tensors[i];
    steps[t.ordinal] = float(l2_controlled_step(s.ramped_lr, double(t.tensor_numel), nonzero[t.ordinal]));
}

// ---- controlled tensors ----

// Subtracts the row's mean from each of its cols values (the block's threads together), as the CPU's
// centring does: the mean in double, subtracted in float. Every thread of the block must call it.
__device__ inline void center_row(float* x, int cols, double* shared) {
    double sum = 0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += x[j];
    const float mean = float(block_sum(sum, shared) / double(cols));
    for (int j = threadIdx.x; j < cols; j += blockDim.x) x[j] -= mean;
}

// The weights of every controlled row before the step, for a measured step's sums (the first step's
// centring changes them before the step proper).
__global__ void copy_controlled_kernel(const float* w, float* w_before, const ControlledTensor* tensors, int count) {
    const ControlledTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &ControlledTensor::first_row)];
    const size_t r = blockIdx.x - t.first_row;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x)
        w_before[t.element + r * size_t(t.cols) + size_t(j)] = w[t.offset + r * size_t(t.cols) + size_t(j)];
}

// The first step: centre each row (optionally), copy it to the direction (row gains), and leave its
// squared norm: the held norm of a row, or a part of the tensor's (reduced by sum_rows_kernel).
__global__ void start_control_kernel(float* w, float* directions, double* row_sq, const ControlledTensor* tensors, int count,
                                     LionScalars s, const DeviceStepGate* gate) {
    if (gate->skip) return;
    __shared__ double shared[32];
    const ControlledTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &ControlledTensor::first_row)];
    const size_t r = blockIdx.x - t.first_row;
    float* wr = w + t.offset + r * size_t(t.cols);
    if (s.center) center_row(wr, t.cols, shared);
    double sq = 0;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x) {
        if (s.gains) directions[t.element + r * size_t(t.cols) + size_t(j)] = wr[j];
        sq += double(wr[j]) * wr[j];
    }
    sq = block_sum(sq, shared);
    if (threadIdx.x == 0) row_sq[blockIdx.x] = sq;
}

// Per tensor of a table (ControlledTensor or PlainTensor, one block each): the sums over its rows held of
// `fields` per-row values, in a fixed order, at its ordinal.
template <typename Tensor>
__global__ void sum_rows_kernel(const double* per_row, int fields, const Tensor* tensors, double* per_tensor) {
    __shared__ double shared[32];
    const Tensor t = tensors[blockIdx.x];
    for (int f = 0; f < fields; ++f) {
        double s = 0;
        for (int r = threadIdx.x; r < t.rows; r += blockDim.x) s += per_row[(size_t(t.first_row) + size_t(r)) * fields + f];
        s = block_sum(s, shared);
        if (threadIdx.x == 0) per_tensor[size_t(t.ordinal) * fields + f] = s;
    }
}

// The first step's held norms: per row, or per tensor from its rows' parts.
__global__ void record_norms_kernel(const double* row_sq, const double* tensor_sq, float* norms, const ControlledTensor* tensors,
                                    int count, int per_row, const DeviceStepGate* gate) {
    if (gate->skip) return;
    const ControlledTensor t = tensors[blockIdx.x];
    if (!per_row) {
        if (threadIdx.x == 0) norms[t.group] = float(sqrt(tensor_sq[t.ordinal]));
        return;
    }
    for (int r = threadIdx.x; r < t.rows; r += blockDim.x) norms[t.group + unsigned(r)] = float(sqrt(row_sq[t.first_row + unsigned(r)]));
}

// The RRC correction, per controlled row: ||g||^2, <g, m_{t-1}>, ||m_{t-1}||^2 of the controlled variable's gradient.
__global__ void snr_rows_kernel(const float* g, const float* m, const float* gains, double* per_row, const ControlledTensor* tensors,
                                int count, const DeviceStepGate* gate, LionScalars s) {
    __shared__ double shared[32];
    const ControlledTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &ControlledTensor::first_row)];
    const size_t r = blockIdx.x - t.first_row, row = t.offset + r * size_t(t.cols);
    const float row_gain = s.gains ? gains[t.group + unsigned(r)] : 1.0f;
    if (gate->skip) return;
    const float scale = gate->grad_scale;
    double g_sq = 0, g_dot_m = 0, m_sq = 0;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x) {
        const float gx = g[row + size_t(j)] * scale * row_gain;
        const float mj = m[row + size_t(j)];
        g_sq += double(gx) * gx;
        g_dot_m += double(gx) * mj;
        m_sq += double(mj) * mj;
    }
    g_sq = block_sum(g_sq, shared);
    g_dot_m = block_sum(g_dot_m, shared);
    m_sq = block_sum(m_sq, shared);
    if (threadIdx.x == 0) {
        double* out = per_row + size_t(blockIdx.x) * 3;
        out[0] = g_sq;
        out[1] = g_dot_m;
        out[2] = m_sq;
    }
}

// The RRC correction, one thread per controlled tensor held: from the whole tensor's sums, the signal
// fraction, its EMA (kept as floats, as the CPU keeps it; each rank holding rows of the tensor keeps it
// alike) and the step scale k.
__global__ void snr_scale_kernel(const double* per_tensor, float* snr_ema, double* k_scale, const ControlledTensor* tensors,
                                 int count, RrcCorrection estimator, InverseBiasCorrection ibc, double b, double t,
                                 double ema_factor, double k_min, const DeviceStepGate* gate) {
    if (gate->skip) return;
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= count) return;
    const int o = tensors[i].ordinal;
    const double* sums = per_tensor + size_t(o) * 3;
    const double signal = signal_fraction(estimator, ibc, b, t, sums[0], sums[1], sums[2]);
    float* ema = snr_ema + 2 * size_t(i);
    if (!isnan(signal)) {
        ema[0] = float(ema_factor * ema[0] + (1.0 - ema_factor) * signal);
        ema[1] += 1.0f;
    }
    k_scale[o] = snr_step_scale(ema[0], ema[1], ema_factor, k_min);
}

// The whole per-row step of one controlled row, one block: the CPU's phases (optim/lion.cpp) with
// every sum over the row a block sum. u and x stay in shared memory (2 * cols floats).
__global__ void controlled_rows_kernel(float* w, const float* g, float* m, float* directions, float* gains, float* gain_m,
                                       const float* norms, float* norm_ema, const double* k_scale, const ControlledTensor* tensors,
                                       int count, const DeviceStepGate* gate, LionScalars s, const float* w_before,
                                       RowSumsDevice* row_sums, float* update) {
    extern __shared__ float row_memory[];
    __shared__ double shared[32];
    __shared__ float new_gain, new_ema;
    const ControlledTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &ControlledTensor::first_row)];
    const size_t r = blockIdx.x - t.first_row, row = t.offset + r * size_t(t.cols);
    const unsigned group = t.group + unsigned(r);
    const int cols = t.cols;
    float* u = row_memory;
    float* x = row_memory + cols;
    float* x_global = s.gains ? directions + t.element + r * size_t(cols) : w + row;  // the controlled variable
    const float row_gain = s.gains ? gains[group] : 1.0f;
    if (gate->skip) return;
    const float scale = gate->grad_scale;
    ThreadRowSums sums;

    double xu = 0, xx = 0, gain_grad = 0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float grad = g[row + size_t(j)] * scale;  // dL/dW
        const float gx = grad * row_gain;               // dL/dx
        const float m_prev = m[row + size_t(j)];
        u[j] = lion_direction(s.b1, m_prev, gx);
        const float m_new = s.b2 * m_prev + (1.0f - s.b2) * gx;
        m[row + size_t(j)] = m_new;
        x[j] = x_global[j];
        xu += double(u[j]) * x[j];
        xx += double(x[j]) * x[j];
        gain_grad += double(grad) * x[j];
        if (row_sums) sums.add_moments(grad, m_prev, m_new);
    }
    xu = block_sum(xu, shared);
    xx = block_sum(xx, shared);
    gain_grad = block_sum(gain_grad, shared);
    if (s.gains && threadIdx.x == 0) {  // a plain Lion step of the row's gain, no weight decay
        const float gg = float(gain_grad);
        gains[group] -= s.gain_lr * lion_direction(s.b1, gain_m[group], gg);
        gain_m[group] = s.b2 * gain_m[group] + (1.0f - s.b2) * gg;
        new_gain = gains[group];
    }

    const float radial = xx > 0 ? float(xu / xx) : 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) u[j] -= radial * x[j];
    if (s.center) center_row(u, cols, shared);
    double uu = 0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) uu += double(u[j]) * u[j];
    uu = block_sum(uu, shared);
    double d;
    if (!s.smoothed) {
        d = sqrt(uu);
    } else {
        if (threadIdx.x == 0) {
            norm_ema[group] = float(s.rho * norm_ema[group] + (1.0 - s.rho) * uu);
            new_ema = norm_ema[group];
        }
        __syncthreads();
        d = sqrt(double(new_ema) / s.rho_correction);
    }
    float factor = 1.0f;
    if (d > 0 && xx > 0) {  // the same on every thread: a block sum
        const double k = s.rrc ? k_scale[t.ordinal] : 1.0;
        const float step = float(tan(s.theta * k) * sqrt(xx) / d);
        double sq = 0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            x[j] -= step * u[j];
            sq += double(x[j]) * x[j];
        }
        sq = block_sum(sq, shared);
        factor = sq > 0 ? float(norms[group] / sqrt(sq)) : 1.0f;
    }
    __syncthreads();  // new_gain
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float x_new = x[j] * factor;
        const float w_old = w_before ? w_before[t.element + r * size_t(cols) + size_t(j)] : w[row + size_t(j)];
        const float w_new = s.gains ? new_gain * x_new : x_new;
        if (s.gains) x_global[j] = x_new;
        w[row + size_t(j)] = w_new;
        if (row_sums) sums.add_weights(w_old, w_new);
        if (update) update[row + size_t(j)] = w_new - w_old;
    }
    if (row_sums) store_block_row_sums(sums, row_sums + t.sums_row + r, shared);
}

// ---- per-tensor control: the same phases as separate launches, the tensor's sums in between ----

// Phase 1 per row: u (kept in scratch), the momentum, the row's <x,u> and |x|^2.
__global__ void tensor_direction_kernel(const float* w, const float* g, float* m, float* u_all, double* per_row,
                                        const ControlledTensor* tensors, int count, const DeviceStepGate* gate, LionScalars s,
                                        RowSumsDevice* row_sums) {
    __shared__ double shared[32];
    const ControlledTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &ControlledTensor::first_row)];
    const size_t r = blockIdx.x - t.first_row, row = t.offset + r * size_t(t.cols);
    float* u = u_all + t.element + r * size_t(t.cols);
    if (gate->skip) return;
    const float scale = gate->grad_scale;
    ThreadRowSums sums;
    double xu = 0, xx = 0;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x) {
        const float grad = g[row + size_t(j)] * scale;
        const float m_prev = m[row + size_t(j)];
        u[j] = lion_direction(s.b1, m_prev, grad);
        const float m_new = s.b2 * m_prev + (1.0f - s.b2) * grad;
        m[row + size_t(j)] = m_new;
        const float xj = w[row + size_t(j)];
        xu += double(u[j]) * xj;
        xx += double(xj) * xj;
        if (row_sums) sums.add_moments(grad, m_prev, m_new);
    }
    xu = block_sum(xu, shared);
    xx = block_sum(xx, shared);
    if (threadIdx.x == 0) {
        per_row[size_t(blockIdx.x) * 2] = xu;
        per_row[size_t(blockIdx.x) * 2 + 1] = xx;
    }
    if (row_sums) store_block_moment_sums(sums, row_sums + t.sums_row + unsigned(r), shared);
}

// Phase 2 per row: the radial part removed with the tensor's <x,u>/<x,x>, each row re-centred, |u_r|^2.
__global__ void tensor_radial_kernel(const float* w, float* u_all, const double* tensor_xu_xx, double* per_row,
                                     const ControlledTensor* tensors, int count, LionScalars s) {
    __shared__ double shared[32];
    const ControlledTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &ControlledTensor::first_row)];
    const size_t r = blockIdx.x - t.first_row, row = t.offset + r * size_t(t.cols);
    float* u = u_all + t.element + r * size_t(t.cols);
    const double xu = tensor_xu_xx[2 * t.ordinal], xx = tensor_xu_xx[2 * t.ordinal + 1];
    const float radial = xx > 0 ? float(xu / xx) : 0.0f;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x) u[j] -= radial * w[row + size_t(j)];
    if (s.center) center_row(u, t.cols, shared);
    double uu = 0;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x) uu += double(u[j]) * u[j];
    uu = block_sum(uu, shared);
    if (threadIdx.x == 0) per_row[blockIdx.x] = uu;
}

// One thread per controlled tensor: the divisor D (|u| or the smoothed RMS) and the step length.
__global__ void tensor_step_kernel(const double* tensor_xu_xx, const double* tensor_uu, float* norm_ema, const double* k_scale,
                                   const ControlledTensor* tensors, int count, LionScalars s, float* step, int* moved,
                                   const DeviceStepGate* gate) {
    if (gate->skip) return;
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= count) return;
    const int o = tensors[i].ordinal;
    const double xx = tensor_xu_xx[2 * o + 1], uu = tensor_uu[o];
    double d;
    if (!s.smoothed) {
        d = sqrt(uu);
    } else {
        float& ema = norm_ema[tensors[i].group];
        ema = float(s.rho * ema + (1.0 - s.rho) * uu);
        d = sqrt(double(ema) / s.rho_correction);
    }
    moved[o] = d > 0 && xx > 0;
    const double k = s.rrc ? k_scale[o] : 1.0;
    step[o] = moved[o] ? float(tan(s.theta * k) * sqrt(xx) / d) : 0.0f;
}

// Phase 3 per row: x -= step u, the row's part of |x|^2.
__global__ void tensor_move_kernel(float* w, const float* u_all, const float* step, const int* moved, double* per_row,
                                   const ControlledTensor* tensors, int count, const DeviceStepGate* gate) {
    if (gate->skip) return;
    __shared__ double shared[32];
    const ControlledTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &ControlledTensor::first_row)];
    const size_t r = blockIdx.x - t.first_row, row = t.offset + r * size_t(t.cols);
    const float* u = u_all + t.element + r * size_t(t.cols);
    double sq = 0;
    if (moved[t.ordinal])
        for (int j = threadIdx.x; j < t.cols; j += blockDim.x) {
            w[row + size_t(j)] -= step[t.ordinal] * u[j];
            sq += double(w[row + size_t(j)]) * w[row + size_t(j)];
        }
    sq = block_sum(sq, shared);
    if (threadIdx.x == 0) per_row[blockIdx.x] = sq;
}

// Phase 4 per row: back to the held norm; the row's sums.
__global__ void tensor_finish_kernel(float* w, const float* norms, const double* tensor_sq, const int* moved,
                                     const ControlledTensor* tensors, int count, const float* w_before, RowSumsDevice* row_sums,
                                     float* update, const DeviceStepGate* gate) {
    if (gate->skip) return;
    __shared__ double shared[32];
    const ControlledTensor t = tensors[last_at_or_below(tensors, count, blockIdx.x, &ControlledTensor::first_row)];
    const size_t r = blockIdx.x - t.first_row, row = t.offset + r * size_t(t.cols);
    const double sq = tensor_sq[t.ordinal];
    const float factor = moved[t.ordinal] && sq > 0 ? float(norms[t.group] / sqrt(sq)) : 1.0f;
    ThreadRowSums sums;
    for (int j = threadIdx.x; j < t.cols; j += blockDim.x) {
        const size_t i = row + size_t(j);
        w[i] *= factor;
        if (w_before) {
            const float w_old = w_before[t.element + r * size_t(t.cols) + size_t(j)];
            sums.add_weights(w_old, w[i]);
            if (update) update[i] = w[i] - w_old;
        }
    }
    if (row_sums) store_block_weight_sums(sums, row_sums + t.sums_row + unsigned(r), shared);
}

class LionCuda : public CudaOptimizer {
public:
    LionCuda(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors, const ParameterShard& shard,
             SumAcrossRanks sum_across_ranks, cudaStream_t stream)
        : config_(config), tensors_(tensors), roles_(tensor_roles(config, tensors)), stream_(stream),
          sum_across_ranks_(std::move(sum_across_ranks)), sums_(tensors, shard, snr_index(config, roles_), stream) {
        if (config.row_gains && config.control != ControlScope::rows) fail("--row-gains 1 needs --control rows");
        total_ = total_parameters(tensors);
        begin_ = std::min(shard.begin, total_);
        end_ = std::min(shard.end, total_);
        unsigned sums_row = 0;
        for (size_t k = 0; k < tensors.size(); ++k) {
            const RowRange held = rows_in_shard(tensors[k], shard);
            if (roles_[k].controlled) add_controlled(tensors[k], held, sums_row);
            else add_plain(tensors[k], held, roles_[k].decay, sums_row);
            sums_row += unsigned(held.last - held.first);
        }
        allocate();
    }

    const OptimizerConfig& config() const override { return config_; }
    DeviceStepGate* gate_device() override { return gate_; }
    size_t state_bytes() const override {
        size_t bytes = 0;
        for (const Buffer& b : state_) bytes += b.held * sizeof(float);
        return bytes;
    }

    void step(float* params, const float* grads, const StepContext& ctx, const StepOutputs& out) override {
        const NvtxRange range("lion");
        const OptimizerConfig& c = config_;
        const LionScalars s = scalars(ctx);
        const bool measured = out.sums || out.update;
        RowSumsDevice* row_sums = out.sums ? sums_.rows() : nullptr;
        float* update = out.update ? scratch(update_, end_ - begin_, "the measured step's update") : nullptr;
        const int controlled = int(controlled_.size()), plain = int(plain_.size());

        const float* w_before = nullptr;
        if (measured && controlled > 0) {
            w_before = scratch(w_before_, controlled_elements_, "the controlled weights before a measured step");
            copy_controlled_kernel<<<controlled_rows_, kThreads, 0, stream_>>>(params, w_before_ptr(), controlled_table_, controlled);
            KERNEL_CHECK("copy_controlled_kernel");
        }
        if (ctx.t == 1 && controlled > 0) start_control(params, s);
        if (s.rrc) signal_scales(grads, ctx, s);  // every rank: it sums over the ranks
        if (controlled > 0) {
            if (c.control == ControlScope::rows) {
                const size_t shared_bytes = size_t(2) * size_t(max_cols_) * sizeof(float);
                controlled_rows_kernel<<<controlled_rows_, kThreads, shared_bytes, stream_>>>(
                    params, grads, m_, directions_, gains_, gain_m_, norms_, norm_ema_, k_scale_, controlled_table_, controlled,
                    gate_, s, w_before, row_sums, update);
                KERNEL_CHECK("controlled_rows_kernel");
            } else {
                per_tensor_step(params, grads, s, w_before, row_sums, update);
            }
        }
        const float* l2_steps = c.is_l2_controlled() ? l2_step_lengths(grads, s) : nullptr;  // every rank, as above
        if (plain > 0) {
            if (measured) {
                lion_plain_rows_kernel<<<plain_rows_, kThreads, 0, stream_>>>(params, grads, m_, plain_table_, plain, gate_,
                                                                              l2_steps, s, sums_.rows(), update);
                KERNEL_CHECK("lion_plain_rows_kernel");
            } else {
                const bool aligned = aligned16(params) && aligned16(grads) && aligned16(m_);
                lion_plain_kernel<<<plain_blocks_, kThreads, 0, stream_>>>(params, grads, m_, plain_table_, plain, gate_,
                                                                           l2_steps, s, aligned);
                KERNEL_CHECK("lion_plain_kernel");
            }
        }
        if (update)
            CUDA_CHECK(cudaMemcpyAsync(out.update + begin_, update, (end_ - begin_) * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        if (out.sums) sums_.reduce_and_download(s.rrc ? k_scale_ : nullptr, out.sums, stream_);
        if (measured) CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    std::vector<StateBuffer> state_layout() const override {
        std::vector<StateBuffer> layout;
        for (const Buffer& b : state_) layout.push_back({b.name, b.count, b.first, b.first + b.held});
        return layout;
    }
    void read_state(size_t index, float* host) const override {
        const Buffer& b = state_.at(index);
        CUDA_CHECK(cudaMemcpyAsync(host, b.data, b.held * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    void write_state(size_t index, const float* host) override {
        const Buffer& b = state_.at(index);
        CUDA_CHECK(cudaMemcpyAsync(b.data, host, b.held * sizeof(float), cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

private:
    // One named state buffer, as the CPU optimizer names, orders and shards them: `count` values in the
    // rank-independent layout, of which this shard holds [first, first + held).
    struct Buffer {
        const char* name;
        float* data;
        size_t held, count, first;
    };

    static std::vector<int> snr_index(const OptimizerConfig& c, const std::vector<TensorRole>& roles) {
        std::vector<int> index(roles.size(), -1);
        int next = 0;
        if (c.is_angular())  // every controlled tensor reports its step scale: k with the RRC correction, else 1
            for (size_t k = 0; k < roles.size(); ++k)
                if (roles[k].controlled) index[k] = next++;
        return index;
    }

    LionScalars scalars(const StepContext& ctx) const {
        const OptimizerConfig& c = config_;
        const double ramp = step_ramp(c.inverse_bias_correction, c.beta2, double(ctx.t));
        LionScalars s;
        s.b1 = c.beta1;
        s.b2 = c.beta2;
        s.weight_decay = c.weight_decay;
        s.plain_lr = float(double(ctx.lr) * ramp);
        s.ramped_lr = double(ctx.lr) * ramp;
        s.theta = target_angle(c.target_angle, ctx.lr, c.weight_decay, c.beta1, c.beta2) * ramp;
        s.gain_lr = s.plain_lr;
        s.rho = c.norm_ema;
        s.rho_correction = 1.0 - std::pow(double(c.norm_ema), double(ctx.t));
        s.center = c.center;
        s.smoothed = c.angle_norm == AngleNorm::smoothed;
        s.gains = c.row_gains;
        s.rrc = c.has_rrc_correction();
        return s;
    }

    // The rows `held` of a controlled tensor; the first one held fixes where this shard's part of the
    // per-group and per-element state starts in the rank-independent layout (as optim/lion.cpp's).
    void add_controlled(const TensorSlice& t, const RowRange& held, unsigned sums_row) {
        const bool per_row = config_.control == ControlScope::rows;
        const int cols = int(t.numel / size_t(t.rows));
        if (cols > kMaxControlledCols)
            fail("%s: rows of %d values; the CUDA LionAR keeps a row in shared memory, at most %d", t.name.c_str(), cols,
                 kMaxControlledCols);
        if (!held.empty()) {
            const size_t rows = held.last - held.first;
            if (!per_row && rows != size_t(t.rows))
                fail("%s: a tensor controlled as a whole (--control tensor) is split between shards", t.name.c_str());
            if (controlled_.empty()) {
                groups_first_ = groups_total_ + (per_row ? held.first : 0);
                directions_first_ = directions_total_ + held.first * size_t(cols);
                controlled_first_ = controlled_total_;
            }
            controlled_.push_back({t.offset + held.first * size_t(cols) - begin_, controlled_elements_, controlled_rows_, sums_row,
                                   groups_, int(rows), cols, int(controlled_total_)});
            controlled_elements_ += rows * size_t(cols);
            controlled_rows_ += unsigned(rows);
            groups_ += per_row ? unsigned(rows) : 1;
        }
        groups_total_ += per_row ? size_t(t.rows) : 1;
        directions_total_ += t.numel;
        controlled_total_ += 1;
    }

    void add_plain(const TensorSlice& t, const RowRange& held, bool decay, unsigned sums_row) {
        if (!held.empty()) {
            const size_t cols = t.numel / size_t(t.rows), rows = held.last - held.first;
            const size_t offset = t.offset + held.first * cols - begin_;
            plain_.push_back({offset, rows * cols, plain_blocks_, plain_rows_, sums_row, int(rows), int(cols), decay ? 1 : 0,
                              int(plain_total_), t.numel, offset % kVec == 0});
            plain_blocks_ += unsigned(ceil_div(rows * cols, kPerBlock));
            plain_rows_ += unsigned(rows);
        }
        plain_total_ += 1;
    }

    // One allocation for the state (in checkpoint order), the tables, the per-row and per-tensor
    // partial sums, the step scales and the gradient scale; scratch for measured steps comes later.
    void allocate() {
        const OptimizerConfig& c = config_;
        const size_t controlled = controlled_.size(), plain = plain_.size();
        std::vector<Buffer> wanted = {{"lion.m", nullptr, end_ - begin_, total_, begin_}};
        if (c.is_angular()) wanted.push_back({"lion.norms", nullptr, groups_, groups_total_, groups_first_});
        if (c.is_angular() && c.angle_norm == AngleNorm::smoothed)
            wanted.push_back({"lion.norm_ema", nullptr, groups_, groups_total_, groups_first_});
        if (c.has_rrc_correction()) wanted.push_back({"lion.snr_ema", nullptr, 2 * controlled, 2 * controlled_total_, 2 * controlled_first_});
        if (c.row_gains) {
            wanted.push_back({"lion.gains", nullptr, groups_, groups_total_, groups_first_});
            wanted.push_back({"lion.gain_m", nullptr, groups_, groups_total_, groups_first_});
            wanted.push_back({"lion.directions", nullptr, controlled_elements_, directions_total_, directions_first_});
        }
        size_t floats = 2;  // the gate (a float and an int)
        for (const Buffer& w : wanted) floats += w.held;
        floats += controlled_elements_ * (c.control == ControlScope::tensor ? 1 : 0) + controlled_total_;  // u scratch, steps
        floats += plain_total_;                                                                             // LionA's steps
        floats = (floats + 1) / 2 * 2;                                                                      // doubles after, aligned
        const size_t doubles = size_t(controlled_rows_) * 3 + controlled_total_ * 3 + controlled_total_  // partials, k
                             + size_t(plain_rows_) + plain_total_;                                      // LionA's counts
        const size_t table_bytes = plain * sizeof(PlainTensor) + controlled * sizeof(ControlledTensor);
        memory_ = device_alloc(floats * sizeof(float) + doubles * sizeof(double) + controlled_total_ * sizeof(int) + table_bytes + 16,
                               "optimizer state");
        float* f = static_cast<float*>(memory_.get());
        for (Buffer& w : wanted) {
            w.data = f;
            f += w.held;
            state_.push_back(w);
        }
        gate_ = reinterpret_cast<DeviceStepGate*>(f);
        f += 2;
        if (c.control == ControlScope::tensor) {
            u_ = f;
            f += controlled_elements_;
        }
        step_ = f;
        f += controlled_total_;
        l2_steps_ = f;
        f += plain_total_;
        double* d = reinterpret_cast<double*>(static_cast<float*>(memory_.get()) + floats);
        row_partials_ = d;
        d += size_t(controlled_rows_) * 3;
        tensor_partials_ = d;
        d += controlled_total_ * 3;
        k_scale_ = d;
        d += controlled_total_;
        plain_row_counts_ = d;
        d += plain_rows_;
        plain_counts_ = d;
        d += plain_total_;
        moved_ = reinterpret_cast<int*>(d);
        char* tables = reinterpret_cast<char*>(moved_ + controlled_total_);
        tables += (16 - reinterpret_cast<uintptr_t>(tables) % 16) % 16;
        plain_table_ = reinterpret_cast<PlainTensor*>(tables);
        controlled_table_ = reinterpret_cast<ControlledTensor*>(plain_table_ + plain);

        for (const Buffer& b : state_) {
            const std::string name = b.name;
            if (name == "lion.m") m_ = b.data;
            if (name == "lion.norms") norms_ = b.data;
            if (name == "lion.norm_ema") norm_ema_ = b.data;
            if (name == "lion.snr_ema") snr_ema_ = b.data;
            if (name == "lion.gains") gains_ = b.data;
            if (name == "lion.gain_m") gain_m_ = b.data;
            if (name == "lion.directions") directions_ = b.data;
            CUDA_CHECK(cudaMemsetAsync(b.data, 0, b.held * sizeof(float), stream_));
        }
        if (gains_) {
            const std::vector<float> ones(groups_, 1.0f);
            CUDA_CHECK(cudaMemcpyAsync(gains_, ones.data(), groups_ * sizeof(float), cudaMemcpyHostToDevice, stream_));
        }
        const DeviceStepGate take{1.0f, 0};
        CUDA_CHECK(cudaMemcpyAsync(gate_, &take, sizeof(take), cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaMemcpyAsync(plain_table_, plain_.data(), plain * sizeof(PlainTensor), cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaMemcpyAsync(controlled_table_, controlled_.data(), controlled * sizeof(ControlledTensor),
                                   cudaMemcpyHostToDevice, stream_));
        for (const ControlledTensor& t : controlled_) max_cols_ = std::max(max_cols_, t.cols);
        // Above 48 KB a kernel's shared memory must be asked for (C = 1600, GPT-2 XL, needs 51 KB).
        CUDA_CHECK(cudaFuncSetAttribute(controlled_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        int(2 * size_t(max_cols_) * sizeof(float))));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    float* scratch(DeviceMemory& memory, size_t floats, const char* what) {
        if (!memory) memory = device_alloc(floats * sizeof(float), what);
        return static_cast<float*>(memory.get());
    }
    float* w_before_ptr() const { return static_cast<float*>(w_before_.get()); }

    // Sums per tensor (tensor_partials_ or plain_counts_, `fields` values at each ordinal) of the rows
    // this shard holds, then over the ranks: one reduction a step. A tensor this shard holds no rows of
    // stays 0 here.
    template <typename Tensor>
    void sum_over_rows_and_ranks(const double* per_row, int fields, const Tensor* table, int held, size_t total, double* per_tensor) {
        CUDA_CHECK(cudaMemsetAsync(per_tensor, 0, size_t(fields) * total * sizeof(double), stream_));
        if (held > 0) {
            sum_rows_kernel<<<unsigned(held), kThreads, 0, stream_>>>(per_row, fields, table, per_tensor);
            KERNEL_CHECK("sum_rows_kernel (over the rows held)");
        }
        if (sum_across_ranks_) sum_across_ranks_(per_tensor, size_t(fields) * total);
    }

    // The RRC correction: each controlled tensor's ||g||^2, <g, m>, ||m||^2 over all its rows, and from
    // them the step scale k (k_scale_, by ordinal).
    void signal_scales(const float* grads, const StepContext& ctx, const LionScalars& s) {
        const OptimizerConfig& c = config_;
        const int controlled = int(controlled_.size());
        if (controlled > 0) {
            snr_rows_kernel<<<controlled_rows_, kThreads, 0, stream_>>>(grads, m_, gains_, row_partials_, controlled_table_,
                                                                        controlled, gate_, s);
            KERNEL_CHECK("snr_rows_kernel");
        }
        sum_over_rows_and_ranks(row_partials_, 3, controlled_table_, controlled, controlled_total_, tensor_partials_);
        if (controlled == 0) return;
        snr_scale_kernel<<<unsigned(ceil_div(size_t(controlled), 128)), 128, 0, stream_>>>(
            tensor_partials_, snr_ema_, k_scale_, controlled_table_, controlled, c.rrc_correction, c.inverse_bias_correction,
            c.beta2, double(ctx.t), c.snr_ema, c.k_min, gate_);
        KERNEL_CHECK("snr_scale_kernel");
    }

    // LionA: each plain tensor's count of non-zero signs over all its rows, and from it the step length
    // of the l2 rule (by ordinal).
    const float* l2_step_lengths(const float* grads, const LionScalars& s) {
        const int plain = int(plain_.size());
        if (plain > 0) {
            nonzero_signs_rows_kernel<<<plain_rows_, kThreads, 0, stream_>>>(grads, m_, plain_table_, plain, gate_, s,
                                                                             plain_row_counts_);
            KERNEL_CHECK("nonzero_signs_rows_kernel");
        }
        sum_over_rows_and_ranks(plain_row_counts_, 1, plain_table_, plain, plain_total_, plain_counts_);
        if (plain > 0) {
            l2_steps_kernel<<<unsigned(ceil_div(size_t(plain), 128)), 128, 0, stream_>>>(plain_counts_, plain_table_, plain, s,
                                                                                         l2_steps_);
            KERNEL_CHECK("l2_steps_kernel");
        }
        return l2_steps_;
    }

    void start_control(float* params, const LionScalars& s) {
        const int controlled = int(controlled_.size());
        start_control_kernel<<<controlled_rows_, kThreads, 0, stream_>>>(params, directions_, row_partials_, controlled_table_,
                                                                         controlled, s, gate_);
        KERNEL_CHECK("start_control_kernel");
        const bool per_row = config_.control == ControlScope::rows;
        if (!per_row) {  // a tensor controlled as a whole is on one rank: its sums need no other
            sum_rows_kernel<<<controlled, kThreads, 0, stream_>>>(row_partials_, 1, controlled_table_, tensor_partials_);
            KERNEL_CHECK("sum_rows_kernel (norms)");
        }
        record_norms_kernel<<<controlled, kThreads, 0, stream_>>>(row_partials_, tensor_partials_, norms_, controlled_table_,
                                                                  controlled, per_row ? 1 : 0, gate_);
        KERNEL_CHECK("record_norms_kernel");
    }

    // Per-tensor control: the tensor is whole on one rank (optim/partition.h), so its sums need no other.
    void per_tensor_step(float* params, const float* grads, const LionScalars& s, const float* w_before, RowSumsDevice* row_sums,
                         float* update) {
        const int controlled = int(controlled_.size());
        const unsigned rows = controlled_rows_;
        double* xu_xx = tensor_partials_;                             // (controlled tensors, 2) by ordinal
        double* uu = tensor_partials_ + 2 * controlled_total_;        // (controlled tensors) by ordinal
        double* sq = uu;                                              // reused once uu is consumed by tensor_step_kernel
        tensor_direction_kernel<<<rows, kThreads, 0, stream_>>>(params, grads, m_, u_, row_partials_, controlled_table_, controlled,
                                                                gate_, s, row_sums);
        KERNEL_CHECK("tensor_direction_kernel");
        sum_rows_kernel<<<controlled, kThreads, 0, stream_>>>(row_partials_, 2, controlled_table_, xu_xx);
        KERNEL_CHECK("sum_rows_kernel (<x,u>, <x,x>)");
        tensor_radial_kernel<<<rows, kThreads, 0, stream_>>>(params, u_, xu_xx, row_partials_, controlled_table_, controlled, s);
        KERNEL_CHECK("tensor_radial_kernel");
        sum_rows_kernel<<<controlled, kThreads, 0, stream_>>>(row_partials_, 1, controlled_table_, uu);
        KERNEL_CHECK("sum_rows_kernel (|u|^2)");
        tensor_step_kernel<<<unsigned(ceil_div(size_t(controlled), 128)), 128, 0, stream_>>>(
            xu_xx, uu, norm_ema_, k_scale_, controlled_table_, controlled, s, step_, moved_, gate_);
        KERNEL_CHECK("tensor_step_kernel");
        tensor_move_kernel<<<rows, kThreads, 0, stream_>>>(params, u_, step_, moved_, row_partials_, controlled_table_, controlled, gate_);
        KERNEL_CHECK("tensor_move_kernel");
        sum_rows_kernel<<<controlled, kThreads, 0, stream_>>>(row_partials_, 1, controlled_table_, sq);
        KERNEL_CHECK("sum_rows_kernel (|x|^2)");
        tensor_finish_kernel<<<rows, kThreads, 0, stream_>>>(params, norms_, sq, moved_, controlled_table_, controlled, w_before,
                                                             row_sums, update, gate_);
        KERNEL_CHECK("tensor_finish_kernel");
    }

    OptimizerConfig config_;
    std::vector<TensorSlice> tensors_;
    std::vector<TensorRole> roles_;
    cudaStream_t stream_;
    SumAcrossRanks sum_across_ranks_;  // empty: one rank
    StepSumsDevice sums_;
    std::vector<PlainTensor> plain_;            // the plain tensors the shard holds rows of
    std::vector<ControlledTensor> controlled_;  // the controlled ones
    size_t total_ = 0, begin_ = 0, end_ = 0;    // the shard: [begin_, end_) of total_ parameters
    size_t controlled_elements_ = 0;            // held
    size_t plain_total_ = 0, controlled_total_ = 0;  // all tensors of each kind, held or not
    // The rank-independent sizes of the per-group and per-element state, and where this shard's part starts.
    size_t groups_total_ = 0, groups_first_ = 0, directions_total_ = 0, directions_first_ = 0, controlled_first_ = 0;
    unsigned plain_blocks_ = 0, plain_rows_ = 0, controlled_rows_ = 0, groups_ = 0;  // held
    int max_cols_ = 0;
    DeviceMemory memory_, update_, w_before_;
    std::vector<Buffer> state_;
    // Into memory_: the state buffers (in state_), then scratch and tables.
    float *m_ = nullptr, *norms_ = nullptr, *norm_ema_ = nullptr, *snr_ema_ = nullptr;
    float *gains_ = nullptr, *gain_m_ = nullptr, *directions_ = nullptr;
    DeviceStepGate* gate_ = nullptr;  // (1)
    float* u_ = nullptr;           // (controlled elements held) per-tensor control: the direction between passes
    float* step_ = nullptr;        // (controlled tensors) per-tensor control: the step length
    int* moved_ = nullptr;         // (controlled tensors) per-tensor control: whether the tensor moves
    float* l2_steps_ = nullptr;    // (plain tensors) LionA: the step length of each tensor's l2 rule
    double* row_partials_ = nullptr;     // (controlled rows held, 3) per-row partial sums
    double* tensor_partials_ = nullptr;  // (controlled tensors, 3) their per-tensor sums
    double* k_scale_ = nullptr;          // (controlled tensors) the RRC correction's step scale
    double* plain_row_counts_ = nullptr; // (plain rows held) LionA: each row's count of non-zero signs
    double* plain_counts_ = nullptr;     // (plain tensors) their per-tensor sums over all rows
    PlainTensor* plain_table_ = nullptr;
    ControlledTensor* controlled_table_ = nullptr;
};

}  // namespace

std::unique_ptr<CudaOptimizer> make_lion_cuda(const OptimizerConfig& config, const std::vector<TensorSlice>& tensors,
                                              cudaStream_t stream, const ParameterShard& shard, SumAcrossRanks sum_across_ranks) {
    return std::make_unique<LionCuda>(config, tensors, shard, std::move(sum_across_ranks), stream);
}

}  // namespace coldstart::cuda
