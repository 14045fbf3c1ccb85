#!/usr/bin/env bash
# Runs several test suites side by side and ends with one line "N passed, M failed" that adds up theirs.
# Usage: run_suites.sh NAME COMMAND [NAME COMMAND ...]
# Each COMMAND prints its own "N passed, M failed" last (doctest_counts.h); a suite that ends without that
# line (a crash, a build that did not happen) counts as one failed test. The exit status is 0 only if
# every suite passed.
#
# Side by side because the emulated device's suite runs on one thread (its blocks are fibers of one
# thread) and the CPU suite waits on the programs it starts: one after the other they leave a core idle
# for minutes. The first suite's output streams as it runs; each other suite's is kept and printed whole
# once the ones before it have been. RUN_SUITES_SERIAL=1 runs them one after the other, all streamed.
set -u
names=(); commands=()
while [ $# -ge 2 ]; do names+=("$1"); commands+=("$2"); shift 2; done
logs=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$logs"' EXIT
serial=${RUN_SUITES_SERIAL:-0}

# run_suite I: suite I's output into its log, its exit status into its status file.
run_suite() {
  bash -c "${commands[$1]}" >"$logs/$1.log" 2>&1
  echo $? >"$logs/$1.status"
}
pids=()
if [ "$serial" != 1 ]; then
  for i in "${!names[@]}"; do
    [ "$i" -gt 0 ] && { run_suite "$i" & pids[$i]=$!; }
  done
fi

total_passed=0; total_failed=0; summary=()
for i in "${!names[@]}"; do
  echo "==== ${names[$i]}: ${commands[$i]}"
  if [ "$i" = 0 ] || [ "$serial" = 1 ]; then
    bash -c "${commands[$i]}" 2>&1 | tee "$logs/$i.log"
    status=${PIPESTATUS[0]}
  else
    wait "${pids[$i]}"
    cat "$logs/$i.log"
    status=$(cat "$logs/$i.status" 2>/dev/null || echo 1)
  fi
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$logs/$i.log" | tail -1)
  if [ -z "$counts" ]; then
    passed=0; failed=1
    summary+=("${names[$i]}: no result line (exit status $status): counted as 1 failed")
  else
    passed=${counts%% passed*}; failed=${counts#*, }; failed=${failed%% failed}
    [ "$status" != 0 ] && [ "$failed" = 0 ] && failed=1  # a suite that failed after its counts line
    summary+=("${names[$i]}: $passed passed, $failed failed")
  fi
  total_passed=$((total_passed + passed)); total_failed=$((total_failed + failed))
done
echo "==== summary"
printf '  %s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
