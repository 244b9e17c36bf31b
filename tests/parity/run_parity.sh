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
