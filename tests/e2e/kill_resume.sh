#!/usr/bin/env bash
# Kill and resume (issue 11 §3): one rank of a 2-rank (dp 2, ZeRO-1) and a 4-rank (tp 2 x pp 2)
# run is killed with SIGKILL mid training step, during an evaluation, inside a synchronous save
# and inside an asynchronous save (the victim's piece file is being written: seen, not hoped
# for), and rank 0 while it moves `latest` or right after the step that follows an asynchronous
# save is logged; the job must end by itself, `latest` must name a checkpoint that verifies, and the run
# resumed with --resume must lose at most checkpoint.every steps and end bit-identical to the
# uninterrupted run (every step's loss, grad norm and validation loss, RUN/final, the last
# checkpoint's data files). Which rank dies, the steps and the instants come from a seed,
# printed first (EXATRAIN_KILL_SEED=N repeats a run). tests/e2e/kill_lib.sh does the work;
# tests/bench/bench_kill.sh is the long version.
#   kill_resume.sh EXATRAIN_BIN PYTHON
set -uo pipefail
BIN=$1 PY=$2
SRC=${EXATRAIN_SOURCE_DIR:?}
T=$(mktemp -d)
cleanup() {
  # Only what this script started: mpirun jobs of its own run directories.
  local pid
  for pid in $(pgrep -f -- "--run-dir $T/"); do kill -9 "$pid" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
TIMEOUT=120
source "$SRC/tests/e2e/lib.sh"
source "$SRC/tests/e2e/kill_lib.sh"
SEED=${EXATRAIN_KILL_SEED:-$(date +%s)}
echo "# seed $SEED (repeat with EXATRAIN_KILL_SEED=$SEED)"
RANDOM=$SEED
start=$SECONDS

kill_setup || { echo "FAIL - data prepare"; exit 1; }
frac() { printf '0.%02d' $((5 + RANDOM % 85)); }
pick() { local a=("$@"); echo "${a[RANDOM % ${#a[@]}]}"; }
for layout in dp2z1 tp2pp2; do
  kill_reference "$layout" || continue
  n=${KILL_RANKS[$layout]}
  # train: step N, N-1 not a save step (nothing else runs between line N-1 and step N), N not
  # evaluated; eval: the evaluation after step 6 or 12; saves: steps 4, 8 or 12 (the end).
  for aimed in train eval save asave; do
    case $aimed in
      train) step=$(pick 2 3 4 7 8 10 11) ;;
      eval) step=$(pick 6 12) ;;
      *) step=$(pick 4 8 12) ;;
    esac
    # A timed instant (train, eval) may miss on a loaded machine: the kill still counts under the
    # phase it hit; aim again, at most twice more.
    for _ in 1 2 3; do
      kill_point "$layout" "$aimed" "$step" $((RANDOM % n)) "$(frac)"
      (($? == 2)) || break
    done
  done
  # Two instants that once lost data, aimed exactly (rank 0, which commits; the kill counts under
  # the phase it hits):
  if [[ $layout == dp2z1 ]]; then
    # rank 0 moving `latest` (from 4 or 8): a latest.tmp.PID file was left in RUN/checkpoints forever.
    kill_point "$layout" save "$(pick 4 8)" 0 0 latest
  else
    # step N+1 just logged after an asynchronous save of step N: the save was committed only after
    # that line, and a kill there lost checkpoint.every + 1 steps.
    kill_point "$layout" asave "$(pick 4 8)" 0 0 logged
  fi
done
echo "# kill points:"
kill_summary
# Coverage: every phase hit in both layouts.
"$PY" - "$T/points.tsv" <<'PY' && pass "every phase hit under both layouts" || fail "coverage" "see above"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
missing = [(l, p) for l in ("dp2z1", "tp2pp2") for p in ("train", "eval", "save", "asave")
           if not any(r["layout"] == l and r["hit"] == p for r in rows)]
assert not missing, f"no kill point hit {missing}"
PY
echo "# $((SECONDS - start)) s"
echo "$failures failure(s)"
exit $((failures > 0))
