#!/usr/bin/env python3
"""Judge for data.document_mask: a packed row computes what transformers computes on each document alone.

Random short chat conversations (words of Genesis, in check_chat.py's message helpers) go through `exatrain data prepare --format
chat`; `exatrain train` with data.document_mask: true runs 3 steps of the tiny hybrid model
(sliding layers with window 32 and RoPE, a global layer; seq_len 128, so rows hold several
conversations and cut some) and evaluates the dataset's last 6 packed sequences after the last step.

The judge reads the shards itself (ids, loss-mask bits, document index), packs the same 6 rows,
cuts each row at its document starts, and runs transformers' Exaone4ForCausalLM from RUN/final on
every piece separately (positions from 0, attention within the piece). The loss is the mean
cross-entropy over the targets whose mask bit is 1, leaving out the targets that begin a document
(no token of their document precedes them). exatrain's val_loss must equal it within 1e-5
relative (fp32, the same weights); the whole rows run unmasked must differ (the masks matter).
The same judgement holds with train.kernels: reference (SDPA with a [batch, 1, seq, seq] mask)
as with our CPU flash kernel, and for `exatrain eval` on the release.

Without packing (data.packing: false) the validation rows are the last 6 conversations, one per
row, padded; transformers runs each alone, and the losses must again agree within 1e-5.

Then layouts against the single-rank run (tests/multirank/compare_runs.py: the loss at every
step and the final parameters within 1e-5): tp 2 with sequence parallelism, pp 2, and
tp 2 x pp 2 with activation recomputation.

check_document_mask.py --exatrain BIN
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_chat  # noqa: E402  (the conversation generator and the independent shard reader)

SEQ, VAL = 128, 6
MPI_ENV = dict(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd[:4])} ... exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def metrics(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]


def short_conversations(n, seed):
    """Conversations of 15 to 90 tokens, so a 128-token row holds several (check_chat's run longer)."""
    rng = random.Random(seed)
    with open(check_chat.GENESIS, encoding="utf-8") as f:
        words = [w for line in f for w in line.split()]

    def text():
        start = rng.randrange(len(words) - 12)
        return " ".join(words[start:start + rng.randint(1, 10)])

    out = []
    for _ in range(n):
        conv = [check_chat.s(text())] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 2)):
            conv += [check_chat.u(text()), check_chat.a(text())]
        out.append(conv)
    return out


def judge(data, final):
    """transformers on each document piece of the last VAL rows: (document-masked loss, whole-row loss, counts)."""
    ids, mask, starts = [], [], set()
    for doc_ids, doc_mask in check_chat.read_dataset(data):
        starts.add(len(ids))
        ids += doc_ids
        mask += doc_mask
    sequences = (len(ids) - 1) // SEQ
    model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).eval()
    total, count, whole_total, whole_count, pieces = 0.0, 0, 0.0, 0, 0
    for q in range(sequences - VAL, sequences):
        base = q * SEQ
        row = ids[base:base + SEQ + 1]
        # Input positions [a, b) of one document: cut where a document starts inside the row.
        cuts = [0] + [t for t in range(1, SEQ) if base + t in starts] + [SEQ]
        with torch.no_grad():
            for a, b in zip(cuts, cuts[1:]):
                logits = model(torch.tensor([row[a:b]])).logits[0].double()
                ce = torch.nn.functional.cross_entropy(logits, torch.tensor(row[a + 1:b + 1]), reduction="none")
                for j in range(a, b):
                    if mask[base + j + 1] and base + j + 1 not in starts:
                        total += float(ce[j - a])
                        count += 1
                pieces += 1
            logits = model(torch.tensor([row[:SEQ]])).logits[0].double()
            ce = torch.nn.functional.cross_entropy(logits, torch.tensor(row[1:]), reduction="none")
            for j in range(SEQ):
                if mask[base + j + 1]:
                    whole_total += float(ce[j])
                    whole_count += 1
    return total / count, whole_total / whole_count, count, pieces


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exatrain", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="document-mask-") as work:
        check(a, work)


def check(a, work):
    jsonl = os.path.join(work, "chat.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:
        for conv in short_conversations(300, seed=11):
            f.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
    data = os.path.join(work, "chat")
    run([a.exatrain, "data", "prepare", "--tokenizer", check_chat.TOKENIZER, "--input", jsonl, "--format", "chat",
         "--output", data, "--name", "chat", "--license", "CC0-1.0", "--source", "check_document_mask.py"])
    config = os.path.join(work, "run.yaml")
    with open(config, "w") as f:
        f.write(f"""model: {{preset: tiny, vocab_size: 1216, init_std: 0.2}}
train: {{steps: 3, global_batch: 8, micro_batch: 2, seq_len: {SEQ}, eval_every: 3, threads: 1}}
optimizer: {{lr: 1.0e-3, weight_decay: 0.0}}
schedule: {{type: constant}}
data:
  tokenizer: {check_chat.TOKENIZER}
  document_mask: true
  datasets:
    - {{path: {data}, validation_sequences: {VAL}}}
log: {{sample_tokens: 0, every: 1}}
""")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = {}
    for name, extra in (("single", []), ("reference", ["--set", "train.kernels=reference"])):
        runs[name] = os.path.join(work, name)
        run([a.exatrain, "train", config, "--run-dir", runs[name], *extra], env=env)

    want, unmasked, counted, pieces = judge(data, os.path.join(runs["single"], "final"))
    print(f"  validation: {VAL} rows x {SEQ} targets cut into {pieces} documents, {counted} targets counted")
    print(f"  transformers per document {want:.7f}  (whole rows, no document mask: {unmasked:.7f})")
    if pieces <= 2 * VAL:
        sys.exit(f"FAIL: only {pieces} documents in {VAL} rows; the data does not exercise document masks")
    if abs(unmasked - want) < 1e-3 * abs(want):
        sys.exit("FAIL: document masks do not matter on this data; the check would not see a wrong mask")
    for name in ("single", "reference"):
        got = metrics(runs[name])[-1]["val_loss"]["chat"]
        print(f"  exatrain ({name}) val_loss {got:.7f}  rel diff {abs(got - want) / abs(want):.2e}")
        if abs(got - want) > 1e-5 * abs(want):
            sys.exit(f"FAIL: exatrain's validation loss ({name}) {got} != transformers' per-document loss {want}")
    # `exatrain eval` on the release: the same document-masked loss.
    proc = run([a.exatrain, "eval", config, "--hf", os.path.join(runs["single"], "final"), "--json"], env=env)
    got = json.loads(proc.stdout.strip().splitlines()[-1])["datasets"]["chat"]["loss"]
    print(f"  exatrain eval --hf RUN/final {got:.7f}  rel diff {abs(got - want) / abs(want):.2e}")
    if abs(got - want) > 1e-5 * abs(want):
        sys.exit(f"FAIL: exatrain eval's loss {got} != transformers' per-document loss {want}")
    # The reference and the flash kernel: the same training, step by step.
    run([sys.executable, os.path.join(HERE, "..", "multirank", "compare_runs.py"), runs["single"], runs["reference"],
         "--rtol", "1e-5"])

    # data.packing: false: the validation rows are the last VAL conversations, each alone and
    # padded (cut to SEQ + 1 tokens if longer); transformers runs each unpadded.
    unpacked = os.path.join(work, "unpacked")
    run([a.exatrain, "train", config, "--run-dir", unpacked, "--set", "data.packing=false"], env=env)
    docs = check_chat.read_dataset(data)[-VAL:]
    model = AutoModelForCausalLM.from_pretrained(os.path.join(unpacked, "final"), dtype=torch.float32).eval()
    total, count, cut = 0.0, 0, 0
    with torch.no_grad():
        for doc_ids, doc_mask in docs:
            n = min(len(doc_ids), SEQ + 1)
            cut += len(doc_ids) > SEQ + 1
            logits = model(torch.tensor([doc_ids[:n - 1]])).logits[0].double()
            ce = torch.nn.functional.cross_entropy(logits, torch.tensor(doc_ids[1:n]), reduction="none")
            weights = torch.tensor(doc_mask[1:n], dtype=torch.float64)
            total, count = total + float((ce * weights).sum()), count + int(weights.sum())
    want_unpacked = total / count
    got = metrics(unpacked)[-1]["val_loss"]["chat"]
    print(f"  data.packing: false: {VAL} conversations ({cut} cut to {SEQ + 1} tokens), {count} targets; "
          f"exatrain {got:.7f}, transformers {want_unpacked:.7f}, rel diff {abs(got - want_unpacked) / want_unpacked:.2e}")
    if abs(got - want_unpacked) > 1e-5 * abs(want_unpacked):
        sys.exit(f"FAIL: exatrain's validation loss without packing {got} != transformers' {want_unpacked}")

    layouts = (("tp2-sp", 2, ["parallel.tp=2", "parallel.sequence_parallel=true"]),
               ("pp2", 2, ["parallel.pp=2"]),
               ("tp2-pp2-recompute", 4, ["parallel.tp=2", "parallel.pp=2", "train.recompute=full"]))
    for name, n, sets in layouts:
        out = os.path.join(work, name)
        cmd = ["mpirun", "-n", str(n), "-x", "OMP_NUM_THREADS", a.exatrain, "train", config, "--run-dir", out,
               "--set", "parallel.timeout_s=120"]
        for s in sets:
            cmd += ["--set", s]
        run(cmd, env=dict(env, **MPI_ENV), stdin=subprocess.DEVNULL)
        proc = run([sys.executable, os.path.join(HERE, "..", "multirank", "compare_runs.py"), runs["single"], out,
                    "--rtol", "1e-5"])
        print("  " + proc.stdout.strip())
        got = metrics(out)[-1]["val_loss"]["chat"]
        if abs(got - want) > 1e-5 * abs(want):
            sys.exit(f"FAIL: {name} validation loss {got} != transformers' per-document loss {want}")
    print("PASS: document-masked losses equal transformers' per-document losses; tp 2, pp 2, tp 2 x pp 2 equal one rank")


if __name__ == "__main__":
    main()
