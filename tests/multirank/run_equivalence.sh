#!/usr/bin/env bash
# Every parallel layout equals the single-rank run: 10 training steps of the tiny hybrid
# EXAONE-4 model (GQA 4/2, sliding and global layers, tied embeddings) under mpirun, one
# compute thread per rank, 4 micro-batches per step (1F1B fills the pipeline); same loss at every step and same final parameters within 1e-5 (compare_runs.py says
# why). Also checks the bytes each collective moved against the analytical formula.
#   run_equivalence.sh EXATRAIN_BIN PYTHON
set -euo pipefail
BIN=$1 PY=$2
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${EXATRAIN_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
COMMON=(--set train.steps=10 --set train.global_batch=8 --set train.micro_batch=2 --set train.seq_len=64
        --set schedule.warmup_steps=2 --set log.every=1 --set log.sample_tokens=0 --set train.threads=1
        --set parallel.timeout_s=120)
run() {  # run NAME RANKS [--set ...]
  local name=$1 n=$2; shift 2
  mpirun -n "$n" -x OMP_NUM_THREADS "$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/$name" \
    "${COMMON[@]}" "$@" </dev/null >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; echo "FAIL - $name did not run"; exit 1; }
}
"$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/single" "${COMMON[@]}" >"$T/single.log" 2>&1 \
  || { cat "$T/single.log"; exit 1; }

# name ranks tp pp dp zero [more --set]  (tiny: 4 layers; pp 3 splits them unevenly, 2 + 1 + 1;
# "-sp": sequence parallelism; pp3-layers: an explicit split 1 + 2 + 1)
LAYOUTS="dp2 2 1 1 2 0
dp2-zero1 2 1 1 2 1
tp2 2 2 1 1 0
tp2-dp2 4 2 1 2 0
tp2-dp2-zero1 4 2 1 2 1
pp2 2 1 2 1 0
tp2-pp2 4 2 2 1 0
pp2-dp2-zero1 4 1 2 2 1
tp2-pp2-dp2-zero1 8 2 2 2 1
pp3-uneven 3 1 3 1 0
pp4 4 1 4 1 0
tp4 4 4 1 1 0
tp4-dp2-zero1 8 4 1 2 1
tp2-sp 2 2 1 1 0 --set parallel.sequence_parallel=true
tp2-pp2-sp 4 2 2 1 0 --set parallel.sequence_parallel=true
tp2-dp2-zero1-sp 4 2 1 2 1 --set parallel.sequence_parallel=true
tp2-pp2-dp2-zero1-sp 8 2 2 2 1 --set parallel.sequence_parallel=true
tp4-sp 4 4 1 1 0 --set parallel.sequence_parallel=true
pp3-layers 3 1 3 1 0 --set parallel.pipeline_layers=[1,2,1]"
while read -r name n tp pp dp zero more; do
  # shellcheck disable=SC2086  # $more holds extra "--set key=value" words
  run "$name" "$n" --set parallel.tp="$tp" --set parallel.pp="$pp" --set parallel.dp="$dp" --set parallel.zero="$zero" $more
  "$PY" "$HERE/compare_runs.py" "$T/single" "$T/$name" --rtol 1e-5
done <<<"$LAYOUTS"

# Weights held in bf16 (train.weights: bf16, fp32 master weights in the optimizer): every layout
# equals the single-rank bf16 run. The bound is bf16's, not fp32's: TP sums each rank's bf16
# partial product in fp32 and rounds once more, where one rank rounds the whole product once, so
# hidden states differ by bf16 roundings (2^-8 relative) from the first layer on. Adam's eps is
# raised to 1e-3 for these runs: with 1e-8 Adam turns a rounding-sized gradient into a full
# learning-rate step of either sign, and the models of two layouts (bf16 autocast with fp32
# weights as much as bf16 weights) then differ by 8e-3 after 10 steps however right they are.
# Measured with eps 1e-3 (2026-11-30): losses within 1.2e-4, models within 5.7e-4 (worst tensor
# 3.0e-3).
BF16W=(--set train.precision=bf16 --set train.weights=bf16 --set optimizer.eps=1e-3
       --set checkpoint.export_dtype=fp32)  # the fp32 master weights out
run single-bf16w 1 "${BF16W[@]}"
grep -q "weights: bf16" "$T/single-bf16w/config.resolved.yaml"
BF16_LAYOUTS="tp2-pp2-bf16w 4 2 2 1 0
pp2-dp2-zero1-bf16w 4 1 2 2 1
tp2-dp2-zero1-sp-bf16w 4 2 1 2 1 --set parallel.sequence_parallel=true"
while read -r name n tp pp dp zero more; do
  # shellcheck disable=SC2086
  run "$name" "$n" "${BF16W[@]}" --set parallel.tp="$tp" --set parallel.pp="$pp" --set parallel.dp="$dp" \
    --set parallel.zero="$zero" $more
  "$PY" "$HERE/compare_runs.py" "$T/single-bf16w" "$T/$name" --rtol 1.5e-3
done <<<"$BF16_LAYOUTS"
# The weights the trainer holds (its log sums the parameters' real storage) are half of fp32's.
"$PY" - "$T/single.log" "$T/single-bf16w.log" <<'PY'
import re, sys
held = [float(re.search(r"memory on this rank: parameters ([\d.]+) MiB", open(f).read()).group(1)) for f in sys.argv[1:]]
assert abs(held[1] * 2 - held[0]) <= 0.01, f"bf16 weights hold {held[1]} MiB against fp32's {held[0]} MiB"
print(f"weights held: fp32 {held[0]} MiB, bf16 {held[1]} MiB")
PY
# ... and is a different run from fp32 weights with bf16 compute (the residual stream is bf16 now).
run single-bf16 1 --set train.precision=bf16 --set optimizer.eps=1e-3 --set checkpoint.export_dtype=fp32
"$PY" "$HERE/compare_runs.py" "$T/single-bf16" "$T/single-bf16w" --rtol 1e-2 --expect-different 1e-5

# Communication accounting (tp4 replicates the 2 KV heads over pairs of ranks).
"$PY" "$HERE/comm_bytes.py" "$T/tp2-dp2-zero1" --exatrain "$BIN" --tp 2 --dp 2 --zero 1 --micro-batch 2 --rows-per-rank 4 --seq-len 64
"$PY" "$HERE/comm_bytes.py" "$T/tp2-dp2" --exatrain "$BIN" --tp 2 --dp 2 --zero 0 --micro-batch 2 --rows-per-rank 4 --seq-len 64
"$PY" "$HERE/comm_bytes.py" "$T/tp4" --exatrain "$BIN" --tp 4 --dp 1 --zero 0 --micro-batch 2 --rows-per-rank 8 --seq-len 64
"$PY" "$HERE/comm_bytes.py" "$T/tp2-dp2-zero1-sp" --exatrain "$BIN" --tp 2 --dp 2 --zero 1 --micro-batch 2 --rows-per-rank 4 --seq-len 64 --sp
"$PY" "$HERE/comm_bytes.py" "$T/tp4-sp" --exatrain "$BIN" --tp 4 --dp 1 --zero 0 --micro-batch 2 --rows-per-rank 8 --seq-len 64 --sp
# bf16 weights: ZeRO-1 all-gathers bf16, TP moves bf16 hidden states, the optimizer keeps a bf16 copy.
"$PY" "$HERE/comm_bytes.py" "$T/tp2-dp2-zero1-sp-bf16w" --exatrain "$BIN" --tp 2 --dp 2 --zero 1 --micro-batch 2 --rows-per-rank 4 --seq-len 64 --sp
# 1F1B bounds activation memory: over 2 stages, stage 0 holds at most 2 micro-batches (GPipe
# would hold all of them); its measured peak does not grow from 4 to 8 micro-batches.
for m in 1 4 8; do
  run "pp2-m$m" 2 --set parallel.pp=2 --set parallel.dp=1 --set train.global_batch=$((2 * m)) --set train.steps=2
done
"$PY" "$HERE/activation_memory.py" "$T/pp2-m1" "$T/pp2-m4" "$T/pp2-m8"
echo "PASS: every layout equals the single-rank run"
