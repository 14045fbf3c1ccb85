// The line CI reads at the end of a suite, "N passed, M failed" (test cases), after doctest's own
// summary: a listener that keeps the counts, shared by the CPU suite and the GPU suite. Include it in the
// one file that defines DOCTEST_CONFIG_IMPLEMENT.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>

namespace doctest_counts {

inline unsigned passed = 0, failed = 0;

struct CountingListener : doctest::IReporter {
    explicit CountingListener(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats& stats) override {
        failed = stats.numTestCasesFailed;
        passed = stats.numTestCasesPassingFilters - stats.numTestCasesFailed;
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

// Runs the suite and prints the counts line (unless doctest was only asked for help or a listing).
inline int run(int argc, char** argv) {
    doctest::Context context(argc, argv);
    const int result = context.run();
    if (context.shouldExit()) return result;
    std::printf("%u passed, %u failed\n", passed, failed);
    return result;
}

}  // namespace doctest_counts
