#!/usr/bin/env bash
# Runs each libFuzzer target (built by `make fuzz`) for a fixed time on a working copy of its corpus and
# prints a summary table; exits 1 if any target crashed, hung, leaked or ran out of memory.
#
#   fuzz/run_fuzzers.sh <build dir> <seconds> <target>...
#
# Per target:
#   <build dir>/corpus/<target>/     the working corpus: fuzz/corpus/<target>/ plus fresh seeds from
#                                    make_seeds; libFuzzer adds the inputs that reach new code here, so it
#                                    grows from run to run (fuzz/corpus/ itself is never written)
#   <build dir>/artifacts/<target>/  crash-*, timeout-*, oom-*, leak-*: the inputs that failed. To keep
#                                    one as a regression test, copy it to fuzz/corpus/<target>/ under a
#                                    name saying what it exercises; `make test` then replays it.
#   <build dir>/<target>.log         libFuzzer's output
# The repository root must be the working directory (tokenizer_text reads $COLDSTART_DATA/gpt2).
set -u
build=$1 seconds=$2
shift 2

max_len_of() {  # the longest input libFuzzer generates: tiny-model files fit in 4 KiB, JSON gets more
  case $1 in
    tokenizer_files) echo 16384 ;;
    json_config) echo 65536 ;;
    *) echo 4096 ;;
  esac
}

"$build/make_seeds" "$build/corpus" || exit 1
# fuzz_one TARGET: one target's run; its summary row goes to <build dir>/<target>.row, and a failure's
# log tail to stderr.
fuzz_one() {
  local t=$1 corpus=$build/corpus/$1 artifacts=$build/artifacts/$1 log=$build/$1.log before start rc end execs cov units status
  mkdir -p "$corpus" "$artifacts"
  cp fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null
  before=$(ls "$artifacts" | wc -l)
  start=$(date +%s)
  # -close_fd_mask=1: the targets' stdout (--help text) is noise; libFuzzer reports on stderr.
  "$build/$t" "$corpus" -max_total_time="$seconds" -max_len="$(max_len_of "$t")" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -close_fd_mask=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  units=$(ls "$corpus" | wc -l)
  status=ok
  if [ $rc != 0 ] || [ "$(ls "$artifacts" | wc -l)" != "$before" ]; then
    status="FAILED (exit $rc): see $log and $artifacts/"
    echo "fuzz $t: FAILED; the end of $log:" >&2
    tail -n 40 "$log" >&2
  fi
  printf '%-16s %12s %8s %8s %6ss  %s\n' "$t" "${execs:-?}" "${cov:-?}" "$units" $((end - start)) "$status" >"$build/$t.row"
}

# One target per core at a time (each libFuzzer run is one process, one thread); FUZZ_JOBS overrides.
parallel=${FUZZ_JOBS:-$(nproc)}
for t in "$@"; do
  rm -f "$build/$t.row"
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n; done
  fuzz_one "$t" &
done
wait

failed=0
rows=()
for t in "$@"; do
  row=$(cat "$build/$t.row" 2>/dev/null || printf '%-16s  FAILED: no result' "$t")
  case $row in *FAILED*) failed=1 ;; esac
  rows+=("$row")
done

echo
echo "fuzz summary (${seconds}s per target)"
printf '%-16s %12s %8s %8s %7s  %s\n' target executions coverage corpus time status
for r in "${rows[@]}"; do echo "$r"; done
exit $failed
