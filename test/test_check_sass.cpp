// The static performance checks (tools/check_sass.py): the hot kernels compile for sm_90 without spills or
// a local stack frame and keep their 128-bit accesses, and the check is not one that cannot fail: a
// deliberately bad kernel (a dynamically indexed local array, scalar loads) is reported. Without nvcc the
// script says it skipped, and so do these tests.
#include <doctest/doctest.h>

#include <string>

#include "test/test_util.h"

using test_util::contains;

namespace {

test_util::CommandResult check_sass(const std::string& args) {
    return test_util::run_command(test_util::python() + " tools/check_sass.py " + args + " 2>&1");
}

}  // namespace

TEST_CASE("static checks: the hot kernels have no spills or stack frames and keep their 128-bit instructions (sm_90)") {
    test_util::TempDir out;
    const test_util::CommandResult r = check_sass("--out " + out.path);
    INFO(r.output);
    if (contains(r.output, "check_sass: skipped")) {
        MESSAGE("skipped: " << r.output);
        return;
    }
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "every hot kernel is free of spills"));
    CHECK(contains(r.output, "ok      layernorm_backward_kernel<__nv_bfloat16, 8>"));
}

TEST_CASE("static checks: a kernel with a local stack frame or scalar loads fails, and so does a rule that matches nothing") {
    test_util::TempDir dir;
    const std::string source = dir / "bad.cu", table = dir / "table.json";
    const std::string kernels =
        "struct alignas(16) Four { float v[4]; };\n"
        "__global__ void packed_kernel(Four* out, const Four* in) { out[threadIdx.x] = in[threadIdx.x]; }\n"
        "__global__ void scalar_kernel(float* out, const float* in) { out[threadIdx.x] = in[threadIdx.x]; }\n"
        "__global__ void stack_kernel(float* out, const float* in, int k) {\n"
        "    float a[64];\n"
        "    for (int j = 0; j < 64; ++j) a[j] = in[j];\n"
        "    for (int j = 0; j < k; ++j) a[(j * 7 + threadIdx.x) % 64] += a[j % 64];\n"
        "    out[threadIdx.x] = a[k % 64];\n"
        "}\n";
    test_util::write_bytes(source, kernels.data(), kernels.size());
    const std::string rules =
        "[{\"kernel\": \"packed_kernel\", \"require\": [\"LDG.128\", \"STG.128\"]},"
        " {\"kernel\": \"scalar_kernel\", \"require\": [\"LDG.128\"]},"
        " {\"kernel\": \"stack_kernel\", \"require\": []},"
        " {\"kernel\": \"renamed_kernel\", \"require\": []}]";
    test_util::write_bytes(table, rules.data(), rules.size());
    const test_util::CommandResult r = check_sass("--out " + dir.path + " --table " + table + " " + source);
    INFO(r.output);
    if (contains(r.output, "check_sass: skipped")) {
        MESSAGE("skipped: " << r.output);
        return;
    }
    CHECK(r.exit_code == 1);
    CHECK(contains(r.output, "ok      packed_kernel"));
    CHECK(contains(r.output, "FAIL    scalar_kernel"));
    CHECK(contains(r.output, "(no LDG.128)"));
    CHECK(contains(r.output, "FAIL    stack_kernel"));
    CHECK(contains(r.output, "stack frame 256 bytes"));
    CHECK(contains(r.output, "renamed_kernel                                               no kernel matches this rule"));
    CHECK(contains(r.output, "check_sass: 3 failure(s)"));
}
