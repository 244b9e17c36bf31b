#!/usr/bin/env bash
# Kill and resume, many times (docs/performance.md "Kill and resume"; the suite's version is
# tests/e2e/kill_resume.sh and shares its machinery, tests/e2e/kill_lib.sh): KILLS kill points,
# each a fresh run of the tiny model under one of four layouts (dp 2 ZeRO-1, pp 2, tp 2 x pp 2,
# dp 2 x tp 2 ZeRO-1, in turn), one rank (random) killed with SIGKILL at a random instant of a
# random phase: mid training step, during an evaluation, anywhere inside a synchronous save (from
# its .tmp- directory's appearance to its commit) or an asynchronous one (written beside the next
# step); then --resume to the end and compare with the uninterrupted run of the layout.
# Prints the table: kill points by the phase hit, lost steps max / mean, all identical, wall time.
#   tests/bench/bench_kill.sh [EXATRAIN_BIN] [KILLS] [SEED] [PYTHON]
#   (EXATRAIN_KILL_PHASES="train eval save asave" narrows the phases aimed at)
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(realpath "${1:-build/bin/exatrain}")
KILLS=${2:-48}
SEED=${3:-$(date +%s)}
PY=${4:-$SRC/.venv/bin/python}
T=$(mktemp -d -p "${TMPDIR:-/tmp}")
cleanup() {
  local pid
  for pid in $(pgrep -f -- "--run-dir $T/"); do kill -9 "$pid" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
TIMEOUT=180
source "$SRC/tests/e2e/lib.sh"
source "$SRC/tests/e2e/kill_lib.sh"
read -ra PHASES <<<"${EXATRAIN_KILL_PHASES:-train eval save asave}"
echo "# $KILLS kill points, seed $SEED: tests/bench/bench_kill.sh $BIN $KILLS $SEED"
RANDOM=$SEED
start=$SECONDS

kill_setup || exit 1
LAYOUTS=(dp2z1 pp2 tp2pp2 dp2tp2z1)
for layout in "${LAYOUTS[@]}"; do kill_reference "$layout" || exit 1; done
pick() { local a=("$@"); echo "${a[RANDOM % ${#a[@]}]}"; }
for ((i = 0; i < KILLS; i++)); do
  layout=${LAYOUTS[i % ${#LAYOUTS[@]}]}
  aimed=${PHASES[(i / ${#LAYOUTS[@]}) % ${#PHASES[@]}]}
  case $aimed in
    train) step=$(pick 2 3 4 7 8 10 11) ;;
    eval) step=$(pick 6 12) ;;
    *) step=$(pick 4 8 12) ;;
  esac
  kill_point "$layout" "$aimed" "$step" $((RANDOM % ${KILL_RANKS[$layout]})) "$(printf '0.%03d' $((RANDOM % 1000)))" window
done
echo "# kill points by the phase hit (lost steps: steps completed at the kill - the step resumed from):"
kill_summary
echo "# wall time $((SECONDS - start)) s; $failures failure(s)"
exit $((failures > 0))
