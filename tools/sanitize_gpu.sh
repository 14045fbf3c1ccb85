#!/usr/bin/env bash
# make sanitize-gpu: compute-sanitizer on two training steps (with validation and a 3-token sample, so
# every path of the backend runs) of a tiny GPT-2 (d1: one layer, 64 channels, T=32), the most telling
# runs first, each under its own timeout within SANITIZE_SECONDS:
#   memcheck   out-of-bounds and misaligned device accesses, device memory leaks: in each configuration
#              that takes different kernels (bf16 -r 1, cuDNN, bf16 -r 2 with GELU fusion and the RRC, fp32 -r 0)
#   racecheck  shared-memory data races (attention tiles, reductions): bf16, fp32, cuDNN
#   synccheck  misused barriers and warp masks: bf16
#   (initcheck, reads of memory nothing wrote: SANITIZE_RUNS="initcheck:--precision bf16"; cuBLASLt may trip it)
# Exit status: 0 every run clean; 1 a run reported an error; 124 the budget ran out before every run was
# done (those done were clean); 77 compute-sanitizer is unavailable here (not installed, or it refuses
# this machine's device: "Device not supported", as on gVisor), which says nothing about our kernels.
# The last line, "sanitize-gpu: ...", is the headline. Environment: DATA, COMPUTE_SANITIZER,
# ATTENTIONS (default "flash"; "flash cudnn" adds the cuDNN runs), SANITIZE_RUNS (tool:flags entries
# separated by ';', replacing the list above), SANITIZE_SECONDS (600), SANITIZE_RUN_SECONDS (60 a run).
set -u
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data}
deadline=$(($(date +%s) + ${SANITIZE_SECONDS:-600}))
cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
if [ ! -x "$cs" ]; then
  echo "sanitize-gpu: compute-sanitizer unavailable (not found; set COMPUTE_SANITIZER)"
  exit 77
fi
base="--device cuda -e d1 -b 2 -t 32 -x 2 -v 2 -m 1 -s 2 -g 3 -i $data/tinyshakespeare/tiny_shakespeare_train.bin -j $data/tinyshakespeare/tiny_shakespeare_val.bin"
# The RRC's and direct RRC control's kernels and products, with recomputed inputs: in the -r 2 -ge 1 run.
rrc="--metrics-every 1 --metrics-rrc 1 --optimizer lionar -c 0.1 --rrc-target 0.01"
cudnn=0
case " ${ATTENTIONS:-flash} " in *" cudnn "*) cudnn=1 ;; esac
runs=("memcheck:--precision bf16 -r 1")
[ $cudnn = 1 ] && runs+=("memcheck:--precision bf16 --attention cudnn")
runs+=("racecheck:--precision bf16 -r 1" "memcheck:--precision bf16 -r 2 -ge 1 $rrc" "synccheck:--precision bf16 -r 1"
       "memcheck:--precision fp32 -r 0" "racecheck:--precision fp32 -r 0")
[ $cudnn = 1 ] && runs+=("racecheck:--precision bf16 --attention cudnn")
if [ -n "${SANITIZE_RUNS:-}" ]; then IFS=';' read -r -a runs <<<"$SANITIZE_RUNS"; fi

failed=0 clean=0 done_runs=0
for run in "${runs[@]}"; do
  tool=${run%%:*}
  flags=${run#*:}
  limit=$((deadline - $(date +%s)))
  [ "$limit" -gt "${SANITIZE_RUN_SECONDS:-60}" ] && limit=${SANITIZE_RUN_SECONDS:-60}
  if [ "$limit" -lt 10 ]; then
    echo "not run: $tool $flags (no time left)"
    continue
  fi
  extra=
  [ "$tool" = memcheck ] && extra="--leak-check full"
  t0=$(date +%s)
  out=$(timeout -k 5 "$limit" "$cs" --tool "$tool" $extra --error-exitcode 99 ./train_gpt2 $base $flags 2>&1)
  status=$?
  done_runs=$((done_runs + 1))
  if printf '%s\n' "$out" | grep -q 'Device not supported'; then
    printf '%s\n' "$out" | grep -E 'Device not supported|error|Error' | head -5
    echo "sanitize-gpu: compute-sanitizer unavailable on this machine (it refuses the device: Device not supported); no run checked"
    exit 77
  fi
  summary=$(printf '%s\n' "$out" | grep -E '(ERROR|RACECHECK|LEAK) SUMMARY' | tail -1)
  if [ $status != 0 ]; then
    failed=$((failed + 1))
    echo "FAIL $tool $flags (exit $status$([ $status = 124 ] && echo ", timed out after $limit s"), $(($(date +%s) - t0)) s): ${summary:-no summary}"
    printf '%s\n' "$out" | grep -E -A6 '^========= (Invalid|Error|Race|Uninitialized|Barrier|Leaked|Program hit)' | head -60
    printf '%s\n' "$out" | grep -E '^error:' | head -3
  else
    clean=$((clean + 1))
    echo "ok   $tool $flags ($(($(date +%s) - t0)) s): ${summary:-clean}"
  fi
done
not_run=$((${#runs[@]} - done_runs))
echo "sanitize-gpu: $clean of ${#runs[@]} runs clean$([ $failed != 0 ] && echo ", $failed FAILED")$([ $not_run != 0 ] && echo ", $not_run not run (no time left)")"
[ $failed != 0 ] && exit 1
[ $not_run != 0 ] && exit 124
exit 0
