#!/usr/bin/env bash
# The fine-tuning worked example of docs/finetune.md, on the bundled public-domain text:
#   1. a byte-level BPE tokenizer (2,048 ids) on data/corpora (English + Korean) and two datasets:
#      KJV Genesis (English) and the Korean constitution (the "domain");
#   2. the base model: the tiny preset trained on English only (configs/finetune/tiny-base.yaml),
#      exported to runs/finetune/base/final as a Hugging Face release (the "released weights");
#   3. the expert: LoRA (configs/finetune/tiny-lora.yaml) and, side by side, a full fine-tune
#      (tiny-full.yaml) on the Korean constitution, with English Genesis as an evaluation-only
#      set; each reports the held-out loss before the first step and after the last;
#   4. a table: held-out losses before -> after, steps/s, parameters that train, and memory per
#      rank (weights, gradients, optimizer state from the trainer's log; peak activations from
#      RUN/memory.json).
#   launch/finetune_example.sh [--out DIR] [--steps N] [--threads N] [--exatrain BIN] [--no-setup]
#     --out DIR   where everything goes (default runs/finetune, where configs/finetune/tiny-*.yaml
#                 look; elsewhere the configs are copied there with their paths changed); paths
#                 are relative to the repository
#     --steps N   steps of each training (default: the configs': 300 base, 200 fine-tunes)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=0 W=runs/finetune STEPS="" EXATRAIN=build/bin/exatrain SETUP=1
while (($#)); do
  case $1 in
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --threads) THREADS=$2; shift 2 ;;
    --out) W=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --exatrain) EXATRAIN=$2; shift 2 ;;
    --no-setup) SETUP=0; shift ;;
    *) echo "finetune_example.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
((SETUP)) && ./launch/setup.sh
PY=.venv/bin/python
# Start clean, but only over an earlier run of this script (it leaves a marker).
if [[ -e $W && -n $(ls -A "$W") && ! -e $W/.finetune_example ]]; then
  echo "finetune_example.sh: '$W' exists and was not made by this script; choose another --out" >&2
  exit 2
fi
rm -rf "$W"
mkdir -p "$W" && touch "$W/.finetune_example"
echo "== 1/4 tokenizer and datasets (launch/demo_data.sh)"
EXATRAIN=$EXATRAIN ./launch/demo_data.sh "$W"
W=$(cd "$W" && pwd)
# The configs, with their runs/finetune paths pointing into $W.
mkdir -p "$W/configs"
for c in tiny-base tiny-lora tiny-full; do
  sed "s#\.\./\.\./runs/finetune#$W#g" "configs/finetune/$c.yaml" >"$W/configs/$c.yaml"
done
sets=(--set train.threads="$THREADS")
[[ -n $STEPS ]] && sets+=(--set train.steps="$STEPS" --set train.eval_every="$STEPS" --set schedule.warmup_steps=0)

echo "== 2/4 base model: tiny preset on English only"
"$EXATRAIN" train "$W/configs/tiny-base.yaml" --run-dir "$W/base" "${sets[@]}"

echo "== 3/4 fine-tunes on the Korean constitution: LoRA, then full"
"$EXATRAIN" train "$W/configs/tiny-lora.yaml" --run-dir "$W/lora" "${sets[@]}"
"$EXATRAIN" train "$W/configs/tiny-full.yaml" --run-dir "$W/full" "${sets[@]}"

echo "== 4/4 side by side"
"$PY" - "$W/lora" "$W/full" <<'PY'
import json, re, sys

def report(run):
    metrics = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    vals = [m for m in metrics if "val_loss" in m]
    steps = [m for m in metrics if "loss" in m and "tokens_per_s" in m]
    log = open(f"{run}/train.log").read()
    mem = re.search(r"memory on this rank: parameters ([\d.]+) MiB, gradients ([\d.]+) MiB, "
                    r"optimizer state ([\d.]+) MiB", log)
    trainable = re.search(r"trainable: (\d+) of (\d+)", log)
    peak = max(r["peak_activation_bytes"] for r in json.load(open(f"{run}/memory.json"))["ranks"]) / 2**20
    step_s = [m["step_s"] for m in steps if "step_s" in m]
    return dict(before=vals[0]["val_loss"], after=vals[-1]["val_loss"],
                steps_per_s=1 / sorted(step_s)[len(step_s) // 2] if step_s else float("nan"),  # median step
                params=float(mem.group(1)), grads=float(mem.group(2)), optim=float(mem.group(3)), peak=peak,
                trainable=f"{int(trainable.group(1)):,} of {int(trainable.group(2)):,}" if trainable else "all")

rows = {name: report(run) for name, run in zip(["LoRA", "full"], sys.argv[1:])}
print(f"{'':6} {'constitution-ko held-out':>26} {'kjv-genesis (eval only)':>26} {'steps/s':>8} "
      f"{'weights':>9} {'grads':>8} {'optim':>8} {'activ.':>8}  trains")
for name, r in rows.items():
    ko = f"{r['before']['constitution-ko']:.3f} -> {r['after']['constitution-ko']:.3f}"
    en = f"{r['before']['kjv-genesis']:.3f} -> {r['after']['kjv-genesis']:.3f}"
    print(f"{name:6} {ko:>26} {en:>26} {r['steps_per_s']:8.2f} {r['params']:7.2f}Mi {r['grads']:6.2f}Mi "
          f"{r['optim']:6.2f}Mi {r['peak']:6.2f}Mi  {r['trainable']}")
PY
echo "the expert: $W/lora/final (merged weights) and $W/lora/final/adapter (PEFT adapter on $W/base/final)"
