#!/usr/bin/env python3
"""Start one multi-rank training run, SIGKILL one rank at a chosen instant, wait for the job to end.

kill_watch.py --run RUN --victim RANK --phase PHASE --step N --frac F [timing options] -- MPIRUN_CMD...

The instant (F in [0, 1) places it inside the window):
  train N  rank 0 has logged step N-1 (a line in RUN/metrics.jsonl); kill F x one step later,
           i.e. inside step N (N-1 must not be a save step, N not an evaluation step);
  eval N   rank 0 has logged step N-1; kill 3 step times + F x 0.4 evaluations later: step N's
           training is done and its evaluation (logged with step N) runs;
  save N   the checkpoint's .tmp-step_N directory appears (rank 0 opens the save), then
           --target writing: the victim's piece file (rank_V.bin.tmp.PID, renamed when complete)
                  appears; kill within F ms, inside its write;
           --target window: kill F x --save-s after the directory appeared;
           --target logged: kill the moment step N+1 is logged (an asynchronous save of step N
                  must be committed by then);
           --target latest: kill the moment rank 0 starts moving `latest` (latest.tmp.PID).
The phase hit is read from the files at the instant of the kill, not assumed: `save` when an
uncommitted .tmp-step_* directory or a latest.tmp.* file exists, `export` when every step is
logged and no save is in flight (the end: RUN/final is written), `eval` when the next logged
step evaluates and more than 2.5 step times have passed since the last line, else `train`.
Steps completed at the kill = step lines logged (+1 in an evaluation: that step's update is
done); the step-0 line (validation before training) is not a step.

Prints one line of key=value; exit 0 when the job ended after the kill, 2 when it hung (still
running --end-timeout s after the kill; every process of the job is then killed), 3 when the
run ended or failed before the instant came.
"""
import argparse
import glob
import os
import signal
import subprocess
import sys
import time


def children(pid):
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def world_rank(pid):
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    for e in env:
        if e.startswith(b"OMPI_COMM_WORLD_RANK="):
            return int(e.split(b"=", 1)[1])
    return None


def lines(path):
    """Training steps logged: lines with a gradient norm (the step-0 validation line has none)."""
    try:
        with open(path, "rb") as f:
            return sum(b'"grad_norm"' in line for line in f.read().split(b"\n"))
    except FileNotFoundError:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--victim", type=int, required=True)
    ap.add_argument("--phase", choices=["train", "eval", "save"], required=True)
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--frac", type=float, required=True)
    ap.add_argument("--target", choices=["writing", "window", "logged", "latest"], default="writing")
    ap.add_argument("--step-s", type=float, required=True, help="a training step (reference run)")
    ap.add_argument("--eval-s", type=float, default=0.0, help="an evaluation (reference run)")
    ap.add_argument("--save-s", type=float, default=0.0, help="a save (reference run)")
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--every", type=int, default=0, help="checkpoint.every")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--start-timeout", type=float, default=90)
    ap.add_argument("--end-timeout", type=float, default=30)
    ap.add_argument("--log", required=True)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    metrics = os.path.join(a.run, "metrics.jsonl")
    ckpts = os.path.join(a.run, "checkpoints")
    tmp_dir = os.path.join(ckpts, f".tmp-step_{a.step:08d}")
    piece = os.path.join(tmp_dir, f"rank_{a.victim:05d}.bin.tmp.*")
    evaluates = lambda s: a.eval_every > 0 and (s % a.eval_every == 0 or s == a.steps)

    job = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(a.log, "w"), stderr=subprocess.STDOUT)
    result = {}

    def emit(code):
        print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
        sys.exit(code)

    def kill_job():
        for pid in children(job.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        job.kill()
        job.wait()

    try:
        # The victim: the child of mpirun with OMPI_COMM_WORLD_RANK = victim.
        deadline = time.monotonic() + a.start_timeout
        victim = None
        while victim is None:
            if job.poll() is not None or time.monotonic() > deadline:
                result.update(error="no-victim", rc=job.poll())
                kill_job()
                emit(3)
            victim = next((p for p in children(job.pid) if world_rank(p) == a.victim), None)
            time.sleep(0.005)
        result.update(victim=a.victim, pid=victim)

        # Follow the logged lines (and when each appeared) until the instant.
        seen, seen_at, prev_gap = lines(metrics), time.monotonic(), None

        def follow():
            nonlocal seen, seen_at, prev_gap
            n = lines(metrics)
            if n != seen:
                now = time.monotonic()
                # The last step's own time, when nothing but the step ran between the two lines.
                plain = n == seen + 1 and seen > 0 and not evaluates(n) and not (a.every and seen % a.every == 0)
                prev_gap = (now - seen_at) if plain else None
                seen, seen_at = n, now

        def wait_for(cond, period):
            while not cond():
                if job.poll() is not None or time.monotonic() > deadline:
                    result.update(error="ended-before-the-instant", rc=job.poll(), lines=lines(metrics))
                    kill_job()
                    emit(3)
                follow()
                if period:
                    time.sleep(period)

        deadline = time.monotonic() + a.start_timeout
        if a.phase in ("train", "eval"):
            wait_for(lambda: seen >= a.step - 1, 0.001)
            # An evaluation starts after step N's training: wait 3 step times before aiming into
            # its first 40%; the reference's times scaled by this run's last step (a loaded
            # machine slows both).
            scale = min(max((prev_gap or a.step_s) / a.step_s, 0.5), 3.0)
            if a.phase == "train":
                wait = a.frac * a.step_s
            else:
                wait = scale * (3 * a.step_s + a.frac * 0.4 * a.eval_s)
            at = seen_at + wait
            wait_for(lambda: time.monotonic() >= at, 0.0005)
        else:
            wait_for(lambda: os.path.isdir(tmp_dir), 0.0005)
            if a.target == "latest":
                # Rank 0 rewrites `latest` (latest.tmp.PID, then a rename): spin, kill at once.
                wait_for(lambda: glob.glob(os.path.join(ckpts, "latest.tmp.*")), 0)
                at = 0
            elif a.target == "logged":
                # The next step is logged: spin, kill at once. An asynchronous save of step N must
                # be committed by now, or a kill here loses checkpoint.every + 1 steps.
                wait_for(lambda: lines(metrics) >= a.step + 1, 0)
                at = 0
            elif a.target == "writing":
                # The victim's piece file exists from its open to its rename (ms for the tiny model):
                # spin without sleeping. A rank that holds nothing to write never creates one.
                give_up = time.monotonic() + 2
                wait_for(lambda: glob.glob(piece) or not os.path.isdir(tmp_dir) or time.monotonic() > give_up, 0)
                at = time.monotonic() + a.frac * 0.001
            else:
                at = time.monotonic() + a.frac * a.save_s
            wait_for(lambda: time.monotonic() >= at, 0)

        # The instant: what the files say, then the kill. Aimed at rank 0's own exact instants
        # (latest, logged), kill first: rank 0 alone writes what is looked at, and it is dead.
        def kill():
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:  # the run ended first
                result.update(error="ended-before-the-instant", rc=job.wait(), lines=lines(metrics))
                emit(3)
            return time.monotonic()

        exact = a.phase == "save" and a.target in ("latest", "logged")
        if exact:
            killed_at = kill()
        follow()
        tmp_now = sorted(os.path.basename(d) for d in glob.glob(os.path.join(ckpts, ".tmp-step_*")))
        writing = bool(glob.glob(os.path.join(ckpts, ".tmp-step_*", f"rank_{a.victim:05d}.bin.tmp.*")))
        tmp_now += [os.path.basename(f) for f in glob.glob(os.path.join(ckpts, "latest.tmp.*"))]
        since = time.monotonic() - seen_at
        if not exact:
            killed_at = kill()
        step_s = a.step_s * min(max((prev_gap or a.step_s) / a.step_s, 0.5), 3.0)
        if tmp_now:
            phase = "save"
        elif seen >= a.steps:
            phase = "export"  # the last checkpoint is committed: RUN/final is being written
        elif evaluates(seen + 1) and since > 2.5 * step_s:
            phase = "eval"
        else:
            phase = "train"
        result.update(phase=phase, lines=seen, completed=seen + (phase == "eval"),
                      tmp=",".join(tmp_now) or "-", writing=int(writing), since_ms=round(1000 * since, 1))

        # The job must end by itself: mpirun notices the dead rank and ends the others.
        try:
            rc = job.wait(timeout=a.end_timeout)
        except subprocess.TimeoutExpired:
            result.update(hang=1, alive=len(children(job.pid)))
            kill_job()
            emit(2)
        result.update(end_s=round(time.monotonic() - killed_at, 2), rc=rc,
                      left_tmp=",".join(sorted(os.path.basename(d) for d in glob.glob(os.path.join(ckpts, ".tmp-step_*")))) or "-")
        emit(0)
    finally:
        if job.poll() is None:
            kill_job()


if __name__ == "__main__":
    main()
