#!/usr/bin/env python3
"""Encode throughput: `exatrain tokenizer bench` against the Python `tokenizers` library, same run.

Both encode the same lines (the files split on newlines) with the same tokenizer.json, ids only,
add_special_tokens=False, on 1 thread and on all cores. Each side makes --repeat passes over all
lines in one process (so caches warm the way they would in a long job) and reports the median
pass; loading the tokenizer and reading the files are not timed.
  - exatrain: `exatrain tokenizer bench --tokenizer T FILES --threads N --repeat K`.
  - tokenizers: Tokenizer.encode_batch_fast(lines, add_special_tokens=False) (its fastest batch
    call: no offsets) in a child process with RAYON_NUM_THREADS=N (and TOKENIZERS_PARALLELISM=false
    for one thread). encode_batch is timed too and shown.
Prints a table and, last, one JSON line (also appended to --out FILE if given).

    bench_tokenizer.py --exatrain build/bin/exatrain [--tokenizer T] [--files F ...] [--repeat 3]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))

CHILD = r"""
import json, statistics, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
repeat = int(sys.argv[2])
lines = []
nbytes = 0
for path in sys.argv[3:]:
    data = open(path, "rb").read()
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts.pop()
    nbytes += sum(len(p) for p in parts)
    lines += [p.decode("utf-8", "replace") for p in parts]
out = {"bytes": nbytes, "lines": len(lines)}
for name in ("encode_batch_fast", "encode_batch"):
    fn = getattr(tok, name)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        encs = fn(lines, add_special_tokens=False)
        times.append(time.perf_counter() - t)
    out[name] = {"seconds": times, "mb_per_s": nbytes / statistics.median(times) / 1e6,
                 "tokens": sum(len(e.ids) for e in encs)}
print(json.dumps(out))
"""


def bench_tokenizers(tokenizer, files, threads, repeat):
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"
    proc = subprocess.run([sys.executable, "-c", CHILD, tokenizer, str(repeat)] + files, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_exatrain(binary, tokenizer, files, threads, repeat):
    proc = subprocess.run([binary, "tokenizer", "bench", "--tokenizer", tokenizer, "--threads", str(threads),
                           "--repeat", str(repeat)] + files, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exatrain", required=True)
    ap.add_argument("--tokenizer", help="default: the Qwen3 tokenizer.json in ../shared, else the in-repo fixture")
    ap.add_argument("--files", nargs="+", help="default: ../shared/data/corpora/{en,ko}/*.txt, else the bundled texts")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 and all cores")
    ap.add_argument("--out")
    args = ap.parse_args()

    qwen = os.path.join(SHARED, "tokenizers", "qwen3", "tokenizer.json")
    tokenizer = args.tokenizer or (qwen if os.path.exists(qwen) else
                                   os.path.join(ROOT, "tests", "parity", "tokenizer", "genesis-bpe.json"))
    files = args.files
    if not files:
        corpora = os.path.join(SHARED, "corpora")
        if os.path.isdir(corpora):
            files = sorted(os.path.join(corpora, lang, f) for lang in ("en", "ko")
                           for f in os.listdir(os.path.join(corpora, lang)) if f.endswith(".txt"))
        else:
            files = [os.path.join(ROOT, "data", "corpora", "kjv-genesis.txt"),
                     os.path.join(ROOT, "tests", "parity", "tokenizer", "constitution-ko-excerpt.txt")]
    threads = args.threads or sorted({1, os.cpu_count() or 1})

    rows = []
    for n in threads:
        exa = bench_exatrain(args.exatrain, tokenizer, files, n, args.repeat)
        hf = bench_tokenizers(tokenizer, files, n, args.repeat)
        if exa["tokens"] != hf["encode_batch_fast"]["tokens"]:
            sys.exit(f"token counts differ: exatrain {exa['tokens']}, tokenizers {hf['encode_batch_fast']['tokens']}")
        base = hf["encode_batch_fast"]["mb_per_s"]
        rows.append({"threads": n, "exatrain_mb_per_s": round(exa["mb_per_s"], 2),
                     "tokenizers_encode_batch_fast_mb_per_s": round(base, 2),
                     "tokenizers_encode_batch_mb_per_s": round(hf["encode_batch"]["mb_per_s"], 2),
                     "ratio": round(exa["mb_per_s"] / base, 2), "bytes": exa["bytes"], "lines": exa["lines"],
                     "tokens": exa["tokens"]})

    print(f"tokenizer: {tokenizer}")
    print(f"files: {', '.join(os.path.basename(f) for f in files)} ({rows[0]['bytes'] / 1e6:.2f} MB, "
          f"{rows[0]['lines']} lines, {rows[0]['tokens']} tokens); median of {args.repeat} passes")
    print(f"{'threads':>7}  {'exatrain MB/s':>13}  {'tokenizers MB/s':>15}  {'(encode_batch)':>14}  {'ratio':>6}")
    for r in rows:
        print(f"{r['threads']:>7}  {r['exatrain_mb_per_s']:>13.2f}  {r['tokenizers_encode_batch_fast_mb_per_s']:>15.2f}  "
              f"{r['tokenizers_encode_batch_mb_per_s']:>14.2f}  {r['ratio']:>5.2f}x")
    result = {"bench": "tokenizer_encode", "tokenizer": os.path.basename(os.path.dirname(tokenizer)) or tokenizer,
              "baseline": "tokenizers.Tokenizer.encode_batch_fast", "repeat": args.repeat, "rows": rows}
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
