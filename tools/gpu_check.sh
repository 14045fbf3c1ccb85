#!/usr/bin/env bash
# The one device check of the CUDA path, for a single call of about 9 minutes on a GPU machine
# (H100/H200, Ubuntu, CUDA 13.0, python3 with torch and the nvidia-cudnn-cu13 / nvidia-nccl-cu13 wheels):
#   1. what is there: GPU, driver, nvcc, compilers, torch, cuDNN and NCCL (toolkit or pip wheels), headers
#   2. build: make -j16 GPU_ARCHS=90 (trainer, GPU suite, GPU tools, and the CPU trainer the suite compares with)
#   3. the GPU suite (build/test_gpu): every kernel, the model, determinism, the trainer end to end
#   4. compute-sanitizer memcheck, racecheck and synccheck on a tiny model (tools/sanitize_gpu.sh)
#   5. the benchmark: GPT-2 124M tokens/s and MFU, PyTorch's on the same GPU, the metrics' cost, per-kernel times
# Each stage runs under `timeout`, within one overall budget (GPU_CHECK_SECONDS, default 500): a
# stage that would start with too little time left is skipped and says so. Logs go to $OUT (or
# ./out/gpu_check), at most 6 files; the summary table comes last on stdout and in summary.txt.
# nlohmann/json and doctest: from the system, else from .deps/include (make vendor-headers on a
# machine that has them, then carry .deps/). Variables: GPU_ARCHS (90), JOBS (16), DATA, and
# GPU_CHECK_STAGES (default "test-gpu sanitize bench"; e.g. "bench" for a second call: the build is
# incremental, so a rerun of one stage costs little more than the stage).
set -u
cd "$(dirname "$0")/.."
start=$(date +%s)
budget=${GPU_CHECK_SECONDS:-500}
out=${OUT:-out/gpu_check}
mkdir -p "$out"
archs=${GPU_ARCHS:-90}
jobs=${JOBS:-16}
data=${DATA:-../shared/data}
py=${PYTHON:-python3}
summary=()
elapsed() { echo $(($(date +%s) - start)); }
left() { echo $((budget - $(elapsed))); }
note() { summary+=("$(printf '%-12s %-8s %5ss  %s' "$1" "$2" "$3" "$4")"); }

# stage NAME LOG MIN_SECONDS MAX_SECONDS COMMAND...: runs COMMAND under timeout, teeing to LOG;
# skipped if fewer than MIN_SECONDS remain. Sets stage_status (exit code, 124 timeout, -1 skipped).
stage() {
  local name=$1 log=$2 min=$3 max=$4
  shift 4
  local t0 limit
  t0=$(date +%s)
  limit=$(left)
  [ "$limit" -gt "$max" ] && limit=$max
  if [ "$limit" -lt "$min" ]; then
    echo "== $name: skipped, $(left) s left of the budget" | tee -a "$out/$log"
    stage_status=-1
    stage_seconds=0
    return
  fi
  echo "== $name (at most $limit s)" | tee -a "$out/$log"
  timeout -k 10 "$limit" "$@" >>"$out/$log" 2>&1
  stage_status=$?
  stage_seconds=$(($(date +%s) - t0))
  tail -25 "$out/$log"
  [ $stage_status = 124 ] && echo "== $name: timed out after $limit s" | tee -a "$out/$log"
}
verdict() { case $1 in 0) echo ok ;; -1) echo skipped ;; 124 | 137) echo timeout ;; *) echo "FAIL($1)" ;; esac; }

# The data: the shared folder where it is, else (a device copy of the work tree may lack ../shared)
# random-token shards in llm.c's format, which every GPU stage can use (only speed and correctness
# against the CPU are measured, never what is learnt).
for d in "$data" ../shared/data ./shared/data; do
  [ -f "$d/tinyshakespeare/tiny_shakespeare_train.bin" ] && { data=$d; break; }
done
if [ ! -f "$data/tinyshakespeare/tiny_shakespeare_train.bin" ]; then
  data=build/gpu_check_data
  mkdir -p "$data/tinyshakespeare"
  "$py" - "$data/tinyshakespeare" <<'PY' || echo "could not write random shards"
import array, random, sys
random.seed(1)
for name, n in (("tiny_shakespeare_train.bin", 400000), ("tiny_shakespeare_val.bin", 40000)):
    header = array.array("i", [20240520, 1, n] + [0] * 253)
    tokens = array.array("H", (random.randrange(50257) for _ in range(n)))
    with open(f"{sys.argv[1]}/{name}", "wb") as f:
        header.tofile(f)
        tokens.tofile(f)
PY
  echo "data: no shared data folder here; random-token shards in $data"
else
  echo "data: $data"
fi

# ---- 1. environment ----
{
  echo "== environment $(date -u)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi failed"
  command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not in PATH ($(ls -d /usr/local/cuda*/bin/nvcc 2>/dev/null | tr '\n' ' '))"
  echo "g++: $(g++ --version 2>/dev/null | head -1)"
  echo "cores: $(nproc), memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  "$py" - <<'PY' 2>&1
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
  for h in nlohmann/json.hpp doctest/doctest.h; do
    if echo "#include <$h>" | g++ -std=c++17 -x c++ -fsyntax-only - 2>/dev/null; then echo "$h: system"
    elif [ -f ".deps/include/$h" ]; then echo "$h: .deps/include"
    else echo "$h: MISSING (run make vendor-headers where it exists and carry .deps/)"; fi
  done
} 2>&1 | tee "$out/env.log"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
note env "$([ -n "$gpu" ] && echo ok || echo FAIL)" "$(elapsed)" "${gpu:-no GPU seen by nvidia-smi}"

# ---- 2. build ----
stage build build.log 60 260 make -j"$jobs" GPU_ARCHS="$archs" gpu-build train_gpt2_cpu
build_status=$stage_status
note build "$(verdict $build_status)" "$stage_seconds" "sm_$archs, $(grep -oE 'cuDNN attention (on|off)' "$out/build.log" | tail -1)"
cudnn=$(grep -q 'cuDNN attention on' "$out/build.log" && echo 1 || echo 0)

stages=" ${GPU_CHECK_STAGES:-test-gpu sanitize bench} "
wanted() { [ "${stages#* $1 }" != "$stages" ]; }
if [ "$build_status" = 0 ]; then
  # ---- 3. the GPU suite ----
  wanted test-gpu && stage test-gpu test_gpu.log 60 200 env COLDSTART_DATA="$data" ./build/test_gpu
  wanted test-gpu && note test-gpu "$(verdict $stage_status)" "$stage_seconds" "$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out/test_gpu.log" | tail -1)"

  # ---- 4. sanitizers ----
  wanted sanitize && stage sanitize sanitize.log 60 200 env DATA="$data" ATTENTIONS="flash$([ "$cudnn" = 1 ] && echo ' cudnn')" ./tools/sanitize_gpu.sh
  wanted sanitize && note sanitize "$(verdict $stage_status)" "$stage_seconds" "$(grep -E 'runs clean' "$out/sanitize.log" | tail -1)"

  # ---- 5. benchmark ----
  wanted bench && stage bench bench.log 90 240 env DATA="$data" PYTHON="$py" BENCH_STEPS=25 ./tools/bench_gpu.sh
  ours=$(grep -E '^coldstart tokens/s' "$out/bench.log" | tail -1)
  ratio=$(grep -E '^ratio' "$out/bench.log" | tail -1)
  wanted bench && note bench "$(verdict $stage_status)" "$stage_seconds" "${ours:-no figure}; ${ratio:-no ratio}"
  metrics=$(grep -E '^metrics every' "$out/bench.log" | sed -E 's/.*(every [0-9]+ step).*: (.*)$/\1: \2/' | tr '\n' ';')
  wanted bench && note metrics "$(verdict $stage_status)" 0 "${metrics:-no figure} (targets: +3 % every step, +1 % every 10)"
else
  note test-gpu skipped 0 "the build failed: see build.log"
fi

{
  echo
  echo "== summary ($(elapsed) s of a $budget s budget; logs in $out)"
  printf '%-12s %-8s %6s  %s\n' stage status time result
  for line in "${summary[@]}"; do echo "$line"; done
} | tee "$out/summary.txt"
