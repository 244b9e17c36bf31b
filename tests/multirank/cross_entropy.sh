#!/usr/bin/env bash
# The vocab-parallel cross-entropy on 2 and 3 CPU ranks through MPI (tests/tools/xent_check.cpp):
# the fused kernel and the Megatron-style reference, fp32 and bf16 logits, against the
# single-rank loss and gradient in float64; both send the same bytes (3 all-reduces of [rows]).
#   cross_entropy.sh XENT_CHECK_BIN
set -uo pipefail
CHECK=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
for n in 2 3; do
  timeout -k 5 120 mpirun -n "$n" "$CHECK" >"$T/check$n.log" 2>&1 || { cat "$T/check$n.log"; echo "FAIL - $n ranks"; exit 1; }
  grep -q "rank 0: xent_check on $n ranks: 14 cases, 0 wrong" "$T/check$n.log" || { cat "$T/check$n.log"; echo "FAIL - $n ranks: not 14 cases"; exit 1; }
  cat "$T/check$n.log"
done
echo "PASS: vocab-parallel cross-entropy"
