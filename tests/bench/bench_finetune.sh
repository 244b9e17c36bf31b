#!/usr/bin/env bash
# LoRA against a full fine-tune on the CPU, side by side in one run (docs/finetune.md): the small
# preset (100M parameters) saved as a Hugging Face directory is fine-tuned both ways from the same
# weights on the same bytes (KJV Genesis), same layout, same threads; prints steps/s (median step),
# the ratio LoRA / full, and per rank the memory the trainer reports (weights, gradients, optimizer
# state) and its measured peak activations.
#   tests/bench/bench_finetune.sh [BUILD_DIR] [--steps N] [--seq S] [--ranks R] [--precision fp32|bf16]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$SRC/build
STEPS=8 SEQ=256 RANKS=1 PRECISION=fp32
while (($#)); do
  case $1 in
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --steps) STEPS=$2; shift 2 ;;
    --seq) SEQ=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --precision) PRECISION=$2; shift 2 ;;
    *) BUILD=$1; shift ;;
  esac
done
BIN=$BUILD/bin/exatrain
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
launch=()
((RANKS > 1)) && launch=(mpirun -n "$RANKS")

# The base: one step of lr 1e-12 from the seed's initialisation, exported (a Hugging Face dir).
cat >"$T/base.yaml" <<EOF
model: {preset: small, vocab_size: 512}
train: {steps: 1, global_batch: 4, micro_batch: 4, seq_len: $SEQ}
optimizer: {lr: 1.0e-12}
schedule: {type: constant}
data: {path: $SRC/data/corpora/kjv-genesis.txt, format: text}
checkpoint: {export_dtype: fp32}
log: {sample_tokens: 0}
EOF
"$BIN" train "$T/base.yaml" --run-dir "$T/base" >/dev/null
for mode in full lora; do
  lora="lora: {rank: 0}"
  [[ $mode == lora ]] && lora="lora: {rank: 16, alpha: 32, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}"
  cat >"$T/$mode.yaml" <<EOF
init: {from_hf: $T/base/final}
$lora
parallel: {tp: 1, pp: 1}
train: {steps: $STEPS, global_batch: 4, micro_batch: 4, seq_len: $SEQ, precision: $PRECISION}
optimizer: {lr: 1.0e-4}
schedule: {type: constant}
data: {path: $SRC/data/corpora/kjv-genesis.txt, format: text}
checkpoint: {save_final: false}
log: {sample_tokens: 0, every: 1}
EOF
  "${launch[@]}" "$BIN" train "$T/$mode.yaml" --run-dir "$T/$mode" >/dev/null 2>&1 || { cat "$T/$mode/train.log"; exit 1; }
  [[ -n ${KEEP:-} ]] && cp -r "$T/$mode" "$KEEP/"
done
python3 - "$T" "$STEPS" "$SEQ" "$RANKS" "$PRECISION" <<'PY'
import json, re, sys
t, steps, seq, ranks, precision = sys.argv[1:]
def report(run):
    step_s = [json.loads(l)["step_s"] for l in open(f"{t}/{run}/metrics.jsonl")][1:]  # the first step warms up
    log = open(f"{t}/{run}/train.log").read()
    mem = re.search(r"parameters ([\d.]+) MiB, gradients ([\d.]+) MiB, optimizer state ([\d.]+) MiB", log)
    peak = max(r["peak_activation_bytes"] for r in json.load(open(f"{t}/{run}/memory.json"))["ranks"]) / 2**20
    return sorted(step_s)[len(step_s) // 2], [float(x) for x in mem.groups()], peak
full, lora = report("full"), report("lora")
print(f"small preset (vocab 512), {ranks} rank(s), seq {seq}, batch 4, {precision}, {steps} steps (median of steps 2..)")
print(f"{'':6} {'steps/s':>8} {'weights MiB':>12} {'grads MiB':>10} {'optim MiB':>10} {'activ. MiB':>11}")
for name, (s, (w, g, o), a) in (("full", full), ("LoRA", lora)):
    print(f"{name:6} {1 / s:8.3f} {w:12.1f} {g:10.1f} {o:10.1f} {a:11.1f}")
print(f"LoRA / full: {full[0] / lora[0]:.2f}x steps/s; static memory {sum(lora[1]) / sum(full[1]):.3f}x "
      f"({sum(lora[1]):.1f} vs {sum(full[1]):.1f} MiB); peak activations {lora[2] / full[2]:.2f}x")
PY
