#!/usr/bin/env bash
# The fine-tuning recipes run (configs/finetune/tiny-*.yaml through launch/finetune_example.sh,
# 20 steps each): a base trained on English, then LoRA and a full fine-tune on the Korean
# constitution with Genesis evaluation-only. Checks that both fine-tunes lower the held-out
# Korean loss from the one measured before their first step, that the evaluation-only set is
# evaluated and never trained on, that LoRA trains a small share of the parameters and holds
# less optimizer state, and that the LoRA run exported its PEFT adapter.
#   finetune.sh EXATRAIN_BIN
set -euo pipefail
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
SRC=${EXATRAIN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$SRC/launch/finetune_example.sh" --out "$T/ft" --steps 20 --threads 1 --exatrain "$BIN" --no-setup >"$T/out.log" 2>&1 \
  || { tail -40 "$T/out.log"; echo "FAIL - finetune_example.sh"; exit 1; }
sed -n '/== 4\/4/,$p' "$T/out.log"
"$SRC/.venv/bin/python" - "$T/ft" <<'PY'
import json, os, re, sys
w = sys.argv[1]
fails = []
def metrics(run):
    return [json.loads(l) for l in open(f"{w}/{run}/metrics.jsonl")]
for run in ("lora", "full"):
    vals = [m for m in metrics(run) if "val_loss" in m]
    if len(vals) < 2 or vals[0]["step"] != 0:
        fails.append(f"{run}: validation before the first step missing: {[m['step'] for m in vals]}")
        continue
    ko0, ko1 = vals[0]["val_loss"]["constitution-ko"], vals[-1]["val_loss"]["constitution-ko"]
    if not ko1 < ko0:
        fails.append(f"{run}: held-out constitution-ko loss {ko0:.4f} -> {ko1:.4f} did not fall")
    if "kjv-genesis" not in vals[-1]["val_loss"]:
        fails.append(f"{run}: the evaluation-only kjv-genesis has no val_loss")
    log = open(f"{w}/{run}/train.log").read()
    if re.search(r"dataset kjv-genesis: .*\((\d+) training", log) and not re.search(r"dataset kjv-genesis: .*\(0 training", log):
        fails.append(f"{run}: kjv-genesis (eval_only) has training sequences: " + re.search(r"dataset kjv-genesis: .*", log).group(0))
    print(f"ok - {run}: held-out constitution-ko {ko0:.4f} -> {ko1:.4f}; kjv-genesis (eval only) "
          f"{vals[0]['val_loss']['kjv-genesis']:.4f} -> {vals[-1]['val_loss']['kjv-genesis']:.4f}")
state = {run: metrics(run)[-1]["optimizer_state_bytes"] for run in ("lora", "full")}
if not state["lora"] * 10 < state["full"]:
    fails.append(f"LoRA optimizer state {state['lora']} B is not a tenth of the full fine-tune's {state['full']} B")
for f in ("adapter_config.json", "adapter_model.safetensors"):
    if not os.path.exists(f"{w}/lora/final/adapter/{f}"):
        fails.append(f"lora/final/adapter/{f} missing")
if os.path.exists(f"{w}/full/final/adapter"):
    fails.append("a full fine-tune wrote an adapter")
print(f"ok - optimizer state: LoRA {state['lora']} B, full {state['full']} B")
if fails:
    print("\n".join("FAIL - " + f for f in fails))
    sys.exit(1)
print("PASS: the fine-tuning recipes run and learn")
PY
