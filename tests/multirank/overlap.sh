#!/usr/bin/env bash
# Gradient reduction overlapped with backward (trainer/optim/grad_buckets.h), judged on CPU ranks
# with small buckets (parallel.grad_bucket_mb=0.05: a dozen or more per rank on the tiny model),
# so buckets really start during backward and straddle the ZeRO-1 slices:
#   - per layout, the overlapped run equals the blocking run (parallel.grad_overlap: false, the same
#     buckets after backward) bit for bit, and the single-rank run within 1e-5;
#   - the overlapped run started all buckets but at most one during backward (metrics.jsonl
#     grad_buckets), the blocking run none; both report exposed_comm_s;
#   - bytes per collective still equal the analytical formula (comm_bytes.py);
#   - a NaN injected into the last stage's tied-embedding gradient is traced to that rank, not to
#     the first stage it would reach through the tied exchange.
#   overlap.sh EXATRAIN_BIN PYTHON
set -euo pipefail
BIN=$1 PY=$2
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${EXATRAIN_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
COMMON=(--set train.steps=6 --set train.global_batch=8 --set train.micro_batch=2 --set train.seq_len=64
        --set schedule.warmup_steps=2 --set log.every=1 --set log.sample_tokens=0 --set train.threads=1
        --set parallel.timeout_s=120 --set parallel.grad_bucket_mb=0.05)
fail() { echo "FAIL - $*"; exit 1; }
run() {  # run NAME RANKS OVERLAP [--set ...]
  local name=$1 n=$2 overlap=$3; shift 3
  timeout -k 5 300 mpirun -n "$n" -x OMP_NUM_THREADS \
    "$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/$name" "${COMMON[@]}" \
    --set parallel.grad_overlap="$([[ $overlap == 1 ]] && echo true || echo false)" "$@" \
    </dev/null >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; fail "$name did not run"; }
}
"$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/single" "${COMMON[@]}" >"$T/single.log" 2>&1 \
  || { cat "$T/single.log"; fail "single-rank run"; }

# name ranks [--set ...]: DP with uneven ZeRO-1 parts; tied embedding across PP stages (buckets
# start only in the last micro-batch's backward); TP sums on their own communicator, with SP;
# replicated KV heads (tp 4 > 2 KV heads); recomputation (hooks inside the nested backward).
LAYOUTS="dp4-zero1 4 --set parallel.dp=4 --set parallel.zero=1
pp2-dp2-zero1 4 --set parallel.pp=2 --set parallel.dp=2 --set parallel.zero=1
tp2-dp2 4 --set parallel.tp=2 --set parallel.dp=2
tp2-pp2-dp2-zero1-sp 8 --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=2 --set parallel.zero=1 --set parallel.sequence_parallel=true
tp4 4 --set parallel.tp=4
dp2-recompute 2 --set parallel.dp=2 --set train.recompute=full"
while read -r name n more; do
  # shellcheck disable=SC2086  # $more holds extra "--set key=value" words
  run "$name" "$n" 1 $more
  # shellcheck disable=SC2086
  run "$name-blocking" "$n" 0 $more
  "$PY" "$HERE/compare_runs.py" "$T/$name-blocking" "$T/$name" --rtol 0 >/dev/null \
    || { "$PY" "$HERE/compare_runs.py" "$T/$name-blocking" "$T/$name" --rtol 0; fail "$name: overlapped != blocking"; }
  "$PY" "$HERE/compare_runs.py" "$T/single" "$T/$name" --rtol 1e-5 || fail "$name differs from one rank"
  "$PY" - "$T/$name/metrics.jsonl" "$T/$name-blocking/metrics.jsonl" "$name" <<'PY'
import json, sys
over = [json.loads(l) for l in open(sys.argv[1])]
block = [json.loads(l) for l in open(sys.argv[2])]
for m in over + block:
    e = m["exposed_comm_s"]
    assert 0 <= e["min"] <= e["median"] <= e["max"], f"exposed_comm_s out of order: {e}"
for m in over:
    b = m["grad_buckets"]
    assert b["overlap"] and b["count"] > 1, f"step {m['step']}: {b}"
    assert b["started_in_backward"] >= b["count"] - 1, f"step {m['step']}: too few buckets started in backward: {b}"
for m in block:
    b = m["grad_buckets"]
    assert not b["overlap"] and b["started_in_backward"] == 0, f"blocking step {m['step']}: {b}"
b = over[-1]["grad_buckets"]
print(f"ok - {sys.argv[3]}: overlapped == blocking bit for bit; rank 0 started {b['started_in_backward']} of "
      f"{b['count']} buckets in backward; exposed comm (max over ranks) {over[-1]['exposed_comm_s']['max']:.4f} s "
      f"vs blocking {block[-1]['exposed_comm_s']['max']:.4f} s")
PY
done <<<"$LAYOUTS"

# Bytes per collective: buckets partition the padded buffer, so the sums equal the formula.
run tp2-dp2-zero1 4 1 --set parallel.tp=2 --set parallel.dp=2 --set parallel.zero=1
"$PY" "$HERE/comm_bytes.py" "$T/tp2-dp2-zero1" --exatrain "$BIN" --tp 2 --dp 2 --zero 1 --micro-batch 2 --rows-per-rank 4 --seq-len 64
"$PY" "$HERE/comm_bytes.py" "$T/tp2-dp2" --exatrain "$BIN" --tp 2 --dp 2 --zero 0 --micro-batch 2 --rows-per-rank 4 --seq-len 64

# Rank 2 is the last stage (pp 1, dp 0): its first parameter is the tied embedding's copy, whose
# gradient goes to rank 0 in the tied exchange. Checked before that exchange, rank 2 is named.
rc=0
EXATRAIN_FAULT_INJECT=nan_grad@3:2 timeout -k 5 300 mpirun -n 4 -x OMP_NUM_THREADS \
  -x EXATRAIN_FAULT_INJECT "$BIN" train \
  "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/nan" "${COMMON[@]}" --set parallel.pp=2 --set parallel.dp=2 \
  --set parallel.zero=1 </dev/null >"$T/nan.log" 2>&1 || rc=$?
line=$(grep '^exatrain: error:' "$T/nan.log" | head -1)
((rc == 1)) && [[ $line == *"step 3: the gradient norm is "*"first seen on rank 2: pipeline stage 1, tp rank 0, dp rank 0"* ]] \
  || { cat "$T/nan.log"; fail "NaN in the tied embedding's gradient on rank 2 (exit $rc): $line"; }
echo "ok - a NaN in rank 2's tied-embedding gradient is traced to rank 2 with overlapped buckets"
echo "PASS: overlapped gradient reduction"
