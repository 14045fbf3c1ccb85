#!/usr/bin/env bash
# Finds what the GPU build uses by compiling and linking a probe program for each piece, never by
# asking the package manager (package names and layouts differ between distributions, pip wheels and
# tarballs). Usage: probe_cuda.sh NVCC OUT.mk
# Writes make variables to OUT.mk and prints one line per piece. Environment:
#   CUDNN_PATH, NCCL_PATH   a folder with include/ and lib/ (or lib64/), tried first
#   USE_CUDNN=0             do not look for cuDNN (the build then has only our attention kernel)
#   PYTHON                  interpreters whose site-packages may hold the nvidia-cudnn-cu* and
#                           nvidia-nccl-cu* wheels (default: python3 in PATH and /usr/bin/python3)
# cuBLASLt is required for the CUDA build (without it the trainer is built by the C++ compiler, as with
# NO_CUDA=1); cuDNN and NCCL are optional. A wheel ships only libcudnn.so.9 (no unversioned
# libcudnn.so for -lcudnn), so the probe also links -l:libcudnn.so.9, and the binary gets an rpath to
# the folder so that it runs without LD_LIBRARY_PATH.
set -u
nvcc=$1
out=$2
nvcc_path=$(command -v "$nvcc" || echo "$nvcc")
cuda_home=$(cd "$(dirname "$nvcc_path")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { printf 'probe_cuda: %s\n' "$*"; }

# link NAME SOURCE FLAGS...: compiles and links a probe program; its status says whether it worked.
link() {
  local name=$1 src=$2
  shift 2
  printf '%s\n' "$src" >"$tmp/$name.cu"
  "$nvcc" -std=c++17 "$tmp/$name.cu" -o "$tmp/$name" "$@" >"$tmp/$name.log" 2>&1
}

# Folders that may hold a wheel's include/ and lib/: <site-packages>/nvidia/<name>[/...].
wheel_dirs() {  # wheel_dirs HEADER
  local header=$1 py
  for py in ${PYTHON:-} python3 /usr/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    "$py" - "$header" 2>/dev/null <<'PY'
import glob, os, site, sys
roots = list(site.getsitepackages()) + [site.getusersitepackages()]
seen = set()
for root in roots:
    for h in glob.glob(os.path.join(root, "nvidia", "**", "include", sys.argv[1]), recursive=True):
        d = os.path.dirname(os.path.dirname(h))
        if d not in seen:
            seen.add(d)
            print(d)
PY
  done
}

# find_library VAR HEADER LIB SONAME SOURCE PATHVAR: tries the given folder, the toolkit, the system,
# then pip wheels; sets VAR_FOUND, VAR_CFLAGS, VAR_LIBS, VAR_WHERE.
find_library() {
  local var=$1 header=$2 lib=$3 soname=$4 src=$5 given=$6 dir libdir flags
  local candidates=()
  [ -n "$given" ] && candidates+=("$given")
  candidates+=("$cuda_home" /usr /usr/local)
  while IFS= read -r dir; do [ -n "$dir" ] && candidates+=("$dir"); done < <(wheel_dirs "$header")
  for dir in "${candidates[@]}"; do
    [ -f "$dir/include/$header" ] || { [ "$dir" = /usr ] && [ -f "/usr/include/$header" ]; } || continue
    for libdir in "$dir/lib" "$dir/lib64" /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu; do
      [ -d "$libdir" ] || continue
      for l in "-l$lib" "-l:$soname"; do
        flags="-I$dir/include"
        if link "$var" "$src" $flags "-L$libdir" "$l"; then
          eval "${var}_FOUND=1; ${var}_CFLAGS=\"$flags\"; ${var}_LIBS=\"-L$libdir $l -Xlinker -rpath,$libdir\"; ${var}_WHERE=\"$dir (library in $libdir)\""
          return 0
        fi
      done
    done
  done
  eval "${var}_FOUND=0; ${var}_CFLAGS=; ${var}_LIBS=; ${var}_WHERE="
  return 1
}

cublaslt_src='#include <cublasLt.h>
int main() { return cublasLtGetVersion() > 0 ? 0 : 1; }'
say "CUDA Toolkit: $cuda_home ($("$nvcc" --version | grep -o 'release [0-9.]*'))"
if ! link cublaslt "$cublaslt_src" -lcublasLt; then
  say "cuBLASLt: not found with $nvcc (cublasLt.h and libcublasLt.so come with the CUDA Toolkit): the trainer is built without CUDA"
  sed 's/^/  /' "$tmp/cublaslt.log" | head -5
  { echo "# written by tools/probe_cuda.sh; delete to probe again"; echo "CUBLASLT_FOUND := 0"; } >"$out"
  exit 0
fi
say "cuBLASLt: found"

CUDNN_FOUND=0 CUDNN_CFLAGS= CUDNN_LIBS= CUDNN_WHERE=
if [ "${USE_CUDNN:-1}" = 0 ]; then
  say "cuDNN: not used (USE_CUDNN=0)"
else
  cudnn_src='#include <cudnn.h>
#include <cstdio>
int main() { std::printf("%zu\n", cudnnGetVersion()); return CUDNN_MAJOR >= 9 ? 0 : 1; }'
  if find_library CUDNN cudnn.h cudnn libcudnn.so.9 "$cudnn_src" "${CUDNN_PATH:-}"; then
    say "cuDNN: $CUDNN_WHERE ($(grep -hE '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "${CUDNN_CFLAGS#-I}"/cudnn_version.h 2>/dev/null | awk '{printf "%s%s", sep, $3; sep="."}'))"
  else
    say "cuDNN: not found (version 9 needed; set CUDNN_PATH=<folder with include/ and lib/>, or pip install nvidia-cudnn-cu13): --attention cudnn unavailable"
  fi
fi

nccl_src='#include <nccl.h>
int main() { int v = 0; return ncclGetVersion(&v) == ncclSuccess ? 0 : 1; }'
if find_library NCCL nccl.h nccl libnccl.so.2 "$nccl_src" "${NCCL_PATH:-}"; then
  say "NCCL: $NCCL_WHERE (found; multi-GPU training, issue 8, will use it)"
else
  say "NCCL: not found (optional today; set NCCL_PATH=<folder with include/ and lib/>)"
fi

# The GPUs present, as compute capabilities without the dot (9.0 -> 90).
archs=
if command -v nvidia-smi >/dev/null 2>&1; then
  archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d '. ' | grep -E '^[0-9]+$' | sort -u | tr '\n' ' ')
fi
if [ -z "$archs" ]; then
  gpu_src='#include <cuda_runtime.h>
#include <cstdio>
int main() { int n = 0; if (cudaGetDeviceCount(&n) != cudaSuccess) return 1;
  for (int i = 0; i < n; ++i) { cudaDeviceProp p; cudaGetDeviceProperties(&p, i); std::printf("%d%d\n", p.major, p.minor); } }'
  link gpus "$gpu_src" && archs=$("$tmp/gpus" 2>/dev/null | sort -u | tr '\n' ' ')
fi
if [ -n "$archs" ]; then say "GPUs present: compute capability ${archs% }"; else say "no GPU present"; fi

{
  echo "# written by tools/probe_cuda.sh; delete to probe again"
  echo "CUBLASLT_FOUND := 1"
  echo "CUDA_HOME := $cuda_home"
  echo "CUDNN_FOUND := $CUDNN_FOUND"
  echo "CUDNN_CFLAGS := $CUDNN_CFLAGS"
  echo "CUDNN_LIBS := $CUDNN_LIBS"
  echo "NCCL_FOUND := $NCCL_FOUND"
  echo "NCCL_CFLAGS := $NCCL_CFLAGS"
  echo "NCCL_LIBS := $NCCL_LIBS"
  echo "DETECTED_GPU_ARCHS := ${archs% }"
} >"$out"
