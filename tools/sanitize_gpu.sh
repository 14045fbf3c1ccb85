#!/usr/bin/env bash
# make sanitize-gpu: compute-sanitizer on two training steps (with validation and a sample, so every
# path of the backend runs) of a tiny GPT-2 (d1: one layer, 64 channels, T=32):
#   memcheck   out-of-bounds and misaligned device accesses, and device memory leaks
#   racecheck  shared-memory data races (the attention, layernorm and classifier kernels' tiles)
#   synccheck  misused barriers (__syncthreads in divergent code, bad warp masks)
#   (initcheck, reads of memory nothing wrote, with SANITIZE_TOOLS="initcheck": cuBLASLt may trip it)
# in the configurations that take different kernels: bf16 and fp32, -r 0 and -r 2, GELU fusion, and
# each attention named in ATTENTIONS (default "flash"; add cudnn where built with it). Exits non-zero
# if any run reports an error. Environment: DATA, COMPUTE_SANITIZER, ATTENTIONS, SANITIZE_TOOLS.
set -u
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data}
cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
[ -x "$cs" ] || { echo "sanitize-gpu: compute-sanitizer not found (set COMPUTE_SANITIZER)"; exit 1; }
base="--device cuda -e d1 -b 2 -t 32 -x 2 -v 2 -m 1 -s 2 -g 3 -i $data/tinyshakespeare/tiny_shakespeare_train.bin -j $data/tinyshakespeare/tiny_shakespeare_val.bin"
failed=0
runs=0
for tool in ${SANITIZE_TOOLS:-memcheck racecheck synccheck}; do
  extra=
  [ "$tool" = memcheck ] && extra="--leak-check full"
  for attention in ${ATTENTIONS:-flash}; do
    for variant in "--precision bf16 -r 1" "--precision fp32 -r 0" "--precision bf16 -r 2 -ge 1"; do
      [ "$attention" = cudnn ] && [ "${variant#--precision fp32}" != "$variant" ] && continue  # cuDNN: bf16 only
      runs=$((runs + 1))
      out=$("$cs" --tool "$tool" $extra --error-exitcode 99 ./train_gpt2 $base --attention "$attention" $variant 2>&1)
      status=$?
      summary=$(printf '%s\n' "$out" | grep -E '(ERROR|RACECHECK|LEAK) SUMMARY' | tail -1)
      if [ $status != 0 ]; then
        failed=$((failed + 1))
        echo "FAIL $tool --attention $attention $variant (exit $status): ${summary:-no summary}"
        printf '%s\n' "$out" | grep -E -A6 '^========= (Invalid|Error|Race|Uninitialized|Barrier|Leaked|Program hit)' | head -60
        printf '%s\n' "$out" | grep -E '^error:' | head -3
      else
        echo "ok   $tool --attention $attention $variant: ${summary:-clean}"
      fi
    done
  done
done
echo "sanitize-gpu: $((runs - failed)) of $runs runs clean"
[ $failed = 0 ]
