#include "optim/grad_norm.h"

#include <vector>

namespace coldstart {

double sum_of_squares(const float* x, size_t n) {
    constexpr size_t kBlock = 1 << 16;
    const size_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(blocks, 0.0);
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; ++b) {
        const size_t end = b * kBlock + kBlock < n ? b * kBlock + kBlock : n;
        double s = 0;
        for (size_t i = b * kBlock; i < end; ++i) s += double(x[i]) * double(x[i]);
        partial[b] = s;
    }
    double total = 0;
    for (double p : partial) total += p;
    return total;
}

}  // namespace coldstart
