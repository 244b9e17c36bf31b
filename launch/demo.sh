#!/usr/bin/env bash
# The main job: set-up, then a real small training run. The tiny EXAONE-4 model learns the bytes
# of Genesis (KJV) for 300 steps, the loss falls, and it prints a sampled continuation.
#   launch/demo.sh [--set key=value ...]      (e.g. --set train.steps=100)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
./launch/setup.sh
RUN_DIR=runs/demo-$(date +%Y%m%d-%H%M%S)
./build/bin/exatrain train configs/train/tiny-demo.yaml --run-dir "$RUN_DIR" "$@"
echo "run directory: $RUN_DIR (metrics.jsonl, train.log, final/ in Hugging Face format)"
