// Accumulating the sums of a step (TensorStepSums) row by row, and the angle they imply.
//
// The optimizers walk each tensor by rows (a vector is one row) and add, element by element, what the
// metrics need; rows are then added in order, so the sums have the same bits whatever the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "optim/optimizer.h"
#include "optim/partition.h"

#ifdef __CUDACC__
#define COLDSTART_HOST_DEVICE __host__ __device__
#else
#define COLDSTART_HOST_DEVICE
#endif

namespace coldstart {

// The angle between w and w + d from ||w||^2, ||d||^2 and <w, d>, precise for tiny angles where
// arccos(cos) would round to 0: w + d has the component |w| + <w,d>/|w| along w and |d_perp| across it,
// |d_perp|^2 = |d|^2 - <w,d>^2 / |w|^2. Returns -1 when |w| = 0 (undefined).
COLDSTART_HOST_DEVICE inline double angle_from_sums(double w_sq, double d_sq, double w_dot_d) {
    if (!(w_sq > 0)) return -1.0;
    const double w_norm = sqrt(w_sq);
    const double across_sq = d_sq - w_dot_d * w_dot_d / w_sq;
    return atan2(sqrt(across_sq > 0 ? across_sq : 0.0), w_norm + w_dot_d / w_norm);
}

// The sums of one row; add() takes one element's values before and after the step (or the weights and
// the moments separately, for optimizers that update them in different passes).
struct RowSums {
    double w_sq = 0, d_sq = 0, w_dot_d = 0, g_sq = 0, g_dot_mprev = 0, mprev_sq = 0, m_sq = 0;

    void add_weights(float w_old, float w_new) {
        const double d = double(w_new) - double(w_old);  // exact: the change the saved models show
        w_sq += double(w_old) * w_old;
        d_sq += d * d;
        w_dot_d += double(w_old) * d;
    }
    void add_moments(float g, float m_prev, float m_new) {
        g_sq += double(g) * g;
        g_dot_mprev += double(g) * m_prev;
        mprev_sq += double(m_prev) * m_prev;
        m_sq += double(m_new) * m_new;
    }
    void add(float w_old, float w_new, float g, float m_prev, float m_new) {
        add_weights(w_old, w_new);
        add_moments(g, m_prev, m_new);
    }
};

// Adds one row's sums to its tensor's; matrices also count the row's angle.
// The start of a measured step: the sums it then adds to are its own (StepOutputs' contract).
inline void clear_step_sums(const StepOutputs& out, size_t tensors) {
    if (out.sums) std::fill(out.sums, out.sums + tensors, TensorStepSums{});
}

inline void add_row(TensorStepSums& t, const RowSums& r, bool is_matrix) {
    t.w_sq += r.w_sq;
    t.d_sq += r.d_sq;
    t.w_dot_d += r.w_dot_d;
    t.g_sq += r.g_sq;
    t.g_dot_mprev += r.g_dot_mprev;
    t.mprev_sq += r.mprev_sq;
    t.m_sq += r.m_sq;
    if (is_matrix && r.w_sq > 0) {
        const double angle = angle_from_sums(r.w_sq, r.d_sq, r.w_dot_d);
        t.row_angle_sq += angle * angle;
        t.rows += 1;
    }
}

// Runs row_step(r, RowSums&) for the rows `rows` of tensor t (r counts from the tensor's first row), in
// parallel over rows. With sums, each row's sums are kept and added to *sums in row order afterwards
// (deterministic); without, the RowSums passed in are scratch.
template <typename RowStep>
void for_each_row(const TensorSlice& t, RowRange rows, TensorStepSums* sums, RowStep&& row_step) {
    const long first = long(rows.first), last = long(rows.last);
    if (!sums) {
#pragma omp parallel for schedule(static)
        for (long r = first; r < last; ++r) {
            RowSums scratch;
            row_step(size_t(r), scratch);
        }
        return;
    }
    std::vector<RowSums> per_row(static_cast<size_t>(last - first));
#pragma omp parallel for schedule(static)
    for (long r = first; r < last; ++r) row_step(size_t(r), per_row[size_t(r - first)]);
    for (const RowSums& r : per_row) add_row(*sums, r, t.is_matrix);
}

// Sum over the rows `rows` of row_value(r), in parallel over rows and added in row order.
template <typename RowValue>
double ordered_row_sum(RowRange rows, RowValue&& row_value) {
    std::vector<double> values(rows.last - rows.first);
#pragma omp parallel for schedule(static)
    for (long r = long(rows.first); r < long(rows.last); ++r) values[size_t(r) - rows.first] = row_value(size_t(r));
    double total = 0;
    for (double v : values) total += v;
    return total;
}

}  // namespace coldstart
