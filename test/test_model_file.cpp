// llm.c model files, descriptors, parameter layout, checkpoints.
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "data/checkpoint.h"
#include "data/model_file.h"
#include "model/gpt2_config.h"
#include "optim/adamw.h"
#include "test/test_util.h"

using namespace coldstart;
using test_util::error_of;

namespace {

GPT2Config tiny() {
    GPT2Config c;
    c.max_seq_len = 8;
    c.vocab_size = 10;
    c.padded_vocab_size = 16;
    c.num_layers = 2;
    c.num_heads = 2;
    c.channels = 6;
    return c;
}

}  // namespace

TEST_CASE("model file: descriptors follow GPT-2's sizes") {
    const GPT2Config d12 = config_from_descriptor("d12");
    CHECK(d12.channels == 768);
    CHECK(d12.num_heads == 12);
    CHECK(d12.padded_vocab_size == 50304);
    CHECK(ParamLayout(d12).total == 124475904);  // llm.c's count for GPT-2 124M with the padded vocabulary
    CHECK(config_from_descriptor("gpt2:d24").channels == 1024);
    CHECK(config_from_descriptor("d48").num_heads == 25);
    CHECK(config_from_descriptor("d4").channels == 256);
    CHECK(error_of([] { config_from_descriptor("d13"); }) == "-e d13: GPT-2 descriptors exist for d1..d12, d24, d36 and d48");
    CHECK_FALSE(looks_like_descriptor("model.bin"));
    CHECK(looks_like_descriptor("gpt2:d2"));
}

TEST_CASE("model file: parameter tensors cover the buffer exactly once, in order") {
    const GPT2Config c = tiny();
    const auto slices = parameter_tensors(c);
    CHECK(slices.size() == 4 + 12 * size_t(c.num_layers));
    size_t next = 0;
    for (const TensorSlice& s : slices) {
        if (s.kind == QKVW && s.layer == 0) CHECK(s.offset == next);
        next = s.offset + s.numel;
        CHECK(size_t(s.rows) * size_t(s.cols) == s.numel);
    }
    CHECK(next == ParamLayout(c).total);
    CHECK(slices[0].name == "wte");
    CHECK(slices[0].is_matrix);
    CHECK(slices[2].name == "h0.ln1w");
    CHECK_FALSE(slices[2].is_matrix);
    CHECK(slices.back().name == "lnfb");
}

TEST_CASE("model file: fp32 and bf16 round trips; bf16 rounds to nearest even") {
    const GPT2Config c = tiny();
    std::vector<float> params(ParamLayout(c).total);
    init_parameters(params.data(), c, 7);
    test_util::TempDir dir;
    save_model_file(dir / "m32.bin", c, params.data(), ModelDtype::fp32);
    const LoadedModel m32 = load_model_file(dir / "m32.bin");
    CHECK(m32.params == params);
    CHECK(m32.config.describe() == c.describe());
    save_model_file(dir / "m16.bin", c, params.data(), ModelDtype::bf16);
    const LoadedModel m16 = load_model_file(dir / "m16.bin");
    CHECK(m16.stored_as == ModelDtype::bf16);
    for (size_t i = 0; i < params.size(); ++i) REQUIRE(m16.params[i] == bf16_to_float(float_to_bf16(params[i])));
    CHECK(test_util::relative_error(m16.params, params) < 4e-3);  // bf16 keeps 8 significant bits
    CHECK(float_to_bf16(1.0f + 1.0f / 256) == 0x3f80);            // a tie rounds to even (down)
    CHECK(float_to_bf16(1.0f + 3.0f / 256) == 0x3f82);            // a tie rounds to even (up)
    CHECK_FALSE(file_exists(dir / "m32.bin.tmp"));
}

TEST_CASE("model file: bad files are named with what was expected") {
    const GPT2Config c = tiny();
    std::vector<float> params(ParamLayout(c).total, 0.5f);
    test_util::TempDir dir;
    const std::string good = dir / "good.bin";
    save_model_file(good, c, params.data(), ModelDtype::fp32);
    std::vector<char> bytes = test_util::read_bytes(good);

    CHECK(error_of([&] { load_model_file(dir / "missing.bin"); }) ==
          "cannot open " + dir / "missing.bin" + " for reading: No such file or directory");
    auto with_header_int = [&](int index, int32_t value) {
        std::vector<char> b = bytes;
        std::memcpy(b.data() + 4 * index, &value, 4);
        test_util::write_bytes(dir / "bad.bin", b.data(), b.size());
        return error_of([&] { load_model_file(dir / "bad.bin"); });
    };
    CHECK(with_header_int(0, 1234) == dir / "bad.bin" + ": not a valid llm.c model file: magic number 1234, expected 20240326");
    CHECK(with_header_int(1, 4) == dir / "bad.bin" + ": llm.c model file version 4 is not supported, expected 3 or 5");
    CHECK(with_header_int(5, 4) == dir / "bad.bin" + ": channels 6 is not a multiple of num_heads 4");
    CHECK(with_header_int(7, 5) == dir / "bad.bin" + ": padded_vocab_size 5 is smaller than vocab_size 10");

    test_util::write_bytes(dir / "short.bin", bytes.data(), bytes.size() - 4);
    CHECK(error_of([&] { load_model_file(dir / "short.bin"); }).find(dir / "short.bin" + ": file is " + std::to_string(bytes.size() - 4) +
                                                                      " bytes, but a model with") == 0);
    CHECK(error_of([&] { load_model_file(dir / "short.bin"); }).find("(truncated)") != std::string::npos);
    test_util::write_bytes(dir / "header.bin", bytes.data(), 100);
    CHECK(error_of([&] { load_model_file(dir / "header.bin"); }) ==
          dir / "header.bin" + ": file is truncated: the 1024-byte header needs 1024 bytes, only 100 remain");
}

TEST_CASE("checkpoint: state files round-trip the optimizer, master weights and progress; mismatches are named") {
    const GPT2Config c = tiny();
    const auto tensors = parameter_tensors(c);
    const size_t n = ParamLayout(c).total;
    std::vector<float> params(n), grads(n);
    init_parameters(params.data(), c, 3);
    for (size_t i = 0; i < n; ++i) grads[i] = float(i % 7) - 3.0f;
    AdamWCpu opt({"adamw", 0.9f, 0.95f, 1e-8f, 0.1f}, tensors);
    opt.step(params.data(), grads.data(), {1e-3f, 1.0f, 1});

    test_util::TempDir dir;
    TrainingState state;
    state.step = 5;
    state.run = {{"parameters", n}, {"batch-size", 4}};
    state.progress = {{"loader", {1, 2, 3}}, {"rng", Rng(11).state()}};
    write_checkpoint(dir.path, c, params.data(), ModelDtype::bf16, state, opt);
    const CheckpointFiles files = checkpoint_files(dir.path, 5);
    CHECK(files.model == dir / "model_00000005.bin");
    CHECK(files.state == dir / "state_00000005_00000.bin");
    CHECK(file_exists(files.done));
    CHECK(latest_checkpoint(dir.path) == 5);

    AdamWCpu restored({"adamw", 0.9f, 0.95f, 1e-8f, 0.1f}, tensors);
    std::vector<float> master;
    const TrainingState read = read_state_file(files.state, n, restored, master);
    CHECK(read.step == 5);
    CHECK(read.run == state.run);
    CHECK(read.progress == state.progress);  // 64-bit random state words survive exactly
    CHECK(master == params);                  // a bf16 model file keeps fp32 master weights in the state
    // Same moments: the next step from the restored optimizer matches the original's bit for bit.
    std::vector<float> p1 = params, p2 = params;
    opt.step(p1.data(), grads.data(), {1e-3f, 1.0f, 2});
    restored.step(p2.data(), grads.data(), {1e-3f, 1.0f, 2});
    CHECK(p1 == p2);

    CHECK(error_of([&] { read_state_file(files.state, n + 1, restored, master); }) ==
          files.state + ": holds state for " + std::to_string(n) + " parameters, the model has " + std::to_string(n + 1));
    CHECK(error_of([&] { read_state_file(files.model, n, restored, master); }) ==
          files.model + ": not a valid coldstart state file: magic number 20240326, expected 20261125");
    std::vector<char> bytes = test_util::read_bytes(files.state);
    test_util::write_bytes(dir / "short.bin", bytes.data(), bytes.size() - 8);
    CHECK(error_of([&] { read_state_file(dir / "short.bin", n, restored, master); }).find(dir / "short.bin: file is truncated") == 0);

    // Version 3 came before the Lion family took the paper's names: AdamW's state still resumes, a Lion
    // family state (whose liona and lionar meant other optimizers) is refused with what changed.
    auto as_version_3 = [&](const std::string& from, const std::string& to) {
        std::vector<char> v = test_util::read_bytes(from);
        const int32_t three = 3;
        std::memcpy(v.data() + sizeof(int32_t), &three, sizeof(three));
        test_util::write_bytes(to, v.data(), v.size());
    };
    as_version_3(files.state, dir / "v3_adamw.bin");
    CHECK(read_state_file(dir / "v3_adamw.bin", n, restored, master).step == 5);
    auto lion = make_cpu_optimizer(test_util::test_optimizer("lionar"), tensors);
    test_util::TempDir lion_dir;
    write_checkpoint(lion_dir.path, c, params.data(), ModelDtype::fp32, state, *lion);
    as_version_3(checkpoint_files(lion_dir.path, 5).state, dir / "v3_lion.bin");
    CHECK(error_of([&] { read_state_file(dir / "v3_lion.bin", n, *lion, master); }).find(
              dir / "v3_lion.bin: a state file of version 3, from before the Lion family was renamed: its liona is today's lionar") == 0);
    CHECK(read_state_file(checkpoint_files(lion_dir.path, 5).state, n, *lion, master).step == 5);  // version 4 reads
}

TEST_CASE("checkpoint: the newest complete one is found; retention keeps the last N and every M-th") {
    const GPT2Config c = tiny();
    const size_t n = ParamLayout(c).total;
    std::vector<float> params(n, 0.25f);
    AdamWCpu opt({}, parameter_tensors(c));
    test_util::TempDir dir;
    CHECK(latest_checkpoint(dir.path) == -1);
    for (int64_t step : {10, 20, 30, 40, 50, 60}) {
        TrainingState state;
        state.step = step;
        state.run = {{"parameters", n}};
        write_checkpoint(dir.path, c, params.data(), ModelDtype::fp32, state, opt);
        prune_checkpoints(dir.path, 2, 40);  // the last two, and every fourth checkpoint of -n 10
    }
    for (int64_t step : {10, 20, 30})
        CHECK_MESSAGE(!file_exists(checkpoint_files(dir.path, step).model), step);
    for (int64_t step : {40, 50, 60}) {
        CHECK_MESSAGE(file_exists(checkpoint_files(dir.path, step).done), step);
        CHECK_MESSAGE(file_exists(checkpoint_files(dir.path, step).state), step);
    }
    // A checkpoint without its marker is incomplete: the newest complete one is found instead.
    remove_quietly(checkpoint_files(dir.path, 60).done);
    CHECK(latest_checkpoint(dir.path) == 50);
    test_util::write_bytes(dir / "DONE_00000070.tmp", "", 0);
    CHECK(latest_checkpoint(dir.path) == 50);
}
