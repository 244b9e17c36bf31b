#!/usr/bin/env bash
# Checks a run config against the job's layout, then submits launch/slurm/train.sbatch with one
# rank per GPU and prints the job id, run dir and logs.
#   launch/slurm/submit.sh [OPTIONS] CONFIG [--set key=value ...]
#   launch/slurm/submit.sh --nodes 4 --gpus-per-node 8 configs/train/x.yaml --set parallel.tp=8 --set parallel.pp=4
# Options:
#   --nodes N            nodes (default 1)
#   --gpus-per-node G    GPUs per node = ranks per node (default 8); 0 = a CPU-only job
#   --tasks-per-node T   ranks per node (default G; required with --gpus-per-node 0)
#   --cpus-per-task C    cores and compute threads per rank (default 8)
#   --gpu-memory GIB     memory of one GPU for the fit check (default 80; H100/A100 80 GB)
#   --job-name NAME      the job's name and run dir runs/NAME (default: the config's name); the
#                        same name again continues that run from its latest checkpoint
#   --time T             time limit, e.g. 24:00:00 (default: the script's 24:00:00)
#   --partition P, --account A, --qos Q   passed to sbatch
#   --wait               wait for the job to end; exit with its exit code
#   --dry-run            check and print the sbatch command, submit nothing
# Before anything is queued, `exatrain config check` refuses a config that cannot run on the
# job: a layout that does not fill nodes x ranks per node or does not divide the model, or a
# model whose weights, gradients and optimizer state do not fit one GPU under that layout (a CPU
# job's memory is checked on its node at start-up). The job's output goes to runs/slurm/NAME-JOBID.out/.err.
# EXATRAIN_BIN, EXATRAIN_RUNS (instead of runs/) and EXATRAIN_RUN_DIR change them (see train.sbatch).
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "submit.sh: $*" >&2; exit 2; }

nodes=1 gpus=8 tasks="" cpus=8 gpu_mem=80 name="" wait=0 dry=0 extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
    --gpus-per-node) gpus=${2:?--gpus-per-node needs a value}; shift 2 ;;
    --tasks-per-node) tasks=${2:?--tasks-per-node needs a value}; shift 2 ;;
    --cpus-per-task) cpus=${2:?--cpus-per-task needs a value}; shift 2 ;;
    --gpu-memory) gpu_mem=${2:?--gpu-memory needs a value}; shift 2 ;;
    --job-name) name=${2:?--job-name needs a value}; shift 2 ;;
    --time|--partition|--account|--qos) extra+=("$1=${2:?$1 needs a value}"); shift 2 ;;
    --wait) wait=1; shift ;;
    --dry-run) dry=1; shift ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
for v in nodes gpus cpus; do [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v/gpus/gpus-per-node} must be a whole number, got '${!v}'"; done
(( nodes >= 1 && cpus >= 1 )) || die "--nodes and --cpus-per-task must be at least 1"
if [[ -z "$tasks" ]]; then
  (( gpus > 0 )) || die "--gpus-per-node 0 (CPU job) needs --tasks-per-node"
  tasks=$gpus
fi
[[ $tasks =~ ^[1-9][0-9]*$ ]] || die "--tasks-per-node must be at least 1, got '$tasks'"
(( gpus == 0 || tasks == gpus )) || die "one rank per GPU: --tasks-per-node ($tasks) must equal --gpus-per-node ($gpus)"
[[ $gpu_mem =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--gpu-memory must be a number of GiB, got '$gpu_mem'"
[[ -z "$name" || $name =~ ^[A-Za-z0-9._-]+$ ]] || die "--job-name may hold letters, digits, '.', '_' and '-', got '$name'"
[[ -f "$1" ]] || die "no config file '$1'"
config=$(realpath "$1"); shift
set -- "$config" "$@"
stem=$(basename "$1"); stem=${stem%.*}
[[ -n "$name" ]] || name=$stem
# Paths given in the environment are taken from here, before the cd.
[[ -n "${EXATRAIN_RUNS:-}" ]] && export EXATRAIN_RUNS=$(realpath -m "$EXATRAIN_RUNS")
[[ -n "${EXATRAIN_RUN_DIR:-}" ]] && export EXATRAIN_RUN_DIR=$(realpath -m "$EXATRAIN_RUN_DIR")
[[ -n "${EXATRAIN_BIN:-}" ]] && export EXATRAIN_BIN=$(realpath -m "$EXATRAIN_BIN")

cd "$(dirname "$0")/../.."
# The config against the layout, with the job's --set overrides, before anything waits in a queue.
BIN=${EXATRAIN_BIN:-build/bin/exatrain}
[[ -x "$BIN" ]] || die "$BIN is not executable; build it (launch/setup.sh) or set EXATRAIN_BIN"
check=("$BIN" config check "$1" --ranks "$((nodes * tasks))" --ranks-per-node "$tasks")
((gpus > 0)) && check+=(--gpu-memory "$gpu_mem")
for ((i = 2; i <= $#; i++)); do
  if [[ "${!i}" == --set ]]; then j=$((i + 1)); check+=(--set "${!j}"); i=$j
  elif [[ "${!i}" == --set=* ]]; then check+=("${!i}"); fi
done
"${check[@]}" || die "not submitted: the config does not fit this job (above); change the layout or the job's shape"
RUNS=${EXATRAIN_RUNS:-runs}
LOGS=$RUNS/slurm
cmd=(sbatch --parsable --job-name="$name" --nodes="$nodes" --ntasks-per-node="$tasks" --gpus-per-node="$gpus"
     --cpus-per-task="$cpus" --output="$LOGS/%x-%j.out" --error="$LOGS/%x-%j.err" "${extra[@]}")
((wait)) && cmd+=(--wait)
cmd+=(launch/slurm/train.sbatch "$@")
if ((dry)); then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
mkdir -p "$LOGS"  # Slurm does not create the output directory; a missing one fails the job silently
rc=0
job=$("${cmd[@]}") || rc=$?
job=${job%%;*}
[[ -n "$job" ]] || exit "$((rc ? rc : 1))"
echo "job $job: $((nodes * tasks)) ranks ($nodes x $tasks), run dir ${EXATRAIN_RUN_DIR:-$RUNS/$name}"
echo "logs: $LOGS/$name-$job.out $LOGS/$name-$job.err"
exit "$rc"
