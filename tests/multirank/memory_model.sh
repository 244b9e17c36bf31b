#!/usr/bin/env bash
# The cost model (trainer/plan/cost_model.h) against the trainer's own measurements, on 1-4 CPU
# ranks under mpirun: 8 layouts of the tiny preset and 8 of the small one (TP, sequence
# parallelism, PP with 1F1B, DP with ZeRO-1, recomputation). Every pipeline stage's predicted
# peak activation memory (`exatrain model info --json`, stages[].bytes.peak_activations),
# resident bytes at a step's start (total_before_activations) and their sum must be within 10%
# of what the memory tracker measured (RUN/memory.json); the bytes per collective must equal
# metrics.jsonl's comm_bytes. The step times (`exatrain plan --layout`, with this machine's
# measured GEMM peak and MPI bandwidth) are judged for the small runs, which run one at a time
# on 1 or 2 ranks, one core each: every pair predicted more than 25% apart must be measured in
# that order (memory_model.py). The tiny runs run two at a time, so their times are only printed.
# 80-90 s on 2 quiet cores (KEEP_RUNS=1 keeps the run directories).
#   memory_model.sh EXATRAIN_BIN PYTHON
set -euo pipefail
BIN=$1 PY=$2
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${EXATRAIN_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
T=$(mktemp -d)
[[ -n "${KEEP_RUNS:-}" ]] && echo "runs in $T" || trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
COMMON=(--set train.steps=2 --set schedule.warmup_steps=1 --set log.every=1 --set log.sample_tokens=0
        --set train.threads=1 --set parallel.timeout_s=120 --set checkpoint.save_final=false)
# CPU seconds: the machine's busy time (/proc/stat: user nice system irq softirq steal, in
# USER_HZ ticks), and what this shell's finished children used (bash's `times`, called in the
# shell itself: its second line, "0m1.234s 0m0.056s").
machine_cpu() { read -r _ u n s _ _ i q st _ </proc/stat; echo "$(( u + n + s + i + q + st )) $(getconf CLK_TCK)"; }
children_cpu() { tail -1 "$1" | sed 's/\([0-9]*\)m\([0-9.]*\)s/\1 \2/g' | awk '{print $1 * 60 + $2 + $3 * 60 + $4}'; }
run() {  # run NAME RANKS [--set ...]; RUN/others.json: CPU the machine's other processes used meanwhile
  local name=$1 n=$2 t0=$SECONDS m0 m1 w0 w1; shift 2
  m0=$(machine_cpu); w0=$(date +%s.%N); times >"$T/.$name.times0"
  mpirun -n "$n" -x OMP_NUM_THREADS "$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/$name" \
    "${COMMON[@]}" "$@" </dev/null >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; echo "FAIL - $name did not run"; exit 1; }
  times >"$T/.$name.times1"; m1=$(machine_cpu); w1=$(date +%s.%N)
  # fields: machine ticks before, ticks/s, after, ticks/s; our CPU s before, after; wall before, after
  echo "$m0 $m1 $(children_cpu "$T/.$name.times0") $(children_cpu "$T/.$name.times1") $w0 $w1" |
    awk '{printf "{\"wall_s\": %.3f, \"other_cpu_s\": %.3f}\n", $8 - $7, ($3 - $1) / $2 - ($6 - $5)}' \
    >"$T/$name/others.json"
  echo "  $name: $((SECONDS - t0)) s"
}
TINY=(--set train.seq_len=128 --set train.global_batch=16 --set train.micro_batch=4)
# name ranks [--set ...]; two at a time (memory and bytes do not depend on the cores' sharing)
run tiny-1 1 "${TINY[@]}" & A=$!
run tiny-recompute 1 "${TINY[@]}" --set train.recompute=full; wait $A
run tiny-tp2 2 "${TINY[@]}" --set parallel.tp=2 & A=$!
run tiny-tp2-sp 2 "${TINY[@]}" --set parallel.tp=2 --set parallel.sequence_parallel=true; wait $A
run tiny-pp2 2 "${TINY[@]}" --set parallel.pp=2 & A=$!
run tiny-dp2-zero1 2 "${TINY[@]}" --set parallel.dp=2 --set parallel.zero=1; wait $A
run tiny-pp4-recompute 4 "${TINY[@]}" --set parallel.pp=4 --set train.recompute=full & A=$!
run tiny-tp2-pp2 4 "${TINY[@]}" --set parallel.tp=2 --set parallel.pp=2; wait $A
# The ranks' link: the bus bandwidth of a 64 MiB all-reduce between 2 ranks (the size of the
# small runs' DP and tied-embedding reductions), measured by the trainer's own collectives.
LINK=$(mpirun -n 2 "$BIN" bench comm --ops all_reduce --bytes 64M --iters 3 --json </dev/null |
       "$PY" -c 'import json, sys; print(json.load(sys.stdin)["results"][0]["busbw_gb_s"])')
echo "  link: $LINK GB/s (exatrain bench comm, all_reduce of 64 MiB on 2 ranks)"
"$PY" "$HERE/memory_model.py" "$BIN" --link-gb-s "$LINK" "$T"/tiny-*/

# small: its 32k vocabulary and width, 4 of its 12 layers (a step in 1.5-4 s); one run at a time,
# at most 2 ranks with one thread each, so that every rank has a core of its own and their step
# times compare; 4 steps, the median of the last 3 is judged.
SMALL=(--set model.preset=small --set model.num_layers=4 --set train.seq_len=64 --set train.global_batch=4
       --set train.micro_batch=2 --set train.steps=4)
run small-1 1 "${SMALL[@]}"
run small-1-recompute 1 "${SMALL[@]}" --set train.recompute=full
run small-dp2 2 "${SMALL[@]}" --set parallel.dp=2
run small-dp2-zero1 2 "${SMALL[@]}" --set parallel.dp=2 --set parallel.zero=1
run small-tp2-sp 2 "${SMALL[@]}" --set parallel.tp=2 --set parallel.sequence_parallel=true
run small-tp2-sp-recompute 2 "${SMALL[@]}" --set parallel.tp=2 --set parallel.sequence_parallel=true \
  --set train.recompute=full
run small-pp2 2 "${SMALL[@]}" --set parallel.pp=2 --set train.micro_batch=4
run small-pp2-m4 2 "${SMALL[@]}" --set parallel.pp=2 --set train.micro_batch=1
"$PY" "$HERE/memory_model.py" "$BIN" --judge-order 0.25 --link-gb-s "$LINK" "$T"/small-*/
