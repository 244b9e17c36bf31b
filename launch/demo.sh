#!/usr/bin/env bash
# The main job: set-up, then the whole path from raw text to a trained model on 4 local ranks:
#   1. train a byte-level BPE tokenizer (2,048 ids, EXAONE special tokens) on the bundled English
#      and Korean public-domain text (data/corpora/: KJV Genesis, the Korean constitution);
#   2. tokenize both into shards with manifests (license, source, checksums) and verify them;
#   3. train the tiny EXAONE-4 model on the two datasets blended 3:1 for 300 steps, tensor
#      parallel 2 x pipeline parallel 2 (1F1B), with validation loss per dataset every 100 steps;
#      checkpoint every 100 steps (written beside training), end with a bf16 Hugging Face release
#      in RUN/final (weights, tokenizer, chat template, model card, SHA256SUMS) and a decoded sample.
#   launch/demo.sh [--set key=value ...]      (training overrides, e.g. --set train.steps=100)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
./launch/setup.sh
DEMO=runs/demo  # configs/train/demo.yaml reads the tokenizer and datasets from here
echo "== 1-2/3 tokenizer and datasets (launch/demo_data.sh)"
./launch/demo_data.sh "$DEMO"

echo "== 3/3 training: tiny EXAONE-4 on 4 ranks (TP 2 x PP 2)"
RUN_DIR=$DEMO/train-$(date +%Y%m%d-%H%M%S)
./launch/local.sh -n 4 exatrain train configs/train/demo.yaml --run-dir "$RUN_DIR" "$@"
echo "run directory: $RUN_DIR (metrics.jsonl, train.log, memory.json, checkpoints/, final/)"
echo "the release: $RUN_DIR/final ($(cd "$RUN_DIR/final" && sha256sum -c --quiet SHA256SUMS && echo 'SHA256SUMS verified'))"
echo "load it:     .venv/bin/python -c \"from transformers import AutoModelForCausalLM, AutoTokenizer; \\
  m = AutoModelForCausalLM.from_pretrained('$RUN_DIR/final'); t = AutoTokenizer.from_pretrained('$RUN_DIR/final')\""
