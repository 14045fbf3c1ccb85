// The doctest runner of the GPU suite. Like the CPU suite's it ends with "N passed, M failed". Without
// a usable GPU it says why, prints "0 passed, 0 failed" and fails (exit 1), unless
// COLDSTART_ALLOW_NO_GPU=1 (make test-gpu ALLOW_NO_GPU=1) says that a machine without one is expected:
// a GPU machine whose driver is broken must never look green.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
unsigned g_passed = 0, g_failed = 0;

struct CountingListener : doctest::IReporter {
    explicit CountingListener(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats& stats) override {
        g_failed = stats.numTestCasesFailed;
        g_passed = stats.numTestCasesPassingFilters - stats.numTestCasesFailed;
    }
    void test_case_start(const doctest::TestCaseData&) override {}
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("counting", 1, CountingListener);
}  // namespace

int main(int argc, char** argv) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        const char* allow = std::getenv("COLDSTART_ALLOW_NO_GPU");
        const bool allowed = allow && std::strcmp(allow, "1") == 0;
        std::printf("test-gpu: no usable CUDA GPU (%s); no GPU test ran.%s\n",
                    err != cudaSuccess ? cudaGetErrorString(err) : "no device found",
                    allowed ? " ALLOW_NO_GPU=1: not a failure." : " Failing: on a machine without a GPU run make test-gpu ALLOW_NO_GPU=1.");
        std::printf("0 passed, 0 failed\n");
        return allowed ? 0 : 1;
    }
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    std::printf("test-gpu: %s (compute capability %d.%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    doctest::Context context(argc, argv);
    const int result = context.run();
    if (context.shouldExit()) return result;
    std::printf("%u passed, %u failed\n", g_passed, g_failed);
    return result;
}
