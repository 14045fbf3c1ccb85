// What the two commands check before they build: make test's probe of its Python packages
// (tools/check_test_deps.sh), which with modules hidden names exactly the Debian packages that are missing
// and the command that installs them, and make train's check of its data (tools/check_data.sh).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "test/test_util.h"

using test_util::run_command;

namespace {

// A module path that stands in for the real modules: each of numpy, torch and matplotlib is a stub that
// imports (present) or raises ImportError (hidden). It comes first on PYTHONPATH, so the real ones never count.
std::string probe_with_hidden(const test_util::TempDir& dir, const std::vector<std::string>& hidden, const std::string& python) {
    run_command("rm -rf " + dir / "modules");
    for (const char* module : {"numpy", "torch", "matplotlib"}) {
        bool hide = false;
        for (const std::string& h : hidden) hide |= h == module;
        run_command("mkdir -p " + dir / "modules/" + module);
        const std::string body = hide ? "raise ImportError('hidden by the test')\n" : "";
        test_util::write_bytes(dir / "modules/" + module + "/__init__.py", body.data(), body.size());
    }
    const auto r = run_command("PYTHONPATH=" + dir / "modules" + " tools/check_test_deps.sh " + python + " --check-only");
    return std::to_string(r.exit_code) + ":" + r.output;
}

}  // namespace

TEST_CASE("make test's probe names exactly the hidden packages and how to install them") {
    test_util::TempDir dir;
    CHECK(probe_with_hidden(dir, {}, "/usr/bin/python3") == "0:");
    CHECK(probe_with_hidden(dir, {"torch"}, "/usr/bin/python3") ==
          "1:make test: missing Debian packages: python3-torch. Install them with: sudo apt-get install python3-torch (or: make deps)\n");
    CHECK(probe_with_hidden(dir, {"numpy", "matplotlib"}, "/usr/bin/python3") ==
          "1:make test: missing Debian packages: python3-numpy python3-matplotlib. Install them with: sudo apt-get install "
          "python3-numpy python3-matplotlib (or: make deps)\n");
    // Another interpreter: Debian's packages would not help it, and the line says which one they are for.
    run_command("ln -s /usr/bin/python3 " + dir / "other-python");
    CHECK(probe_with_hidden(dir, {"torch"}, dir / "other-python") ==  // a link to Debian's is Debian's
          "1:make test: missing Debian packages: python3-torch. Install them with: sudo apt-get install python3-torch (or: make deps)\n");
    run_command("printf '#!/bin/sh\\nexec /usr/bin/python3 \"$@\"\\n' > " + dir / "wrapper && chmod +x " + dir / "wrapper");
    CHECK(probe_with_hidden(dir, {"torch"}, dir / "wrapper") ==
          "1:make test: " + dir / "wrapper" + " lacks the modules of the Debian packages python3-torch, which are for "
          "/usr/bin/python3: sudo apt-get install python3-torch, then make test PYTHON=/usr/bin/python3\n");
    // --list-missing, which tools/check_deps.sh uses for `make deps`: the packages alone.
    const auto list = run_command("PYTHONPATH=" + dir / "modules" + " tools/check_test_deps.sh /usr/bin/python3 --list-missing");
    CHECK(list.output == "python3-torch\n");
}

TEST_CASE("make train checks its data before building anything, and says how to point DATA= or make shards") {
    test_util::TempDir dir;
    const auto r = run_command("make --no-print-directory train DATA=" + dir / "nowhere");
    CHECK(r.exit_code != 0);
    CHECK_MESSAGE(test_util::contains(r.output, "make train: missing " + dir / "nowhere/tinyshakespeare/tiny_shakespeare_train.bin " +
                                                    dir / "nowhere/tinyshakespeare/tiny_shakespeare_val.bin " +
                                                    dir / "nowhere/gpt2/gpt2_tokenizer.bin\n"), r.output);
    CHECK(test_util::contains(r.output, "make train DATA=/path/to/data"));
    CHECK(test_util::contains(r.output, "build/tools/make_shards --tokenizer bytes"));
    CHECK_FALSE(test_util::contains(r.output, "g++"));  // nothing was compiled
    CHECK_FALSE(test_util::contains(r.output, "nvcc"));
    // With the data present the check passes silently.
    const std::string shakespeare = test_util::data_path("tinyshakespeare");
    const auto ok = run_command("tools/check_data.sh " + shakespeare.substr(0, shakespeare.rfind('/')));
    CHECK(ok.exit_code == 0);
    CHECK(ok.output.empty());
}
