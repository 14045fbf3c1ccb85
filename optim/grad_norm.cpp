#include "optim/grad_norm.h"

#include <vector>

namespace coldstart {

double dot_product(const float* a, const float* b, size_t n) {
    constexpr size_t kBlock = 1 << 16;
    const size_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(blocks, 0.0);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < blocks; ++k) {
        const size_t end = k * kBlock + kBlock < n ? k * kBlock + kBlock : n;
        double s = 0;
        for (size_t i = k * kBlock; i < end; ++i) s += double(a[i]) * double(b[i]);
        partial[k] = s;
    }
    double total = 0;
    for (double p : partial) total += p;
    return total;
}

}  // namespace coldstart
