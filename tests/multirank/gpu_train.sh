#!/usr/bin/env bash
# On a machine with GPUs: the same 10 steps of the tiny model on the CPU (one rank) and on GPUs
# (one rank per GPU through NCCL: tp 2, or dp 1 on a single GPU) give the same loss and final
# parameters within 1e-4 relative (fp32; cuBLAS and CPU GEMMs round differently). Without a GPU
# it reports a skip (exit 77): nothing here can run it.
#   gpu_train.sh EXATRAIN_BIN PYTHON
set -euo pipefail
BIN=$1 PY=$2
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${EXATRAIN_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [[ "$gpus" -lt 1 ]]; then
  echo "SKIP - no CUDA device (torch.cuda.device_count() = 0)"
  exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
COMMON=(--set train.steps=10 --set train.global_batch=8 --set train.micro_batch=2 --set train.seq_len=64
        --set log.every=1 --set log.sample_tokens=0 --set train.threads=1)
"$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/cpu" "${COMMON[@]}" --set train.device=cpu \
  >"$T/cpu.log" 2>&1 || { cat "$T/cpu.log"; exit 1; }
n=$((gpus >= 2 ? 2 : 1))
mpirun -n "$n" -x OMP_NUM_THREADS "$BIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/gpu" "${COMMON[@]}" \
  --set train.device=cuda --set parallel.tp="$n" </dev/null >"$T/gpu.log" 2>&1 || { cat "$T/gpu.log"; exit 1; }
grep -q "device cuda:0" "$T/gpu/train.log" || { echo "FAIL - the GPU run did not place rank 0 on cuda:0"; exit 1; }
"$PY" "$HERE/compare_runs.py" "$T/cpu" "$T/gpu" --rtol 1e-4
echo "PASS: $n GPU rank(s) equal the CPU run"
