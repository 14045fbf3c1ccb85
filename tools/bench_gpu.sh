#!/usr/bin/env bash
# make bench: GPT-2 124M (d12) training speed on the GPU, bf16, T=1024, B=64 (or the largest of 64,
# 32, 16 that fits), in this order, each part under its own timeout within BENCH_SECONDS:
#   1. coldstart's tokens/s and MFU (the median of the steps after 5 warm-up steps)
#   2. a PyTorch GPT-2 124M on the same GPU (tools/bench_torch_gpt2.py: torch.compile, SDPA flash
#      attention, fused AdamW) under BENCH_TORCH_SECONDS (a cold torch.compile takes about a minute), and
#      the ratio
#   3. the per-kernel table (build/tools/bench_gpu_kernels: CUDA-event timings)
#   4. the cost of the update-size metrics: --metrics-every 1 without the RRC, and 1 and 10 with it, against none
#   5. ncu's view of the same kernels (--clock-control none), where this machine lets ncu read the
#      hardware counters; where it does not, it says so, and the CUDA-event table stands
# A benchmark: it reports, it never fails on speed. The last line, "bench: ...", is the headline. Exit
# status 1 when one of our programs failed (the trainer at every batch size, a metrics run, the kernel
# table), else 0: PyTorch's run and ncu are references, reported but not ours to fail.
# BENCH_EMULATED=1: the emulated device's trainer (./train_gpt2_emu) at a tiny size (d2, B=2, T=32,
# BENCH_STEPS steps), every figure labelled "emulated, not a GPU figure"; no PyTorch, kernels or ncu.
# Environment: DATA (shared data folder), PYTHON (an interpreter with CUDA torch; default python3),
# BENCH_SECONDS (600), BENCH_TORCH_SECONDS (120), BENCH_B (first batch size to try, 64), BENCH_STEPS
# (30), BENCH_FLAGS (extra trainer flags, e.g. "--attention cudnn"), BENCH_SKIP_TORCH=1,
# BENCH_SKIP_METRICS=1, BENCH_SKIP_KERNELS=1, BENCH_SKIP_NCU=1, BENCH_TORCH_LD_LIBRARY_PATH (the library
# path of PyTorch's run, default the current one: gpu_check passes the one it started with, so that the
# folders it adds for our binaries never displace torch's own libraries).
set -u
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data}
py=${PYTHON:-python3}
steps=${BENCH_STEPS:-30}
shard=$data/tinyshakespeare/tiny_shakespeare_train.bin
deadline=$(($(date +%s) + ${BENCH_SECONDS:-600}))
log=$(mktemp)
trap 'rm -f "$log" "$log".*' EXIT
failed=0
headline=()

# part_limit CAP: the seconds a part may take, CAP or what is left of BENCH_SECONDS (0: none left).
part_limit() {
  local left=$((deadline - $(date +%s)))
  [ "$left" -lt 5 ] && left=0
  [ "$left" -gt "$1" ] && left=$1
  echo "$left"
}
# The median tokens/s of a trainer log's step lines after the first $2.
median_tokens() {
  grep -E '^step ' "$1" | tail -n +$(($2 + 1)) | sed -E 's/.* ([0-9]+) tok\/s.*/\1/' | sort -n |
    awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print 0}'
}
mean_ms() { grep -E '^step ' "$1" | tail -n +6 | sed -E 's/.*\| ([0-9.]+) ms \|.*/\1/' | awk '{s+=$1; n++} END {if (n) printf "%.2f", s/n; else print 0}'; }
# The memory plan's refusal ("the run needs X of GPU memory but Y are free") and a failed allocation.
out_of_memory() { grep -qE 'the run needs .* of GPU memory but .* are free|out of GPU memory' "$1"; }

if [ "${BENCH_EMULATED:-0}" = 1 ]; then
  echo "== coldstart on the emulated device: d2, B=2 T=32, $steps steps (emulated, not a GPU figure)"
  limit=$(part_limit 600)
  timeout -k 5 "$limit" ./train_gpt2_emu --device cuda -e d2 -b 2 -t 32 -x "$steps" -v 0 -s 0 -i "$shard" >"$log" 2>&1
  status=$?
  cat "$log"
  tokens=$(median_tokens "$log" 1)
  if [ "$status" = 0 ] && [ "$tokens" != 0 ]; then
    echo "emulated tokens/s: $tokens at d2 B=2 T=32 (median of steps 2..$steps; emulated, not a GPU figure)"
    echo "bench: emulated $tokens tok/s at d2 B=2 T=32 (emulated, not a GPU figure; no PyTorch ratio)"
    exit 0
  fi
  echo "bench: the emulated trainer failed (exit $status)"
  exit 1
fi

# ---- 1. coldstart ----
ours=0
B=
for try_B in ${BENCH_B:-64} 32 16; do
  limit=$(part_limit 90)
  [ "$limit" = 0 ] && { echo "bench: no time left for coldstart at B=$try_B"; break; }
  echo "== coldstart: GPT-2 124M, B=$try_B T=1024 bf16, $steps steps ${BENCH_FLAGS:-} (at most $limit s)"
  timeout -k 5 "$limit" ./train_gpt2 --device cuda -e d12 -b "$try_B" -t 1024 -x "$steps" -v 0 -s 0 -l 6e-4 -i "$shard" \
    ${BENCH_FLAGS:-} >"$log" 2>&1
  status=$?
  cat "$log"
  if [ "$status" = 0 ]; then
    B=$try_B
    ours=$(median_tokens "$log" 5)
    mfu=$(grep -E '^step ' "$log" | tail -1 | grep -oE '[0-9.]+% bf16 MFU|MFU n/a[^|]*' || echo "MFU n/a")
    echo "coldstart tokens/s: $ours (B=$B, median of steps 6..$steps; $mfu, llm.c's 6N+6LCT FLOPs per token)"
    headline+=("coldstart $ours tok/s (B=$B, MFU $(echo "$mfu" | grep -oE '^[0-9.]+%' || echo n/a))")
    break
  fi
  if ! out_of_memory "$log"; then
    echo "bench: the trainer failed at B=$try_B (exit $status$([ "$status" = 124 ] && echo ", timed out after $limit s"))"
    break
  fi
  echo "bench: B=$try_B does not fit in GPU memory, trying a smaller batch"
done
if [ "$ours" = 0 ]; then
  failed=1
  headline+=("coldstart FAILED (see the log above)")
fi

# ---- 2. PyTorch, under its own timeout ----
if [ "${BENCH_SKIP_TORCH:-0}" != 1 ]; then
  limit=$(part_limit "${BENCH_TORCH_SECONDS:-120}")
  echo "== PyTorch reference (same GPU, same call, B=${B:-64}, at most $limit s)"
  torch_tps=
  if [ "$limit" != 0 ]; then
    LD_LIBRARY_PATH=${BENCH_TORCH_LD_LIBRARY_PATH-${LD_LIBRARY_PATH:-}} \
      timeout -k 5 "$limit" "$py" tools/bench_torch_gpt2.py --batch "${B:-64}" --seq 1024 --steps 20 >"$log.torch" 2>&1
    status=$?
    cat "$log.torch"
    torch_tps=$(sed -n 's/^torch tokens\/s: //p' "$log.torch" | tail -1)
    [ -z "$torch_tps" ] && echo "PyTorch reference: no figure (exit $status$([ "$status" = 124 ] && echo ", timed out after $limit s"))"
  else
    echo "PyTorch reference: not run, no time left"
  fi
  if [ -n "$torch_tps" ] && [ "$ours" != 0 ]; then
    ratio=$(awk -v a="$ours" -v b="$torch_tps" 'BEGIN {printf "%.2f", a / b}')
    echo "ratio coldstart / PyTorch: $ratio ($ours vs $torch_tps tokens/s; targets: >= 1.1, >= 450K tokens/s on one H100)"
    headline+=("PyTorch $torch_tps tok/s, ratio $ratio")
  else
    echo "ratio coldstart / PyTorch: n/a (a side did not report tokens/s)"
    headline+=("PyTorch ${torch_tps:-n/a}")
  fi
fi

# ---- 3. per-kernel times (CUDA events) ----
kernels=./build/tools/bench_gpu_kernels
if [ "${BENCH_SKIP_KERNELS:-0}" != 1 ]; then
  limit=$(part_limit 40)
  echo "== per-kernel times, CUDA events (at most $limit s)"
  if [ "$limit" = 0 ]; then echo "bench: no time left for the kernel table"
  elif timeout -k 5 "$limit" "$kernels" 16 1024; then
    headline+=("kernels: CUDA events")
  else
    failed=1
    headline+=("kernel table FAILED")
  fi
fi

# ---- 4. the cost of the update-size metrics (issues 5 and 14): the mean step time measuring every step without
# the RRC, and every step and every 10 steps with it, against none, at the batch that fit. Targets: with the RRC at
# most 15 % every step and 3 % every 10 steps. The RRC's products run on the step's last micro-batch, and this run
# has one micro-batch per step: with k of them (-d) its share of a step is about 1/k of what this measures ----
if [ "${BENCH_SKIP_METRICS:-0}" != 1 ] && [ "$ours" != 0 ]; then
  echo "== update-size metrics: step time with --metrics-every 0, 1 (without and with the RRC) and 10 (with it), B=$B"
  base=$(mean_ms "$log")
  costs=()
  for run in "1 0" "1 1" "10 1"; do
    every=${run% *} rrc=${run#* }
    what="every $every step(s) $([ "$rrc" = 1 ] && echo "with" || echo "without") the RRC"
    limit=$(part_limit 60)
    [ "$limit" = 0 ] && { echo "metrics $what: not run, no time left"; continue; }
    if ! timeout -k 5 "$limit" ./train_gpt2 --device cuda -e d12 -b "$B" -t 1024 -x "$steps" -v 0 -s 0 -l 6e-4 -i "$shard" \
      --metrics-every "$every" --metrics-rrc "$rrc" ${BENCH_FLAGS:-} >"$log.metrics" 2>&1; then
      echo "bench: the metrics run ($what) failed"
      tail -3 "$log.metrics"
      failed=1
      continue
    fi
    ms=$(mean_ms "$log.metrics")
    cost=$(awk -v a="$ms" -v b="$base" 'BEGIN {printf "%+.1f %%", 100 * (a / b - 1)}')
    echo "metrics $what: $ms ms a step against $base ms without: $cost"
    costs+=("$cost every $every$([ "$rrc" = 1 ] && echo " with RRC")")
  done
  [ ${#costs[@]} -gt 0 ] && headline+=("metrics $(IFS=,; echo "${costs[*]}" | sed 's/,/, /g') (targets with RRC: 15 % every 1, 3 % every 10)")
fi

# ---- 5. ncu, where this machine lets it read the counters ----
if [ "${BENCH_SKIP_NCU:-0}" != 1 ] && [ "${BENCH_SKIP_KERNELS:-0}" != 1 ]; then
  ncu=${NCU:-$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)}
  limit=$(part_limit 60)
  echo "== ncu: the kernels' DRAM and SM throughput (at most $limit s)"
  if [ -z "$ncu" ]; then
    echo "ncu: unavailable (not installed); the per-kernel table above is from CUDA events"
    headline+=("ncu unavailable")
  elif [ "$limit" = 0 ]; then
    echo "ncu: not run, no time left; the per-kernel table above is from CUDA events"
  else
    # One kernel first: on some runtimes (gVisor) ncu cannot read the counters at all.
    timeout -k 5 20 "$ncu" --clock-control none --launch-count 1 --metrics gpu__time_duration.sum "$kernels" 1 64 >"$log.ncu" 2>&1
    status=$?
    if [ "$status" != 0 ] || grep -qE '==ERROR==|ERR_NVGPUCTRPERM|LibraryNotLoaded|Failed to initialize' "$log.ncu"; then
      reason=$(grep -m1 -E '==ERROR==|ERR_|Failed' "$log.ncu" | cut -c1-120)
      echo "ncu: unavailable on this machine (${reason:-exit $status}); the per-kernel table above is from CUDA events"
      headline+=("ncu unavailable on this machine")
    else
      # The 4th call of every kernel (after bench_gpu_kernels' warm-up calls), as CSV.
      limit=$(part_limit 60)
      timeout -k 5 "$limit" "$ncu" --clock-control none --kernel-id ::regex:.:4 --csv \
        --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
        "$kernels" 16 1024 || echo "ncu: the kernel table did not complete (exit $?); the CUDA-event table above stands"
      headline+=("ncu table in bench.log")
    fi
  fi
fi

summary=$(printf '%s; ' "${headline[@]}")
echo "bench: ${summary%; }"
exit $failed
