#!/usr/bin/env bash
# Faults in training (issue 11 §1, §3, §4), each with real processes, signals and file systems:
#   - SIGUSR1 to one rank of a 4-rank run (pp 2 x dp 2, ZeRO-1): every rank stops at the same step,
#     saves synchronously, exits 75; --resume finishes bit-identical to an uninterrupted run;
#   - SIGUSR1 and SIGTERM to two ranks close together, and a signal while a checkpoint is being
#     written: one stop, one complete checkpoint that verifies;
#   - a real divergence (lr 1e4) and an injected NaN gradient on rank 2: the run stops before the
#     update, names the step and the first rank, and saves the last good state (train.on_nonfinite:
#     stop); with skip, the step's update is not applied (checkpoint data files unchanged);
#   - a spike (loss x 100 at one step): skipped by train.spike.zscore; the detector's window is
#     part of the checkpoint (a run resumed just before the spike skips it too);
#   - a rank hanging outside any collective ends the job within parallel.timeout_s, naming itself;
#     a slow rank shows up as the slowest rank in metrics;
#   - a second `train` on a run directory in use is refused; the first run is untouched;
#   - a full and a read-only run directory (a small tmpfs in a private mount namespace): a
#     one-line error, the previous checkpoint intact, `latest` never torn, metrics.jsonl without
#     half lines; checkpoint.on_error: warn trains on.
#   faults.sh EXATRAIN_BIN PYTHON
set -uo pipefail
BIN=$(realpath "$1") PY=$2
SRC=${EXATRAIN_SOURCE_DIR:?}
T=$(mktemp -d)
BG=()
cleanup() { for p in "${BG[@]}"; do kill -KILL "$p" 2>/dev/null; done; pkill -KILL -f -- "--run-dir $T/" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
TIMEOUT=120
source "$SRC/tests/e2e/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
CONFIG=$SRC/configs/train/tiny-demo.yaml
COMMON=(--set train.steps=24 --set schedule.warmup_steps=2 --set train.global_batch=8 --set train.micro_batch=2
        --set train.seq_len=64 --set log.every=1 --set log.sample_tokens=0 --set train.threads=1
        --set checkpoint.export_dtype=fp32)
FOUR=(--set parallel.pp=2 --set parallel.dp=2 --set parallel.zero=1)
train() { timeout -k 5 "$TIMEOUT" "$BIN" train "$CONFIG" "${COMMON[@]}" "$@"; }
train4() { timeout -k 5 "$TIMEOUT" mpirun -n 4 "$BIN" train "$CONFIG" "${COMMON[@]}" "${FOUR[@]}" "$@"; }
steps_done() { [[ -s "$1/metrics.jsonl" ]] && tail -n 1 "$1/metrics.jsonl" | grep -o '"step":[0-9]*' | cut -d: -f2 || echo 0; }
wait_step() {  # wait_step RUN N PID: until RUN's metrics reach step N (or PID ends)
  for _ in $(seq 600); do
    (($(steps_done "$1") >= $2)) && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
rank_pid() { pgrep -f -- "--run-dir $1( |\$)" | while read -r p; do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"; done | head -1; }
verify() { "$BIN" checkpoint verify "$1" >"$T/verify.log" 2>&1; }
same_metrics() {  # same_metrics A B: loss, grad norm and lr bit-identical at every step 1..N
  "$PY" - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [m["step"] for m in b] == [m["step"] for m in a], ([m["step"] for m in a], [m["step"] for m in b])
for x, y in zip(a, b):
    for k in ("loss", "grad_norm", "lr", "skipped"):
        assert x.get(k) == y.get(k), f"step {x['step']}: {k} {x.get(k)!r} vs {y.get(k)!r}"
PY
}

# --- signals ------------------------------------------------------------------------------------
train4 --run-dir "$T/ref4" >"$T/ref4.log" 2>&1 || { cat "$T/ref4.log"; fail "4-rank reference" "failed"; exit 1; }

train4 --run-dir "$T/sig" >"$T/sig1.log" 2>&1 & job=$!; BG+=("$job")
if wait_step "$T/sig" 6 "$job"; then kill -USR1 "$(rank_pid "$T/sig" 3)"; fi
rc=0; wait "$job" || rc=$?
stopped=$(grep -o "SIGUSR1 received: stopped at step [0-9]*" "$T/sig/train.log" | grep -o '[0-9]*$')
if ((rc == 75)) && [[ -n "$stopped" ]] && [[ $(readlink "$T/sig/checkpoints/latest" 2>/dev/null || cat "$T/sig/checkpoints/latest") == *"$(printf 'step_%08d' "$stopped")"* ]] \
   && verify "$T/sig"; then
  pass "SIGUSR1 to rank 3 of 4: all ranks stopped at step $stopped, saved it (verifies), exit 75"
else
  fail "SIGUSR1 to rank 3" "exit $rc, stopped '$stopped': $(grep -v '^\[' "$T/sig1.log" | tail -3)"
fi
train4 --run-dir "$T/sig" --resume >"$T/sig2.log" 2>&1 || fail "resume after SIGUSR1" "$(tail -3 "$T/sig2.log")"
cmp -s "$T/ref4/final/model.safetensors" "$T/sig/final/model.safetensors" && same_metrics "$T/ref4" "$T/sig" \
  && pass "resumed after the signal: final weights and every step's loss bit-identical to the uninterrupted run" \
  || fail "resume after SIGUSR1" "differs from the uninterrupted run"

# Two signals close together, to two ranks.
train4 --run-dir "$T/sig2" >"$T/sig2a.log" 2>&1 & job=$!; BG+=("$job")
if wait_step "$T/sig2" 4 "$job"; then kill -USR1 "$(rank_pid "$T/sig2" 1)"; kill -TERM "$(rank_pid "$T/sig2" 2)"; fi
rc=0; wait "$job" || rc=$?
n=$(grep -c "received: stopped at step" "$T/sig2/train.log")
((rc == 75 && n == 1)) && verify "$T/sig2" && [[ -z "$(ls -A "$T/sig2/checkpoints" | grep '^\.tmp-')" ]] \
  && pass "SIGUSR1 and SIGTERM to two ranks together: one stop, one complete checkpoint" \
  || fail "two signals" "exit $rc, $n stop lines: $(tail -2 "$T/sig2a.log")"

# A signal while a checkpoint is being written (every step saves; the signal is sent the moment
# a save's temporary directory appears).
train4 --run-dir "$T/sig3" --set checkpoint.every=1 >"$T/sig3.log" 2>&1 & job=$!; BG+=("$job")
wait_step "$T/sig3" 3 "$job"
in_save=$("$PY" - "$T/sig3/checkpoints" "$(rank_pid "$T/sig3" 0)" <<'PY'
import os, signal, sys, time
d, pid = sys.argv[1], int(sys.argv[2])
end = time.time() + 30
while time.time() < end:
    if any(n.startswith(".tmp-") for n in os.listdir(d)):
        os.kill(pid, signal.SIGUSR1)
        print("yes")
        break
PY
)
rc=0; wait "$job" || rc=$?
((rc == 75)) && [[ "$in_save" == yes ]] && verify "$T/sig3" \
  && pass "SIGUSR1 during a checkpoint save: the save completes, the stop checkpoint verifies, exit 75" \
  || fail "signal during a save" "exit $rc, in save '$in_save': $(tail -2 "$T/sig3.log")"

# --- non-finite loss and gradients --------------------------------------------------------------
rc=0; train --run-dir "$T/diverge" --set optimizer.lr=1e4 --set optimizer.grad_clip=0 --set schedule.warmup_steps=0 \
  >"$T/diverge.log" 2>&1 || rc=$?
line=$(grep '^exatrain: error:' "$T/diverge.log")
if ((rc == 1)) && [[ $line == *"step "*": the "*" is "*"nan"*"first seen on rank 0"*"last good state (step "* ]] && verify "$T/diverge"; then
  pass "a real divergence (lr 1e4): stopped before the update, last good state saved: ${line:17:60}..."
else
  fail "divergence" "exit $rc: $line"
fi
rc=0; EXATRAIN_FAULT_INJECT=nan_grad@5:2 train4 --run-dir "$T/nan" >"$T/nan.log" 2>&1 || rc=$?
line=$(grep '^exatrain: error:' "$T/nan.log" | head -1)
((rc == 1)) && [[ $line == *"step 5: the gradient norm is "*"first seen on rank 2: pipeline stage 1, tp rank 0, dp rank 0"* ]] \
  && [[ -d "$T/nan/checkpoints/step_00000004" && ! -e "$T/nan/checkpoints/step_00000005" ]] && verify "$T/nan" \
  && pass "NaN gradient on rank 2 at step 5: every rank stops, rank 2 named, step 4 saved" \
  || fail "NaN gradient, stop" "exit $rc: $line"
rc=0; EXATRAIN_FAULT_INJECT=nan_loss@5:3 train4 --run-dir "$T/skip" --set train.on_nonfinite=skip --set train.steps=6 \
  --set checkpoint.every=1 --set checkpoint.keep=0 >"$T/skip.log" 2>&1 || rc=$?
ok=1
for r in 0 1 2 3; do
  cmp -s "$T/skip/checkpoints/step_00000004/rank_0000$r.bin" "$T/skip/checkpoints/step_00000005/rank_0000$r.bin" || ok=0
  cmp -s "$T/skip/checkpoints/step_00000005/rank_0000$r.bin" "$T/skip/checkpoints/step_00000006/rank_0000$r.bin" && ok=0
done
((rc == 0 && ok)) && grep -q '"skipped":"nonfinite"' "$T/skip/metrics.jsonl" \
  && [[ $(tail -1 "$T/skip/metrics.jsonl") == *'"skipped_updates":{"nonfinite":1,"spike":0}'* ]] \
  && pass "train.on_nonfinite: skip: step 5 not applied (its checkpoint's data files equal step 4's), counted in metrics" \
  || fail "NaN loss, skip" "exit $rc, data files unchanged at step 5 and changed at 6: $ok"

# --- spikes -------------------------------------------------------------------------------------
# A constant schedule: steps 1-9 of a 9-step run are those of the 14-step run.
SPIKE=(--set train.spike.window=5 --set train.spike.zscore=4 --set train.steps=14 --set schedule.type=constant)
EXATRAIN_FAULT_INJECT=loss_spike@12 train --run-dir "$T/spike" "${SPIKE[@]}" >"$T/spike.log" 2>&1 \
  || fail "spike run" "$(tail -2 "$T/spike.log")"
"$PY" - "$T/spike/metrics.jsonl" <<'PY' && pass "a loss spike at step 12 (z > 4 over 5 steps): skipped, counted; no other step skipped" || fail "spike" "see above"
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
skipped = [x["step"] for x in m if x.get("skipped")]
assert skipped == [12], skipped
assert m[11]["skipped"] == "spike" and m[11]["loss_zscore"] > 4, m[11]
assert m[-1]["skipped_updates"] == {"nonfinite": 0, "spike": 1}, m[-1]
PY
EXATRAIN_FAULT_INJECT=loss_spike@12 train --run-dir "$T/spike2" "${SPIKE[@]}" --set train.steps=9 >"$T/spike2a.log" 2>&1 \
  && EXATRAIN_FAULT_INJECT=loss_spike@12 train --run-dir "$T/spike2" "${SPIKE[@]}" --resume >"$T/spike2b.log" 2>&1 \
  && same_metrics "$T/spike" "$T/spike2" && cmp -s "$T/spike/final/model.safetensors" "$T/spike2/final/model.safetensors" \
  && pass "the spike window is in the checkpoint: resumed at step 9, the same spike is skipped, bit-identical" \
  || fail "spike across resume" "$(tail -2 "$T/spike2b.log")"

# --- a hanging rank, a slow rank ----------------------------------------------------------------
start=$(date +%s); rc=0
EXATRAIN_FAULT_INJECT=hang@4:1 timeout -k 5 60 mpirun -n 2 "$BIN" train "$CONFIG" "${COMMON[@]}" --set parallel.dp=2 \
  --set parallel.timeout_s=5 --run-dir "$T/hang" >"$T/hang.log" 2>&1 || rc=$?
took=$(($(date +%s) - start))
((rc != 0 && rc != 124)) && grep -q "rank 1 on .* made no progress for [0-9]* s (in step (injected hang) at step 4), outside any collective" "$T/hang.log" \
  && pass "rank 1 hung outside a collective: the job ended in ${took} s (parallel.timeout_s 5), naming rank 1" \
  || fail "hanging rank" "exit $rc after ${took} s: $(grep -i 'error' "$T/hang.log" | head -2)"
EXATRAIN_FAULT_INJECT=slow@1:1 timeout -k 5 "$TIMEOUT" mpirun -n 2 "$BIN" train "$CONFIG" "${COMMON[@]}" --set train.steps=6 \
  --set parallel.dp=2 --run-dir "$T/slow" >"$T/slow.log" 2>&1 || fail "slow rank run" "$(tail -2 "$T/slow.log")"
"$PY" - "$T/slow/metrics.jsonl" <<'PY' && pass "a rank 300 ms slower per step: metrics name it the slowest rank every step" || fail "slow rank" "see above"
import json, sys
for m in map(json.loads, open(sys.argv[1])):
    b = m["rank_busy_s"]
    # the sleep is 0.3 s (it was 0.1 s, and on a loaded machine one step's noise once exceeded it);
    # the gap is less than the sleep because the fast rank computes faster while the slow one
    # sleeps on 2 shared cores (0.06-0.1 s of a 0.1 s sleep measured)
    assert b["slowest_rank"] == 1 and b["max"] - b["min"] > 0.15, (m["step"], b)
PY

# --- the run-directory lock ---------------------------------------------------------------------
train --run-dir "$T/locked" --set train.steps=100000 >"$T/locked1.log" 2>&1 & job=$!; BG+=("$job")
wait_step "$T/locked" 2 "$job"
before=$(wc -l <"$T/locked/metrics.jsonl")
expect_fail "a second train on a run directory in use" "is in use by another exatrain train (pid " \
  -- "$BIN" train "$CONFIG" "${COMMON[@]}" --run-dir "$T/locked" --resume
sleep 0.3
kill -0 "$job" 2>/dev/null && (($(wc -l <"$T/locked/metrics.jsonl") > before)) \
  && pass "the first run goes on, its metrics untouched" || fail "lock" "the first run was disturbed"
pkill -KILL -f -- "--run-dir $T/locked( |\$)" 2>/dev/null; wait "$job" 2>/dev/null

# --- full and read-only disks -------------------------------------------------------------------
# A private mount namespace with a small tmpfs (unshare; as root, or unprivileged through a user
# namespace). Each case runs in its own namespace, which ends with it.
UNSHARE=()
if unshare -m --propagation private true 2>/dev/null; then UNSHARE=(unshare -m --propagation private)
elif unshare -rm true 2>/dev/null; then UNSHARE=(unshare -rm); fi
in_tmpfs() {  # in_tmpfs SIZE SCRIPT: runs SCRIPT once, with $D a fresh tmpfs of SIZE
  "${UNSHARE[@]}" bash -c "mount -t tmpfs -o size=$1 tmpfs '$T/disk' && D='$T/disk' && { $2; }" 2>&1
}
mkdir -p "$T/disk"
export BIN CONFIG T
export COMMON_S="${COMMON[*]}"
if ((${#UNSHARE[@]} == 0)); then
  echo "skip - full and read-only disks: no mount namespace here (unshare -m and unshare -rm both refused)"
else
  # 16 MiB holds one 9.5 MiB checkpoint, not two: the save at step 4 fails with ENOSPC.
  in_tmpfs 16m '
    "$BIN" train "$CONFIG" $COMMON_S --set checkpoint.every=2 --set checkpoint.keep=2 --set checkpoint.save_final=false \
      --run-dir "$D/run" >"$D/../full.log" 2>&1; echo "rc=$?" >"$T/full.rc"
    "$BIN" checkpoint verify "$D/run" >"$T/full.verify" 2>&1 && echo ok >>"$T/full.verify"
    ls -A "$D/run/checkpoints" >"$T/full.ls"; cp "$D/run/metrics.jsonl" "$T/full.metrics"' >/dev/null
  line=$(grep '^exatrain: error:' "$T/full.log")
  [[ $(cat "$T/full.rc") == rc=1 && $line == *"step_00000004"*"No space left on device"*"step_00000002 is intact"* ]] \
    && grep -qx ok "$T/full.verify" && ! grep -q '^\.tmp-' "$T/full.ls" && [[ $(wc -l <"$T/full.metrics") == 4 ]] \
    && pass "full disk during a checkpoint: stops at step 4 with one line, step 2 intact and latest, no temp dir left" \
    || fail "full disk, stop" "$(cat "$T/full.rc"): $line; $(cat "$T/full.ls" | tr '\n' ' ')"
  in_tmpfs 16m '
    "$BIN" train "$CONFIG" $COMMON_S --set train.steps=8 --set checkpoint.every=2 --set checkpoint.keep=2 \
      --set checkpoint.save_final=false --set checkpoint.on_error=warn --run-dir "$D/run" >"$T/warn.log" 2>&1
    echo "rc=$?" >"$T/warn.rc"; cp "$D/run/metrics.jsonl" "$T/warn.metrics"; ls -A "$D/run/checkpoints" >"$T/warn.ls"' >/dev/null
  [[ $(wc -l <"$T/warn.metrics") == 8 ]] && grep -q "training goes on (checkpoint.on_error: warn)" "$T/warn.log" \
    && [[ $(cat "$T/warn.rc") == rc=1 ]] && grep -q "end-of-training\|could not be written" "$T/warn.log" \
    && pass "checkpoint.on_error: warn: failed saves logged, all 8 steps trained; the final save's failure is the exit status" \
    || fail "full disk, warn" "$(cat "$T/warn.rc"), $(wc -l <"$T/warn.metrics") metric lines"
  # The disk fills up under metrics.jsonl (no checkpoints): the run stops, no half line.
  in_tmpfs 4m '
    timeout -k 5 60 "$BIN" train "$CONFIG" $COMMON_S --set train.steps=100000 --set checkpoint.save_final=false \
      --run-dir "$D/run" >"$T/mfull.log" 2>&1 & p=$!
    for i in $(seq 400); do [[ -s "$D/run/metrics.jsonl" ]] && break; sleep 0.05; done
    head -c 8M /dev/zero >"$D/filler" 2>/dev/null
    wait $p; echo "rc=$?" >"$T/mfull.rc"; cp "$D/run/metrics.jsonl" "$T/mfull.metrics"' >/dev/null
  line=$(grep '^exatrain: error:' "$T/mfull.log")
  [[ $(cat "$T/mfull.rc") == rc=1 && $line == *"metrics.jsonl': No space left on device"* ]] \
    && "$PY" -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$T/mfull.metrics" \
    && pass "full disk under metrics.jsonl: the run stops with one line; every line of metrics.jsonl is whole" \
    || fail "metrics on a full disk" "$(cat "$T/mfull.rc"): $line"
  # An export onto a full disk: one line, no half-written release left behind.
  train --run-dir "$T/exportme" --set train.steps=2 --set checkpoint.save_final=false --set checkpoint.every=2 >/dev/null 2>&1
  in_tmpfs 1m '
    "$BIN" export --checkpoint "$T/exportme" --output "$D/release" --dtype fp32 >"$T/xfull.log" 2>&1
    echo "rc=$?" >"$T/xfull.rc"; ls -A "$D" >"$T/xfull.ls"' >/dev/null
  line=$(cat "$T/xfull.log")
  [[ $(cat "$T/xfull.rc") == rc=1 && $(grep -c . "$T/xfull.log") == 1 && $line == "exatrain: error: "*"No space left on device"* \
     && ! -s "$T/xfull.ls" ]] \
    && pass "export onto a full disk: one line, nothing left behind ($line)" \
    || fail "export on a full disk" "$(cat "$T/xfull.rc"): $line; left: $(cat "$T/xfull.ls")"
  # Read-only: an existing run's file system remounted read-only before --resume; and mid-run, its
  # checkpoints directory made read-only (a read-only bind mount over itself: a remount of the
  # whole file system is refused while the run has files open for writing).
  in_tmpfs 64m '
    "$BIN" train "$CONFIG" $COMMON_S --set train.steps=4 --set checkpoint.save_final=false --run-dir "$D/run" >/dev/null 2>&1
    mount -o remount,ro "$D"
    "$BIN" train "$CONFIG" $COMMON_S --set train.steps=8 --run-dir "$D/run" --resume >"$T/ro.log" 2>&1; echo "rc=$?" >"$T/ro.rc"' >/dev/null
  line=$(grep '^exatrain: error:' "$T/ro.log")
  [[ $(cat "$T/ro.rc") == rc=1 && $line == *"Read-only file system"* && $(grep -c . "$T/ro.log") == 1 ]] \
    && pass "read-only run directory: --resume refused with one line ($line)" \
    || fail "read-only run dir" "$(cat "$T/ro.rc"): $(cat "$T/ro.log")"
  in_tmpfs 64m '
    timeout -k 5 60 "$BIN" train "$CONFIG" $COMMON_S --set train.steps=100000 --set checkpoint.every=3 \
      --set checkpoint.save_final=false --run-dir "$D/run" >"$T/ro2.log" 2>&1 & p=$!
    for i in $(seq 400); do [[ -d "$D/run/checkpoints/step_00000003" ]] && break; sleep 0.05; done
    mount --bind "$D/run/checkpoints" "$D/run/checkpoints" && mount -o remount,bind,ro "$D/run/checkpoints"
    wait $p; echo "rc=$?" >"$T/ro2.rc"
    "$BIN" checkpoint verify "$D/run" >"$T/ro2.verify" 2>&1 && echo ok >>"$T/ro2.verify"' >/dev/null
  line=$(grep '^exatrain: error:' "$T/ro2.log")
  [[ $(cat "$T/ro2.rc") == rc=1 && $line == *"Read-only file system"* ]] && grep -qx ok "$T/ro2.verify" \
    && pass "run directory turned read-only mid-run: one line, the last checkpoint intact and verified" \
    || fail "read-only mid-run" "$(cat "$T/ro2.rc"): $line"
fi

echo "faults: $failures failed"
((failures == 0))
