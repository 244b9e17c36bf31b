#!/usr/bin/env python3
"""Judge for communication accounting: the bytes handed to each collective in one training step
(logged by rank 0 in metrics.jsonl as comm_bytes) must equal the cost model's
(trainer/plan/cost_model.cpp, whose formulas docs/parallelism.md gives), as
`exatrain model info --config RUN/config.resolved.yaml --ranks N --json` reports them in
collective_bytes_per_rank_per_step; and the optimizer state must be what ZeRO says.

comm_bytes.py RUN_DIR --exatrain BIN --tp T --dp D --zero Z --micro-batch B --rows-per-rank R --seq-len S [--sp]
Optimizer state (fp32 master + 2 moments, + the bf16 copy ZeRO-1 gathers with train.weights:
bf16) = 12 (14) * P_pad / (D if zero 1 else 1), where P_pad is this rank's parameter count (TP
shard) rounded up to a multiple of D.
"""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    for k in ("tp", "dp", "zero", "micro_batch", "rows_per_rank", "seq_len"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, required=True)
    ap.add_argument("--sp", action="store_true", help="sequence parallelism")
    ap.add_argument("--exatrain", required=True, help="the exatrain binary (its cost model)")
    a = ap.parse_args()
    info = json.loads(subprocess.check_output([a.exatrain, "model", "info", "--config", f"{a.run}/config.resolved.yaml",
                                               "--ranks", str(a.tp * a.dp), "--json"]))
    expected = {k: int(v) for k, v in info["collective_bytes_per_rank_per_step"].items()}
    got = json.loads(open(f"{a.run}/metrics.jsonl").readlines()[-1])["comm_bytes"]
    local = info["stages"][0]["parameters"]  # this rank's TP shard (checked against the model in e2e_cli)
    padded = -(-local // a.dp) * a.dp
    for key in sorted(set(expected) | set(got)):
        status = "ok" if expected.get(key) == got.get(key) else "MISMATCH"
        print(f"  {key:20s} measured {got.get(key)} cost model {expected.get(key)} {status}")
    if expected != got:
        sys.exit(f"FAIL {a.run}: communicated bytes differ from the cost model")
    # Optimizer state on this rank: two Adam moments for the owned slice (the whole local bucket
    # with zero 0, 1/dp of it with ZeRO-1), the fp32 master weights unless the fp32 parameters are
    # views of them (no ZeRO-1 gather), and the bf16 copy that ZeRO-1 gathers with bf16 weights.
    state = json.loads(open(f"{a.run}/metrics.jsonl").readlines()[-1])["optimizer_state_bytes"]
    bf16_weights = any(line.strip() == "weights: bf16" for line in open(f"{a.run}/config.resolved.yaml"))
    zero1 = a.zero == 1 and a.dp > 1
    per_element = (14 if zero1 else 12) if bf16_weights else (12 if zero1 else 8)
    want = per_element * (padded // a.dp if a.zero == 1 else padded)
    print(f"  optimizer state      measured {state} analytical {want} (local parameters {local}, dp {a.dp})")
    if state != want:
        sys.exit(f"FAIL {a.run}: optimizer state bytes differ from the analytical value")
    print(f"{a.run}: communication bytes equal the cost model")


if __name__ == "__main__":
    main()
