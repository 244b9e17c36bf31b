#!/usr/bin/env bash
# The main job: set-up, then a real small training run on 4 local ranks (tensor parallel 2 x
# pipeline parallel 2, 1F1B). The tiny EXAONE-4 model learns the bytes of Genesis (KJV) for
# 300 steps, the loss falls, and it prints a sampled continuation.
#   launch/demo.sh [--set key=value ...]      (e.g. --set train.steps=100)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
./launch/setup.sh
RUN_DIR=runs/demo-$(date +%Y%m%d-%H%M%S)
./launch/local.sh -n 4 exatrain train configs/train/tiny-demo.yaml --run-dir "$RUN_DIR" \
  --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=1 "$@"
echo "run directory: $RUN_DIR (metrics.jsonl, train.log, final/ in Hugging Face format)"
