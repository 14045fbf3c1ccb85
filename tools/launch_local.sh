#!/usr/bin/env bash
# Starts N processes of a data-parallel run on this machine and waits for all of them:
#
#   tools/launch_local.sh N ./train_gpt2 [trainer options...]
#
# Each gets -pn N -pr RANK; they meet through -pf (default: the output folder -o). Only rank 0 prints
# progress. Exits with the first non-zero status of any process (the others then stop on their own: a
# collective notices a process that has ended). For several machines use mpirun or srun instead (README).
set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 N TRAINER [options...]" >&2
  exit 2
fi
n=$1
shift
case $n in '' | *[!0-9]*) echo "$0: N must be a positive integer, got '$n'" >&2; exit 2 ;; esac
pids=()
for ((rank = 1; rank < n; rank++)); do
  "$@" -pn "$n" -pr "$rank" &
  pids+=($!)
done
"$@" -pn "$n" -pr 0
status=$?
for pid in "${pids[@]}"; do
  wait "$pid" || { s=$?; [ $status = 0 ] && status=$s; }
done
exit $status
