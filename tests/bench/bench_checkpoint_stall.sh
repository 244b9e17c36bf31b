#!/usr/bin/env bash
# Training stall per checkpoint save, synchronous vs checkpoint.async, as a share of a step
# (docs/performance.md). The small preset (100,684,032 parameters: a 1.2 GB fp32 state of master
# weights and both Adam moments) on one rank, a checkpoint every 2 steps; the figures come from
# RUN/checkpoints.jsonl (stall_s: the time the training loop was held up; step_s: mean step).
#   tests/bench/bench_checkpoint_stall.sh [EXATRAIN_BIN] [STEPS]
set -euo pipefail
BIN=${1:-build/bin/exatrain}
STEPS=${2:-8}
T=$(mktemp -d -p "${TMPDIR:-/tmp}")
trap 'rm -rf "$T"' EXIT
cat >"$T/run.yaml" <<YAML
model:
  preset: small
train:
  steps: $STEPS
  global_batch: 2
  micro_batch: 2
  seq_len: 256
  threads: 2
schedule:
  warmup_steps: 1
data:
  path: $(cd "$(dirname "$0")/../.." && pwd)/data/corpora/kjv-genesis.txt
  format: text
checkpoint:
  every: 2
  keep: 1
  save_final: false
log:
  every: 100
YAML
for mode in false true; do
  "$BIN" train "$T/run.yaml" --run-dir "$T/$mode" --set checkpoint.async=$mode >"$T/$mode.log" 2>&1 \
    || { cat "$T/$mode.log"; exit 1; }
  python3 - "$T/$mode/checkpoints.jsonl" "$mode" <<'PY'
import json, sys
saves = [json.loads(l) for l in open(sys.argv[1])]
mid = [s for s in saves if s["checkpoint"] < max(x["checkpoint"] for x in saves)]  # the last one is the end of training
step = mid[-1]["step_s"]
stall = sum(s["stall_s"] for s in mid) / len(mid)
secs = sum(s["seconds"] for s in mid) / len(mid)
gb = mid[0]["bytes"] / 1e9
print(f"async={sys.argv[2]:5s}: {len(mid)} saves of {gb:.2f} GB, each {secs:.2f} s ({gb / secs:.2f} GB/s); "
      f"training stalled {stall:.3f} s per save = {100 * stall / step:.1f}% of a {step:.2f} s step")
PY
done
