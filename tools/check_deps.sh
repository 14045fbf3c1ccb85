#!/usr/bin/env bash
# Finds the build's dependencies by compiling a probe for each, not by asking the package manager.
# Usage: check_deps.sh CXX [--install] [--with-test-tools]
# Missing ones are installed from Debian when we are root with apt-get (or with --install); otherwise the
# message names the package to install. COLDSTART_NO_INSTALL=1 never installs (tools/gpu_check.sh sets
# it: the GPU machines have no network, and their headers come from a carried .deps/include).
set -u
cxx=${1:-g++}; shift || true
install=0; test_tools=0; after_install=0
for a in "$@"; do
  case $a in --install) install=1 ;; --with-test-tools) test_tools=1 ;; --after-install) after_install=1 ;; esac
done
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && install=1
[ "${COLDSTART_NO_INSTALL:-0}" = 1 ] && install=0

probe() {  # probe NAME DEBIAN_PACKAGE SOURCE [LINK_FLAGS]
  printf '%s\n' "$3" | $cxx -std=c++17 -x c++ - -o /dev/null ${4:-} >/dev/null 2>&1
}
missing=()
probe nlohmann nlohmann-json3-dev '#include <nlohmann/json.hpp>
int main() { return nlohmann::json::parse("1").get<int>() - 1; }' || missing+=(nlohmann-json3-dev)
probe doctest doctest-dev '#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>' || missing+=(doctest-dev)
# Boost.Context: the fibers of the emulated CUDA device (one per CUDA thread).
probe boost-context libboost-context-dev '#include <boost/context/detail/fcontext.hpp>
int main() { return 0; }' -lboost_context || missing+=(libboost-context-dev)
probe openmp libgomp1 '#include <omp.h>
int main() { return omp_get_max_threads() > 0 ? 0 : 1; }' -fopenmp || missing+=(libgomp1)
if [ $test_tools = 1 ]; then
  # shellcheck disable=SC2207
  missing+=($("$(dirname "$0")/check_test_deps.sh" /usr/bin/python3 --list-missing))
  # libFuzzer (make fuzz) comes with clang's runtime libraries.
  printf 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }\n' |
    clang++ -fsanitize=fuzzer -x c++ - -o /dev/null >/dev/null 2>&1 || missing+=(clang libclang-rt-14-dev)
fi
[ ${#missing[@]} = 0 ] && exit 0

if [ $install = 1 ] && [ $after_install = 0 ]; then
  echo "check_deps: installing missing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    && exec "$0" "$cxx" --after-install "$@"
  echo "check_deps: apt-get failed" >&2
fi
echo "check_deps: missing: ${missing[*]}. Install with: sudo apt-get install ${missing[*]} (or run: make deps); on a machine" \
  "without network, run make vendor-headers where the headers exist and bring .deps/ along" >&2
exit 1
