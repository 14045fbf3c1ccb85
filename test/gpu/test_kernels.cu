// Every CUDA kernel against its CPU reference (layers/*.cpp, optim/*.cpp) on random inputs of awkward
// sizes: B*T not a multiple of any block, C not a power of two (72, 200, 60), NH = 3 and 5, T = 37,
// V = 97 padded to 128, head sizes 24, 40, 64 and 128, both element types. Outputs start as NaN
// (gpu_test::Buffer), so an element that a kernel fails to write fails its check. Accumulating
// outputs start from random values and are compared by their increment:
// ||got - ref|| / ||ref - prefill||, so a kernel that overwrites instead of adding fails.
//
// fp32 outputs computed from bf16 inputs (gradients of weights, layernorm statistics, losses) are
// compared at fp32 level: 1e-5, or 1e-4 for cuBLASLt's tensor-core products, whose accumulation
// order and rounding differ more from a sequential fp32 sum than FMA loops do.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <tuple>
#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "data/checkpoint.h"
#include "layers/attention.h"
#include "layers/classifier.h"
#include "layers/cuda/attention.cuh"
#include "layers/cuda/attention_mma.cuh"
#include "layers/cuda/classifier.cuh"
#include "layers/cuda/encoder.cuh"
#include "layers/cuda/gelu.cuh"
#include "layers/cuda/layernorm.cuh"
#include "layers/cuda/matmul.cuh"
#include "layers/encoder.h"
#include "layers/gelu.h"
#include "layers/layernorm.h"
#include "layers/matmul.h"
#include "layers/residual.h"
#include "optim/adamw.h"
#include "optim/cuda/cuda_optimizer.cuh"
#include "optim/cuda/grad_norm.cuh"
#include "optim/grad_norm.h"
#include "test/gpu/gpu_test_util.cuh"

using namespace coldstart;
using namespace gpu_test;

namespace {

// The tolerance of an fp32 result computed from T inputs (see the file comment).
template <typename T> constexpr double fp32_out_tolerance() { return 1e-5; }
template <typename T> constexpr double fp32_out_tolerance_matmul() { return sizeof(T) == 2 ? 1e-4 : 1e-5; }

// ||got - ref|| / ||ref - prefill||: the error of what was added, relative to the size of the increment.
double increment_error(const Floats& got, const Floats& prefill, const Floats& ref) {
    REQUIRE(got.size() == ref.size());
    REQUIRE(prefill.size() == ref.size());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        diff += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
        norm += (double(ref[i]) - prefill[i]) * (double(ref[i]) - prefill[i]);
    }
    return norm == 0 ? (diff == 0 ? 0 : INFINITY) : std::sqrt(diff / norm);
}

Floats scaled(Floats v, float s, float offset = 0.0f) {
    for (float& x : v) x = x * s + offset;
    return v;
}

}  // namespace

TEST_CASE_TEMPLATE("cuda encoder: forward and the atomics-free backward", T, float, bf16) {
    for (const auto& shape : {std::tuple{3, 37, 72}, std::tuple{2, 19, 200}, std::tuple{1, 5, 60}}) {
        const int B = std::get<0>(shape), Tn = std::get<1>(shape), C = std::get<2>(shape);
        CAPTURE(B); CAPTURE(Tn); CAPTURE(C);
        const int Vp = 128, maxT = 40;
        const size_t BT = size_t(B) * Tn;
        Rng rng{uint64_t(C)};
        const Floats wte = random_floats<T>(rng, size_t(Vp) * C), wpe = random_floats<T>(rng, size_t(maxT) * C);
        const std::vector<int> tokens = random_ints(rng, BT, 11);  // few distinct tokens: many repeats
        Buffer<T> d_wte(wte.size()), d_wpe(wpe.size()), d_out(BT * C);
        Buffer<int> d_tokens(BT);
        d_wte.upload(wte);
        d_wpe.upload(wpe);
        d_tokens.upload_raw(tokens);
        cuda::encoder_forward<T>(d_out, d_tokens, d_wte, d_wpe, B, Tn, C, 0);
        Floats ref(BT * C);
        cpu::encoder_forward(ref.data(), tokens.data(), wte.data(), wpe.data(), B, Tn, C);
        CHECK(rel(d_out.download(), ref) < tolerance<T>());

        const Floats dout = random_floats<T>(rng, BT * C);
        const Floats dwte0 = random_floats<float>(rng, wte.size()), dwpe0 = random_floats<float>(rng, wpe.size());
        cuda::TokenBuckets buckets;
        buckets.build(tokens.data(), BT, Vp);
        std::vector<int> flat = buckets.tokens;
        flat.insert(flat.end(), buckets.starts.begin(), buckets.starts.end());
        flat.insert(flat.end(), buckets.positions.begin(), buckets.positions.end());
        Buffer<int> d_buckets(flat.size());
        d_buckets.upload_raw(flat);
        Buffer<T> d_dout(dout.size());
        d_dout.upload(dout);
        Buffer<float> d_dwte(wte.size()), d_dwpe(wpe.size());
        Floats first_dwte;
        for (int run = 0; run < 2; ++run) {
            d_dwte.upload(dwte0);
            d_dwpe.upload(dwpe0);
            cuda::encoder_backward<T>(d_dwte, d_dwpe, d_dout, d_buckets, int(buckets.tokens.size()), B, Tn, C, 0);
            if (run == 0) first_dwte = d_dwte.download();
        }
        Floats dwte_ref = dwte0, dwpe_ref = dwpe0;
        cpu::encoder_backward(dwte_ref.data(), dwpe_ref.data(), dout.data(), tokens.data(), B, Tn, C);
        const Floats dwte = d_dwte.download();
        CHECK(increment_error(dwte, dwte0, dwte_ref) < fp32_out_tolerance<T>());
        CHECK(increment_error(d_dwpe.download(), dwpe0, dwpe_ref) < fp32_out_tolerance<T>());
        CHECK_MESSAGE(same_bits(dwte, first_dwte), "encoder backward: two runs gave different bits");
    }
}

namespace {

// The column sums of rows (N, C), in double.
Floats column_sums(const Floats& rows, int N, int C) {
    std::vector<double> sum(size_t(C), 0.0);
    for (int r = 0; r < N; ++r)
        for (int c = 0; c < C; ++c) sum[size_t(c)] += rows[size_t(r) * C + size_t(c)];
    return Floats(sum.begin(), sum.end());
}

Floats plus(const Floats& a, const Floats& b) {
    Floats out(a.size());
    for (size_t i = 0; i < a.size(); ++i) out[i] = a[i] + b[i];
    return out;
}

// A device buffer whose data starts `offset` elements into its allocation: offset 1 misaligns it, which
// sends every kernel that gets it down its one-element-per-access path.
template <typename U>
struct Shifted {
    Buffer<U> buffer;
    int offset;
    Shifted(size_t n, int offset_) : buffer(n + size_t(offset_)), offset(offset_) {}
    U* get() const { return buffer.get() + offset; }
    operator U*() const { return get(); }
    void upload(const Floats& host) {
        Floats padded(size_t(offset), 0.0f);
        padded.insert(padded.end(), host.begin(), host.end());
        buffer.upload(padded);
    }
    Floats download() const {
        const Floats all = buffer.download();
        return Floats(all.begin() + offset, all.end());
    }
    void poison() { buffer.poison(); }
};

// Forward, fused residual forward and backward (with the column sums of dinp) of one shape; offset 1
// misaligns every row buffer.
template <typename T>
void check_layernorm(int N, int C, int offset) {
    CAPTURE(N); CAPTURE(C); CAPTURE(offset);
    Rng rng(uint64_t(N * 1000 + C));
    const Floats inp = scaled(random_floats<float>(rng, size_t(N) * C), 1.0f, 3.0f);  // a mean far from 0
    Floats inp_t(inp.size());
    for (size_t i = 0; i < inp.size(); ++i) inp_t[i] = round_to<T>(inp[i]);
    Floats weight = random_floats<T>(rng, C), bias = random_floats<T>(rng, C);
    for (float& w : weight) w = round_to<T>(1.0f + 0.2f * w);
    Shifted<T> d_inp(inp_t.size(), offset), d_w(C, offset), d_b(C, offset), d_out(inp_t.size(), offset);
    Buffer<float> d_mean(N), d_rstd(N);
    d_inp.upload(inp_t);
    d_w.upload(weight);
    d_b.upload(bias);
    cuda::layernorm_forward<T>(d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C, 0);
    Floats out_ref(inp_t.size()), mean_ref(N), rstd_ref(N);
    cpu::layernorm_forward(out_ref.data(), mean_ref.data(), rstd_ref.data(), inp_t.data(), weight.data(), bias.data(), N, C);
    CHECK(rel(d_out.download(), out_ref) < tolerance<T>());
    CHECK(rel(d_mean.download(), mean_ref) < fp32_out_tolerance<T>());
    CHECK(rel(d_rstd.download(), rstd_ref) < fp32_out_tolerance<T>());

    {  // fused with the residual add
        const Floats a = random_floats<T>(rng, inp.size()), b = random_floats<T>(rng, inp.size());
        Shifted<T> d_a(a.size(), offset), d_bb(b.size(), offset), d_res(a.size(), offset);
        d_a.upload(a);
        d_bb.upload(b);
        d_out.poison();
        d_mean.poison();
        d_rstd.poison();
        cuda::residual_layernorm_forward<T>(d_res, d_out, d_mean, d_rstd, d_a, d_bb, d_w, d_b, N, C, 0);
        Floats res_ref(a.size());
        cpu::residual_forward(res_ref.data(), a.data(), b.data(), a.size());
        cpu::layernorm_forward(out_ref.data(), mean_ref.data(), rstd_ref.data(), res_ref.data(), weight.data(), bias.data(), N, C);
        const Floats res = d_res.download();
        CHECK(rel(res, res_ref) < tolerance<T>());
        CHECK(rel(d_out.download(), out_ref) < tolerance<T>());
        // The statistics are those layernorm_forward computes from the stored residual, to the bit (what
        // -r 2 relies on), here from a buffer of the other alignment (the packed and the one-element path).
        Shifted<T> d_res2(a.size(), 1 - offset), d_out2(a.size(), 1 - offset);
        Buffer<float> d_mean2(N), d_rstd2(N);
        d_res2.upload(res);
        cuda::layernorm_forward<T>(d_out2, d_mean2, d_rstd2, d_res2, d_w, d_b, N, C, 0);
        CHECK(same_bits(d_mean2.download(), d_mean.download()));
        CHECK(same_bits(d_rstd2.download(), d_rstd.download()));
        CHECK(same_bits(d_out2.download(), d_out.download()));
    }

    {  // backward, accumulating and overwriting; dsum: the column sums of dinp as stored
        const Floats dout = random_floats<T>(rng, inp.size());
        const Floats dinp0 = random_floats<T>(rng, inp.size());
        const Floats dw0 = random_floats<float>(rng, C), db0 = random_floats<float>(rng, C), ds0 = random_floats<float>(rng, C);
        Shifted<T> d_dout(dout.size(), offset), d_dinp(dout.size(), offset);
        Buffer<float> d_dw(C), d_db(C), d_ds(C), d_scratch(cuda::layernorm_scratch_floats(N, C));
        d_dout.upload(dout);
        d_mean.upload(mean_ref);  // the CPU's statistics, so that only the backward is compared
        d_rstd.upload(rstd_ref);
        Floats dinp_ref = dinp0, dw_ref = dw0, db_ref = db0;
        cpu::layernorm_backward(dinp_ref.data(), dw_ref.data(), db_ref.data(), dout.data(), inp_t.data(), weight.data(),
                                mean_ref.data(), rstd_ref.data(), N, C);
        Floats first_dw;
        for (int run = 0; run < 2; ++run) {
            d_dinp.upload(dinp0);
            d_dw.upload(dw0);
            d_db.upload(db0);
            d_ds.upload(ds0);
            cuda::layernorm_backward<T>(d_dinp, d_dw, d_db, d_ds, d_dout, d_inp, d_w, d_mean, d_rstd, N, C, true, d_scratch, 0);
            if (run == 0) first_dw = d_dw.download();
        }
        CHECK(increment_error(d_dinp.download(), dinp0, dinp_ref) < tolerance<T>());
        const Floats dw = d_dw.download();
        CHECK(increment_error(dw, dw0, dw_ref) < fp32_out_tolerance<T>());
        CHECK(increment_error(d_db.download(), db0, db_ref) < fp32_out_tolerance<T>());
        // dsum sums dinp as stored (rounded to T): bf16's tolerance for bf16
        CHECK(increment_error(d_ds.download(), ds0, plus(ds0, column_sums(dinp_ref, N, C))) < tolerance<T>());
        CHECK_MESSAGE(same_bits(dw, first_dw), "layernorm backward: two runs gave different bits");
        // accumulate = false: dinp is written, not added to (its NaN poison must disappear); no dsum
        d_dinp.poison();
        cuda::layernorm_backward<T>(d_dinp, d_dw, d_db, nullptr, d_dout, d_inp, d_w, d_mean, d_rstd, N, C, false, d_scratch, 0);
        Floats zero(dout.size(), 0.0f), dinp_zero_ref(dout.size(), 0.0f), dw_tmp = dw0, db_tmp = db0;
        cpu::layernorm_backward(dinp_zero_ref.data(), dw_tmp.data(), db_tmp.data(), dout.data(), inp_t.data(), weight.data(),
                                mean_ref.data(), rstd_ref.data(), N, C);
        CHECK(increment_error(d_dinp.download(), zero, dinp_zero_ref) < tolerance<T>());
    }
}

}  // namespace

// C = 60 in bf16 is not a multiple of the pack (8): the one-element path; offset 1 misaligns the rows.
TEST_CASE_TEMPLATE("cuda layernorm: forward, fused residual forward, backward with dsum; packed and one-element paths", T,
                   float, bf16) {
    for (const auto& shape : {std::tuple{111, 72, 0}, std::tuple{37, 200, 1}, std::tuple{5, 60, 0}, std::tuple{64, 768, 0}})
        check_layernorm<T>(std::get<0>(shape), std::get<1>(shape), std::get<2>(shape));
}

TEST_CASE_TEMPLATE("cuda gelu: forward, and the backward fused with the bias gradient; packed, tail and misaligned", T, float,
                   bf16) {
    for (const auto& shape : {std::tuple{1001, 0}, std::tuple{4096, 0}, std::tuple{72 * 4 * 37, 1}}) {
        const size_t n = size_t(std::get<0>(shape));
        const int offset = std::get<1>(shape);
        CAPTURE(n); CAPTURE(offset);
        Rng rng(n);
        const Floats inp = random_floats<T>(rng, n, -4.0f, 4.0f);
        Shifted<T> d_inp(n, offset), d_out(n, offset);
        d_inp.upload(inp);
        cuda::gelu_forward<T>(d_out, d_inp, n, 0);
        Floats ref(n);
        cpu::gelu_forward(ref.data(), inp.data(), n);
        CHECK(rel(d_out.download(), ref) < tolerance<T>());
    }
    // (N, OC): OC = 100 in bf16 is not a multiple of the pack; offset 1 misaligns.
    for (const auto& shape : {std::tuple{37, 288, 0}, std::tuple{11, 100, 0}, std::tuple{70, 96, 1}}) {
        const int N = std::get<0>(shape), OC = std::get<1>(shape), offset = std::get<2>(shape);
        CAPTURE(N); CAPTURE(OC); CAPTURE(offset);
        const size_t n = size_t(N) * OC;
        Rng rng(n + 1);
        const Floats inp = random_floats<T>(rng, n, -4.0f, 4.0f), dout = random_floats<T>(rng, n);
        const Floats db0 = random_floats<float>(rng, OC);
        Shifted<T> d_inp(n, offset), d_d(n, offset);
        Buffer<float> d_db(OC), d_scratch(cuda::gelu_backward_scratch_floats(N, OC));
        d_inp.upload(inp);
        d_d.upload(dout);
        d_db.upload(db0);
        cuda::gelu_backward_bias<T>(d_d, d_db, d_inp, N, OC, d_scratch, 0);
        Floats dref(n, 0.0f);
        cpu::gelu_backward(dref.data(), inp.data(), dout.data(), n);
        CHECK(rel(d_d.download(), dref) < tolerance<T>());
        CHECK(increment_error(d_db.download(), db0, plus(db0, column_sums(dref, N, OC))) < tolerance<T>());
    }
}

TEST_CASE_TEMPLATE("cuda matmul (cuBLASLt): forward with bias, backward for inputs, weights and bias", T, float, bf16) {
    cuda::Matmul mm(0);
    // (N, C, OC): qkv-like, MLP-like, the lm head shape of the small test model, and odd widths.
    for (const auto& shape : {std::tuple{111, 72, 216}, std::tuple{37, 200, 800}, std::tuple{111, 72, 128}, std::tuple{7, 60, 97}}) {
        const int N = std::get<0>(shape), C = std::get<1>(shape), OC = std::get<2>(shape);
        CAPTURE(N); CAPTURE(C); CAPTURE(OC);
        Rng rng(uint64_t(N + C + OC));
        const Floats inp = random_floats<T>(rng, size_t(N) * C), weight = random_floats<T>(rng, size_t(OC) * C),
                     bias = random_floats<T>(rng, OC), dout = random_floats<T>(rng, size_t(N) * OC);
        Buffer<T> d_inp(inp.size()), d_w(weight.size()), d_bias(OC), d_out(size_t(N) * OC), d_dout(dout.size()), d_dinp(inp.size());
        d_inp.upload(inp);
        d_w.upload(weight);
        d_bias.upload(bias);
        d_dout.upload(dout);
        Floats out_ref(size_t(N) * OC);
        for (bool with_bias : {true, false}) {
            CAPTURE(with_bias);
            d_out.poison();
            mm.forward<T>(d_out, d_inp, d_w, with_bias ? d_bias.get() : nullptr, N, C, OC);
            cpu::matmul_forward(out_ref.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N, C, OC);
            CHECK(rel(d_out.download(), out_ref) < tolerance<T>());
        }
        const Floats dw0 = random_floats<float>(rng, weight.size()), db0 = random_floats<float>(rng, OC);
        Floats dinp_ref(inp.size(), 0.0f), dw_ref = dw0, db_ref = db0;
        cpu::matmul_backward(dinp_ref.data(), dw_ref.data(), db_ref.data(), dout.data(), inp.data(), weight.data(), N, C, OC);
        mm.backward_input<T>(d_dinp, d_dout, d_w, N, C, OC);
        CHECK(rel(d_dinp.download(), dinp_ref) < tolerance<T>());
        Buffer<float> d_dw(weight.size()), d_db(OC), d_scratch(cuda::bias_backward_scratch_floats(N, OC));
        d_dw.upload(dw0);
        d_db.upload(db0);
        mm.backward_weight<T>(d_dw, d_dout, d_inp, N, C, OC);
        cuda::bias_backward<T>(d_db, d_dout, N, OC, d_scratch, 0);
        CHECK(increment_error(d_dw.download(), dw0, dw_ref) < fp32_out_tolerance_matmul<T>());
        CHECK(increment_error(d_db.download(), db0, db_ref) < fp32_out_tolerance<T>());

        if (OC % 8 == 0) {  // GELU fusion: forward GELU_AUX_BIAS epilogue
            Buffer<T> d_pre(size_t(N) * OC);
            d_out.poison();
            mm.forward<T>(d_out, d_inp, d_w, d_bias, N, C, OC, d_pre);
            cpu::matmul_forward(out_ref.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
            Floats gelu_ref(out_ref.size());
            cpu::gelu_forward(gelu_ref.data(), out_ref.data(), out_ref.size());
            CHECK(rel(d_pre.download(), out_ref) < tolerance<T>());
            CHECK_MESSAGE(rel(d_out.download(), gelu_ref) < tolerance<T>(), "cuBLASLt's GELU epilogue vs the tanh GELU");
        }
        if (C % 8 == 0) {  // GELU fusion: backward DGELU epilogue, dinp = GELU'(pre) * (dout @ W)
            const Floats pre = random_floats<T>(rng, inp.size(), -3.0f, 3.0f);
            Buffer<T> d_pre(pre.size());
            d_pre.upload(pre);
            d_dinp.poison();
            mm.backward_input<T>(d_dinp, d_dout, d_w, N, C, OC, d_pre);
            Floats dgelu_ref(pre.size(), 0.0f);
            cpu::gelu_backward(dgelu_ref.data(), pre.data(), dinp_ref.data(), pre.size());
            CHECK_MESSAGE(rel(d_dinp.download(), dgelu_ref) < tolerance<T>(), "cuBLASLt's DGELU epilogue vs the tanh GELU's derivative");
        }
    }
}

namespace {

// logsumexp of each row's scaled causal scores, in double: the statistic the forward keeps.
Floats lse_reference(const Floats& qkv, int B, int Tn, int C, int NH) {
    const int hs = C / NH;
    const double scale = 1.0 / std::sqrt(double(hs));
    Floats lse(size_t(B) * NH * Tn);
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < NH; ++h)
            for (int t = 0; t < Tn; ++t) {
                std::vector<double> s(t + 1);
                double m = -INFINITY;
                for (int j = 0; j <= t; ++j) {
                    double dot = 0;
                    for (int d = 0; d < hs; ++d)
                        dot += double(qkv[(size_t(b) * Tn + t) * 3 * C + size_t(h) * hs + d]) *
                               double(qkv[(size_t(b) * Tn + j) * 3 * C + C + size_t(h) * hs + d]);
                    s[j] = dot * scale;
                    m = std::max(m, s[j]);
                }
                double sum = 0;
                for (double x : s) sum += std::exp(x - m);
                lse[(size_t(b) * NH + h) * Tn + t] = float(m + std::log(sum));
            }
    return lse;
}

// dq, dk and dv, each against its part of the CPU's dqkv: returns the three relative errors. Where a part is
// exactly 0 (T = 1: one key, whose softmax weight is 1 whatever q and k are, so dQ = dK = 0), the kernel leaves the
// rounding residue of dP - D, two sums of the same products in different orders (about 1e-8 here): that part is
// measured against the size of the whole gradient instead, which still fails a kernel writing garbage.
std::array<double, 3> attention_gradient_errors(const Floats& dqkv, const Floats& dqkv_ref, int C) {
    const double whole = test_util::l2_norm(dqkv_ref);
    std::array<double, 3> errors{};
    for (int part = 0; part < 3; ++part) {
        Floats got, ref;
        for (size_t i = 0; i < dqkv.size(); ++i)
            if (int(i % (3 * size_t(C)) / size_t(C)) == part) {
                got.push_back(dqkv[i]);
                ref.push_back(dqkv_ref[i]);
            }
        errors[size_t(part)] = test_util::l2_norm(ref) > 0 ? rel(got, ref) : test_util::l2_norm(got) / whole;
    }
    return errors;
}

}  // namespace

TEST_CASE_TEMPLATE("cuda attention: flash-style forward and the two-pass backward", T, float, bf16) {
    // (B, T, C, NH): head sizes 24, 40, 64 (whole tiles), 128 (shared memory above 48 KiB), and T = 1.
    for (const auto& shape : {std::tuple{2, 37, 72, 3}, std::tuple{1, 70, 200, 5}, std::tuple{2, 64, 128, 2},
                              std::tuple{1, 33, 256, 2}, std::tuple{3, 1, 72, 3}}) {
        const int B = std::get<0>(shape), Tn = std::get<1>(shape), C = std::get<2>(shape), NH = std::get<3>(shape);
        CAPTURE(B); CAPTURE(Tn); CAPTURE(C); CAPTURE(NH);
        const size_t BT = size_t(B) * Tn;
        Rng rng(uint64_t(Tn * 7 + C));
        const Floats qkv = random_floats<T>(rng, BT * 3 * C), dout = random_floats<T>(rng, BT * C);
        Buffer<T> d_qkv(qkv.size()), d_out(BT * C), d_dout(dout.size()), d_dqkv(qkv.size());
        Buffer<float> d_lse(BT * NH), d_scratch(BT * NH);
        d_qkv.upload(qkv);
        d_dout.upload(dout);
        cuda::attention_forward<T>(d_out, d_lse, d_qkv, B, Tn, C, NH, 0);
        Floats out_ref(BT * C), att_ref(size_t(B) * NH * Tn * Tn);
        cpu::attention_forward(out_ref.data(), att_ref.data(), qkv.data(), B, Tn, C, NH);
        const Floats out = d_out.download();
        CHECK(rel(out, out_ref) < tolerance<T>());
        CHECK(rel(d_lse.download(), lse_reference(qkv, B, Tn, C, NH)) < fp32_out_tolerance<T>());

        Floats dqkv_ref(qkv.size(), 0.0f);
        cpu::attention_backward(dqkv_ref.data(), dout.data(), qkv.data(), att_ref.data(), B, Tn, C, NH);
        cuda::attention_backward<T>(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_scratch, B, Tn, C, NH, 0);
        const Floats dqkv = d_dqkv.download();
        // Per part, so that a wrong dK does not hide behind a right dQ.
        const std::array<double, 3> errors = attention_gradient_errors(dqkv, dqkv_ref, C);
        for (int part = 0; part < 3; ++part)
            CHECK_MESSAGE(errors[size_t(part)] < tolerance<T>(), "d" << std::string(1, "qkv"[part]) << " relative error " << errors[size_t(part)]);
        d_dqkv.poison();
        cuda::attention_backward<T>(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_scratch, B, Tn, C, NH, 0);
        CHECK_MESSAGE(same_bits(d_dqkv.download(), dqkv), "attention backward: two runs gave different bits");
    }
}

// The tensor-core kernels (bf16 only). Tolerances: the inputs are bf16 on both sides; the kernel rounds P and dS to
// bf16 before the products that use them (unit round-off 2^-9 = 2e-3 per element, about 1e-3 in l2 over many
// elements), and the outputs once more: 1e-2, as every bf16 kernel here. lse comes from fp32 sums of exact bf16
// products: 1e-5, as the other fp32 outputs.
TEST_CASE("cuda attention on tensor cores (bf16): forward, lse and the backward against the CPU at ragged T") {
    // (B, T, C, NH): head sizes 64 and 128; T = 1, 37 (part of a tile), 64 and 128 (whole tiles, no padding), 81 (a
    // tile of 64 and 17 rows) and 130 (two tiles and 2 rows; for head size 128 the backward's steps of 32 keys or
    // queries end on 2 rows too).
    for (const auto& shape : {std::tuple{3, 1, 128, 2}, std::tuple{2, 37, 192, 3}, std::tuple{1, 64, 64, 1},
                              std::tuple{2, 81, 64, 1}, std::tuple{1, 130, 128, 2}, std::tuple{2, 1, 128, 1},
                              std::tuple{1, 37, 256, 2}, std::tuple{1, 128, 128, 1}, std::tuple{2, 81, 128, 1},
                              std::tuple{1, 130, 384, 3}}) {
        const int B = std::get<0>(shape), Tn = std::get<1>(shape), C = std::get<2>(shape), NH = std::get<3>(shape);
        CAPTURE(B); CAPTURE(Tn); CAPTURE(C); CAPTURE(NH);
        REQUIRE(cuda::attention_mma_supports(C, NH));
        const size_t BT = size_t(B) * Tn;
        Rng rng(uint64_t(Tn * 11 + C));
        const Floats qkv = random_floats<bf16>(rng, BT * 3 * C), dout = random_floats<bf16>(rng, BT * C);
        Buffer<bf16> d_qkv(qkv.size()), d_out(BT * C), d_dout(dout.size()), d_dqkv(qkv.size());
        Buffer<float> d_lse(BT * NH), d_scratch(BT * NH);
        d_qkv.upload(qkv);
        d_dout.upload(dout);
        cuda::attention_mma_forward(d_out, d_lse, d_qkv, B, Tn, C, NH, 0);
        Floats out_ref(BT * C), att_ref(size_t(B) * NH * Tn * Tn);
        cpu::attention_forward(out_ref.data(), att_ref.data(), qkv.data(), B, Tn, C, NH);
        const Floats out = d_out.download(), lse = d_lse.download();
        const double out_err = rel(out, out_ref), lse_err = rel(lse, lse_reference(qkv, B, Tn, C, NH));
        CHECK(out_err < tolerance<bf16>());
        CHECK(lse_err < fp32_out_tolerance<bf16>());

        Floats dqkv_ref(qkv.size(), 0.0f);
        cpu::attention_backward(dqkv_ref.data(), dout.data(), qkv.data(), att_ref.data(), B, Tn, C, NH);
        cuda::attention_mma_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_scratch, B, Tn, C, NH, 0);
        const Floats dqkv = d_dqkv.download();
        const std::array<double, 3> errors = attention_gradient_errors(dqkv, dqkv_ref, C);
        for (int part = 0; part < 3; ++part)
            CHECK_MESSAGE(errors[size_t(part)] < tolerance<bf16>(), "d" << std::string(1, "qkv"[part]) << " relative error " << errors[size_t(part)]);
        MESSAGE("head size " << C / NH << ", T " << Tn << ": out " << out_err << ", lse " << lse_err << ", dq " << errors[0] << ", dk "
                             << errors[1] << ", dv " << errors[2]);

        d_out.poison();
        d_dqkv.poison();
        cuda::attention_mma_forward(d_out, d_lse, d_qkv, B, Tn, C, NH, 0);
        cuda::attention_mma_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, d_scratch, B, Tn, C, NH, 0);
        CHECK_MESSAGE(same_bits(d_out.download(), out), "attention forward (tensor cores): two runs gave different bits");
        CHECK_MESSAGE(same_bits(d_lse.download(), lse), "attention forward (tensor cores): two runs gave different lse bits");
        CHECK_MESSAGE(same_bits(d_dqkv.download(), dqkv), "attention backward (tensor cores): two runs gave different bits");
    }
}

TEST_CASE("cuda attention: head size above 128 is refused with a clear error") {
    Buffer<float> d_qkv(3 * 258), d_out(258), d_lse(1);
    CHECK(test_util::contains(test_util::error_of([&] { cuda::attention_forward<float>(d_out, d_lse, d_qkv, 1, 1, 258, 1, 0); }),
                              "head size 258"));
}

TEST_CASE_TEMPLATE("cuda classifier: fused softmax cross-entropy, padded vocabulary", T, float, bf16) {
    for (const auto& shape : {std::tuple{111, 97, 128}, std::tuple{5, 1000, 1024}, std::tuple{7, 90, 100}}) {
        const int N = std::get<0>(shape), V = std::get<1>(shape), Vp = std::get<2>(shape);
        CAPTURE(N); CAPTURE(V); CAPTURE(Vp);
        Rng rng(uint64_t(N + V));
        Floats logits = random_floats<T>(rng, size_t(N) * Vp, -4.0f, 4.0f);
        const std::vector<int> targets = random_ints(rng, N, V);
        const float dloss = 1.0f / float(N);
        Buffer<T> d_logits(logits.size());
        Buffer<float> d_losses(N);
        Buffer<int> d_targets(N);
        d_targets.upload_raw(targets);
        Floats probs = logits, losses_ref(N);
        cpu::classifier_forward(losses_ref.data(), probs.data(), targets.data(), N, V, Vp);
        cpu::classifier_backward(probs.data(), targets.data(), dloss, N, V, Vp);

        d_logits.upload(logits);
        cuda::classifier_forward<T>(d_losses, d_logits, d_targets, dloss, N, V, Vp, false, 0);
        CHECK(rel(d_losses.download(), losses_ref) < fp32_out_tolerance<T>());
        CHECK_MESSAGE(same_bits(d_logits.download(), logits), "evaluation must leave the logits as they were");

        d_losses.poison();
        cuda::classifier_forward<T>(d_losses, d_logits, d_targets, dloss, N, V, Vp, true, 0);
        CHECK(rel(d_losses.download(), losses_ref) < fp32_out_tolerance<T>());
        const Floats dlogits = d_logits.download();
        CHECK(rel(dlogits, probs) < tolerance<T>());
        bool padded_zero = true;
        for (int n = 0; n < N; ++n)
            for (int v = V; v < Vp; ++v) padded_zero = padded_zero && dlogits[size_t(n) * Vp + v] == 0.0f;
        CHECK_MESSAGE(padded_zero, "padded vocabulary columns must get gradient 0");
    }
}

TEST_CASE("cuda AdamW: the CPU reference's steps to 1e-7, decay by tensor role, measured-step sums, skipped and misaligned steps, state interchange") {
    const GPT2Config c = test_util::small_model_config();
    const std::vector<TensorSlice> tensors = parameter_tensors(c);
    const size_t P = ParamLayout(c).total;
    for (bool bias_correction : {true, false}) {
        CAPTURE(bias_correction);
        OptimizerConfig opt;
        opt.weight_decay = 0.1f;
        opt.bias_correction = bias_correction;
        Rng rng(5);
        Floats params = random_floats<float>(rng, P);
        Buffer<float> d_params(P), d_grads(P);
        d_params.upload(params);
        AdamWCpu cpu_opt(opt, tensors);
        auto gpu_opt = cuda::make_cuda_optimizer(opt, tensors, 0);
        auto step_both = [&](const StepContext& ctx, const StepOutputs& cpu_out, const StepOutputs& gpu_out) {
            const Floats grads = random_floats<float>(rng, P);
            d_grads.upload(grads);
            const cuda::DeviceStepGate gate{ctx.grad_scale, 0};  // the CUDA optimizers read the clip scale there
            REQUIRE(cudaMemcpy(gpu_opt->gate_device(), &gate, sizeof(gate), cudaMemcpyHostToDevice) == cudaSuccess);
            gpu_opt->step(d_params, d_grads, ctx, gpu_out);
            cpu_opt.step(params.data(), grads.data(), ctx, cpu_out);
        };
        for (int t = 1; t <= 3; ++t) step_both({1e-2f * float(t), 0.7f, t}, {}, {});
        const Floats gpu_params = d_params.download();
        size_t differing = 0;
        for (size_t i = 0; i < P; ++i) differing += gpu_params[i] != params[i];
        MESSAGE("AdamW after 3 steps: " << differing << " of " << P << " parameters differ in any bit from the CPU's");
        CHECK(rel(gpu_params, params) < 1e-7);
        for (const TensorSlice& t : tensors) {  // per tensor: decay where tensor_roles() says, and only there
            const Floats a(gpu_params.begin() + long(t.offset), gpu_params.begin() + long(t.offset + t.numel));
            const Floats b(params.begin() + long(t.offset), params.begin() + long(t.offset + t.numel));
            CHECK_MESSAGE(rel(a, b) < 1e-7, t.name << (t.is_matrix ? " (matrix)" : " (vector)") << ": relative error " << rel(a, b));
        }
        // A measured step: the same per-tensor sums as the CPU optimizer's, and the update itself.
        std::vector<TensorStepSums> cpu_sums(tensors.size()), gpu_sums(tensors.size());
        Floats cpu_update(P), gpu_update(P);
        step_both({1e-2f, 0.9f, 4}, {cpu_sums.data(), cpu_update.data()}, {gpu_sums.data(), gpu_update.data()});
        // The update is the difference of two weights that may differ in their last bit (FMA
        // contraction): against an update of ~lr = 1e-2 that is up to ~1e-5 relative, hence 1e-4.
        CHECK(rel(gpu_update, cpu_update) < 1e-4);
        for (size_t k = 0; k < tensors.size(); ++k) {
            const TensorStepSums &a = gpu_sums[k], &b = cpu_sums[k];
            const Floats got = {float(a.w_sq), float(a.d_sq), float(a.w_dot_d), float(a.g_sq), float(a.g_dot_mprev), float(a.mprev_sq),
                                float(a.m_sq), float(a.row_angle_sq), float(a.rows)};
            const Floats want = {float(b.w_sq), float(b.d_sq), float(b.w_dot_d), float(b.g_sq), float(b.g_dot_mprev), float(b.mprev_sq),
                                 float(b.m_sq), float(b.row_angle_sq), float(b.rows)};
            CHECK_MESSAGE(rel(got, want) < 1e-4, tensors[k].name << ": measured-step sums differ, relative error " << rel(got, want));
        }
        {  // A step the device's gate skips changes nothing; a step on misaligned buffers takes one element at a time.
            const Floats before = d_params.download();
            Floats m_before(P), m_after(P);
            gpu_opt->read_state(0, m_before.data());
            const cuda::DeviceStepGate skip{1.0f, 1};
            REQUIRE(cudaMemcpy(gpu_opt->gate_device(), &skip, sizeof(skip), cudaMemcpyHostToDevice) == cudaSuccess);
            gpu_opt->step(d_params, d_grads, {1e-2f, 1.0f, 5}, {});
            gpu_opt->read_state(0, m_after.data());
            CHECK(same_bits(d_params.download(), before));
            CHECK(same_bits(m_after, m_before));
            Shifted<float> p1(P, 1), g1(P, 1);
            const Floats grads = random_floats<float>(rng, P);
            p1.upload(params);
            g1.upload(grads);
            const cuda::DeviceStepGate take{0.9f, 0};
            REQUIRE(cudaMemcpy(gpu_opt->gate_device(), &take, sizeof(take), cudaMemcpyHostToDevice) == cudaSuccess);
            gpu_opt->step(p1, g1, {1e-2f, 0.9f, 5}, {});
            cpu_opt.step(params.data(), grads.data(), {1e-2f, 0.9f, 5}, {});
            CHECK(rel(p1.download(), params) < 1e-7);
        }
        // The state as checkpoints store it: a file written from the GPU optimizer loads into the CPU one
        // and back, and both then take the same step.
        test_util::TempDir dir;
        {
            File f(dir / "gpu.state", "wb");
            save_optimizer_state(*gpu_opt, f);
            f.close();
        }
        AdamWCpu cpu_loaded(opt, tensors);
        {
            File f(dir / "gpu.state", "rb");
            load_optimizer_state(cpu_loaded, f);
        }
        for (size_t b = 0; b < cpu_opt.state_layout().size(); ++b) {
            Floats x(P), y(P);
            cpu_opt.read_state(b, x.data());
            cpu_loaded.read_state(b, y.data());
            CHECK_MESSAGE(rel(y, x) < 1e-7, "state buffer " << cpu_opt.state_layout()[b].name);
        }
        {
            File f(dir / "cpu.state", "wb");
            save_optimizer_state(cpu_opt, f);
            f.close();
            File g(dir / "cpu.state", "rb");
            load_optimizer_state(*gpu_opt, g);
        }
        d_params.upload(params);
        step_both({1e-2f, 1.0f, 5}, {}, {});
        CHECK(rel(d_params.download(), params) < 1e-7);
    }
}

TEST_CASE("cuda gradient norm: sum of squares in double, deterministic; bf16 conversion rounds to nearest") {
    const size_t n = 1000003;
    Rng rng(9);
    const Floats x = random_floats<float>(rng, n, -3.0f, 3.0f);
    Buffer<float> d_x(n);
    Buffer<double> d_result(1), d_scratch(cuda::kSumOfSquaresParts);
    d_x.upload(x);
    cuda::sum_of_squares(d_result, d_x, n, d_scratch, 0);
    const double first = d_result.download_raw()[0];
    cuda::sum_of_squares(d_result, d_x, n, d_scratch, 0);
    const double second = d_result.download_raw()[0];
    const double ref = sum_of_squares(x.data(), n);
    CHECK(std::fabs(first - ref) / ref < 1e-12);
    CHECK(first == second);
    Shifted<float> shifted(n - 1, 1);  // misaligned: one element per load
    shifted.upload(Floats(x.begin() + 1, x.end()));
    cuda::sum_of_squares(d_result, shifted, n - 1, d_scratch, 0);
    const double third = d_result.download_raw()[0];
    const double ref_shifted = sum_of_squares(x.data() + 1, n - 1);
    CHECK(std::fabs(third - ref_shifted) / ref_shifted < 1e-12);

    Buffer<bf16> d_b(n);
    cuda::convert_floats<bf16>(d_b, d_x, n, 0);
    const std::vector<bf16> b = d_b.download_raw();
    size_t wrong = 0;
    for (size_t i = 0; i < n; ++i) {
        const bf16 expected = __float2bfloat16_rn(x[i]);
        wrong += std::memcmp(&b[i], &expected, sizeof(bf16)) != 0;
    }
    CHECK(wrong == 0);
    Buffer<bf16> d_small(1001);  // from the misaligned buffer: one element per thread
    cuda::convert_floats<bf16>(d_small, shifted, 1001, 0);
    Floats expected_small(1001);
    for (size_t i = 0; i < 1001; ++i) expected_small[i] = round_to<bf16>(x[i + 1]);
    CHECK(same_bits(d_small.download(), expected_small));
}
