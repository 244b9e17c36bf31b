#!/usr/bin/env python3
"""Judge for training on chat data: the loss counts only assistant tokens, as transformers says.

Random multi-turn conversations (check_chat.py's generator) go through
`exatrain data prepare --format chat`; `exatrain train` runs one step (learning rate 1e-9) with a
validation split of the dataset's last 6 packed sequences and writes its validation loss and final
weights. Independently of exatrain's loader, this script reads the shards (ids and loss-mask bits,
format in data/shards/shard_format.h), packs the dataset's last 6 sequences of seq_len + 1 tokens,
runs transformers' Exaone4ForCausalLM from RUN/final on them and computes the mean cross-entropy
over the targets whose mask bit is 1. exatrain's validation loss must equal it within 1e-5
(fp32, the same weights); the unmasked mean must differ (the mask matters). Then the same run on
4 ranks (tp 2 x dp 2, vocab-parallel masked loss, the masked-token count summed over DP) must
give the same training and validation losses within 1e-5.

check_masked_loss.py --exatrain BIN
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_chat  # noqa: E402  (the conversation generator and the independent shard reader)

SEQ, VAL = 64, 6


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd[:3])} ... exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def metrics(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exatrain", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="masked-loss-") as work:
        check(a, work)


def check(a, work):
    jsonl = os.path.join(work, "chat.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:
        for conv in check_chat.random_conversations(120, seed=7):
            f.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
    data = os.path.join(work, "chat")
    run([a.exatrain, "data", "prepare", "--tokenizer", check_chat.TOKENIZER, "--input", jsonl, "--format", "chat",
         "--output", data, "--name", "chat", "--license", "CC0-1.0", "--source", "check_masked_loss.py"])
    config = os.path.join(work, "run.yaml")
    with open(config, "w") as f:
        f.write(f"""model: {{preset: tiny, vocab_size: 1216}}
train: {{steps: 1, global_batch: 8, micro_batch: 2, seq_len: {SEQ}, eval_every: 1, threads: 1}}
optimizer: {{lr: 1.0e-9, weight_decay: 0.0}}
schedule: {{type: constant}}
data:
  tokenizer: {check_chat.TOKENIZER}
  datasets:
    - {{path: {data}, validation_sequences: {VAL}}}
log: {{sample_tokens: 0}}
""")
    single = os.path.join(work, "single")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run([a.exatrain, "train", config, "--run-dir", single], env=env)
    got = metrics(single)[-1]["val_loss"]["chat"]

    # The judge: the shards read here, the model run by transformers.
    ids, mask = [], []
    for doc_ids, doc_mask in check_chat.read_dataset(data):
        ids += doc_ids
        mask += doc_mask
    sequences = (len(ids) - 1) // SEQ
    rows = range(sequences - VAL, sequences)
    tokens = torch.tensor([ids[q * SEQ:q * SEQ + SEQ + 1] for q in rows])
    target_mask = torch.tensor([mask[q * SEQ + 1:q * SEQ + SEQ + 1] for q in rows], dtype=torch.float64)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(single, "final"), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(tokens[:, :-1]).logits.double()
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1),
                                           reduction="none").view(VAL, SEQ)
    want = float((ce * target_mask).sum() / target_mask.sum())
    unmasked = float(ce.mean())
    counted = int(target_mask.sum())
    print(f"  validation: {VAL} sequences x {SEQ} targets, {counted} counted (assistant tokens)")
    print(f"  exatrain val_loss {got:.7f}  transformers masked mean {want:.7f}  (unmasked mean {unmasked:.7f})")
    if abs(got - want) > 1e-5 * abs(want):
        sys.exit(f"FAIL: exatrain's validation loss {got} != transformers' masked mean {want}")
    if abs(unmasked - want) < 1e-3 or counted in (0, VAL * SEQ):
        sys.exit("FAIL: the mask does not matter on this data; the check would not see a wrong mask")

    parallel = os.path.join(work, "tp2-dp2")
    run(["mpirun", "-n", "4", "--oversubscribe", "-x", "OMP_NUM_THREADS", a.exatrain, "train", config, "--run-dir",
         parallel, "--set", "parallel.tp=2", "--set", "parallel.dp=2"], env=dict(env, OMPI_ALLOW_RUN_AS_ROOT="1",
         OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl_vader_single_copy_mechanism="none"), stdin=subprocess.DEVNULL)
    s, p = metrics(single)[-1], metrics(parallel)[-1]
    print(f"  tp 2 x dp 2: train loss {p['loss']:.7f} (one rank {s['loss']:.7f}), "
          f"val_loss {p['val_loss']['chat']:.7f}")
    for key, x, y in (("loss", s["loss"], p["loss"]), ("val_loss", got, p["val_loss"]["chat"])):
        if abs(x - y) > 1e-5 * abs(x):
            sys.exit(f"FAIL: tp 2 x dp 2 {key} {y} != one rank's {x}")
    print("PASS: the masked loss equals transformers' on assistant tokens, on one rank and on tp 2 x dp 2")


if __name__ == "__main__":
    main()
