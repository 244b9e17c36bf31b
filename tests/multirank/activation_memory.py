#!/usr/bin/env python3
"""Judge: 1F1B bounds each stage's activation memory by the micro-batches in flight, not by the
number of micro-batches in the step.

activation_memory.py RUN_M1 RUN_M4 RUN_M8
Three pp=2 runs with the same micro-batch size and 1, 4 and 8 micro-batches per step. Each run's
memory.json gives, per rank, the peak bytes allocated during the forward/backward of a step above
what was allocated before it (parameters, gradients, optimizer state) and the most micro-batches
in flight. 1F1B on stage s of p keeps at most p - s micro-batches in flight, so:
  - stage 0 holds 2, stage 1 holds 1 (for M >= 2);
  - a stage's peak is the same for M = 4 and M = 8 (it does not grow with M);
  - stage 0's peak is about twice its one-micro-batch peak (M = 1): between 1.5x and 2.2x
    (the second micro-batch adds its saved activations, not the transient workspace).
"""
import json
import sys


def ranks(run):
    return {r["stage"]: r for r in json.load(open(f"{run}/memory.json"))["ranks"]}


def main():
    m1, m4, m8 = (ranks(r) for r in sys.argv[1:4])
    failures = []
    for stage, want in ((0, 2), (1, 1)):
        for name, run in (("M=4", m4), ("M=8", m8)):
            got = run[stage]["max_micro_batches_in_flight"]
            if got != want:
                failures.append(f"stage {stage} {name}: {got} micro-batches in flight, expected {want}")
        p4, p8 = m4[stage]["peak_activation_bytes"], m8[stage]["peak_activation_bytes"]
        print(f"  stage {stage}: peak activation bytes M=1 {m1[stage]['peak_activation_bytes']}, M=4 {p4}, M=8 {p8}")
        if p8 > p4 * 1.05:
            failures.append(f"stage {stage}: peak grows with the micro-batch count ({p4} at M=4, {p8} at M=8)")
    ratio = m8[0]["peak_activation_bytes"] / m1[0]["peak_activation_bytes"]
    print(f"  stage 0: peak at M=8 / peak at M=1 = {ratio:.2f} (2 micro-batches in flight)")
    if not 1.5 <= ratio <= 2.2:
        failures.append(f"stage 0: M=8 peak is {ratio:.2f}x the one-micro-batch peak, expected about 2x")
    if failures:
        sys.exit("FAIL - " + "; ".join(failures))
    print("ok - 1F1B: activation memory per stage is bounded by the micro-batches in flight")


if __name__ == "__main__":
    main()
