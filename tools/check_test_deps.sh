#!/usr/bin/env bash
# What `make test` needs besides the build: Python modules for the PyTorch oracles and the plot tools'
# tests, probed by importing each under the interpreter the tests run (PYTHON). Missing ones are installed
# from Debian when we are root with apt-get and PYTHON is Debian's /usr/bin/python3 (Debian's packages are
# for that one); otherwise one line names the Debian packages and the command that installs them, and the
# exit status is 1, so that no test fails for a missing package.
# Usage: check_test_deps.sh PYTHON [--check-only | --list-missing]
#   --check-only: never install, only report; --list-missing: print the missing packages, nothing else
set -u
python=${1:-/usr/bin/python3}
mode=${2:-}

# module:Debian package, in the order they are reported
modules="numpy:python3-numpy torch:python3-torch matplotlib:python3-matplotlib"

missing_packages() {
  local entry missing=()
  for entry in $modules; do
    "$python" -c "import ${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
  done
  echo "${missing[*]:-}"
}

missing=$(missing_packages)
[ "$mode" = --list-missing ] && { [ -n "$missing" ] && echo "$missing"; exit 0; }
[ -z "$missing" ] && exit 0

debian_python=0
[ "$(readlink -f "$(command -v "$python" 2>/dev/null || echo "$python")")" = "$(readlink -f /usr/bin/python3)" ] && debian_python=1
if [ "$mode" != --check-only ] && [ $debian_python = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "make test: installing the Debian packages its tests need: $missing"
  # shellcheck disable=SC2086
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  missing=$(missing_packages)
  [ -z "$missing" ] && exit 0
fi
if [ $debian_python = 1 ]; then
  echo "make test: missing Debian packages: $missing. Install them with: sudo apt-get install $missing (or: make deps)" >&2
else
  echo "make test: $python lacks the modules of the Debian packages $missing, which are for /usr/bin/python3:" \
       "sudo apt-get install $missing, then make test PYTHON=/usr/bin/python3" >&2
fi
exit 1
