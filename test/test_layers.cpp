// Tests of the fp32 CPU layers (layers/*.h) against double-precision references.
//
// Forward passes are compared with straightforward double-precision re-implementations written here.
// Backward passes are compared with central finite differences of those double-precision forwards, on a
// loss L = sum(out * w) with random upstream weights w, so the reference is the exact gradient up to
// ~1e-10 (step 1e-5: truncation ~h^2 = 1e-10, round-off ~1e-16 * |L| / h ~ 1e-10) and never suffers fp32
// cancellation. Every gradient buffer is pre-filled with random values first, which checks that the
// backward accumulates (+=) instead of overwriting. Sizes are deliberately awkward (primes, not
// multiples of any tile or vector width).
//
// Tolerances. fp32 has unit round-off u = 6e-8. A sum of k rounded terms is off by up to k*u in the
// worst case, but for terms of random sign the error grows like sqrt(k)*u, and a norm-wise error over
// many elements sees that typical case. The longest sums here (matmul depth 600) give sqrt(600)*u =
// 1.5e-6; the gradient checks sum a few dozen terms (~5e-7), and the softmax and layernorm backward
// subtract means, which can cost a further factor of a few. kForwardTolerance = kGradientTolerance =
// 1e-5 leaves that margin, while a wrong formula, index or scale, or a missing accumulation, gives
// errors of 1e-3 to 1.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "backend/sampling.h"
#include "common/error.h"
#include "common/random.h"
#include "layers/attention.h"
#include "layers/classifier.h"
#include "layers/encoder.h"
#include "layers/gelu.h"
#include "layers/layernorm.h"
#include "layers/matmul.h"
#include "layers/residual.h"

namespace {

using namespace coldstart;
using Floats = std::vector<float>;
using Doubles = std::vector<double>;

constexpr double kForwardTolerance = 1e-5;
constexpr double kGradientTolerance = 1e-5;

Floats random_floats(Rng& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
    Floats v(n);
    for (float& x : v) x = lo + (hi - lo) * rng.uniform();
    return v;
}

std::vector<int> random_ints(Rng& rng, size_t n, int below) {
    std::vector<int> v(n);
    for (int& x : v) x = int(rng.below(uint64_t(below)));
    return v;
}

Doubles to_doubles(const Floats& v) { return Doubles(v.begin(), v.end()); }

// ||got - expected|| / ||expected|| in double precision.
double relative_error(const Floats& got, const Doubles& expected) {
    REQUIRE(got.size() == expected.size());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        diff += (got[i] - expected[i]) * (got[i] - expected[i]);
        norm += expected[i] * expected[i];
    }
    return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

// How far an accumulated gradient is from prefill + expected, relative to the size of expected.
double gradient_error(const Floats& accumulated, const Floats& prefill, const Doubles& expected) {
    REQUIRE(accumulated.size() == expected.size());
    REQUIRE(prefill.size() == expected.size());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
        const double d = double(accumulated[i]) - double(prefill[i]) - expected[i];
        diff += d * d;
        norm += expected[i] * expected[i];
    }
    return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

// Central differences of loss() with respect to every element of x (which loss() reads by reference).
Doubles numerical_gradient(Doubles& x, const std::function<double()>& loss) {
    constexpr double kStep = 1e-5;
    Doubles grad(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double saved = x[i];
        x[i] = saved + kStep;
        const double up = loss();
        x[i] = saved - kStep;
        const double down = loss();
        x[i] = saved;
        grad[i] = (up - down) / (2 * kStep);
    }
    return grad;
}

double weighted_sum(const Doubles& out, const Floats& weights) {
    REQUIRE(out.size() == weights.size());
    double sum = 0;
    for (size_t i = 0; i < out.size(); ++i) sum += out[i] * weights[i];
    return sum;
}

// Runs fn with the given OpenMP thread count, restoring the previous setting afterwards.
void with_threads(int threads, const std::function<void()>& fn) {
    const int previous = omp_get_max_threads();
    omp_set_num_threads(threads);
    fn();
    omp_set_num_threads(previous);
}

bool bitwise_equal(const Floats& a, const Floats& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---- double-precision reference forwards ----

Doubles encoder_reference(const std::vector<int>& tokens, const Doubles& wte, const Doubles& wpe, int B, int T, int C) {
    Doubles out(size_t(B) * T * C);
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t)
            for (int c = 0; c < C; ++c)
                out[(size_t(b) * T + t) * C + c] = wte[size_t(tokens[b * T + t]) * C + c] + wpe[size_t(t) * C + c];
    return out;
}

struct LayernormResult {
    Doubles out, mean, rstd;
};

LayernormResult layernorm_reference(const Doubles& inp, const Doubles& weight, const Doubles& bias, size_t N, int C) {
    LayernormResult r{Doubles(N * C), Doubles(N), Doubles(N)};
    for (size_t n = 0; n < N; ++n) {
        const double* x = &inp[n * C];
        double mean = 0, var = 0;
        for (int c = 0; c < C; ++c) mean += x[c] / C;
        for (int c = 0; c < C; ++c) var += (x[c] - mean) * (x[c] - mean) / C;
        r.mean[n] = mean;
        r.rstd[n] = 1 / std::sqrt(var + 1e-5);
        for (int c = 0; c < C; ++c) r.out[n * C + c] = (x[c] - mean) * r.rstd[n] * weight[c] + bias[c];
    }
    return r;
}

Doubles matmul_reference(const Doubles& inp, const Doubles& weight, const Doubles* bias, size_t N, int C, int OC) {
    Doubles out(N * OC);
    for (size_t n = 0; n < N; ++n)
        for (int o = 0; o < OC; ++o) {
            double sum = bias ? (*bias)[o] : 0.0;
            for (int c = 0; c < C; ++c) sum += inp[n * C + c] * weight[size_t(o) * C + c];
            out[n * OC + o] = sum;
        }
    return out;
}

// out (B,T,C) and, if att is given, the probabilities (B,NH,T,T, zero above the diagonal).
Doubles attention_reference(const Doubles& qkv, int B, int T, int C, int NH, Doubles* att = nullptr) {
    const int hs = C / NH;
    Doubles out(size_t(B) * T * C, 0.0);
    if (att) att->assign(size_t(B) * NH * T * T, 0.0);
    auto at = [&](int b, int t, int part, int h) { return &qkv[(size_t(b) * T + t) * 3 * C + part * C + h * hs]; };
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < NH; ++h)
            for (int t = 0; t < T; ++t) {
                Doubles p(t + 1);
                double max_score = -INFINITY, sum = 0;
                for (int t2 = 0; t2 <= t; ++t2) {
                    double dot = 0;
                    for (int i = 0; i < hs; ++i) dot += at(b, t, 0, h)[i] * at(b, t2, 1, h)[i];
                    p[t2] = dot / std::sqrt(double(hs));
                    max_score = std::max(max_score, p[t2]);
                }
                for (double& x : p) sum += (x = std::exp(x - max_score));
                for (int t2 = 0; t2 <= t; ++t2) {
                    p[t2] /= sum;
                    if (att) (*att)[((size_t(b) * NH + h) * T + t) * T + t2] = p[t2];
                    double* out_bth = &out[(size_t(b) * T + t) * C + h * hs];
                    for (int i = 0; i < hs; ++i) out_bth[i] += p[t2] * at(b, t2, 2, h)[i];
                }
            }
    return out;
}

double gelu_reference(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

// Per-row losses logsumexp(row[0, V)) - row[target] and, if probs is given, the softmax (N,Vp, 0-padded).
Doubles classifier_reference(const Doubles& logits, const std::vector<int>& targets, size_t N, int V, int Vp,
                             Doubles* probs = nullptr) {
    Doubles losses(N);
    if (probs) probs->assign(N * Vp, 0.0);
    for (size_t n = 0; n < N; ++n) {
        const double* row = &logits[n * Vp];
        const double max_logit = *std::max_element(row, row + V);
        double sum = 0;
        for (int v = 0; v < V; ++v) sum += std::exp(row[v] - max_logit);
        losses[n] = max_logit + std::log(sum) - row[targets[n]];
        if (probs)
            for (int v = 0; v < V; ++v) (*probs)[n * Vp + v] = std::exp(row[v] - max_logit) / sum;
    }
    return losses;
}

}  // namespace

// ---------------------------------------------------------------- encoder

TEST_CASE("layers: encoder forward adds the token and position embeddings") {
    Rng rng(1);
    const int B = 2, T = 5, C = 12, Vp = 40, maxT = 8;
    const auto tokens = random_ints(rng, B * T, Vp);
    const Floats wte = random_floats(rng, size_t(Vp) * C), wpe = random_floats(rng, size_t(maxT) * C);
    Floats out(size_t(B) * T * C);
    cpu::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    const Doubles ref = encoder_reference(tokens, to_doubles(wte), to_doubles(wpe), B, T, C);
    CHECK(relative_error(out, ref) < kForwardTolerance);
}

TEST_CASE("layers: encoder backward matches finite differences, with repeated tokens") {
    Rng rng(2);
    const int B = 2, T = 5, C = 12, Vp = 40, maxT = 8;
    auto tokens = random_ints(rng, B * T, Vp);
    tokens[7] = tokens[1] = tokens[3];  // a token seen three times must collect three gradients
    const Floats wte = random_floats(rng, size_t(Vp) * C), wpe = random_floats(rng, size_t(maxT) * C);
    const Floats dout = random_floats(rng, size_t(B) * T * C);
    const Floats dwte0 = random_floats(rng, wte.size()), dwpe0 = random_floats(rng, wpe.size());
    Floats dwte = dwte0, dwpe = dwpe0;
    cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);

    Doubles wte_d = to_doubles(wte), wpe_d = to_doubles(wpe);
    auto loss = [&] { return weighted_sum(encoder_reference(tokens, wte_d, wpe_d, B, T, C), dout); };
    CHECK(gradient_error(dwte, dwte0, numerical_gradient(wte_d, loss)) < kGradientTolerance);
    CHECK(gradient_error(dwpe, dwpe0, numerical_gradient(wpe_d, loss)) < kGradientTolerance);
}

// ---------------------------------------------------------------- layernorm

TEST_CASE("layers: layernorm forward matches a double-precision reference") {
    Rng rng(3);
    const size_t N = 7;
    const int C = 13;
    const Floats weight = random_floats(rng, C), bias = random_floats(rng, C);
    // Rows with a large mean against their spread (offset 1000, spread 0.6) need the two-pass variance:
    // single-pass E[x^2] - E[x]^2 rounds E[x^2] ~ 1e6 to 0.06 against a variance of 0.33 (~10% off).
    // Even two passes cannot beat the fp32 mean itself, known only to half an ulp of 1000 (3e-5), which
    // shifts every x - mean by up to 3e-5 / 0.6 = 5e-5 relative: hence 1e-3 there instead of 1e-5.
    for (const auto& offset_tolerance : {std::pair{0.0f, kForwardTolerance}, std::pair{1000.0f, 1e-3}}) {
        const float offset = offset_tolerance.first;
        const double tolerance = offset_tolerance.second;
        CAPTURE(offset);
        const Floats inp = random_floats(rng, N * C, offset - 1, offset + 1);
        Floats out(N * C), mean(N), rstd(N);
        cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), N, C);
        const auto ref = layernorm_reference(to_doubles(inp), to_doubles(weight), to_doubles(bias), N, C);
        CHECK(relative_error(out, ref.out) < tolerance);
        CHECK(relative_error(mean, ref.mean) < kForwardTolerance);
        CHECK(relative_error(rstd, ref.rstd) < tolerance);
    }
}

TEST_CASE("layers: layernorm backward matches finite differences") {
    Rng rng(4);
    const size_t N = 7;
    const int C = 13;
    const Floats inp = random_floats(rng, N * C, -2, 3), weight = random_floats(rng, C), bias = random_floats(rng, C);
    const Floats dout = random_floats(rng, N * C);
    Floats out(N * C), mean(N), rstd(N);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), N, C);
    const Floats dinp0 = random_floats(rng, N * C), dweight0 = random_floats(rng, C), dbias0 = random_floats(rng, C);
    Floats dinp = dinp0, dweight = dweight0, dbias = dbias0;
    cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(),
                            mean.data(), rstd.data(), N, C);

    Doubles inp_d = to_doubles(inp), weight_d = to_doubles(weight), bias_d = to_doubles(bias);
    auto loss = [&] { return weighted_sum(layernorm_reference(inp_d, weight_d, bias_d, N, C).out, dout); };
    CHECK(gradient_error(dinp, dinp0, numerical_gradient(inp_d, loss)) < kGradientTolerance);
    CHECK(gradient_error(dweight, dweight0, numerical_gradient(weight_d, loss)) < kGradientTolerance);
    CHECK(gradient_error(dbias, dbias0, numerical_gradient(bias_d, loss)) < kGradientTolerance);
}

// ---------------------------------------------------------------- matmul

namespace {
struct MatmulSize {
    size_t N;
    int C, OC;
};
// Ones, primes, and sizes that span several register tiles (6 x 16), depth slices (256) and cache
// blocks (up to 256 rows x 512 columns) with ragged remainders in every dimension.
const MatmulSize kAwkwardMatmulSizes[] = {{1, 1, 1},       {7, 13, 11},     {1, 300, 17},  {13, 5, 200},
                                          {6, 16, 16},     {150, 600, 300}, {73, 257, 129}, {300, 70, 530}};
}  // namespace

TEST_CASE("layers: matmul forward matches a naive double loop on awkward sizes") {
    Rng rng(5);
    for (const MatmulSize& s : kAwkwardMatmulSizes)
        for (bool with_bias : {true, false}) {
            INFO("N=" << s.N << " C=" << s.C << " OC=" << s.OC << " bias=" << with_bias);
            const Floats inp = random_floats(rng, s.N * s.C), weight = random_floats(rng, size_t(s.OC) * s.C);
            const Floats bias = random_floats(rng, s.OC);
            Floats out = random_floats(rng, s.N * s.OC);  // garbage that must be overwritten
            cpu::matmul_forward(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, s.N, s.C,
                                s.OC);
            const Doubles bias_d = to_doubles(bias);
            const Doubles ref =
                matmul_reference(to_doubles(inp), to_doubles(weight), with_bias ? &bias_d : nullptr, s.N, s.C, s.OC);
            CHECK(relative_error(out, ref) < kForwardTolerance);
        }
}

TEST_CASE("layers: matmul backward matches finite differences") {
    Rng rng(6);
    const size_t N = 7;
    const int C = 13, OC = 11;
    const Floats inp = random_floats(rng, N * C), weight = random_floats(rng, size_t(OC) * C);
    const Floats bias = random_floats(rng, OC), dout = random_floats(rng, N * OC);
    const Floats dinp0 = random_floats(rng, inp.size()), dweight0 = random_floats(rng, weight.size());
    const Floats dbias0 = random_floats(rng, OC);
    Floats dinp = dinp0, dweight = dweight0, dbias = dbias0;
    cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(), N, C, OC);

    Doubles inp_d = to_doubles(inp), weight_d = to_doubles(weight), bias_d = to_doubles(bias);
    auto loss = [&] { return weighted_sum(matmul_reference(inp_d, weight_d, &bias_d, N, C, OC), dout); };
    CHECK(gradient_error(dinp, dinp0, numerical_gradient(inp_d, loss)) < kGradientTolerance);
    CHECK(gradient_error(dweight, dweight0, numerical_gradient(weight_d, loss)) < kGradientTolerance);
    CHECK(gradient_error(dbias, dbias0, numerical_gradient(bias_d, loss)) < kGradientTolerance);
}

// Finite differences are too slow for the sizes that exercise every tile and block edge; the gradients
// of a matmul are themselves matmuls, so a naive double loop is the reference there.
TEST_CASE("layers: matmul backward matches naive double loops on awkward sizes") {
    Rng rng(7);
    for (const MatmulSize& s : kAwkwardMatmulSizes)
        for (bool with_dinp : {true, false}) {
            INFO("N=" << s.N << " C=" << s.C << " OC=" << s.OC << " dinp=" << with_dinp);
            const size_t N = s.N;
            const int C = s.C, OC = s.OC;
            const Floats inp = random_floats(rng, N * C), weight = random_floats(rng, size_t(OC) * C);
            const Floats dout = random_floats(rng, N * OC);
            const Floats dinp0 = random_floats(rng, inp.size()), dweight0 = random_floats(rng, weight.size());
            const Floats dbias0 = random_floats(rng, OC);
            Floats dinp = dinp0, dweight = dweight0, dbias = dbias0;
            cpu::matmul_backward(with_dinp ? dinp.data() : nullptr, dweight.data(), dbias.data(), dout.data(),
                                 inp.data(), weight.data(), N, C, OC);

            Doubles expected_dinp(N * C, 0.0), expected_dweight(size_t(OC) * C, 0.0), expected_dbias(OC, 0.0);
            for (size_t n = 0; n < N; ++n)
                for (int o = 0; o < OC; ++o) {
                    const double d = dout[n * OC + o];
                    expected_dbias[o] += d;
                    for (int c = 0; c < C; ++c) {
                        expected_dinp[n * C + c] += d * weight[size_t(o) * C + c];
                        expected_dweight[size_t(o) * C + c] += d * inp[n * C + c];
                    }
                }
            if (with_dinp) CHECK(gradient_error(dinp, dinp0, expected_dinp) < kGradientTolerance);
            else CHECK(bitwise_equal(dinp, dinp0));
            CHECK(gradient_error(dweight, dweight0, expected_dweight) < kGradientTolerance);
            CHECK(gradient_error(dbias, dbias0, expected_dbias) < kGradientTolerance);
        }
}

// ---------------------------------------------------------------- attention

TEST_CASE("layers: attention forward matches a double-precision reference") {
    Rng rng(8);
    const int B = 2, T = 5, C = 12, NH = 3;
    const Floats qkv = random_floats(rng, size_t(B) * T * 3 * C, -2, 2);
    Floats out(size_t(B) * T * C), att = random_floats(rng, size_t(B) * NH * T * T);  // garbage to overwrite
    cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    Doubles ref_att;
    const Doubles ref_out = attention_reference(to_doubles(qkv), B, T, C, NH, &ref_att);
    CHECK(relative_error(out, ref_out) < kForwardTolerance);
    CHECK(relative_error(att, ref_att) < kForwardTolerance);
    for (int row = 0; row < B * NH * T; ++row) {
        const int t = row % T;
        double sum = 0;
        for (int t2 = 0; t2 < T; ++t2) {
            const float p = att[size_t(row) * T + t2];
            if (t2 > t) CHECK(p == 0.0f);  // the future is masked
            sum += p;
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
    }
}

TEST_CASE("layers: attention is causal: a later token's q, k or v does not change earlier outputs") {
    Rng rng(9);
    const int B = 2, T = 5, C = 12, NH = 3, changed_t = 3;
    const Floats qkv = random_floats(rng, size_t(B) * T * 3 * C, -2, 2);
    Floats out(size_t(B) * T * C), att(size_t(B) * NH * T * T);
    cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);

    Floats changed_qkv = qkv;
    for (int b = 0; b < B; ++b)
        for (int i = 0; i < 3 * C; ++i) changed_qkv[(size_t(b) * T + changed_t) * 3 * C + i] += 1.0f;
    Floats changed_out(out.size()), changed_att(att.size());
    cpu::attention_forward(changed_out.data(), changed_att.data(), changed_qkv.data(), B, T, C, NH);

    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) {
            INFO("b=" << b << " t=" << t);
            const bool same = std::memcmp(&out[(size_t(b) * T + t) * C], &changed_out[(size_t(b) * T + t) * C],
                                          C * sizeof(float)) == 0;
            CHECK(same == (t < changed_t));  // earlier outputs identical, later ones (and t itself) differ
        }
}

TEST_CASE("layers: attention backward matches finite differences") {
    Rng rng(10);
    const int B = 2, T = 5, C = 12, NH = 3;
    const Floats qkv = random_floats(rng, size_t(B) * T * 3 * C, -2, 2);
    const Floats dout = random_floats(rng, size_t(B) * T * C);
    Floats out(size_t(B) * T * C), att(size_t(B) * NH * T * T);
    cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    const Floats dqkv0 = random_floats(rng, qkv.size());
    Floats dqkv = dqkv0;
    cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);

    Doubles qkv_d = to_doubles(qkv);
    auto loss = [&] { return weighted_sum(attention_reference(qkv_d, B, T, C, NH), dout); };
    CHECK(gradient_error(dqkv, dqkv0, numerical_gradient(qkv_d, loss)) < kGradientTolerance);
}

TEST_CASE("layers: attention rejects a head count that does not divide the channels") {
    Floats out(12), att(25), qkv(36);
    CHECK_THROWS_AS(cpu::attention_forward(out.data(), att.data(), qkv.data(), 1, 1, 12, 5), Error);
}

// ---------------------------------------------------------------- gelu and residual

TEST_CASE("layers: gelu forward and backward match the tanh formula in double precision") {
    Rng rng(11);
    const size_t N = 53;
    const Floats inp = random_floats(rng, N, -5, 5), dout = random_floats(rng, N);
    Floats out(N);
    cpu::gelu_forward(out.data(), inp.data(), N);
    Doubles ref(N);
    for (size_t i = 0; i < N; ++i) ref[i] = gelu_reference(inp[i]);
    CHECK(relative_error(out, ref) < kForwardTolerance);

    const Floats dinp0 = random_floats(rng, N);
    Floats dinp = dinp0;
    cpu::gelu_backward(dinp.data(), inp.data(), dout.data(), N);
    Doubles inp_d = to_doubles(inp);
    auto loss = [&] {
        Doubles y(N);
        for (size_t i = 0; i < N; ++i) y[i] = gelu_reference(inp_d[i]);
        return weighted_sum(y, dout);
    };
    CHECK(gradient_error(dinp, dinp0, numerical_gradient(inp_d, loss)) < kGradientTolerance);
}

TEST_CASE("layers: residual forward adds and backward passes the gradient to both inputs") {
    Rng rng(12);
    const size_t N = 53;
    const Floats a = random_floats(rng, N), b = random_floats(rng, N), dout = random_floats(rng, N);
    Floats out(N);
    cpu::residual_forward(out.data(), a.data(), b.data(), N);
    Doubles a_d = to_doubles(a), b_d = to_doubles(b), ref(N);
    for (size_t i = 0; i < N; ++i) ref[i] = a_d[i] + b_d[i];
    CHECK(relative_error(out, ref) < kForwardTolerance);

    const Floats da0 = random_floats(rng, N), db0 = random_floats(rng, N);
    Floats da = da0, db = db0;
    cpu::residual_backward(da.data(), db.data(), dout.data(), N);
    auto loss = [&] {
        Doubles y(N);
        for (size_t i = 0; i < N; ++i) y[i] = a_d[i] + b_d[i];
        return weighted_sum(y, dout);
    };
    CHECK(gradient_error(da, da0, numerical_gradient(a_d, loss)) < kGradientTolerance);
    CHECK(gradient_error(db, db0, numerical_gradient(b_d, loss)) < kGradientTolerance);
}

// ---------------------------------------------------------------- classifier

TEST_CASE("layers: classifier forward gives a padded softmax and the log-softmax loss") {
    Rng rng(13);
    const size_t N = 6;
    const int V = 37, Vp = 40;
    Floats logits = random_floats(rng, N * Vp, -4, 4);
    for (size_t n = 0; n < N; ++n)
        for (int v = V; v < Vp; ++v) logits[n * Vp + v] = 1e30f;  // padding must not take part
    const auto targets = random_ints(rng, N, V);
    Doubles ref_probs;
    const Doubles ref_losses = classifier_reference(to_doubles(logits), targets, N, V, Vp, &ref_probs);

    Floats probs = logits, losses(N);
    cpu::classifier_forward(losses.data(), probs.data(), targets.data(), N, V, Vp);
    CHECK(relative_error(probs, ref_probs) < kForwardTolerance);
    CHECK(relative_error(losses, ref_losses) < kForwardTolerance);
    for (size_t n = 0; n < N; ++n) {
        double sum = 0;
        for (int v = 0; v < Vp; ++v) sum += probs[n * Vp + v];
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
        for (int v = V; v < Vp; ++v) CHECK(probs[n * Vp + v] == 0.0f);
    }

    Floats probs_only = logits;  // inference: no targets, no losses
    cpu::classifier_forward(nullptr, probs_only.data(), nullptr, N, V, Vp);
    CHECK(bitwise_equal(probs_only, probs));
}

TEST_CASE("layers: classifier loss stays finite and precise when the target's probability underflows") {
    const size_t N = 1;
    const int V = 37, Vp = 40;
    Floats logits(N * Vp, 0.0f);
    const std::vector<int> targets = {5};
    logits[5] = -200.0f;  // exp(-200) underflows fp32: -log(prob) would be +inf
    const Doubles ref = classifier_reference(to_doubles(logits), targets, N, V, Vp);
    Floats losses(N);
    cpu::classifier_forward(losses.data(), logits.data(), targets.data(), N, V, Vp);
    CHECK(relative_error(losses, ref) < kForwardTolerance);
}

TEST_CASE("layers: classifier backward matches finite differences") {
    Rng rng(14);
    const size_t N = 6;
    const int V = 37, Vp = 40;
    const float dloss = 0.37f;  // e.g. 1 / (N * grad_accum)
    const Floats logits = random_floats(rng, N * Vp, -4, 4);
    const auto targets = random_ints(rng, N, V);
    Floats buffer = logits, losses(N);
    cpu::classifier_forward(losses.data(), buffer.data(), targets.data(), N, V, Vp);
    for (size_t n = 0; n < N; ++n)
        for (int v = V; v < Vp; ++v) buffer[n * Vp + v] = 7.0f;  // stale padding must come out as 0
    cpu::classifier_backward(buffer.data(), targets.data(), dloss, N, V, Vp);

    Doubles logits_d = to_doubles(logits);
    auto loss = [&] {
        double total = 0;
        for (double l : classifier_reference(logits_d, targets, N, V, Vp)) total += dloss * l;
        return total;
    };
    const Floats no_prefill(buffer.size(), 0.0f);  // the classifier overwrites: nothing to accumulate onto
    CHECK(gradient_error(buffer, no_prefill, numerical_gradient(logits_d, loss)) < kGradientTolerance);
    for (size_t n = 0; n < N; ++n)
        for (int v = V; v < Vp; ++v) CHECK(buffer[n * Vp + v] == 0.0f);
}

TEST_CASE("layers: classifier rejects a target outside the vocabulary, naming position and value") {
    const size_t N = 4;
    const int V = 37, Vp = 40;
    Floats logits(N * Vp, 0.0f), losses(N);
    for (int bad : {-1, 37, 39}) {
        CAPTURE(bad);
        std::vector<int> targets = {0, 1, 2, bad};
        const std::string expected = "target " + std::to_string(bad) + " at position 3";
        CHECK_THROWS_WITH_AS(cpu::classifier_forward(losses.data(), logits.data(), targets.data(), N, V, Vp),
                             doctest::Contains(expected.c_str()), Error);
        CHECK_THROWS_WITH_AS(cpu::classifier_backward(logits.data(), targets.data(), 1.0f, N, V, Vp),
                             doctest::Contains(expected.c_str()), Error);
    }
}

// ---------------------------------------------------------------- determinism

// Large enough that the work splits into many OpenMP tasks; the results must not depend on the split.
TEST_CASE("layers: backward passes give the same bits with 1 and 2 threads") {
    Rng rng(15);
    const size_t N = 150;
    const int C = 200, OC = 300, B = 3, T = 50, NH = 4;
    const Floats inp = random_floats(rng, N * C), weight = random_floats(rng, size_t(OC) * C);
    const Floats dout = random_floats(rng, N * OC), dout_c = random_floats(rng, N * C);
    const Floats gamma = random_floats(rng, C), beta = random_floats(rng, C);
    const Floats qkv = random_floats(rng, N * 3 * C);
    const auto tokens = random_ints(rng, N, 40);

    auto run_all = [&] {
        Floats out(N * OC), dinp(N * C, 0.5f), dweight(size_t(OC) * C, 0.5f), dbias(OC, 0.5f);
        cpu::matmul_forward(out.data(), inp.data(), weight.data(), dbias.data(), N, C, OC);
        cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(), N, C,
                             OC);

        Floats ln(N * C), mean(N), rstd(N), ln_dinp(N * C, 0.5f), dgamma(C, 0.5f), dbeta(C, 0.5f);
        cpu::layernorm_forward(ln.data(), mean.data(), rstd.data(), inp.data(), gamma.data(), beta.data(), N, C);
        cpu::layernorm_backward(ln_dinp.data(), dgamma.data(), dbeta.data(), dout_c.data(), inp.data(), gamma.data(),
                                mean.data(), rstd.data(), N, C);

        Floats att_out(N * C), att(size_t(B) * NH * T * T), dqkv(N * 3 * C, 0.5f);
        cpu::attention_forward(att_out.data(), att.data(), qkv.data(), B, T, C, NH);
        cpu::attention_backward(dqkv.data(), dout_c.data(), qkv.data(), att.data(), B, T, C, NH);

        Floats dwte(40 * size_t(C), 0.5f), dwpe(size_t(T) * C, 0.5f);
        cpu::encoder_backward(dwte.data(), dwpe.data(), dout_c.data(), tokens.data(), B, T, C);
        return std::vector<Floats>{out, dinp, dweight, dbias, ln_dinp, dgamma, dbeta, dqkv, dwte, dwpe};
    };
    std::vector<Floats> one, two;
    with_threads(1, [&] { one = run_all(); });
    with_threads(2, [&] { two = run_all(); });
    const char* names[] = {"matmul out", "matmul dinp", "matmul dweight", "matmul dbias", "layernorm dinp",
                           "layernorm dweight", "layernorm dbias", "attention dqkv", "encoder dwte", "encoder dwpe"};
    for (size_t i = 0; i < one.size(); ++i) {
        CAPTURE(names[i]);
        CHECK(bitwise_equal(one[i], two[i]));
    }
}

TEST_CASE("sampling: temperature and top-k reshape the probabilities as softmax(logits / T) over the k most likely") {
    const std::vector<float> probs = {0.1f, 0.4f, 0.2f, 0.3f};
    std::vector<float> same = probs;
    shape_probs(same, 1.0f, 0);
    for (size_t i = 0; i < probs.size(); ++i) CHECK(same[i] == doctest::Approx(probs[i]).epsilon(1e-6));

    std::vector<float> top2 = probs;
    shape_probs(top2, 1.0f, 2);
    const std::vector<double> expected = {0.0, 0.4 / 0.7, 0.0, 0.3 / 0.7};
    for (size_t i = 0; i < probs.size(); ++i) CHECK(top2[i] == doctest::Approx(expected[i]).epsilon(1e-6));

    std::vector<float> cold = probs;  // T = 0.5: p^2 renormalised
    shape_probs(cold, 0.5f, 0);
    const double norm = 0.01 + 0.16 + 0.04 + 0.09;
    for (size_t i = 0; i < probs.size(); ++i) CHECK(cold[i] == doctest::Approx(double(probs[i]) * probs[i] / norm).epsilon(1e-5));

    std::vector<float> greedy = probs;  // top-k 1 draws the most likely token whatever the coin
    shape_probs(greedy, 2.0f, 1);
    for (float coin : {0.0f, 0.5f, 0.999f}) CHECK(sample_from(greedy, coin) == 1);
}
