// Benchmark of the CPU matmul (layers/matmul.cpp) at GPT-2 124M sizes, against three baselines:
//   naive  - the textbook triple loops, OpenMP over rows;
//   llm.c  - a re-implementation of the loop nests of llm.c's train_gpt2.c: the forward keeps 8 rows'
//            partial sums in a small array (LOOP_UNROLL) and runs OpenMP over groups of 8 rows; the
//            backward is two plain loop nests (dinp over rows, dweight over output channels). Compiled
//            with this build's flags, like the trainer;
//   Ofast  - the same loop nests compiled with llm.c's own -Ofast (GCC only).
// Prints GFLOP/s for forward and backward (dinp + dweight + dbias) with 1 and 2 OpenMP threads, our
// speed-up over llm.c and over Ofast, and the relative difference of our forward from llm.c's.
//
//   bench_cpu_matmul [--rows N] [--min-seconds S] [--no-naive]
// N is B*T (default 256 = 4 x 64). Each measurement repeats until S seconds have passed (default 0.5)
// and reports the fastest call. The naive lm head takes minutes; --no-naive skips the naive column.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "layers/matmul.h"

namespace {

// ---- naive: one dot product / one sum per output element ----
void naive_forward(float* out, const float* inp, const float* weight, const float* bias, size_t N, int C, int OC) {
#pragma omp parallel for
    for (size_t n = 0; n < N; ++n)
        for (int o = 0; o < OC; ++o) {
            float sum = bias ? bias[o] : 0.0f;
            for (int i = 0; i < C; ++i) sum += inp[n * C + i] * weight[size_t(o) * C + i];
            out[n * OC + o] = sum;
        }
}

void naive_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                    const float* weight, size_t N, int C, int OC) {
#pragma omp parallel for
    for (size_t n = 0; n < N; ++n)
        for (int i = 0; i < C; ++i) {
            float sum = 0.0f;
            for (int o = 0; o < OC; ++o) sum += dout[n * OC + o] * weight[size_t(o) * C + i];
            dinp[n * C + i] += sum;
        }
#pragma omp parallel for
    for (int o = 0; o < OC; ++o) {
        for (int i = 0; i < C; ++i) {
            float sum = 0.0f;
            for (size_t n = 0; n < N; ++n) sum += dout[n * OC + o] * inp[n * C + i];
            dweight[size_t(o) * C + i] += sum;
        }
        float sum = 0.0f;
        for (size_t n = 0; n < N; ++n) sum += dout[n * OC + o];
        dbias[o] += sum;
    }
}

// ---- llm.c-style loop nests ----
// Defined twice by one macro: once under this build's flags (IEEE arithmetic, as the trainer is
// built), once under llm.c's own -Ofast, which lets GCC vectorise the forward's dot products by
// reassociating them. (Only GCC takes per-function flags; elsewhere both copies are the same.)
#if defined(__GNUC__) && !defined(__clang__)
#define LLMC_OFAST __attribute__((optimize("Ofast")))
#else
#define LLMC_OFAST
#endif

constexpr int kUnroll = 8;  // llm.c's LOOP_UNROLL

#define DEFINE_LLMC_MATMUL(forward_name, backward_name, attributes)                                               \
    attributes void forward_name(float* out, const float* inp, const float* weight, const float* bias, size_t N,   \
                                 int C, int OC) {                                                                  \
        if (N % kUnroll != 0) { /* llm.c falls back to its naive kernel then */                                    \
            naive_forward(out, inp, weight, bias, N, C, OC);                                                       \
            return;                                                                                                \
        }                                                                                                          \
        _Pragma("omp parallel for") for (size_t row0 = 0; row0 < N; row0 += kUnroll) {                            \
            for (int o = 0; o < OC; ++o) {                                                                         \
                float result[kUnroll];                                                                             \
                for (int r = 0; r < kUnroll; ++r) result[r] = bias ? bias[o] : 0.0f;                               \
                for (int i = 0; i < C; ++i) {                                                                      \
                    const float w = weight[i + size_t(o) * C];                                                     \
                    for (int r = 0; r < kUnroll; ++r) result[r] += inp[(row0 + r) * C + i] * w;                    \
                }                                                                                                  \
                for (int r = 0; r < kUnroll; ++r) out[(row0 + r) * OC + o] = result[r];                            \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
    attributes void backward_name(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp, \
                                  const float* weight, size_t N, int C, int OC) {                                 \
        _Pragma("omp parallel for") for (size_t n = 0; n < N; ++n) {                                              \
            const float* dout_row = dout + n * OC;                                                                 \
            float* dinp_row = dinp + n * C;                                                                        \
            for (int o = 0; o < OC; ++o) {                                                                         \
                const float* wrow = weight + size_t(o) * C;                                                        \
                const float d = dout_row[o];                                                                       \
                for (int i = 0; i < C; ++i) dinp_row[i] += wrow[i] * d;                                            \
            }                                                                                                      \
        }                                                                                                          \
        _Pragma("omp parallel for") for (int o = 0; o < OC; ++o) {                                                \
            for (size_t n = 0; n < N; ++n) {                                                                       \
                const float* inp_row = inp + n * C;                                                                \
                const float d = dout[n * OC + o];                                                                  \
                if (dbias) dbias[o] += d;                                                                          \
                float* dwrow = dweight + size_t(o) * C;                                                            \
                for (int i = 0; i < C; ++i) dwrow[i] += inp_row[i] * d;                                            \
            }                                                                                                      \
        }                                                                                                          \
    }

DEFINE_LLMC_MATMUL(llmc_forward, llmc_backward, )
DEFINE_LLMC_MATMUL(llmc_ofast_forward, llmc_ofast_backward, LLMC_OFAST)

// ---- harness ----
struct Shape {
    const char* name;
    int C, OC;
};

struct Buffers {
    std::vector<float> inp, weight, bias, out, dout, dinp, dweight, dbias;
    Buffers(size_t N, int C, int OC)
        : inp(N * C), weight(size_t(OC) * C), bias(OC), out(N * OC), dout(N * OC), dinp(N * C),
          dweight(size_t(OC) * C), dbias(OC) {
        coldstart::Rng rng(1234);
        for (auto* v : {&inp, &weight, &bias, &dout})
            for (float& x : *v) x = rng.uniform() - 0.5f;
    }
};

double seconds_for_one_call(const std::function<void()>& fn) {
    const double start = omp_get_wtime();
    fn();
    return omp_get_wtime() - start;
}

// Fastest call of fn, repeated until min_seconds have passed after a warm-up call; a warm-up call that
// alone takes longer (the naive lm head) is the measurement. The fastest, not the mean: the machine is
// shared (compilers run beside us), and interference only ever adds time.
double seconds_per_call(const std::function<void()>& fn, double min_seconds) {
    const double first = seconds_for_one_call(fn);
    if (first > min_seconds) return first;
    double fastest = INFINITY;
    for (double spent = 0; spent < min_seconds;) {
        const double t = seconds_for_one_call(fn);
        fastest = std::min(fastest, t);
        spent += t;
    }
    return fastest;
}

using ForwardFn = void (*)(float*, const float*, const float*, const float*, size_t, int, int);
using BackwardFn = void (*)(float*, float*, float*, const float*, const float*, const float*, size_t, int, int);

double forward_gflops(ForwardFn fn, Buffers& b, size_t N, int C, int OC, double min_seconds) {
    const double s = seconds_per_call(
        [&] { fn(b.out.data(), b.inp.data(), b.weight.data(), b.bias.data(), N, C, OC); }, min_seconds);
    return 2.0 * N * C * OC / s * 1e-9;
}

double backward_gflops(BackwardFn fn, Buffers& b, size_t N, int C, int OC, double min_seconds) {
    const double s = seconds_per_call([&] {
        fn(b.dinp.data(), b.dweight.data(), b.dbias.data(), b.dout.data(), b.inp.data(), b.weight.data(), N, C, OC);
    }, min_seconds);
    return 4.0 * N * C * OC / s * 1e-9;
}

// Relative norm difference of our forward against the llm.c-style one: a benchmark of a broken kernel
// would be meaningless, so the table shows it.
double forward_mismatch(Buffers& b, size_t N, int C, int OC) {
    std::vector<float> reference(N * OC);
    llmc_forward(reference.data(), b.inp.data(), b.weight.data(), b.bias.data(), N, C, OC);
    coldstart::cpu::matmul_forward(b.out.data(), b.inp.data(), b.weight.data(), b.bias.data(), N, C, OC);
    double diff = 0, norm = 0;
    for (size_t i = 0; i < reference.size(); ++i) {
        diff += std::pow(double(b.out[i]) - reference[i], 2);
        norm += std::pow(double(reference[i]), 2);
    }
    return std::sqrt(diff / norm);
}

struct Options {
    size_t rows = 256;
    double min_seconds = 0.5;
    bool naive = true;
};

Options parse_options(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--rows" && has_value) opt.rows = std::strtoull(argv[++i], nullptr, 10);
        else if (arg == "--min-seconds" && has_value) opt.min_seconds = std::atof(argv[++i]);
        else if (arg == "--no-naive") opt.naive = false;
        else coldstart::fail("unknown or incomplete argument '%s' (see the comment at the top of the source)", argv[i]);
    }
    if (opt.rows == 0) coldstart::fail("--rows must be positive");
    return opt;
}

// GFLOP/s of each implementation in one direction.
struct Speeds {
    double naive, llmc, llmc_ofast, ours;
};

Speeds forward_speeds(Buffers& b, const Shape& shape, const Options& opt) {
    const size_t N = opt.rows;
    auto run = [&](ForwardFn fn) { return forward_gflops(fn, b, N, shape.C, shape.OC, opt.min_seconds); };
    return {opt.naive ? run(naive_forward) : NAN, run(llmc_forward), run(llmc_ofast_forward),
            run(coldstart::cpu::matmul_forward)};
}

Speeds backward_speeds(Buffers& b, const Shape& shape, const Options& opt) {
    const size_t N = opt.rows;
    auto run = [&](BackwardFn fn) { return backward_gflops(fn, b, N, shape.C, shape.OC, opt.min_seconds); };
    return {opt.naive ? run(naive_backward) : NAN, run(llmc_backward), run(llmc_ofast_backward),
            run(coldstart::cpu::matmul_backward)};
}

void print_speeds(const Speeds& s) {
    std::printf(" | %6.1f %6.1f %6.1f %6.1f %5.1fx %5.1fx", s.naive, s.llmc, s.llmc_ofast, s.ours, s.ours / s.llmc,
                s.ours / s.llmc_ofast);
}

void print_row(const Shape& shape, int threads, const Options& opt) {
    Buffers b(opt.rows, shape.C, shape.OC);
    omp_set_num_threads(threads);
    const double mismatch = forward_mismatch(b, opt.rows, shape.C, shape.OC);
    const Speeds forward = forward_speeds(b, shape, opt);
    const Speeds backward = backward_speeds(b, shape, opt);
    std::printf("%-8s %5d %6d %3d", shape.name, shape.C, shape.OC, threads);
    print_speeds(forward);
    print_speeds(backward);
    std::printf(" | %.1e\n", mismatch);
    std::fflush(stdout);
}

void print_header(size_t rows) {
    std::printf("matmul GFLOP/s, N = %zu rows (B*T); backward = dinp + dweight + dbias\n", rows);
    const char* columns = "naive  llm.c  Ofast  ours   xllmc  xOfast";
    std::printf("%-8s %5s %6s %3s | %-41s | %-41s | %s\n", "", "", "", "", "forward", "backward", "ours vs");
    std::printf("%-8s %5s %6s %3s | %s | %s | %s\n", "layer", "C", "OC", "thr", columns, columns, "llm.c");
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Options opt = parse_options(argc, argv);
        const Shape shapes[] = {{"qkv", 768, 2304}, {"attproj", 768, 768}, {"fc", 768, 3072},
                                {"fcproj", 3072, 768}, {"lm_head", 768, 50304}};
        print_header(opt.rows);
        for (const Shape& shape : shapes)
            for (int threads : {1, 2}) print_row(shape, threads, opt);
    } catch (const coldstart::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
