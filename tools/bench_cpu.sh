#!/usr/bin/env bash
# CPU benchmark of the whole training step: GPT-2 124M (d12) at B=4, T=64 (llm.c's CPU defaults) on
# tinyshakespeare, median ms/step and tokens/s over steps 2..N. With LLMC_DIR pointing at a built llm.c
# CPU trainer (a folder holding its train_gpt2 binary, gpt2_124M.bin, gpt2_tokenizer.bin and
# dev/data/tinyshakespeare/), llm.c's same step is measured in the same run and the ratio printed.
# Usage: tools/bench_cpu.sh [STEPS=8]    Env: DATA (default ../shared/data), THREADS (default nproc)
set -euo pipefail
steps=${1:-8}
data=${DATA:-../shared/data}
threads=${THREADS:-$(nproc)}

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

ours=$(OMP_NUM_THREADS=$threads ./train_gpt2_cpu -e d12 -b 4 -t 64 -x "$steps" -v 0 -s 0 -l 3e-4 \
         -i "$data/tinyshakespeare/tiny_shakespeare_train.bin" |
       awk -F'|' '/^step/ { split($1, s, /[ \/]+/); if (s[2] >= 2) { sub(/ ms/, "", $5); print $5 } }' | median)
printf "coldstart d12 B=4 T=64, %s threads: %.1f ms/step, %.1f tokens/s\n" "$threads" "$ours" "$(echo "256000 / $ours" | bc -l)"

if [ -n "${LLMC_DIR:-}" ]; then
  # Line-buffered, so that awk sees each step at once and llm.c stops (SIGPIPE) after N steps.
  llmc=$(cd "$LLMC_DIR" && OMP_NUM_THREADS=$threads stdbuf -oL ./train_gpt2 2>/dev/null |
         awk -v n="$steps" '/^step [0-9]+: train loss/ { k = $2 + 0; sub(/:/, "", k); if (k >= 1) { gsub(/[()]/, ""); print $7 }
                                                      if (k >= n - 1) exit }' | median)
  printf "llm.c     d12 B=4 T=64, %s threads: %.1f ms/step, %.1f tokens/s\n" "$threads" "$llmc" "$(echo "256000 / $llmc" | bc -l)"
  printf "speed-up over llm.c: %.2fx\n" "$(echo "$llmc / $ours" | bc -l)"
fi
