// AddressSanitizer over device memory (the emulator's AddressSanitizer build, make test-emu-checks): device
// allocations are host allocations of exactly the size asked for, so a kernel reading one element past the
// end is stopped with a report that names the kernel's source line.
#include <doctest/doctest.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace {

// An off-by-one tile index: thread i reads element i + 1 of a 64-element tile.
__global__ void off_by_one_kernel(float* out, const float* in) { out[threadIdx.x] = in[threadIdx.x + 1]; }

}  // namespace

TEST_CASE("AddressSanitizer: an off-by-one tile index reads past a device allocation") {
    int pipe_fds[2];
    REQUIRE(pipe(pipe_fds) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {  // one block: it runs on this thread (the worker threads stay in the parent)
        dup2(pipe_fds[1], 2);
        float *in = nullptr, *out = nullptr;
        cudaMalloc(&in, 64 * sizeof(float));
        cudaMalloc(&out, 64 * sizeof(float));
        off_by_one_kernel<<<1, 64>>>(out, in);
        cudaDeviceSynchronize();
        _exit(0);
    }
    close(pipe_fds[1]);
    std::string report;
    char buffer[4096];
    for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) report.append(buffer, size_t(n));
    close(pipe_fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    CHECK(report.find("heap-buffer-overflow") != std::string::npos);
    CHECK(report.find("off_by_one_kernel") != std::string::npos);
    CHECK(report.find("test_asan.cu:15") != std::string::npos);
}
#endif
