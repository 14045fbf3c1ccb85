#!/usr/bin/env bash
# Runs several test suites and ends with one line "N passed, M failed" that adds up theirs.
# Usage: run_suites.sh NAME COMMAND [NAME COMMAND ...]
# Each COMMAND prints its own "N passed, M failed" last (doctest_counts.h); a suite that ends without that
# line (a crash, a build that did not happen) counts as one failed test. The exit status is 0 only if
# every suite passed.
set -u
total_passed=0; total_failed=0; summary=()
while [ $# -ge 2 ]; do
  name=$1; command=$2; shift 2
  echo "==== $name: $command"
  log=$(mktemp)
  bash -c "$command" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
  rm -f "$log"
  if [ -z "$counts" ]; then
    passed=0; failed=1
    summary+=("$name: no result line (exit status $status): counted as 1 failed")
  else
    passed=${counts%% passed*}; failed=${counts#*, }; failed=${failed%% failed}
    [ "$status" != 0 ] && [ "$failed" = 0 ] && failed=1  # a suite that failed after its counts line
    summary+=("$name: $passed passed, $failed failed")
  fi
  total_passed=$((total_passed + passed)); total_failed=$((total_failed + failed))
done
echo "==== summary"
printf '  %s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
