// The house's floors (tools/check_includes.py): the repository keeps them, and the check is not one that
// cannot fail: a deliberately forbidden include in a small tree of the same shape is reported.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "test/test_util.h"

using test_util::contains;

namespace {

test_util::CommandResult check_includes(const std::string& root) {
    return test_util::run_command(test_util::python() + " tools/check_includes.py " + root + " 2>&1");
}

// Writes `text` at root/relative, creating its folders.
void put(const std::string& root, const std::string& relative, const std::string& text) {
    const std::filesystem::path path = std::filesystem::path(root) / relative;
    std::filesystem::create_directories(path.parent_path());
    test_util::write_bytes(path.string(), text.data(), text.size());
}

}  // namespace

TEST_CASE("layout: every include of the repository goes down a floor") {
    const test_util::CommandResult r = check_includes(".");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "every include goes down a floor"));
}

TEST_CASE("layout: an include that goes up, sideways or into the emulator is reported with its line") {
    test_util::TempDir tree;
    for (const char* header : {"model/gpt2_config.h", "optim/optimizer.h", "optim/cuda/step_sums.cuh", "common/error.h",
                               "common/cuda/common.cuh", "backend/backend.h", "emu/device.h", "layers/matmul.h"})
        put(tree.path, header, "#pragma once\n");
    // Allowed: down a floor, within a folder, a system header.
    put(tree.path, "layers/matmul.cpp", "#include \"layers/matmul.h\"\n#include <vector>\n#include \"model/gpt2_config.h\"\n");
    put(tree.path, "backend/x.cpp", "#include \"optim/cuda/step_sums.cuh\"\n#include \"common/cuda/common.cuh\"\n");
    put(tree.path, "train_gpt2.cu", "#include \"backend/backend.h\"\n");
    CHECK(check_includes(tree.path).exit_code == 0);

    SUBCASE("sideways: a layer's kernel includes an optimizer's") {
        put(tree.path, "layers/cuda/k.cu", "#include \"common/cuda/common.cuh\"\n\n#include \"optim/cuda/step_sums.cuh\"\n");
        const test_util::CommandResult r = check_includes(tree.path);
        CHECK(r.exit_code == 1);
        CHECK(contains(r.output, "layers/cuda/k.cu:3: includes optim/cuda/step_sums.cuh; layers/cuda may include"));
    }
    SUBCASE("up: the model's description includes a backend") {
        put(tree.path, "model/gpt2_config.cpp", "#include \"backend/backend.h\"\n");
        const test_util::CommandResult r = check_includes(tree.path);
        CHECK(r.exit_code == 1);
        CHECK(contains(r.output, "model/gpt2_config.cpp:1: includes backend/backend.h"));
    }
    SUBCASE("the product includes the emulated device") {
        put(tree.path, "common/cuda/common.cu", "#include \"emu/device.h\"\n");
        const test_util::CommandResult r = check_includes(tree.path);
        CHECK(r.exit_code == 1);
        CHECK(contains(r.output, "common/cuda/common.cu:1: includes emu/device.h"));
    }
    SUBCASE("CPU code includes CUDA's helpers") {
        put(tree.path, "common/error.cpp", "#include \"common/cuda/common.cuh\"\n");
        CHECK(check_includes(tree.path).exit_code == 1);
    }
}
