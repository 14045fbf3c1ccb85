#!/usr/bin/env bash
# The one device check of the CUDA path: a single call on a lent GPU machine (H100/H200, 16 cores, CUDA
# 13.0, python3 with torch and the nvidia-cudnn-cu13 / nvidia-nccl-cu13 wheels, no network), which cannot
# be retried. Five stages, in this order, each under its own `timeout`, all within one budget
# (GPU_CHECK_SECONDS, 480 s on a GPU, the build included):
#   env       what is there (GPU, driver, nvcc, g++, torch, cuDNN/NCCL wheels, headers, profilers)
#   build     make -k -j16 GPU_ARCHS=90 gpu-build train_gpt2_cpu
#   test-gpu  the GPU suite, build/test_gpu (cuDNN's error log on, the wheels' libraries on the path)
#   bench     tools/bench_gpu.sh: GPT-2 124M tokens/s and MFU, PyTorch's under its own timeout, the
#             metrics' cost, the per-kernel table (ncu where it reads counters, else CUDA events)
#   sanitize  tools/sanitize_gpu.sh: compute-sanitizer memcheck, racecheck, synccheck on a tiny model
# A stage runs only if what it needs was built in this call (each stage's own binary); one that fails
# or times out never stops the next. A stage gets at most its cap, and never the time the later stages'
# minimums need. Every stage writes its full log to $OUT (or out/gpu_check): env.log, build.log,
# test_gpu.log, bench.log, sanitize.log, and summary.txt: six files, none in a subfolder (the device
# tool returns at most 8, 2 folders deep). The last lines printed are the summary table: stage, verdict,
# seconds, headline figure. Verdicts: ok; FAIL(status); timeout (its cap ran out); skipped (what it needs
# is missing, or the budget is spent: the headline says which); unavailable (this machine refuses a tool,
# e.g. compute-sanitizer's "Device not supported": not a failure of our code). Exit status 0 when every
# stage is ok or unavailable, else 1.
#
# nlohmann/json and doctest come from the system or from .deps/include (`make vendor-headers` where
# they exist, then carry .deps/); nothing is ever installed (the build's dependency check is told not
# to try apt-get). Without the shared data folder, random-token shards are written to build/gpu_check_data.
#
# Modes:
#   GPU_CHECK_EMULATED=1  no GPU: the same stages against the emulated CUDA device: make emu-build;
#                         make test-emu; ./train_gpt2_emu at a tiny size (timings labelled emulated, no
#                         PyTorch ratio); make test-emu-checks (AddressSanitizer and the schedule check).
#   GPU_CHECK_SHORT=1     with EMULATED, the form CI runs: a few suite cases (EMU_TEST_ARGS, passed to
#                         make test-emu), fewer under the sanitizers (test-emu-checks) and a 2-step bench.
#   GPU_CHECK_STUBS=DIR   the mechanics alone (test/test_gpu_check.cpp): each stage runs DIR/<stage>.sh
#                         in DIR, and the gates look for the binaries there.
# Variables: OUT, GPU_CHECK_SECONDS, GPU_ARCHS (90), JOBS (16), DATA, PYTHON (python3).
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
self="$repo/tools/gpu_check.sh"
start=$(date +%s)
out=${OUT:-$repo/out/gpu_check}
mkdir -p "$out"
out=$(cd "$out" && pwd)
archs=${GPU_ARCHS:-90}
jobs=${JOBS:-$([ "${GPU_CHECK_EMULATED:-0}" = 1 ] && nproc || echo 16)}
py=${PYTHON:-python3}
short=${GPU_CHECK_SHORT:-0}
if [ -n "${GPU_CHECK_STUBS:-}" ]; then mode=stubs
elif [ "${GPU_CHECK_EMULATED:-0}" = 1 ]; then mode=emulated
else mode=gpu; fi
export COLDSTART_NO_INSTALL=1  # tools/check_deps.sh: report a missing package, never apt-get it

# The stages, in order: name, log, cap and minimum (seconds), the files it needs from the build.
stages=(env build test-gpu bench sanitize)
declare -A log cap min needs
log=([env]=env.log [build]=build.log [test-gpu]=test_gpu.log [bench]=bench.log [sanitize]=sanitize.log)
case $mode/$short in
  gpu/*)
    budget=${GPU_CHECK_SECONDS:-480}
    cap=([env]=30 [build]=210 [test-gpu]=100 [bench]=150 [sanitize]=90)
    min=([env]=5 [build]=60 [test-gpu]=30 [bench]=60 [sanitize]=30)
    needs=([test-gpu]="build/test_gpu" [bench]="train_gpt2" [sanitize]="train_gpt2") ;;
  emulated/1)
    budget=${GPU_CHECK_SECONDS:-1500}
    cap=([env]=30 [build]=900 [test-gpu]=120 [bench]=60 [sanitize]=300)
    min=([env]=5 [build]=30 [test-gpu]=20 [bench]=10 [sanitize]=20)
    needs=([test-gpu]="build/emu/test_gpu" [bench]="train_gpt2_emu" [sanitize]="") ;;
  emulated/*)
    budget=${GPU_CHECK_SECONDS:-3600}
    cap=([env]=30 [build]=1200 [test-gpu]=1200 [bench]=300 [sanitize]=1200)
    min=([env]=5 [build]=60 [test-gpu]=60 [bench]=30 [sanitize]=60)
    needs=([test-gpu]="build/emu/test_gpu" [bench]="train_gpt2_emu" [sanitize]="") ;;
  stubs/*)
    budget=${GPU_CHECK_SECONDS:-60}
    cap=([env]=${GPU_CHECK_STUB_CAP:-10} [build]=${GPU_CHECK_STUB_CAP:-10} [test-gpu]=${GPU_CHECK_STUB_CAP:-10}
         [bench]=${GPU_CHECK_STUB_CAP:-10} [sanitize]=${GPU_CHECK_STUB_CAP:-10})
    min=([env]=1 [build]=1 [test-gpu]=1 [bench]=1 [sanitize]=1)
    needs=([test-gpu]="build/test_gpu" [bench]="train_gpt2" [sanitize]="train_gpt2") ;;
esac
# The short form's suite cases: a doctest -tc filter (',' separates patterns, so none may hold one; '*'
# stands for the spaces, so that the filter stays one word however a recipe passes it on).
short_tests=${GPU_CHECK_SHORT_TESTS:-"*gradient*norm*,*unknown*optimizer*,*head*size*above*,*vs*CPU*model*fp32*"}
# The sanitize stage's: kernels only. Under AddressSanitizer the emulated model test takes minutes on two
# cores, and CI has run make test-emu-checks in full just before.
short_sanitize_tests=${GPU_CHECK_SHORT_SANITIZE_TESTS:-"*gradient*norm*,*unknown*optimizer*"}

elapsed() { echo $(($(date +%s) - start)); }

# ---- what each stage runs (on the GPU, or the emulated device); `gpu_check.sh --stage NAME` ----

headers_report() {  # one line per header the build needs, and where it comes from
  local h
  for h in nlohmann/json.hpp doctest/doctest.h; do
    if echo "#include <$h>" | g++ -std=c++17 -x c++ -fsyntax-only - 2>/dev/null; then echo "header $h: system"
    elif [ -f "$repo/.deps/include/$h" ]; then echo "header $h: .deps/include"
    else echo "header $h: MISSING (run make vendor-headers on a machine that has it and carry .deps)"; fi
  done
}

stage_env() {
  echo "== environment $(date -u), $mode mode"
  headers_report
  echo "g++: $(g++ --version 2>/dev/null | head -1)"
  echo "cores: $(nproc), memory: $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
  if [ "$mode" = emulated ]; then
    echo "device: the emulated CUDA device (no GPU needed)"
    return 0
  fi
  timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi failed"
  local nvcc
  nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
  if [ -n "$nvcc" ]; then echo "nvcc: $nvcc, $("$nvcc" --version | grep -o 'release [0-9.]*')"; else echo "nvcc: not found"; fi
  echo "compute-sanitizer: $(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || echo 'not found')"
  echo "ncu: $(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || echo 'not found')"
  timeout 20 "$py" - <<'PY' 2>&1 || echo "python3: the torch probe failed or timed out (20 s)"
import glob, os, site
try:
    import torch
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU visible to torch: {torch.cuda.is_available()}")
except Exception as e:
    print(f"torch: not importable ({e})")
for name, header in (("cuDNN", "cudnn.h"), ("NCCL", "nccl.h")):
    found = []
    for root in site.getsitepackages() + [site.getusersitepackages()]:
        found += glob.glob(os.path.join(root, "nvidia", "**", "include", header), recursive=True)
    print(f"{name} wheels: {[os.path.dirname(os.path.dirname(h)) for h in found] or 'none'}")
PY
  # env fails where nothing can follow: no GPU, or a header the build needs is missing.
  timeout 10 nvidia-smi -L >/dev/null 2>&1 && ! headers_report | grep -q MISSING
}

stage_build() {
  if [ "$mode" = emulated ]; then make -k -j"$jobs" emu-build
  else make -k -j"$jobs" GPU_ARCHS="$archs" gpu-build train_gpt2_cpu; fi
}

stage_test_gpu() {
  if [ "$mode" = emulated ]; then
    if [ "$short" = 1 ]; then make test-emu EMU_TEST_ARGS="-tc=$short_tests"; else make test-emu; fi
    return
  fi
  # cuDNN's own log (errors only, to stderr: this log) says why a graph or plan is refused.
  COLDSTART_DATA="$DATA" CUDNN_LOGLEVEL_DBG=1 CUDNN_LOGDEST_DBG=stderr ./build/test_gpu
}

stage_bench() {
  if [ "$mode" = emulated ]; then
    BENCH_EMULATED=1 BENCH_STEPS=$([ "$short" = 1 ] && echo 2 || echo 3) BENCH_SECONDS=$((stage_limit - 5)) ./tools/bench_gpu.sh
  else
    PYTHON=$py BENCH_STEPS=25 BENCH_SECONDS=$((stage_limit - 5)) BENCH_TORCH_SECONDS=${BENCH_TORCH_SECONDS:-80} ./tools/bench_gpu.sh
  fi
}

stage_sanitize() {
  if [ "$mode" = emulated ]; then
    if [ "$short" = 1 ]; then make test-emu-checks EMU_TEST_ARGS="-tc=$short_sanitize_tests"; else make test-emu-checks; fi
    return
  fi
  ATTENTIONS="flash$([ "$CUDNN_ON" = 1 ] && echo ' cudnn')" SANITIZE_SECONDS=$((stage_limit - 5)) ./tools/sanitize_gpu.sh
}

if [ "${1:-}" = --stage ]; then
  cd "$repo"
  stage_limit=${2#*=}
  name=${3:-}
  "stage_${name//-/_}"
  exit
fi

# ---- the headline figure of each stage, from its log ----

last_match() { grep -E "$1" "$out/$2" 2>/dev/null | tail -1; }
headline() {
  case $1 in
    env)
      if [ "$mode" = emulated ]; then echo "emulated device; $(last_match '^g\+\+:' env.log | cut -c6-60)"
      else
        local gpu nvcc torch
        gpu=$(grep -A1 '^name, driver' "$out/env.log" 2>/dev/null | tail -1 | cut -d, -f1,2)
        nvcc=$(last_match '^nvcc:' env.log | grep -o 'release [0-9.]*')
        torch=$(last_match '^torch' env.log | cut -d, -f1)
        echo "${gpu:-no GPU seen by nvidia-smi}; ${nvcc:-no nvcc}; ${torch:-no torch}"
      fi
      grep -q 'MISSING' "$out/env.log" 2>/dev/null && echo "; headers MISSING: see env.log" ;;
    build)
      local made=() missing=() f
      for f in $(build_products); do if [ "${built[$f]:-0}" = 1 ]; then made+=("${f##*/}"); else missing+=("${f##*/}"); fi; done
      printf '%s' "built: ${made[*]:-nothing}${missing[*]:+; NOT built: ${missing[*]}}"
      [ "$mode" != emulated ] && [ -f build/cuda.mk ] &&
        printf '; sm_%s, cuDNN %s, NCCL %s (build/cuda.mk)' "$archs" "$(on_off "$(mk_value CUDNN_FOUND)")" "$(on_off "$(mk_value NCCL_FOUND)")"
      echo ;;
    test-gpu) last_match '^[0-9]+ passed, [0-9]+ failed' test_gpu.log ;;
    bench) last_match '^bench: ' bench.log | cut -c8- ;;
    sanitize)
      if [ "$mode" = emulated ]; then last_match '^[0-9]+ passed, [0-9]+ failed' sanitize.log
      else last_match '^sanitize-gpu: ' sanitize.log | cut -c15-; fi ;;
    *) last_match '.' "${log[$1]}" ;;
  esac
}

# ---- the build's own record, and what each stage needs from it ----

mk_value() { sed -n "s/^$1 := //p" build/cuda.mk 2>/dev/null | tail -1; }
on_off() { [ "$1" = 1 ] && echo on || echo off; }
build_products() {
  case $mode in
    emulated) echo build/emu/test_gpu train_gpt2_emu ;;
    gpu) echo train_gpt2 train_gpt2_cpu build/test_gpu build/tools/bench_gpu_kernels ;;
    stubs) echo build/test_gpu train_gpt2 ;;
  esac
}
# A file this call's build made (or found up to date), not one an earlier build left behind: asked once,
# right after the build, for every product (built[file] = 1 or 0).
fresh() {
  [ -e "$1" ] || return 1
  [ "$1" -nt "$call_started" ] && return 0
  [ "$mode" != stubs ] && make -q GPU_ARCHS="$archs" "$1" >/dev/null 2>&1
}
declare -A built
record_build() {
  local f
  for f in $(build_products); do if fresh "$f"; then built[$f]=1; else built[$f]=0; fi; done
}

# Libraries from Python wheels: cuDNN loads nvrtc (and its engine libraries) itself, so its folder and
# nvrtc's must be on LD_LIBRARY_PATH (the binaries' RUNPATH does not apply to those loads). The cuDNN and
# NCCL folders are the ones the build linked (build/cuda.mk: the same wheels torch uses); nvrtc (a
# wheel's, else the toolkit's) comes through a folder of links to it alone, so that nothing else in its
# folder (a wheel's cuBLAS) displaces what the binaries' RUNPATH names.
wheel_library_path() {
  local dirs=() d lib links=build/gpu_check_libs
  for d in $(mk_value CUDNN_LIBS) $(mk_value NCCL_LIBS); do
    case $d in -L*) dirs+=("${d#-L}") ;; esac
  done
  lib=$(timeout 20 "$py" - 2>/dev/null <<'PY'
import glob, os, site
for root in site.getsitepackages() + [site.getusersitepackages()]:
    for lib in sorted(glob.glob(os.path.join(root, "nvidia", "**", "libnvrtc.so.*"), recursive=True)):
        print(os.path.dirname(lib))
        raise SystemExit
PY
  )
  [ -z "$lib" ] && [ -n "$(mk_value CUDA_HOME)" ] && lib=$(mk_value CUDA_HOME)/lib64
  if [ -n "$lib" ] && ls "$lib"/libnvrtc*.so* >/dev/null 2>&1; then
    rm -rf "$links" && mkdir -p "$links" && ln -s "$lib"/libnvrtc*.so* "$links"/ && dirs+=("$(pwd)/$links")
  fi
  local path=
  for d in "${dirs[@]}"; do [ -d "$d" ] && case ":$path:" in *":$d:"*) ;; *) path=${path:+$path:}$d ;; esac; done
  echo "$path"
}

# ---- the data every GPU stage reads: the shared folder where it is, else random-token shards ----

find_data() {
  local d
  for d in ${DATA:-} ../shared/data ./shared/data build/gpu_check_data; do
    [ -f "$d/tinyshakespeare/tiny_shakespeare_train.bin" ] && { echo "$d"; return; }
  done
  d=build/gpu_check_data
  mkdir -p "$d/tinyshakespeare"
  # Only speed, and correctness against the CPU, are measured on these, never what is learnt.
  timeout 60 "$py" - "$d/tinyshakespeare" <<'PY' >&2 || echo "data: could not write random shards to $d" >&2
import array, random, sys
random.seed(1)
for name, n in (("tiny_shakespeare_train.bin", 400000), ("tiny_shakespeare_val.bin", 40000)):
    header = array.array("i", [20240520, 1, n] + [0] * 253)
    tokens = array.array("H", (random.randrange(50257) for _ in range(n)))
    with open(f"{sys.argv[1]}/{name}", "wb") as f:
        header.tofile(f)
        tokens.tofile(f)
PY
  echo "$d"
}

# ---- running one stage ----

declare -A verdict seconds
# verdict_of STATUS SECONDS LIMIT: 137 is a timeout only when the cap ran out (else a kill, e.g. memory).
verdict_of() {
  case $1 in
    0) echo ok ;;
    77) echo unavailable ;;
    124) echo timeout ;;
    137) if [ "$2" -ge "$3" ]; then echo timeout; else echo "FAIL(137)"; fi ;;
    *) echo "FAIL($1)" ;;
  esac
}
# The seconds that must stay free when stage $1 starts: the later stages' minimums, each stage's grace
# after its timeout (5 s: timeout -k), and 10 s for the summary, so that the call ends within the budget.
reserved_after() {
  local s after=0 total=15
  for s in "${stages[@]}"; do
    [ "$after" = 1 ] && total=$((total + min[$s] + 5))
    [ "$s" = "$1" ] && after=1
  done
  echo $total
}

run_stage() {
  local name=$1 file=$out/${log[$1]} t0 limit status f lacking=
  t0=$(date +%s)
  for f in ${needs[$name]:-}; do [ "${built[$f]:-0}" = 1 ] || lacking+=" $f"; done
  limit=$((budget - $(elapsed) - $(reserved_after "$name")))
  [ "$limit" -gt "${cap[$name]}" ] && limit=${cap[$name]}
  [ "$limit" -lt 0 ] && limit=0
  if [ -n "$lacking" ]; then
    echo "== $name: skipped: needs$lacking, which this call's build did not make (see build.log)" | tee -a "$file"
    verdict[$name]=skipped seconds[$name]=0 skip_why[$name]="needs$lacking (not built)"
    return
  fi
  if [ "$limit" -lt "${min[$name]}" ]; then
    echo "== $name: skipped: $limit s of the budget left for it, it needs ${min[$name]}" | tee -a "$file"
    verdict[$name]=skipped seconds[$name]=0 skip_why[$name]="budget spent ($limit s left, needs ${min[$name]})"
    return
  fi
  echo "== $name (at most $limit s)" >>"$file"
  if [ "$mode" = stubs ]; then
    timeout -k 5 "$limit" "./$name.sh" >>"$file" 2>&1
  else
    timeout -k 5 "$limit" "$self" --stage "limit=$limit" "$name" >>"$file" 2>&1
  fi
  status=$?
  seconds[$name]=$(($(date +%s) - t0))
  verdict[$name]=$(verdict_of "$status" "${seconds[$name]}" "$limit")
  [ "${verdict[$name]}" = timeout ] && echo "== $name: timed out after $limit s" >>"$file"
  tail -8 "$file"
}

# ---- the call ----

if [ "$mode" = stubs ]; then cd "$GPU_CHECK_STUBS"; else cd "$repo"; fi
for s in "${stages[@]}"; do : >"$out/${log[$s]}"; done
: >"$out/summary.txt"
declare -A skip_why
echo "gpu_check: $mode mode$([ "$short" = 1 ] && echo ', short'), budget $budget s, logs in $out"
if [ "$mode" != stubs ]; then
  headers_report | grep MISSING
  DATA=$(find_data)
  export DATA
  echo "data: $DATA"
fi

call_started=$(mktemp)
trap 'rm -f "$call_started"' EXIT
for s in "${stages[@]}"; do
  run_stage "$s"
  [ "$s" = build ] && record_build
  if [ "$s" = build ] && [ "$mode" != emulated ]; then
    # What the later stages need from the build: its cuDNN setting and the wheels' library folders.
    CUDNN_ON=$(mk_value CUDNN_FOUND)
    export CUDNN_ON=${CUDNN_ON:-0}
    wheel_path=$(wheel_library_path)
    export BENCH_TORCH_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}  # torch loads its own wheels: leave its path as it was
    export LD_LIBRARY_PATH=$wheel_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "== after the build: cuDNN $(on_off "$CUDNN_ON") ($([ -f build/cuda.mk ] && echo build/cuda.mk || echo 'no build/cuda.mk')), LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee -a "$out/build.log"
  fi
done

# The device tool returns at most 8 files, none more than 2 folders below $OUT.
files=$(find "$out" -type f | wc -l)
deep=$(find "$out" -mindepth 4 -type f | wc -l)
file_verdict=ok
[ "$files" -le 8 ] && [ "$deep" = 0 ] || file_verdict=FAIL

{
  echo
  echo "== gpu_check summary: $mode mode$([ "$short" = 1 ] && echo ', short'), $(elapsed) s of a $budget s budget, logs in $out"
  [ "$mode" = emulated ] && echo "(the emulated device: every timing below is emulated, not a GPU figure)"
  echo "verdicts: ok | FAIL(exit status) | timeout (its cap ran out) | skipped (why: headline) | unavailable (this machine refuses the tool)"
  printf '%-9s %-12s %7s  %s\n' stage verdict seconds headline
  for s in "${stages[@]}"; do
    if [ "${verdict[$s]}" = skipped ]; then line=${skip_why[$s]}; else line=$(headline "$s" | tr -d '\n'); fi
    printf '%-9s %-12s %7s  %s\n' "$s" "${verdict[$s]}" "${seconds[$s]}" "${line:-no figure (see ${log[$s]})}"
  done
  printf '%-9s %-12s %7s  %s\n' files "$file_verdict" 0 "$files in \$OUT, $deep more than 2 folders down (limits: 8 files, 2 folders)"
} | tee "$out/summary.txt"

for s in "${stages[@]}"; do
  case ${verdict[$s]} in ok | unavailable) ;; *) exit 1 ;; esac
done
[ "$file_verdict" = ok ]
