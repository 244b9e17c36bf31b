#!/usr/bin/env bash
# Every collective (all-reduce sum and max, all-gather, reduce-scatter, broadcast, send/recv, the
# non-blocking all-reduce and the uneven reduce-scatter) in fp32 and bf16 on 3 CPU ranks through MPI, against values worked out from the ranks
# (tests/tools/comm_check.cpp); the same tool checks NCCL on a GPU node (launch/gpu_check.sh). Then
# a rank that never joins an all-reduce: the job ends with the timeout message, not a hang.
#   comm_check.sh COMM_CHECK_BIN
set -uo pipefail
CHECK=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
timeout -k 5 120 mpirun -n 3 "$CHECK" --device cpu >"$T/check.log" 2>&1 || { cat "$T/check.log"; echo "FAIL - collectives on 3 CPU ranks"; exit 1; }
grep -q "rank 0: comm_check on cpu, 3 ranks: 19 cases, 0 wrong" "$T/check.log" || { cat "$T/check.log"; echo "FAIL - not 19 cases"; exit 1; }
echo "ok - $(grep 'rank 0: comm_check' "$T/check.log")"
# The same through the chunked path (MPI counts are int; tests lower the limit): the
# non-blocking all-reduce and the uneven reduce-scatter split into ranges of 100 elements.
EXATRAIN_MPI_MAX_COUNT=100 timeout -k 5 120 mpirun -n 3 -x EXATRAIN_MPI_MAX_COUNT "$CHECK" --device cpu >"$T/chunked.log" 2>&1 \
  || { cat "$T/chunked.log"; echo "FAIL - collectives in chunks of 100 on 3 CPU ranks"; exit 1; }
grep -q "rank 0: comm_check on cpu, 3 ranks: 19 cases, 0 wrong" "$T/chunked.log" || { cat "$T/chunked.log"; echo "FAIL - chunked"; exit 1; }
echo "ok - in chunks of 100 elements: $(grep 'rank 0: comm_check' "$T/chunked.log")"
rc=0; start=$(date +%s)
timeout -k 5 60 mpirun -n 2 "$CHECK" --device cpu --stuck --timeout 3 >"$T/stuck.log" 2>&1 || rc=$?
((rc != 0 && rc != 124)) && grep -q "all_reduce on group 'world' (rank 0 of 2) did not complete within 3 s" "$T/stuck.log" \
  || { cat "$T/stuck.log"; echo "FAIL - a rank that never joins (exit $rc)"; exit 1; }
echo "ok - a rank that never joins ends the job in $(($(date +%s) - start)) s with the timeout message"
echo "PASS: comm_check"
