#!/usr/bin/env bash
# Exposed gradient communication, overlapped vs blocking (docs/performance.md "Gradient reduction
# overlapped with backward"): per layout, the same run twice in a row, the baseline with
# parallel.grad_overlap: false (the same buckets reduced after backward) and then overlapped. Prints,
# over the steps after the first 3, the median of exposed_comm_s (each step's worst rank: the
# host's wait for gradient reductions after its last backward), of step_s, and the ratios.
#   tests/bench/bench_overlap.sh [EXATRAIN_BIN] [STEPS] [BUCKET_MB] [-- extra --set words for every run]
# Layouts: dp 4 (zero 0), dp 4 ZeRO-1, pp 2 x dp 2 ZeRO-1, on 4 local CPU ranks, one thread each.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(realpath "${1:-$SRC/build/bin/exatrain}")
STEPS=${2:-30}
BUCKET_MB=${3:-1}
shift $(($# < 3 ? $# : 3))
[[ "${1:-}" == "--" ]] && shift
EXTRA=("$@")
PY=$SRC/.venv/bin/python
T=$(mktemp -d -p "${TMPDIR:-/tmp}")
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
COMMON=(--set train.steps="$STEPS" --set schedule.warmup_steps=2 --set train.global_batch=16 --set train.micro_batch=2
        --set train.seq_len=128 --set log.every=1 --set log.sample_tokens=0 --set train.threads=1
        --set checkpoint.save_final=false --set parallel.grad_bucket_mb="$BUCKET_MB" "${EXTRA[@]}")
echo "# tests/bench/bench_overlap.sh $BIN $STEPS $BUCKET_MB${EXTRA[*]:+ -- ${EXTRA[*]}}; $(getconf _NPROCESSORS_ONLN) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| layout | buckets | exposed comm, blocking | exposed comm, overlapped | ratio | step, blocking | step, overlapped | ratio |\n|---|---|---|---|---|---|---|---|\n'
for layout in "dp4 --set parallel.dp=4" "dp4-zero1 --set parallel.dp=4 --set parallel.zero=1" \
              "pp2-dp2-zero1 --set parallel.pp=2 --set parallel.dp=2 --set parallel.zero=1"; do
  read -r name sets <<<"$layout"
  for overlap in 0 1; do
    # shellcheck disable=SC2086  # $sets holds "--set key=value" words
    mpirun -n 4 -x OMP_NUM_THREADS \
      "$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/$name-$overlap" "${COMMON[@]}" $sets \
      --set parallel.grad_overlap="$([[ $overlap == 1 ]] && echo true || echo false)" \
      </dev/null >"$T/$name-$overlap.log" 2>&1 || { tail -20 "$T/$name-$overlap.log"; exit 1; }
  done
  "$PY" - "$T/$name-0/metrics.jsonl" "$T/$name-1/metrics.jsonl" "$name" <<'PY'
import json, statistics, sys
def med(path, key, sub=None):
    rows = [json.loads(l) for l in open(path)][3:]
    return statistics.median(r[key][sub] if sub else r[key] for r in rows), rows[-1]["grad_buckets"]["count"]
eb, n = med(sys.argv[1], "exposed_comm_s", "max")
eo, _ = med(sys.argv[2], "exposed_comm_s", "max")
sb, _ = med(sys.argv[1], "step_s")
so, _ = med(sys.argv[2], "step_s")
print(f"| {sys.argv[3]} | {n} | {eb * 1e3:.1f} ms | {eo * 1e3:.1f} ms | {eo / eb:.2f}x | {sb * 1e3:.0f} ms | "
      f"{so * 1e3:.0f} ms | {so / sb:.2f}x |")
PY
done
