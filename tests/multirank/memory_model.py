#!/usr/bin/env python3
"""Judge: the cost model's predictions against the trainer's measurements.

memory_model.py EXATRAIN_BIN (--link-gb-s GB_S | --gpu KIND) [--judge-order MARGIN] RUN_DIR...
For each run (config.resolved.yaml, memory.json, metrics.jsonl, train.log):
  - memory: every pipeline stage's measured peak activation bytes (the largest over the stage's
    ranks; the memory tracker counts CPU tensor storage above the step's start) against
    `exatrain model info --config RUN/config.resolved.yaml --ranks N --json`'s
    stages[s].bytes.peak_activations; the bytes allocated at a step's start (memory.json's
    resident_bytes: weights, the gradient buffer, optimizer state) against its
    total_before_activations; and their sum, the stage's peak: each within 10% (MEMORY_TOLERANCE).
  - time: the measured step time (median of steps 2.., step 1 warms up) against `exatrain plan
    --layout ... --json`'s step_s and its parts. On CPU ranks this machine is described as a
    "GPU" whose peak is the fp32 GEMM peak the trainer measured at start (train.log: each rank
    measures it while the job's other ranks do too, so a 2-rank job's peak is what one of two
    ranks gets; the median over the runs of one (model, ranks) group) at efficiency 1, whose
    links run at --link-gb-s (the bus bandwidth `exatrain bench comm` measured for a large
    all-reduce between the ranks, memory_model.sh) and whose memory streams at MEMORY_GB_S.
    With --judge-order MARGIN the order is judged among the runs of one model: every pair
    predicted more than MARGIN apart (slower / faster - 1) must be measured in the same order;
    pairs predicted closer are printed, not judged (a 5% prediction cannot order two runs that
    differ by less than the noise of a step time). Give it only runs that ran one at a time,
    each rank with a core of its own (memory_model.sh's small runs); runs that shared the cores
    (its tiny runs, two at a time) are printed, not judged.
  - with --gpu KIND (runs on GPUs, launch/gpu_check.sh): the step times are predicted for KIND's
    entry of configs/hardware.yaml (the planner's own figures, one node of the run's ranks).
"""
import argparse
import concurrent.futures
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile

MEMORY_TOLERANCE = 0.10
# What one core streams for the memory-bound kernels: the planner's elementwise and optimizer
# terms (a stated figure, not measured by the test; they are 2-8% of these runs' predicted time).
MEMORY_GB_S = 10
# Cores other processes may use during a run whose time is judged (memory_model.sh measures it:
# on a quiet machine 0.00-0.05; a build beside it, 1-2).
OTHERS_LIMIT = 0.2


def resolved(run):
    out, section = {}, None
    for line in open(f"{run}/config.resolved.yaml"):
        if re.match(r"^\S", line):
            section = line.split(":")[0]
            continue
        m = re.match(r"^  (\w+): (.*)$", line)
        if m:
            out[f"{section}.{m.group(1)}"] = m.group(2).strip().strip('"')
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("exe")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--gpu", help="the runs ran on GPUs of this configs/hardware.yaml kind")
    ap.add_argument("--judge-order", type=float, metavar="MARGIN",
                    help="fail when two runs predicted more than MARGIN apart are measured in the other order")
    ap.add_argument("--link-gb-s", type=float,
                    help="CPU runs: the ranks' link, GB/s of bus bandwidth (exatrain bench comm's all_reduce busbw)")
    args = ap.parse_args()
    if not args.gpu and not args.link_gb_s:
        ap.error("CPU runs need --link-gb-s (mpirun -n 2 exatrain bench comm --ops all_reduce --bytes 64M)")
    exe, runs = args.exe, args.runs
    failures, rows, times = [], [], []
    # `exatrain model info` for every run, two at a time (each call is mostly start-up).
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    infos = pool.map(lambda run: json.loads(subprocess.check_output(
        [exe, "model", "info", "--config", f"{run}/config.resolved.yaml", "--ranks",
         str(len(json.load(open(f"{run}/memory.json"))["ranks"])), "--json"])), runs)
    for run, info in zip(runs, infos):
        name = run.rstrip("/").split("/")[-1]
        mem = json.load(open(f"{run}/memory.json"))
        ranks = len(mem["ranks"])
        cfg = f"{run}/config.resolved.yaml"
        measured, resident = {}, {}
        for r in mem["ranks"]:
            measured[r["stage"]] = max(measured.get(r["stage"], 0), r["peak_activation_bytes"])
            resident[r["stage"]] = max(resident.get(r["stage"], 0), r["resident_bytes"])
        for st in info["stages"]:
            # Peak activations; what is resident at a step's start (weights, gradient buffer,
            # optimizer state: the cost model's total before activations); and their sum, the
            # stage's peak.
            got, want = measured[st["stage"]], st["bytes"]["peak_activations"]
            got_static, want_static = resident[st["stage"]], st["bytes"]["total_before_activations"]
            err, err_static = want / got - 1, want_static / got_static - 1
            err_total = (want + want_static) / (got + got_static) - 1
            rows.append((name, st["stage"], got, want, err, got_static, want_static, err_static, err_total))
            for what, e, g, w in (("peak activations", err, got, want), ("resident", err_static, got_static, want_static),
                                  ("peak", err_total, got + got_static, want + want_static)):
                if abs(e) > MEMORY_TOLERANCE:
                    failures.append(f"{name} stage {st['stage']} {what}: predicted {w:.0f} B, measured {g} B "
                                    f"({100 * e:+.1f}%)")
        # Bytes per collective: the step's count in metrics.jsonl against the cost model's.
        got_bytes = json.loads(open(f"{run}/metrics.jsonl").readlines()[-1])["comm_bytes"]
        want_bytes = info["collective_bytes_per_rank_per_step"]
        if set(got_bytes) != set(want_bytes) or any(abs(got_bytes[k] - want_bytes[k]) > 0 for k in got_bytes):
            failures.append(f"{name}: collective bytes {got_bytes}, the cost model says {want_bytes}")
        # Step time: predicted below, once every run's GEMM peak is known.
        c = resolved(run)
        found = re.search(r"fp32 GEMM peak ([0-9.]+) GFLOP/s", open(f"{run}/train.log").read())
        peak = float(found.group(1)) if found else 0.0
        metrics = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if '"step_s"' in l]
        measured_s = statistics.median([m["step_s"] for m in metrics[1:]] or [metrics[0]["step_s"]])
        last = metrics[-1]
        # CPU time the machine's other processes used during the run, in cores (memory_model.sh
        # writes RUN/others.json; runs on GPUs have none).
        try:
            others = json.load(open(f"{run}/others.json"))
            other_cores = others["other_cpu_s"] / others["wall_s"]
        except FileNotFoundError:
            other_cores = 0.0
        model = (c["model.preset"], c.get("model.num_layers"), c["train.seq_len"])
        times.append(dict(name=name, group=(model, ranks), model=model, cfg=cfg, c=c, ranks=ranks, peak=peak,
                          measured=measured_s, busy=last["rank_busy_s"]["max"], exposed=last["exposed_comm_s"]["max"],
                          others=other_cores))
    # Each run measures the GEMM peak for 0.5 s at its start; on this shared machine one such
    # measurement can be 3x off (14.6 and 43.4 GFLOP/s in two runs a minute apart, 2026-11-30), so
    # the runs of one group (model, ranks) are predicted with the group's median peak.
    def predict(t):
        peak = statistics.median(u["peak"] for u in times if u["group"] == t["group"])
        c, ranks = t["c"], t["ranks"]
        if args.gpu:
            hardware = ["--gpu", args.gpu]
        else:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as hw:
                hw.write(f"efficiency: {{gemm: 1, attention: 1, link: 1}}\ngpus:\n  cpu:\n    memory_gb: 1000\n"
                         f"    bf16_dense_tflops: {peak / 1000}\n    hbm_tb_per_s: {MEMORY_GB_S / 1000}\n"
                         f"    nvlink_gb_per_s: {args.link_gb_s}\n    network_gb_per_s: {args.link_gb_s}\n")
            hardware = ["--gpu", "cpu", "--hardware", hw.name]
        tp, pp = int(c["parallel.tp"]), int(c["parallel.pp"])
        layout = (f"tp={tp},pp={pp},dp={ranks // (tp * pp)},zero={c['parallel.zero']},"
                  f"micro_batch={c['train.micro_batch']},recompute={c['train.recompute']},"
                  f"sp={1 if c['parallel.sequence_parallel'] == 'true' else 0}")
        plan = json.loads(subprocess.check_output([exe, "plan", "--config", t["cfg"], "--gpus", str(ranks), *hardware,
                                                   "--gpus-per-node", str(ranks), "--layout", layout, "--json"]))
        t["predicted"], t["parts"] = plan["layouts"][0]["step_s"], plan["layouts"][0]["step_parts_s"]
        t["group_peak"] = peak
    list(pool.map(predict, times))
    print(f"  {'':<20} {'':>5} {'peak activations (MiB)':^31} {'resident at step start (MiB)':^31} {'peak':>7}")
    print(f"  {'run':<20} {'stage':>5} {'measured':>9} {'predicted':>10} {'error':>10} {'measured':>9} "
          f"{'predicted':>10} {'error':>10} {'error':>7}")
    for name, stage, got, want, err, got_s, want_s, err_s, err_t in rows:
        print(f"  {name:<20} {stage:>5} {got / 2**20:>9.2f} {want / 2**20:>10.2f} {100 * err:>+9.1f}% "
              f"{got_s / 2**20:>9.2f} {want_s / 2**20:>10.2f} {100 * err_s:>+9.1f}% {100 * err_t:>+6.1f}%")
    print(f"  {'run':<22} {'GFLOP/s':>8} {'predicted s':>12} {'measured s':>11} {'busy s':>7} {'exposed s':>10}"
          f" {'others':>7}  predicted parts")
    for t in sorted(times, key=lambda t: t["predicted"]):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in t["parts"].items() if v > 0.005)
        print(f"  {t['name']:<22} {t['peak']:>8.1f} {t['predicted']:>12.3f} {t['measured']:>11.3f} {t['busy']:>7.3f} "
              f"{t['exposed']:>10.3f} {t['others']:>7.2f}  {parts}")
    # The order: pairs of runs of one model that the model separates by more than the margin
    # (0.25 when only printed).
    margin = args.judge_order if args.judge_order is not None else 0.25
    # A run during which other processes used more than OTHERS_LIMIT cores did not have its cores
    # to itself: its time says nothing of the layout, so it is left out of the order.
    shared = [t for t in times if t["others"] > OTHERS_LIMIT]
    judged, inverted = 0, []
    for a, b in itertools.combinations(times, 2):
        if a["model"] != b["model"] or a in shared or b in shared:
            continue
        fast, slow = (a, b) if a["predicted"] <= b["predicted"] else (b, a)
        if slow["predicted"] <= fast["predicted"] * (1 + margin):
            continue
        judged += 1
        if slow["measured"] <= fast["measured"]:
            inverted.append(f"{slow['name']} predicted {slow['predicted']:.3f} s > {fast['name']} "
                            f"{fast['predicted']:.3f} s, measured {slow['measured']:.3f} <= {fast['measured']:.3f} s")
    pairs = sum(1 for a, b in itertools.combinations(times, 2) if a["model"] == b["model"])
    order = (f"{judged - len(inverted)} of {judged} pairs predicted more than {100 * margin:.0f}% apart measured "
             f"in that order ({pairs} pairs in all)")
    print(f"  order: {order}" + "".join(f"\n    inverted: {i}" for i in inverted))
    for t in shared:
        print(f"  left out of the order: {t['name']}: other processes used {t['others']:.2f} cores during it "
              f"(more than {OTHERS_LIMIT}); run the test on a quiet machine")
    if args.judge_order is not None:
        if judged == 0 and shared:
            print("  NOT JUDGED: no pair of runs that had the machine to themselves is predicted more than "
                  f"{100 * margin:.0f}% apart")
        elif judged == 0:
            failures.append(f"no pair of runs predicted more than {100 * margin:.0f}% apart: the order judges nothing")
        failures += [f"order inverted: {i}" for i in inverted]
    if failures:
        sys.exit("FAIL - " + "; ".join(failures))
    judged_note = (f"step-time order: {order}" if args.judge_order is not None else
                   "step times printed, not judged (no --judge-order: runs that shared the cores)")
    print(f"ok - {len(rows)} stages' peak activations, resident bytes and peak within {100 * MEMORY_TOLERANCE:.0f}% "
          f"of the measured; bytes per "
          f"collective equal; {judged_note}")


if __name__ == "__main__":
    main()
