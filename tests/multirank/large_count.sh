#!/usr/bin/env bash
# MPI counts are `int`; exatrain's collectives move larger tensors in chunks (trainer/parallel/comm.cpp):
#   1. a real all-reduce and broadcast of 2^31 + 64 uint8 elements on 2 ranks (comm_large);
#   2. training through the chunked path of every collective (EXATRAIN_MPI_MAX_COUNT=1000: all-reduce,
#      all-gather, reduce-scatter, send/recv) equals the single-rank run: tp 2 x pp 2 and dp 4 ZeRO-1.
#   large_count.sh EXATRAIN_BIN COMM_LARGE_BIN PYTHON
set -euo pipefail
BIN=$1 LARGE=$2 PY=$3
SRC=${EXATRAIN_SOURCE_DIR:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
mpirun -n 2 "$LARGE" || { echo "FAIL - collectives beyond 2^31 elements"; exit 1; }
echo "ok - all-reduce and broadcast of 2^31 + 64 elements"
COMMON=(--set train.steps=6 --set train.global_batch=8 --set train.micro_batch=2 --set train.seq_len=64
        --set log.every=1 --set log.sample_tokens=0 --set schedule.warmup_steps=2 --set checkpoint.export_dtype=fp32)
"$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/single" "${COMMON[@]}" --set train.threads=1 >"$T/single.log" 2>&1 \
  || { cat "$T/single.log"; exit 1; }
for layout in "tp2pp2 --set parallel.tp=2 --set parallel.pp=2" "dp4zero1 --set parallel.dp=4 --set parallel.zero=1"; do
  read -r name sets <<<"$layout"
  # shellcheck disable=SC2086
  EXATRAIN_MPI_MAX_COUNT=1000 mpirun -n 4 -x EXATRAIN_MPI_MAX_COUNT "$BIN" train "$SRC/configs/train/tiny-demo.yaml" \
    --run-dir "$T/$name" "${COMMON[@]}" --set train.threads=1 $sets >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; exit 1; }
  "$PY" "$SRC/tests/multirank/compare_runs.py" "$T/single" "$T/$name" || { echo "FAIL - $name in chunks of 1000"; exit 1; }
  echo "ok - $name with every MPI call in chunks of at most 1000 elements equals one rank"
done
