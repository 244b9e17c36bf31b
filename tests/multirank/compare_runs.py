#!/usr/bin/env python3
"""Judge for parallel layouts: a multi-rank run must equal the single-rank run.

compare_runs.py REFERENCE_RUN_DIR RUN_DIR [--rtol 1e-5]
  - loss at every step within rtol (relative);
  - the final parameters (RUN/final, one file or shards) within rtol over the whole model,
    ||a - b|| / ||b|| with every tensor concatenated, and each tensor within 10 x rtol.
Why 1e-5 in fp32: the layouts compute the same sums in another order (TP splits matmul
reductions and the vocabulary softmax, DP sums gradients over ranks), so results differ by
rounding, about 1e-7 relative per operation in fp32. The loss stays within ~3e-7 over ten
steps. Parameters move further only where AdamW divides a near-zero gradient by its own
near-zero RMS: there a rounding-level change in the gradient changes the update by up to
one learning-rate step. A handful of such elements (3 of 49,152 in a tp=4 run) lift one
tensor's relative difference to ~1e-5 while the model as a whole stays near 1e-6; hence the
per-tensor bound of 10 x rtol. Any real error (a missing reduction, a wrong shard, a doubled
gradient) moves the loss and every parameter by 1e-3 or more.
"""
import argparse
import glob
import json
import sys

import numpy as np
from safetensors.numpy import load_file


def weights(release):
    """Every tensor of a release: model.safetensors, or the shards of a sharded one."""
    out = {}
    for f in sorted(glob.glob(f"{release}/model*.safetensors")):
        out.update(load_file(f))
    if not out:
        sys.exit(f"FAIL {release}: no model*.safetensors")
    return out


def losses(run):
    # (a step-0 line holds only the validation before training: no training loss)
    return [m["loss"] for m in map(json.loads, open(f"{run}/metrics.jsonl")) if "loss" in m]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference")
    ap.add_argument("run")
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--expect-different", type=float, default=0, metavar="D",
                    help="also require the losses to differ somewhere by more than D (relative): a run "
                         "that must be a different computation within rtol")
    a = ap.parse_args()
    ref, got = losses(a.reference), losses(a.run)
    if len(ref) != len(got):
        sys.exit(f"FAIL {a.run}: {len(got)} logged steps, reference has {len(ref)}")
    worst_loss = max(abs(x - y) / abs(x) for x, y in zip(ref, got))
    pr, pg = weights(f"{a.reference}/final"), weights(f"{a.run}/final")
    if sorted(pr) != sorted(pg):
        sys.exit(f"FAIL {a.run}: parameter names differ from the reference")
    worst_param, worst_name, diff_sq, ref_sq = 0.0, "", 0.0, 0.0
    for name in pr:
        d = float(np.linalg.norm(pg[name] - pr[name]))
        r = d / max(float(np.linalg.norm(pr[name])), 1e-30)
        diff_sq, ref_sq = diff_sq + d * d, ref_sq + float(np.linalg.norm(pr[name])) ** 2
        if r > worst_param:
            worst_param, worst_name = r, name
    whole = (diff_sq / ref_sq) ** 0.5
    moved = max(np.linalg.norm(pr[n]) for n in pr)  # sanity: the run trained something
    print(f"{a.run}: {len(ref)} steps, worst loss rel diff {worst_loss:.2e}, parameters rel diff "
          f"{whole:.2e} (worst tensor {worst_param:.2e}, {worst_name})")
    if worst_loss > a.rtol or whole > a.rtol or worst_param > 10 * a.rtol or not np.isfinite(moved):
        sys.exit(f"FAIL {a.run}: differs from the single-rank run by more than {a.rtol}")
    if a.expect_different and worst_loss <= a.expect_different:
        sys.exit(f"FAIL {a.run}: expected a different computation, but the losses agree within {a.expect_different}")


if __name__ == "__main__":
    main()
