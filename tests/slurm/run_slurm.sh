#!/usr/bin/env bash
# exatrain under a real Slurm: starts a private single-node cluster (munged, slurmctld, slurmd; its
# own key, socket, ports, config and state, all in a temp dir, so daemons already running on this
# machine do not matter), then
#   (a) srun --mpi=pmix -n 4: tp 2 x pp 2 equals the single-rank run (loss at every step and final
#       weights within 1e-5, tests/multirank/compare_runs.py);
#   (b) sbatch --wait launch/slurm/train.sbatch (1 node, 4 CPU ranks, pp 2 x dp 2, ZeRO-1): the run
#       dir is named by the config (no --job-name), holds metrics and final weights, and equals the
#       single-rank run;
#   (c) launch/slurm/submit.sh --wait --job-name (2 ranks, tp 2): prints the job's run dir, which is
#       complete; submit.sh refuses a layout that does not fit before anything is queued;
#   (d) srun -n 2 with rank 1 frozen (SIGSTOP): the job ends with exatrain's timeout message;
#   (e) preemption: a 4-rank sbatch job is stopped mid-run by `scancel --signal=USR1` (the ranks
#       save, the script requeues the job) and then by `scontrol requeue` (SIGTERM: the ranks save,
#       Slurm requeues); it resumes each time and ends bit-identical to an uninterrupted run.
# Every wait is bounded; on failure it prints the daemons' log tails. It stops exactly the daemons
# it started (and cancels its jobs) on any exit.
#   run_slurm.sh EXATRAIN_BIN PYTHON
set -Eeuo pipefail
BIN=$(realpath "$1") PY=$2
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${EXATRAIN_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
say() { printf '[slurm] %s\n' "$*"; }
t0=$(date +%s)

for c in munged munge slurmctld slurmd srun sbatch sinfo scontrol scancel squeue; do
  command -v "$c" >/dev/null || { echo "FAIL - '$c' not found: install Slurm and munge with launch/setup.sh"; exit 1; }
done

# A short path (the munge socket path must fit in 108 bytes); munged wants its socket directory
# and every parent searchable by all, and its key private.
T=$(mktemp -d /tmp/exatrain-slurm.XXXXXX)
chmod 755 "$T"
mkdir -p "$T"/{munge-run,munge-key,log,state,spool,tmp,runs,ref}
chmod 700 "$T/munge-key"
NODE=exanode
PIDS=()   # the daemons this script started (each under a watchdog `timeout`)
JOBS_STARTED=0
FAILED=1

logs() {
  local f
  for f in munged slurmctld slurmd; do  # a daemon that died before opening its log wrote to stdout
    [[ -s "$T/log/$f.log" ]] || cp "$T/log/$f.stdout" "$T/log/$f.log" 2>/dev/null
  done
  for f in "$T"/log/*.log "$T"/runs/*.out "$T"/runs/*.err "$T"/runs/slurm/*; do
    [[ -s "$f" ]] || continue
    echo "----- tail $f"; tail -n 30 "$f"
  done
  [[ -n "$WHY" ]] && echo "FAIL - $WHY"
}
exec 3>&1 4>&2  # the cleanup writes here even if a signal arrives inside a redirected command
cleanup() {
  local rc=$?
  set +e
  exec 1>&3 2>&4
  [[ -n "$CHILD" ]] && kill -TERM "$CHILD" 2>/dev/null
  if ((JOBS_STARTED)); then
    timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null
    for _ in $(seq 100); do [[ -z "$(timeout 5 squeue -h 2>/dev/null)" ]] && break; sleep 0.2; done
    # A step daemon (slurmstepd) outlives its job by a few seconds; its socket and PMIx files in
    # the spool dir go when it does. Stopping slurmd first would orphan it.
    for _ in $(seq 150); do compgen -G "$T/spool/${NODE}_*" >/dev/null || compgen -G "$T/spool/pmix.*" >/dev/null || break; sleep 0.2; done
  fi
  ((FAILED)) && logs
  # Reverse order: slurmd, slurmctld, munged. TERM reaches the daemon through its watchdog.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && { kill -KILL "$p" 2>/dev/null; pkill -KILL -g "$p" 2>/dev/null; }
    wait "$p" 2>/dev/null
  done
  if [[ -n "${EXATRAIN_KEEP_TMP:-}" ]]; then say "kept $T"; else rm -rf "$T"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
WHY=""
trap '[[ -n "$WHY" ]] || WHY="line $LINENO: \"$BASH_COMMAND\" failed"' ERR
fail() { WHY=$*; echo "FAIL - $*"; exit 1; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s
  local secs=$1 what=$2; shift 2
  local end=$(($(date +%s) + secs))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < end)) || fail "$what: not within ${secs} s"
    sleep 0.2
  done
}
# Runs a command under a time limit in the background and waits for it, so that a signal to this
# script runs the cleanup at once (bash defers traps while a foreground command runs).
CHILD=""
bounded() {  # bounded SECONDS COMMAND...: its exit code (124: time limit)
  local secs=$1 rc=0; shift
  timeout "$secs" "$@" </dev/null & CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}
alive() { for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done; }
# Daemons run in the foreground under `timeout`: $! is then exactly ours, and a daemon orphaned by
# a killed test still ends by itself after 15 minutes.
daemon() { timeout -k 10 900 "$@" >>"$T/log/$(basename "$1").stdout" 2>&1 </dev/null & PIDS+=($!); }

# Two free TCP ports for slurmctld and slurmd (the kernel picks them; no fixed numbers to collide).
read -r PORT_CTLD PORT_SLURMD < <("$PY" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("", 0))
print(*(x.getsockname()[1] for x in s))')
[[ -n "${PORT_SLURMD:-}" ]] || fail "could not find two free TCP ports"

# munge: a fresh key; clients find this daemon through the socket path in slurm.conf.
MSOCK=$T/munge-run/munge.socket
dd if=/dev/urandom of="$T/munge-key/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge-key/munge.key"
daemon munged -F --socket="$MSOCK" --key-file="$T/munge-key/munge.key" --log-file="$T/log/munged.log" \
  --pid-file="$T/munge-run/munged.pid" --seed-file="$T/munge-key/munged.seed"
wait_for 15 "munged did not answer on $MSOCK" bash -c "munge -n -S '$MSOCK' | unmunge -S '$MSOCK'"

# Settings that work as root without cgroups or systemd (docs/slurm.md); the node advertises
# 8 CPUs on any machine (config_overrides), so 4 ranks fit on 2 cores.
export SLURM_CONF=$T/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=exatrain-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_SLURMD
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
TmpFS=$T/tmp
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=30 State=UP
EOF
srun --mpi=list 2>&1 | grep -qw pmix || fail "Slurm has no pmix MPI plugin (srun --mpi=list: $(srun --mpi=list 2>&1 | tr '\n' ' '))"
daemon slurmctld -D -f "$SLURM_CONF"
wait_for 30 "slurmctld (port $PORT_CTLD) did not answer" scontrol ping
daemon slurmd -D -N "$NODE" -f "$SLURM_CONF"
wait_for 60 "node $NODE did not become idle" bash -c "sinfo -h -n $NODE -o %t | grep -qx idle"
alive || fail "a Slurm daemon exited"
say "cluster up in $(($(date +%s) - t0)) s: node $NODE idle, slurmctld port $PORT_CTLD, slurmd port $PORT_SLURMD"
JOBS_STARTED=1

# One compute thread per rank (2 cores); shared-memory transport without ptrace (containers).
export OMP_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
CONFIG=$SRC/configs/train/tiny-demo.yaml
COMMON=(--set train.steps=10 --set train.global_batch=8 --set train.micro_batch=2 --set train.seq_len=64
        --set schedule.warmup_steps=2 --set log.every=1 --set log.sample_tokens=0 --set parallel.timeout_s=120)
bounded 300 "$BIN" train "$CONFIG" --run-dir "$T/ref/single" "${COMMON[@]}" --set train.threads=1 >"$T/log/single.log" 2>&1 \
  || { cat "$T/log/single.log"; fail "the single-rank reference did not run"; }

# (a) srun --mpi=pmix straight from here: Slurm's PMIx server gives every rank its rank and size.
t=$(date +%s)
bounded 300 srun --mpi=pmix -n 4 --cpus-per-task=1 --time=10 --kill-on-bad-exit=1 \
  "$BIN" train "$CONFIG" --run-dir "$T/runs/srun-tp2-pp2" "${COMMON[@]}" --set train.threads=1 \
  --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=1 >"$T/log/srun.log" 2>&1 \
  || { cat "$T/log/srun.log"; fail "srun --mpi=pmix -n 4 exatrain train (tp 2 x pp 2) failed or took over 300 s"; }
grep -q "tp 2 x pp 2 x dp 1 = 4 ranks" "$T/runs/srun-tp2-pp2/train.log" \
  || fail "srun run did not see 4 ranks as tp 2 x pp 2: $(head -1 "$T/runs/srun-tp2-pp2/train.log")"
"$PY" "$SRC/tests/multirank/compare_runs.py" "$T/ref/single" "$T/runs/srun-tp2-pp2" --rtol 1e-5
say "ok - (a) srun --mpi=pmix -n 4, tp 2 x pp 2 equals the single-rank run ($(($(date +%s) - t)) s)"

# (b) The production script as users submit it, with the node's shape given on the command line
# (1 node, 4 CPU ranks, no GPUs), from the repository root; the run goes to runs/NAME-JOBID.
t=$(date +%s)
rc=0
cd "$SRC"
EXATRAIN_BIN="$BIN" EXATRAIN_RUNS="$T/runs" bounded 300 sbatch --parsable --wait \
  --nodes=1 --ntasks-per-node=4 --gpus-per-node=0 --cpus-per-task=1 --time=10 \
  --output="$T/runs/%x-%j.out" --error="$T/runs/%x-%j.err" \
  launch/slurm/train.sbatch configs/train/tiny-demo.yaml "${COMMON[@]}" \
  --set parallel.tp=1 --set parallel.pp=2 --set parallel.dp=2 --set parallel.zero=1 >"$T/log/sbatch.out" 2>"$T/log/sbatch.log" || rc=$?
cd - >/dev/null
job=$(grep -Eo '^[0-9]+' "$T/log/sbatch.out" | head -1)
[[ -n "$job" ]] || fail "sbatch did not submit launch/slurm/train.sbatch"
((rc == 0)) || fail "job $job (launch/slurm/train.sbatch) failed with $rc (124: not done within 300 s)"
RUN=$T/runs/tiny-demo
[[ -d "$RUN" ]] || fail "job $job did not make its run dir $RUN"
[[ $(wc -l <"$RUN/metrics.jsonl") == 10 ]] || fail "$RUN/metrics.jsonl does not hold 10 steps"
[[ -s "$RUN/final/model.safetensors" ]] || fail "no final weights in $RUN/final"
grep -q "finished; weights in $RUN/final" "$T/runs/exatrain-$job.out" || fail "job output $T/runs/exatrain-$job.out lacks the final line"
grep -q "pp 2 x dp 2 = 4 ranks" "$RUN/train.log" || fail "job $job did not run as pp 2 x dp 2"
scontrol show job "$job" | grep -q "Requeue=1" || fail "job $job: the script's #SBATCH --requeue did not apply"
"$PY" "$SRC/tests/multirank/compare_runs.py" "$T/ref/single" "$RUN" --rtol 1e-5
say "ok - (b) sbatch launch/slurm/train.sbatch: job $job wrote $RUN (metrics, final weights), pp 2 x dp 2 x ZeRO-1 equals the single-rank run ($(($(date +%s) - t)) s)"

# (c) The wrapper: tasks per node from the command line, the run dir it prints is the job's.
t=$(date +%s)
EXATRAIN_BIN="$BIN" EXATRAIN_RUNS="$T/runs" bounded 300 "$SRC/launch/slurm/submit.sh" --wait \
  --gpus-per-node 0 --tasks-per-node 2 --cpus-per-task 1 --time 10 --job-name submit-tp2 "$CONFIG" "${COMMON[@]}" \
  --set parallel.tp=2 --set parallel.pp=1 --set parallel.dp=1 >"$T/log/submit.log" 2>&1 \
  || { cat "$T/log/submit.log"; fail "launch/slurm/submit.sh --wait failed or took over 300 s"; }
out=$(cat "$T/log/submit.log")
echo "$out"
RUN=$(sed -n 's/^job [0-9]*: .*run dir //p' <<<"$out")
[[ -n "$RUN" && -s "$RUN/final/model.safetensors" && $(wc -l <"$RUN/metrics.jsonl") == 10 ]] \
  || fail "submit.sh: the run dir it printed ('$RUN') lacks metrics or final weights"
"$PY" "$SRC/tests/multirank/compare_runs.py" "$T/ref/single" "$RUN" --rtol 1e-5
[[ "$RUN" == "$T/runs/submit-tp2" ]] || fail "submit.sh --job-name submit-tp2: run dir '$RUN', expected $T/runs/submit-tp2"
# A layout that cannot fill the job is refused before it waits in a queue (nothing submitted).
queued=$(squeue -h | wc -l)
rc=0
EXATRAIN_BIN="$BIN" EXATRAIN_RUNS="$T/runs" "$SRC/launch/slurm/submit.sh" --gpus-per-node 0 --tasks-per-node 2 \
  --cpus-per-task 1 "$CONFIG" --set parallel.tp=4 >"$T/log/refused.log" 2>&1 || rc=$?
((rc == 2)) && grep -q "does not divide the job.s 2 ranks" "$T/log/refused.log" && grep -q "not submitted" "$T/log/refused.log" \
  || { cat "$T/log/refused.log"; fail "submit.sh did not refuse tp 4 on a 2-rank job (exit $rc)"; }
[[ $(squeue -h | wc -l) == "$queued" ]] || fail "submit.sh queued a job it refused"
say "ok - (c) launch/slurm/submit.sh --wait: tp 2 equals the single-rank run; a tp 4 layout on 2 ranks is refused before queueing ($(($(date +%s) - t)) s)"

# (d) A rank that stops taking part ends the srun step with a message instead of hanging it:
# exatrain's collective timeout, then MPI_Abort, which Slurm turns into the end of the step.
t=$(date +%s)
STOP=$T/runs/srun-stopped
timeout 120 srun --mpi=pmix -n 2 --cpus-per-task=1 --time=5 --kill-on-bad-exit=1 "$BIN" train "$CONFIG" \
  --run-dir "$STOP" --set train.steps=100000 --set train.global_batch=4 --set train.micro_batch=2 \
  --set train.seq_len=32 --set log.every=1 --set log.sample_tokens=0 --set train.threads=1 \
  --set parallel.dp=2 --set parallel.timeout_s=5 </dev/null >"$T/log/stopped.log" 2>&1 &
CHILD=$!
wait_for 60 "the srun job for the stopped-rank check did not start training" test -s "$STOP/metrics.jsonl"
victim=""
for pid in $(pgrep -f -- "--run-dir $STOP"); do
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_PROCID=1" && victim=$pid
done
[[ -n "$victim" ]] || fail "cannot find rank 1 of the srun job"
kill -STOP "$victim"
rc=0
wait "$CHILD" || rc=$?
CHILD=""
kill -KILL "$victim" 2>/dev/null || true  # if Slurm has not already
((rc != 124)) || fail "the srun job still ran 120 s after its rank 1 stopped (a hang)"
((rc != 0)) || fail "srun exited 0 after rank 1 stopped"
grep -q "rank 0: .* did not complete within 5 s at step [0-9]*" "$T/log/stopped.log" \
  || { cat "$T/log/stopped.log"; fail "no message naming the operation, step and rank after rank 1 stopped"; }
wait_for 60 "the stopped-rank job did not leave the queue" bash -c '[[ -z "$(squeue -h)" ]]'
say "ok - (d) a stopped rank ends the srun job (exit $rc, $(($(date +%s) - t)) s): $(grep -o "rank 0: .* did not complete within 5 s at step [0-9]*" "$T/log/stopped.log" | head -1)"

# (e) Preemption and requeue. The uninterrupted reference runs the same layout under srun.
t=$(date +%s)
PRE=(--set train.steps=60 --set checkpoint.every=5 --set train.threads=1 --set checkpoint.export_dtype=fp32
     --set parallel.tp=1 --set parallel.pp=2 --set parallel.dp=2 --set parallel.zero=1)
bounded 300 srun --mpi=pmix -n 4 --cpus-per-task=1 --time=10 --kill-on-bad-exit=1 \
  "$BIN" train "$CONFIG" --run-dir "$T/ref/preempt" "${COMMON[@]}" "${PRE[@]}" >"$T/log/preempt-ref.log" 2>&1 \
  || { cat "$T/log/preempt-ref.log"; fail "the uninterrupted 4-rank reference run failed"; }
cd "$SRC"
job=$(EXATRAIN_BIN="$BIN" EXATRAIN_RUNS="$T/runs" sbatch --parsable --job-name=preempt --nodes=1 --ntasks-per-node=4 \
  --gpus-per-node=0 --cpus-per-task=1 --time=10 --output="$T/runs/%x-%j.out" --error="$T/runs/%x-%j.err" \
  launch/slurm/train.sbatch configs/train/tiny-demo.yaml "${COMMON[@]}" "${PRE[@]}" 2>"$T/log/preempt-sbatch.log")
cd - >/dev/null
job=${job%%;*}
[[ $job =~ ^[0-9]+$ ]] || fail "sbatch of the preemption job failed: $(cat "$T/log/preempt-sbatch.log")"
RUN=$T/runs/preempt
steps_done() { [[ -s "$RUN/metrics.jsonl" ]] && tail -n 1 "$RUN/metrics.jsonl" | grep -o '"step":[0-9]*' | cut -d: -f2 || echo 0; }
job_field() { scontrol show job "$job" -o 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p"; }
running_restart() { [[ "$(job_field JobState)" == RUNNING && "$(job_field Restarts)" == "$1" ]]; }
past() { (($(steps_done) >= $1)); }
# A requeued job waits for its BeginTime: Slurm holds it back about two minutes, and this test
# waits that out. (Starting it at once with `scontrol update StartTime=now` raced with slurmd,
# which refuses a batch job whose id it killed moments ago: "Job N already killed, do not launch
# batch job", and the job then never ran.)
pending_restart() { [[ "$(job_field JobState)" == PENDING && "$(job_field Restarts)" == "$1" ]]; }
release() { wait_for 60 "job $job was not requeued ($1)" pending_restart "$2"
            say "job $job requeued after $1: pending until $(job_field EligibleTime) (now $(date +%FT%T))"
            wait_for 300 "job $job did not run again after $1" running_restart "$2"; }
wait_for 120 "the preemption job did not reach step 8" past 8
scancel --signal=USR1 "$job"
release "scancel --signal=USR1" 1
stop1=$(grep -o 'stopped at step [0-9]*' "$RUN/train.log" | head -1 | grep -o '[0-9]*$')
[[ -n "$stop1" ]] || fail "no 'stopped at step' line in $RUN/train.log after SIGUSR1"
wait_for 120 "the requeued job did not resume and train 3 steps" past $((stop1 + 3))
scontrol requeue "$job"
release "scontrol requeue" 2
wait_for 180 "job $job did not complete after its second restart" bash -c "[[ \"\$(scontrol show job $job -o | grep -o 'JobState=[A-Z]*')\" == JobState=COMPLETED ]]"
resumed=$(grep -c "resumed from $RUN/checkpoints/step_" "$RUN/train.log" || true)
((resumed == 2)) || fail "$RUN/train.log shows $resumed resumes, expected 2"
grep -q "requeueing job $job" "$T/runs/preempt-$job.out" || fail "the job output lacks the script's requeue line"
"$PY" - "$RUN/metrics.jsonl" <<'PY' || fail "metrics.jsonl of the preempted run does not hold steps 1-60 once each"
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1])]
assert steps == list(range(1, 61)), steps
PY
"$PY" "$SRC/tests/multirank/compare_runs.py" "$T/ref/preempt" "$RUN" --rtol 0
say "ok - (e) preempted at step $stop1 (scancel --signal=USR1) and again (scontrol requeue): requeued twice, resumed, and bit-identical to the uninterrupted run ($(($(date +%s) - t)) s)"

alive || fail "a Slurm daemon exited during the test"
FAILED=0
echo "PASS: exatrain under Slurm (srun --mpi=pmix, sbatch train.sbatch, submit.sh, stopped rank, preemption and requeue) in $(($(date +%s) - t0)) s"
