#!/usr/bin/env bash
# Runs exatrain on N local ranks under Open MPI (one compute thread per rank; root and
# oversubscription allowed, for laptops, CI and containers).
#   launch/local.sh -n N exatrain train CONFIG [--set parallel.tp=2 ...]
#   launch/local.sh -n 4 exatrain train configs/train/tiny-demo.yaml --set parallel.tp=2
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
[[ "${1:-}" == "-n" && -n "${2:-}" ]] || { usage >&2; exit 1; }
N=$2; shift 2
[[ "${1:-}" == "exatrain" ]] && shift
[[ -x build/bin/exatrain ]] || { echo "local.sh: build/bin/exatrain is missing; run launch/setup.sh" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec mpirun -n "$N" -x OMP_NUM_THREADS build/bin/exatrain "$@" --set train.threads="$OMP_NUM_THREADS"
