# Kill and resume, shared by tests/e2e/kill_resume.sh and tests/bench/bench_kill.sh (sourced
# after lib.sh, with BIN, PY, SRC, T and TIMEOUT set):
#   kill_setup                 prepares the data set and $T/run.yaml (12 steps, a checkpoint every 4,
#                              an evaluation every 6)
#   kill_reference LAYOUT      the uninterrupted run $T/ref-LAYOUT; its step, evaluation and save times
#   kill_point LAYOUT PHASE STEP VICTIM FRAC [TARGET]
#                              one kill point (PHASE train, eval, save or asave: a save with
#                              checkpoint.async): start the run, SIGKILL rank VICTIM at the instant
#                              (tests/e2e/kill_watch.py), the job must end by itself; `latest` must
#                              name a checkpoint that verifies and is what --resume picks; --resume to
#                              the end; lost steps <= checkpoint.every; every step's loss, grad norm,
#                              lr and validation loss, the final weights (RUN/final) and the last
#                              checkpoint's data files bit-identical to the reference; no temporary
#                              file left in RUN/checkpoints. Appends a row to $T/points.tsv; returns 1
#                              on a failure, 2 when the phase hit is not the one aimed at.
#   kill_summary               the table: kill points by phase, lost steps, all identical, wall time
# Layouts: dp2z1 (dp 2, ZeRO-1), pp2, tp2pp2, dp2tp2z1 (dp 2 x tp 2, ZeRO-1).

KILL_STEPS=12 KILL_EVERY=4 KILL_EVAL_EVERY=6
declare -A KILL_RANKS=([dp2z1]=2 [pp2]=2 [tp2pp2]=4 [dp2tp2z1]=4)
declare -A KILL_ARGS=([dp2z1]="--set parallel.dp=2 --set parallel.zero=1" [pp2]="--set parallel.pp=2"
  [tp2pp2]="--set parallel.tp=2 --set parallel.pp=2"
  [dp2tp2z1]="--set parallel.dp=2 --set parallel.tp=2 --set parallel.zero=1")
declare -A KILL_TIMES  # LAYOUT -> "step_s eval_s save_s"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
KILL_POINTS=0

kill_setup() {
  local tok=$SRC/tests/parity/tokenizer/genesis-bpe.json
  "$BIN" data prepare --tokenizer "$tok" --eos "[|endofturn|]" --input "$SRC/data/corpora/kjv-genesis.txt" \
    --format text --output "$T/genesis" --name genesis --license LicenseRef-PublicDomain \
    --source "KJV Genesis" >"$T/prep.log" 2>&1 || { cat "$T/prep.log"; return 1; }
  # checkpoint.sh's tiny run, with a validation split that makes an evaluation last several
  # steps (so that a kill can be aimed into it).
  cat >"$T/run.yaml" <<YAML
model:
  preset: tiny
  vocab_size: 1216
train:
  steps: $KILL_STEPS
  global_batch: 8
  micro_batch: 2
  seq_len: 64
  threads: 1
  eval_every: $KILL_EVAL_EVERY
optimizer:
  lr: 3.0e-3
schedule:
  type: constant
  warmup_steps: 4
data:
  tokenizer: $tok
  datasets:
    - path: genesis
      validation_sequences: 192
checkpoint:
  every: $KILL_EVERY
log:
  every: 1
YAML
  printf 'point\tlayout\taimed\thit\tstep\tvictim\tcompleted\tresumed\tlost\tend_s\tidentical\n' >"$T/points.tsv"
}

kill_job_cmd() {  # LAYOUT RUN [ARGS...]: the mpirun command line of a run
  local layout=$1 run=$2 args
  shift 2
  read -ra args <<<"${KILL_ARGS[$layout]}"
  KILL_CMD=(mpirun -n "${KILL_RANKS[$layout]}" "$BIN" train "$T/run.yaml" --run-dir "$run" "${args[@]}" "$@")
}

kill_reference() {
  local layout=$1
  kill_job_cmd "$layout" "$T/ref-$layout"
  run "${KILL_CMD[@]}"
  ((rc == 0)) || { fail "reference run $layout" "exit $rc: $(tail -n 5 "$T/stdout")"; return 1; }
  KILL_TIMES[$layout]=$("$PY" - "$T/ref-$layout" "$KILL_EVERY" "$KILL_EVAL_EVERY" <<'PY'
import json, statistics, sys
run, every, eval_every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
e = {m["step"]: m["elapsed_s"] for m in map(json.loads, open(f"{run}/metrics.jsonl"))}
plain = [e[s] - e[s - 1] for s in e if s - 1 in e and s % eval_every and (s - 1) % every]
evals = [e[s] - e[s - 1] for s in e if s - 1 in e and s % eval_every == 0]
saves = [json.loads(l)["seconds"] for l in open(f"{run}/checkpoints.jsonl")]
step = statistics.median(plain)
print(f"{step:.4f} {max(statistics.median(evals) - step, 0):.4f} {statistics.median(saves):.4f}")
PY
  )
  local t
  read -ra t <<<"${KILL_TIMES[$layout]}"
  echo "# uninterrupted $layout: a step ${t[0]} s, an evaluation ${t[1]} s, a save ${t[2]} s"
}

kill_point() {
  local layout=$1 aimed=$2 step=$3 victim=$4 frac=$5 target=${6:-writing}
  local run times extra=() out wrc name
  KILL_POINTS=$((KILL_POINTS + 1))
  name="kill $KILL_POINTS ($layout, $aimed at step $step, rank $victim)"
  run=$T/k$KILL_POINTS-$layout-$aimed
  read -ra times <<<"${KILL_TIMES[$layout]}"
  local window=${times[2]}
  if [[ $aimed == asave ]]; then
    extra=(--set checkpoint.async=true)
    # An asynchronous save stays uncommitted until a step boundary after its write: about a step.
    window=$("$PY" -c "print(${times[0]} + ${times[2]})")
  fi
  local attempt
  for attempt in 1 2 3; do
    kill_job_cmd "$layout" "$run" "${extra[@]}"
    out=$(timeout -k 10 "$TIMEOUT" "$PY" "$SRC/tests/e2e/kill_watch.py" --run "$run" --victim "$victim" \
      --phase "${aimed/asave/save}" --step "$step" --frac "$frac" --target "$target" --step-s "${times[0]}" \
      --eval-s "${times[1]}" --save-s "$window" --eval-every "$KILL_EVAL_EVERY" --every "$KILL_EVERY" --steps "$KILL_STEPS" \
      --log "$run.killed.log" -- "${KILL_CMD[@]}")
    wrc=$?
    # Exit 3: the watcher missed the instant (the job ended, or passed the step, first) and killed
    # nothing; on a loaded machine a save of 0.04 s is easy to miss. Nothing was tested: aim again.
    ((wrc == 3 && attempt < 3)) || break
    echo "# $name: missed the instant (attempt $attempt: ${out:0:120}); again"
    rm -rf "$run" "$run.killed.log"
  done
  local -A r=()
  local kv
  for kv in $out; do r[${kv%%=*}]=${kv#*=}; done
  if ((wrc == 2)); then
    fail "$name" "HANG: the job still ran 30 s after the kill (${r[alive]:-?} processes left): $out"; return 1
  elif ((wrc != 0)); then
    fail "$name" "no kill (watcher exit $wrc): $out; $(tail -n 5 "$run.killed.log")"; return 1
  fi
  local hit=${r[phase]} completed=${r[completed]}
  [[ $hit == save && $aimed == asave ]] && hit=asave
  if ((r[rc] == 0)); then fail "$name" "the killed job exited 0"; return 1; fi

  # What survived: `latest` names a complete checkpoint (every checksum), or there is none yet.
  local latest=0
  if [[ -e $run/checkpoints/latest ]]; then
    if ! "$BIN" checkpoint verify "$run" >"$T/verify.log" 2>&1; then
      fail "$name" "after the kill, latest ($(cat "$run/checkpoints/latest")) does not verify: $(cat "$T/verify.log")"; return 1
    fi
    latest=$((10#$(sed -n 's/^step_\([0-9]*\)$/\1/p' "$run/checkpoints/latest")))
  fi

  # Resume to the end.
  kill_job_cmd "$layout" "$run" --resume "${extra[@]}"
  run "${KILL_CMD[@]}"
  if ((rc != 0)); then fail "$name" "--resume: exit $rc: $(tail -n 5 "$T/stdout") $(tail -n 3 "$T/stderr")"; return 1; fi
  local resumed
  cat "$T/stdout" "$T/stderr" >"$run.resumed.log"
  if grep -q "holds no checkpoint yet" "$run.resumed.log"; then
    resumed=0
  else
    resumed=$(sed -n 's/.*resumed from .*step_\([0-9]\{8\}\) (step.*/\1/p' "$run.resumed.log")
    [[ -n $resumed ]] || { fail "$name" "no 'resumed from' line: $(head -n 3 "$run.resumed.log")"; return 1; }
    resumed=$((10#$resumed))
  fi
  ((resumed == latest)) || { fail "$name" "--resume picked step $resumed, latest named step $latest"; return 1; }
  local lost=$((completed - resumed))
  if ((lost < 0 || lost > KILL_EVERY)); then
    fail "$name" "lost $lost steps (completed $completed, resumed from $resumed): more than checkpoint.every $KILL_EVERY"
    return 1
  fi

  # Bit-identical to the uninterrupted run.
  local ref=$T/ref-$layout last f identical=yes why=""
  if ! why=$("$PY" - "$ref/metrics.jsonl" "$run/metrics.jsonl" 2>&1 <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
steps = [m["step"] for m in b]
assert steps == [m["step"] for m in a], f"logged steps {steps}"
for x, y in zip(a, b):
    for k in ("loss", "grad_norm", "lr", "val_loss"):
        assert x.get(k) == y.get(k), f"step {x['step']}: {k} {x.get(k)!r} vs {y.get(k)!r} uninterrupted"
PY
  ); then identical=no; fi
  for f in "$ref"/final/*; do
    cmp -s "$f" "$run/final/${f##*/}" || { identical=no; why+=" final/${f##*/} differs;"; }
  done
  last=checkpoints/step_$(printf %08d "$KILL_STEPS")
  for f in "$ref/$last"/rank_*.bin; do
    cmp -s "$f" "$run/$last/${f##*/}" || { identical=no; why+=" $last/${f##*/} differs;"; }
  done
  local stray
  stray=$(ls -A "$run/checkpoints" | grep -Ev '^(latest|step_[0-9]{8})$' | tr '\n' ' ')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$KILL_POINTS" "$layout" "$aimed" "$hit" "$step" "$victim" \
    "$completed" "$resumed" "$lost" "${r[end_s]}" "$identical" >>"$T/points.tsv"
  [[ $identical == yes ]] || { fail "$name" "resumed run differs from the uninterrupted one: $why"; return 1; }
  [[ -z $stray ]] || { fail "$name" "left in $run/checkpoints after the resumed run: $stray"; return 1; }
  pass "$name: hit $hit (${r[tmp]}, writing ${r[writing]}), job ended ${r[end_s]} s after the kill; completed $completed, resumed from $resumed$( ((resumed)) && echo " (verified)"), lost $lost; bit-identical"
  [[ ${KILL_KEEP:-0} == 1 ]] || rm -rf "$run" "$run.killed.log" "$run.resumed.log"
  [[ $hit == "$aimed" ]] || return 2
}

kill_summary() {
  "$PY" - "$T/points.tsv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
if not rows:
    sys.exit("no kill points")
lost = [int(r["lost"]) for r in rows]
ends = [float(r["end_s"]) for r in rows]
print(f"{'phase':<22}{'kills':>6}{'lost max':>10}{'lost mean':>11}{'identical':>11}")
for phase, label in (("train", "train (mid step)"), ("eval", "eval"), ("save", "save (sync)"), ("asave", "save (async)"),
                     ("export", "export (RUN/final)")):
    sel = [r for r in rows if r["hit"] == phase]
    if sel:
        l = [int(r["lost"]) for r in sel]
        print(f"{label:<22}{len(sel):>6}{max(l):>10}{sum(l) / len(l):>11.2f}{'yes' if all(r['identical'] == 'yes' for r in sel) else 'NO':>11}")
layouts = sorted({r["layout"] for r in rows})
victims = sorted({r["victim"] for r in rows})
print(f"{'all':<22}{len(rows):>6}{max(lost):>10}{sum(lost) / len(lost):>11.2f}"
      f"{'yes' if all(r['identical'] == 'yes' for r in rows) else 'NO':>11}")
print(f"layouts {', '.join(layouts)}; ranks killed {', '.join(victims)}; the job ended {min(ends):.2f}-{max(ends):.2f} s "
      f"after the kill")
PY
}
