#!/usr/bin/env bash
# make sanitize-gpu: compute-sanitizer on two training steps (with validation and a 3-token sample, so
# every path of the backend runs) of a tiny GPT-2 (d1: one layer, 64 channels, T=32):
#   memcheck   out-of-bounds and misaligned device accesses, device memory leaks: in each configuration
#              that takes different kernels (bf16 -r 1, fp32 -r 0, bf16 -r 2 with GELU fusion, cuDNN)
#   racecheck  shared-memory data races (attention tiles, reductions): bf16 and fp32
#   synccheck  misused barriers and warp masks: bf16
#   (initcheck, reads of memory nothing wrote: SANITIZE_RUNS="initcheck:--precision bf16"; cuBLASLt may trip it)
# Exits non-zero if any run reports an error. Environment: DATA, COMPUTE_SANITIZER, ATTENTIONS (default
# "flash"; "flash cudnn" adds the cuDNN runs), SANITIZE_RUNS (tool:flags entries, replacing the list above).
set -u
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data}
cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
[ -x "$cs" ] || { echo "sanitize-gpu: compute-sanitizer not found (set COMPUTE_SANITIZER)"; exit 1; }
base="--device cuda -e d1 -b 2 -t 32 -x 2 -v 2 -m 1 -s 2 -g 3 -i $data/tinyshakespeare/tiny_shakespeare_train.bin -j $data/tinyshakespeare/tiny_shakespeare_val.bin"
runs=("memcheck:--precision bf16 -r 1" "memcheck:--precision fp32 -r 0" "memcheck:--precision bf16 -r 2 -ge 1"
      "racecheck:--precision bf16 -r 1" "racecheck:--precision fp32 -r 0" "synccheck:--precision bf16 -r 1")
case " ${ATTENTIONS:-flash} " in
  *" cudnn "*) runs+=("memcheck:--precision bf16 --attention cudnn" "racecheck:--precision bf16 --attention cudnn") ;;
esac
if [ -n "${SANITIZE_RUNS:-}" ]; then IFS=';' read -r -a runs <<<"$SANITIZE_RUNS"; fi
failed=0
for run in "${runs[@]}"; do
  tool=${run%%:*}
  flags=${run#*:}
  extra=
  [ "$tool" = memcheck ] && extra="--leak-check full"
  t0=$(date +%s)
  out=$("$cs" --tool "$tool" $extra --error-exitcode 99 ./train_gpt2 $base $flags 2>&1)
  status=$?
  summary=$(printf '%s\n' "$out" | grep -E '(ERROR|RACECHECK|LEAK) SUMMARY' | tail -1)
  if [ $status != 0 ]; then
    failed=$((failed + 1))
    echo "FAIL $tool $flags (exit $status, $(($(date +%s) - t0)) s): ${summary:-no summary}"
    printf '%s\n' "$out" | grep -E -A6 '^========= (Invalid|Error|Race|Uninitialized|Barrier|Leaked|Program hit)' | head -60
    printf '%s\n' "$out" | grep -E '^error:' | head -3
  else
    echo "ok   $tool $flags ($(($(date +%s) - t0)) s): ${summary:-clean}"
  fi
done
echo "sanitize-gpu: $((${#runs[@]} - failed)) of ${#runs[@]} runs clean"
[ $failed = 0 ]
