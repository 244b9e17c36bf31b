#!/usr/bin/env python3
"""BPE training time: `exatrain tokenizer train` against the Python `tokenizers` library, same run.

Both learn the same tokenizer (same files, vocabulary size, special tokens, NFC, the Qwen3 Split
regex + ByteLevel, initial alphabet = the 256 byte characters) on N threads:
  - exatrain: `exatrain tokenizer train ... --threads N`; the time is the one it reports for the
    whole job (counting, merging, writing), without the process start (LibTorch's shared
    libraries take about a second to load); the process wall time is shown too.
  - tokenizers: Tokenizer.train(files, BpeTrainer(...)) in a child process with
    RAYON_NUM_THREADS=N (TOKENIZERS_PARALLELISM=false for one thread); the time is that call.
The two vocabularies and merge lists are compared too (they must be identical; the parity test
tests/parity/check_tokenizer_train.py is the real check). Prints a table and, last, one JSON line
(also appended to --out FILE if given).

    bench_tokenizer_train.py --exatrain build/bin/exatrain [--files F ...] [--vocab-size 32000]
                             [--threads 1 2] [--copies K]
--copies K concatenates K copies of the files into one temporary input (more bytes to count, the
same words).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "corpora"))
SPECIALS = ["[PAD]", "[BOS]", "[|endofturn|]", "[|system|]", "[|user|]", "[|assistant|]", "[|tool|]",
            "<think>", "</think>"]

CHILD = r"""
import json, sys, time
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
vocab_size, out, specials, files = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4:]
tok = Tokenizer(models.BPE())
tok.normalizer = normalizers.NFC()
tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
                                             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
t = time.perf_counter()
tok.train(files, trainer)
seconds = time.perf_counter() - t
tok.save(out)
print(json.dumps({"seconds": seconds}))
"""


def bench_tokenizers(files, vocab_size, threads, out):
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(vocab_size), out, json.dumps(SPECIALS)] + files, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def bench_exatrain(binary, files, vocab_size, threads, out):
    start = time.perf_counter()
    proc = subprocess.run([binary, "tokenizer", "train", "--no-progress", "--vocab-size", str(vocab_size),
                           "--threads", str(threads), "--output", out] + files, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    m = re.search(r"merges took ([0-9.]+)s, ([0-9.]+)s in all", proc.stderr)
    counted = re.search(r"distinct words in ([0-9.]+)s", proc.stderr)
    return float(m.group(2)), wall, float(counted.group(1)), float(m.group(1))


def same_model(a, b):
    with open(a, encoding="utf-8") as f:
        x = json.load(f)["model"]
    with open(b, encoding="utf-8") as f:
        y = json.load(f)["model"]
    return x["vocab"] == y["vocab"] and x["merges"] == y["merges"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exatrain", required=True)
    ap.add_argument("--files", nargs="+")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--out", help="append the JSON result line to this file")
    args = ap.parse_args()
    files = args.files
    if not files:
        if os.path.isdir(SHARED):
            files = [os.path.join(SHARED, "en", "kjv.txt"), os.path.join(SHARED, "en", "gnome-user-docs-en.txt"),
                     os.path.join(SHARED, "ko", "gnome-user-docs-ko.txt"),
                     os.path.join(SHARED, "ko", "constitution-of-korea.txt")]
        else:
            files = [os.path.join(ROOT, "data", "corpora", "kjv-genesis.txt"),
                     os.path.join(ROOT, "data", "corpora", "constitution-of-korea.txt")]
    with tempfile.TemporaryDirectory() as work:
        if args.copies > 1:
            joined = os.path.join(work, "input.txt")
            with open(joined, "wb") as out:
                for _ in range(args.copies):
                    for path in files:
                        with open(path, "rb") as f:
                            data = f.read()
                        out.write(data if data.endswith(b"\n") else data + b"\n")
            inputs = [joined]
        else:
            inputs = files
        mb = sum(os.path.getsize(p) for p in inputs) / 1e6
        rows = []
        print(f"input: {mb:.1f} MB in {len(inputs)} file(s), vocab {args.vocab_size}")
        print(f"{'threads':>7} {'exatrain s':>11} {'(count+merge)':>14} {'(process)':>10} {'tokenizers s':>13} "
              f"{'speedup':>8} {'identical':>9}")
        for threads in args.threads:
            ours_path = os.path.join(work, f"exatrain-{threads}.json")
            theirs_path = os.path.join(work, f"tokenizers-{threads}.json")
            ours, wall, count_s, merge_s = bench_exatrain(args.exatrain, inputs, args.vocab_size, threads, ours_path)
            theirs = bench_tokenizers(inputs, args.vocab_size, threads, theirs_path)
            identical = same_model(ours_path, theirs_path)
            rows.append({"threads": threads, "exatrain_seconds": ours, "exatrain_count_seconds": count_s,
                         "exatrain_merge_seconds": merge_s, "exatrain_process_seconds": wall,
                         "tokenizers_seconds": theirs, "speedup": theirs / ours, "identical": identical})
            print(f"{threads:>7} {ours:>11.2f} {f'{count_s:.2f}+{merge_s:.2f}':>14} {wall:>10.2f} {theirs:>13.2f} "
                  f"{theirs / ours:>7.2f}x {str(identical):>9}")
    result = {"bench": "tokenizer_train", "files": files, "copies": args.copies, "mb": mb,
              "vocab_size": args.vocab_size, "rows": rows}
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
