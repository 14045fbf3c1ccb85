// The fixed-order sum of column partials. Few columns (a bias: 768 to 3072) and up to 512 parts: one
// thread per column summing its parts one after the other would be a long chain of dependent loads,
// so a block (32 columns, kPartGroups) lets each thread take every kPartGroups-th part and then adds
// the groups in order: still one fixed order, with kPartGroups times the loads in flight.
#include "layers/cuda/column_sums.cuh"

#include <algorithm>

namespace coldstart::cuda {
namespace {

constexpr int kPartGroups = 16;

__global__ void add_partials_kernel(ColumnOutputs outputs, const float* partial, int parts, int width) {
    __shared__ float group_sums[kPartGroups][32];
    const int total = outputs.count * width;
    const int j = blockIdx.x * 32 + threadIdx.x;  // over (count, width)
    float s = 0.0f;
    if (j < total)
        for (int p = threadIdx.y; p < parts; p += kPartGroups) s += partial[size_t(p) * total + j];
    group_sums[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || j >= total) return;
    float sum = 0.0f;
    for (int g = 0; g < kPartGroups; ++g) sum += group_sums[g][threadIdx.x];
    // Chosen without indexing the parameter array: a dynamic index would copy it to a local stack frame.
    const int which = j / width;
    float* out = which == 0 ? outputs.out[0] : which == 1 ? outputs.out[1] : outputs.out[2];
    if (out) out[j % width] += sum;
}

}  // namespace

int column_parts(int N) { return int(std::min<size_t>(kMaxColumnParts, ceil_div(size_t(N), 64))); }

void add_partials(ColumnOutputs outputs, const float* partial, int parts, int width, cudaStream_t stream) {
    const dim3 block(32, kPartGroups);
    add_partials_kernel<<<unsigned(ceil_div(size_t(outputs.count) * width, 32)), block, 0, stream>>>(outputs, partial, parts,
                                                                                                     width);
    KERNEL_CHECK("add_partials_kernel");
}

}  // namespace coldstart::cuda
