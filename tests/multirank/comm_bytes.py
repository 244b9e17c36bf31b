#!/usr/bin/env python3
"""Judge for communication accounting: the bytes handed to each collective in one training step
(logged by rank 0 in metrics.jsonl as comm_bytes) must equal the analytical values.

comm_bytes.py RUN_DIR --tp T --dp D --zero Z --micro-batch B --rows-per-rank R --seq-len S [--sp]
Model shape comes from RUN/config.resolved.yaml. fp32 everywhere (4 bytes), no recomputation.
Per step on one rank, with L layers, hidden H, head_dim Dh, M = R / B micro-batches:
  tp.all_reduce   = M * ((4L + 2) * B*S*H * 4 + 3 * B*S * 4) + 2L * Dh * 4
                    (per micro-batch: the embedding and each attention/MLP output in forward,
                    each attention/MLP input and the lm_head input in backward; three [B*S]
                    reductions in the vocab-parallel cross-entropy; per step the q_norm and
                    k_norm gradient sums)
  with sequence parallelism (--sp) the activation all-reduces become, per micro-batch,
  tp.reduce_scatter = (4L + 2) * B*S*H * 4        (forward: the embedding and each attention/MLP
                      output; backward: each attention/MLP input and the lm_head input)
  tp.all_gather     = (4L + 2) * B*S/T*H * 4      (the mirror images, on sequence shards)
  and tp.all_reduce keeps the cross-entropy's 3 * B*S * 4 per micro-batch plus, per step, the
  norm gradients: q/k norms 2L * Dh * 4 and the sequence-split norms (2L + 1) * H * 4
  dp.all_reduce   = P_pad * 4                      (zero 0: the flat gradient bucket)
  dp.reduce_scatter = P_pad * 4, dp.all_gather = P_pad / D * 4   (zero 1)
  world.all_reduce = 40                            (global grad norm and mean loss, fp64; the step's
                                                   agreement before the update, 3 x int64: first rank
                                                   with a non-finite value, stop signal, write error)
and the optimizer state (fp32 master + 2 moments) = 12 * P_pad / (D if zero 1 else 1).
where P_pad is this rank's parameter count (TP shard) rounded up to a multiple of D.
"""
import argparse
import json
import re
import sys


def resolved(run):
    """Reads the model section of config.resolved.yaml (flat `key: value` lines)."""
    model, inside = {}, False
    for line in open(f"{run}/config.resolved.yaml"):
        if re.match(r"^\S", line):
            inside = line.startswith("model:")
            continue
        m = re.match(r"^  (\w+): (.*)$", line)
        if inside and m:
            model[m.group(1)] = m.group(2).strip().strip('"')
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    for k in ("tp", "dp", "zero", "micro_batch", "rows_per_rank", "seq_len"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, required=True)
    ap.add_argument("--sp", action="store_true", help="sequence parallelism")
    a = ap.parse_args()
    m = resolved(a.run)
    V, H, I, L = (int(m[k]) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_layers"))
    nh, nkv = int(m["num_heads"]), int(m["num_kv_heads"])
    Dh = int(m["head_dim"]) or H // nh
    tied = m["tie_embeddings"] == "true"
    tp = a.tp
    kv_local = max(nkv // tp, 1)
    per_layer = (nh // tp) * Dh * H * 2 + kv_local * Dh * H * 2 + 2 * Dh + 2 * H + 3 * (I // tp) * H
    local = (V // tp) * H + L * per_layer + H + (0 if tied else (V // tp) * H)
    padded = -(-local // a.dp) * a.dp
    B, S, M = a.micro_batch, a.seq_len, a.rows_per_rank // a.micro_batch
    expected = {"world.all_reduce": 8 + 8 + 3 * 8}
    if tp > 1 and not a.sp:
        expected["tp.all_reduce"] = M * ((4 * L + 2) * B * S * H * 4 + 3 * B * S * 4) + 2 * L * Dh * 4
    if tp > 1 and a.sp:
        expected["tp.reduce_scatter"] = M * (4 * L + 2) * B * S * H * 4
        expected["tp.all_gather"] = M * (4 * L + 2) * B * (S // tp) * H * 4
        expected["tp.all_reduce"] = M * 3 * B * S * 4 + 2 * L * Dh * 4 + (2 * L + 1) * H * 4
    if a.dp > 1 and a.zero == 0:
        expected["dp.all_reduce"] = padded * 4
    if a.dp > 1 and a.zero == 1:
        expected["dp.reduce_scatter"] = padded * 4
        expected["dp.all_gather"] = padded // a.dp * 4
    got = json.loads(open(f"{a.run}/metrics.jsonl").readlines()[-1])["comm_bytes"]
    if tp > nkv:  # replicated KV heads: their gradient sums run on the "kv" group
        expected["kv.all_reduce"] = L * 2 * Dh * H * 4
    for key in sorted(set(expected) | set(got)):
        status = "ok" if expected.get(key) == got.get(key) else "MISMATCH"
        print(f"  {key:20s} measured {got.get(key)} analytical {expected.get(key)} {status}")
    if expected != got:
        sys.exit(f"FAIL {a.run}: communicated bytes differ from the analytical values")
    # Optimizer state on this rank: fp32 master weights + two Adam moments for the owned slice,
    # the whole local bucket with zero 0, 1/dp of it with ZeRO-1.
    state = json.loads(open(f"{a.run}/metrics.jsonl").readlines()[-1])["optimizer_state_bytes"]
    want = 12 * (padded // a.dp if a.zero == 1 else padded)
    print(f"  optimizer state      measured {state} analytical {want} (local parameters {local}, dp {a.dp})")
    if state != want:
        sys.exit(f"FAIL {a.run}: optimizer state bytes differ from the analytical value")
    print(f"{a.run}: communication bytes equal the analytical values")


if __name__ == "__main__":
    main()
