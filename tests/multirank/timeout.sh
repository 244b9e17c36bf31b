#!/usr/bin/env bash
# A rank that stops taking part must end the job, not hang it: two data-parallel ranks train,
# rank 1 is frozen with SIGSTOP mid-run, and rank 0's next collective must give up after
# parallel.timeout_s (5 s), print which operation, group, step and rank, and abort the job.
#   timeout.sh EXATRAIN_BIN
set -uo pipefail
BIN=$1
SRC=${EXATRAIN_SOURCE_DIR:?}
T=$(mktemp -d)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
mpirun -n 2 "$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/run" --set train.steps=100000 \
  --set train.global_batch=4 --set train.micro_batch=2 --set train.seq_len=32 --set log.every=1 \
  --set log.sample_tokens=0 --set train.threads=1 --set parallel.timeout_s=5 </dev/null >"$T/out.log" 2>&1 &
MPIRUN=$!
cleanup() { kill -9 "$MPIRUN" 2>/dev/null; pkill -9 -f "$T/run" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

for _ in $(seq 100); do [[ -s "$T/run/metrics.jsonl" ]] && break; sleep 0.2; done
[[ -s "$T/run/metrics.jsonl" ]] || { cat "$T/out.log"; echo "FAIL - training did not start"; exit 1; }
victim=""
for pid in $(pgrep -f -- "--run-dir $T/run"); do
  if tr '\0' '\n' </proc/"$pid"/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$pid; fi
done
[[ -n "$victim" ]] || { echo "FAIL - cannot find rank 1"; exit 1; }
kill -STOP "$victim"
start=$(date +%s)
for _ in $(seq 600); do kill -0 "$MPIRUN" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$MPIRUN" 2>/dev/null; then
  echo "FAIL - the job still runs 60 s after rank 1 stopped (a hang)"; exit 1
fi
wait "$MPIRUN"; rc=$?
elapsed=$(( $(date +%s) - start ))
[[ $rc -ne 0 ]] || { echo "FAIL - mpirun exited 0 after a rank stopped"; exit 1; }
grep -q "rank 0: .* on group '.*' (rank 0 of 2) did not complete within 5 s at step [0-9]*" "$T/out.log" || {
  cat "$T/out.log"; echo "FAIL - no message naming the operation, group, step and rank"; exit 1; }
echo "ok - the job ended ${elapsed}s after rank 1 stopped (exit $rc): $(grep -o "rank 0: .*did not complete within 5 s at step [0-9]*" "$T/out.log" | head -1)"
