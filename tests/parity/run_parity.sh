#!/usr/bin/env bash
# Parity with transformers: random Exaone4ForCausalLM models saved by save_pretrained; exatrain's
# logits within 1e-4 max-abs and gradients within 1e-4 relative.
#   run_parity.sh EXATRAIN_BIN PYTHON
set -euo pipefail
BIN=$1 PY=$2
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" "$HERE/make_models.py" "$WORK/models"
"$PY" "$HERE/check_logits.py" --exatrain "$BIN" --models "$WORK/models" --tol 1e-4 --grad-rtol 1e-4
# train.weights: bf16 computes as transformers' bf16 model does.
"$PY" "$HERE/check_bf16_weights.py" --exatrain "$BIN" --models "$WORK/models" 2> >(grep -v "^Loading weights" >&2)

# The other direction: weights exatrain trains and saves load in transformers and compute the
# same logits and gradients (tiny preset: hybrid, GQA, tied, llama3 RoPE; 3 training steps).
SRC=${EXATRAIN_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
"$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$WORK/run" --set train.steps=3 \
  --set schedule.warmup_steps=1 --set log.sample_tokens=0 --set train.threads=1 2>/dev/null
mkdir -p "$WORK/exported" && cp -r "$WORK/run/final" "$WORK/exported/trained_tiny"
"$PY" - "$WORK/exported/trained_tiny/tokens.txt" <<'PY'
import random, sys
random.seed(3)
with open(sys.argv[1], "w") as f:
    for _ in range(2):
        f.write(" ".join(str(random.randrange(320)) for _ in range(48)) + "\n")
PY
"$PY" "$HERE/check_logits.py" --exatrain "$BIN" --models "$WORK/exported" --tol 1e-4 --grad-rtol 1e-4
