#!/usr/bin/env python3
"""Parity of `exatrain tokenizer train` with the Python `tokenizers` library (the outside judge).

For each case, exatrain trains a tokenizer.json and the judge trains one with
BpeTrainer(vocab_size, special_tokens, initial_alphabet=ByteLevel.alphabet(), min_frequency,
show_progress=False) on the same files, with the same normalizer and pre-tokenizer. Then:
  - the vocabularies (token -> id) and the merge lists must be identical (the first difference is
    printed);
  - every line of the corpora is encoded by `exatrain tokenizer encode` with exatrain's file and by
    tokenizers with the same file: 0 id mismatches;
  - decoding gives the (normalized) line back, with both.
Cases: the in-repo texts (data/corpora/kjv-genesis.txt, constitution-of-korea.txt) at vocabulary
sizes 300, 1000 and 4000, with min_frequency, without NFC, with custom special tokens and with
special tokens inside the text (exatrain cuts them out and does not count them; the judge gets
the same by feeding the pieces between them through train_from_iterator); and, when ../shared
exists, the English and Korean corpora there (about 5 MB) at 4000 and 16000. The trained
tokenizer_config.json must make transformers' AutoTokenizer find [|endofturn|] as the EOS.

    check_tokenizer_train.py --exatrain build/bin/exatrain [--shared ../shared] [--quick]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unicodedata

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("EXATRAIN_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
GENESIS = os.path.join(ROOT, "data", "corpora", "kjv-genesis.txt")
KOREAN = os.path.join(ROOT, "data", "corpora", "constitution-of-korea.txt")
SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
DEFAULT_SPECIALS = ["[PAD]", "[BOS]", "[|endofturn|]", "[|system|]", "[|user|]", "[|assistant|]", "[|tool|]",
                    "<think>", "</think>"]


class Case:
    def __init__(self, name, files, vocab_size, specials=None, min_frequency=0, nfc=True, specials_in_text=False,
                 threads=None, eos=None):
        self.name = name
        self.files = files
        self.vocab_size = vocab_size
        self.specials = DEFAULT_SPECIALS if specials is None else specials
        self.min_frequency = min_frequency
        self.nfc = nfc
        self.specials_in_text = specials_in_text
        self.threads = threads
        self.eos = eos


# ---- the two trainers -----------------------------------------------------------------------

def train_exatrain(binary, case, out_dir):
    out = os.path.join(out_dir, "tokenizer.json")
    cmd = [binary, "tokenizer", "train", "--vocab-size", str(case.vocab_size), "--output", out, "--no-progress",
           "--special-tokens", ",".join(case.specials) if case.specials else "",
           "--min-frequency", str(case.min_frequency), "--normalizer", "nfc" if case.nfc else "none"]
    if case.threads:
        cmd += ["--threads", str(case.threads)]
    if case.eos:
        cmd += ["--eos-token", case.eos]
    start = time.perf_counter()
    proc = subprocess.run(cmd + case.files, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return out, seconds, proc.stderr


def split_at_specials(text, specials):
    """Leftmost-longest, non-overlapping matches, as tokenizers matches added tokens; returns the
    pieces between them."""
    pieces, pos = [], 0
    while True:
        best, best_end = -1, -1
        for s in specials:
            at = text.find(s, pos)
            if at >= 0 and (best < 0 or at < best or (at == best and at + len(s) > best_end)):
                best, best_end = at, at + len(s)
        if best < 0:
            pieces.append(text[pos:])
            return pieces
        pieces.append(text[pos:best])
        pos = best_end


def judge_tokenizer(case):
    tok = Tokenizer(models.BPE())
    if case.nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def train_judge(case):
    tok = judge_tokenizer(case)
    trainer = trainers.BpeTrainer(vocab_size=case.vocab_size, special_tokens=case.specials,
                                  min_frequency=case.min_frequency,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    start = time.perf_counter()
    if case.specials_in_text:
        # tokenizers' train() would count "[|user|]" as the text "[|", "user", "|]": feed it the
        # pieces between special tokens instead, line by line as train() reads files.
        def pieces():
            for path in case.files:
                with open(path, encoding="utf-8", newline="") as f:
                    for line in f:
                        yield from split_at_specials(line, case.specials)
        tok.train_from_iterator(pieces(), trainer)
    else:
        tok.train(case.files, trainer)
    return json.loads(tok.to_str()), time.perf_counter() - start


# ---- comparisons -------------------------------------------------------------------------------

def first_vocab_difference(got, want):
    by_id_got = {i: t for t, i in got.items()}
    by_id_want = {i: t for t, i in want.items()}
    for i in range(max(len(by_id_got), len(by_id_want))):
        if by_id_got.get(i) != by_id_want.get(i):
            return f"id {i}: exatrain {by_id_got.get(i)!r}, tokenizers {by_id_want.get(i)!r}"
    return None


def first_merge_difference(got, want):
    for i in range(max(len(got), len(want))):
        g = got[i] if i < len(got) else None
        w = want[i] if i < len(want) else None
        if g != w:
            return f"merge {i}: exatrain {g}, tokenizers {w} (exatrain has {len(got)}, tokenizers {len(want)})"
    return None


def corpus_lines(files):
    lines = []
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        parts = data.split(b"\n")
        if data.endswith(b"\n"):
            parts.pop()
        lines += parts
    return lines


def encode_with_exatrain(binary, tokenizer_path, data):
    proc = subprocess.run([binary, "tokenizer", "encode", "--tokenizer", tokenizer_path], input=data,
                          capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace"))
    out = proc.stdout.decode().split("\n")
    assert out[-1] == ""
    return [[int(x) for x in line.split()] for line in out[:-1]]


def decode_with_exatrain(binary, tokenizer_path, id_lists):
    data = "".join(" ".join(map(str, ids)) + "\n" for ids in id_lists).encode()
    proc = subprocess.run([binary, "tokenizer", "decode", "--tokenizer", tokenizer_path, "--json"], input=data,
                          capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace"))
    return [json.loads(line) for line in proc.stdout.decode().split("\n")[:-1]]


def check_case(binary, case, work, report):
    out_dir = os.path.join(work, case.name)
    os.makedirs(out_dir)
    ours_path, ours_seconds, log = train_exatrain(binary, case, out_dir)
    theirs, theirs_seconds = train_judge(case)
    with open(ours_path, encoding="utf-8") as f:
        ours = json.load(f)
    problems = []
    vocab_diff = first_vocab_difference(ours["model"]["vocab"], theirs["model"]["vocab"])
    if vocab_diff:
        problems.append("vocab differs at " + vocab_diff)
    merge_diff = first_merge_difference(ours["model"]["merges"], theirs["model"]["merges"])
    if merge_diff:
        problems.append("merges differ at " + merge_diff)
    for key in ("added_tokens", "normalizer", "version"):
        if ours[key] != theirs[key]:
            problems.append(f"{key}: exatrain {ours[key]}, tokenizers {theirs[key]}")
    if ours["pre_tokenizer"]["pretokenizers"][0] != theirs["pre_tokenizer"]["pretokenizers"][0]:
        problems.append("the Split pre-tokenizer differs")

    # Encode every line with both, from exatrain's file; decode back.
    lines = corpus_lines(case.files)
    texts = [line.decode("utf-8", "replace") for line in lines]
    judge = Tokenizer.from_file(ours_path)
    want = [e.ids for e in judge.encode_batch(texts, add_special_tokens=False)]
    got = encode_with_exatrain(binary, ours_path, b"\n".join(lines) + b"\n")
    mismatches = [i for i in range(len(want)) if i >= len(got) or got[i] != want[i]]
    for i in mismatches[:3]:
        problems.append(f"line {i + 1} {texts[i][:60]!r}: exatrain {got[i][:12] if i < len(got) else None} "
                        f"tokenizers {want[i][:12]}")
    decoded = decode_with_exatrain(binary, ours_path, got)
    expected = [unicodedata.normalize("NFC", t) if case.nfc else t for t in texts]
    judge_decoded = judge.decode_batch(want, skip_special_tokens=False)
    roundtrip_bad = sum(1 for i in range(len(texts)) if decoded[i] != expected[i] or judge_decoded[i] != expected[i])
    if roundtrip_bad:
        problems.append(f"{roundtrip_bad} line(s) do not decode back to the text")
    tokens = sum(len(ids) for ids in want)
    print(f"{case.name:34s} vocab {len(ours['model']['vocab']):6d} merges {len(ours['model']['merges']):6d} "
          f"lines {len(texts):7d} tokens {tokens:8d} id mismatches {len(mismatches)}  "
          f"train: exatrain {ours_seconds:.2f}s, tokenizers {theirs_seconds:.2f}s  "
          f"{'OK' if not problems else 'FAIL'}")
    for p in problems:
        print("    " + p)
    if problems:
        print("    exatrain log:\n" + "\n".join("      " + l for l in log.splitlines()))
        report.append(case.name)
    return ours_path


def check_config_for_transformers(tokenizer_path, report):
    """transformers loads the trained folder and finds [|endofturn|] as the EOS (what `exatrain data
    prepare` reads too)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        print("transformers not installed: tokenizer_config.json check skipped")
        return
    folder = os.path.dirname(tokenizer_path)
    tok = AutoTokenizer.from_pretrained(folder)
    with open(tokenizer_path, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    ok = (tok.eos_token == "[|endofturn|]" and tok.eos_token_id == vocab["[|endofturn|]"]
          and tok.bos_token_id == vocab["[BOS]"] and tok.pad_token_id == vocab["[PAD]"]
          and tok("In the beginning")["input_ids"] == Tokenizer.from_file(tokenizer_path).encode("In the beginning").ids)
    print(f"{'transformers AutoTokenizer':34s} eos {tok.eos_token!r} = {tok.eos_token_id}  {'OK' if ok else 'FAIL'}")
    if not ok:
        report.append("transformers")


def make_chat_corpus(path):
    """Genesis with special tokens around and inside its lines."""
    with open(GENESIS, encoding="utf-8") as f:
        lines = f.read().split("\n")
    with open(path, "w", encoding="utf-8") as out:
        for i, line in enumerate(lines[:2000]):
            if i % 3 == 0:
                out.write(f"[|user|]{line}[|endofturn|]\n")
            elif i % 3 == 1:
                out.write(f"[|assistant|]<think>{line[:20]}</think>{line[20:]}[|endofturn|][|endofturn|]\n")
            else:
                out.write(line.replace(" ", "[|tool|]", 1) + "\n")


def check_errors(binary, work, report):
    """Clear errors, and nothing written when training cannot finish."""
    out = os.path.join(work, "errors", "tokenizer.json")
    os.makedirs(os.path.dirname(out))
    cases = [
        (["--vocab-size", "200", "--output", out, GENESIS], "use at least 265"),
        (["--vocab-size", "1000", "--output", out, os.path.join(work, "missing.txt")], "missing.txt"),
        (["--vocab-size", "1000", "--output", os.path.join(work, "no", "dir", "t.json"), GENESIS], "writable"),
        (["--vocab-size", "1000", "--eos-token", "</s>", "--output", out, GENESIS], "not one of the special tokens"),
    ]
    bad = 0
    for args, expect in cases:
        proc = subprocess.run([binary, "tokenizer", "train", "--no-progress"] + args, capture_output=True, text=True)
        if proc.returncode == 0 or expect not in proc.stderr:
            bad += 1
            print(f"    {' '.join(args)}: exit {proc.returncode}, stderr {proc.stderr.strip()[:300]!r}")
    leftovers = os.listdir(os.path.dirname(out))
    if leftovers:
        bad += 1
        print(f"    files left behind by failed runs: {leftovers}")
    print(f"{'errors (clear, nothing written)':34s} {len(cases)} cases  {'OK' if not bad else 'FAIL'}")
    if bad:
        report.append("errors")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exatrain", required=True)
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"), help="the shared/ folder (optional)")
    ap.add_argument("--quick", action="store_true", help="only the in-repo cases")
    args = ap.parse_args()
    shared = args.shared if os.path.isdir(os.path.join(args.shared, "data", "corpora")) else None

    failed = []
    with tempfile.TemporaryDirectory() as work:
        chat = os.path.join(work, "chat.txt")
        make_chat_corpus(chat)
        cases = [
            Case("genesis-300", [GENESIS], 300),
            Case("genesis-1000", [GENESIS], 1000),
            Case("genesis-4000-threads1", [GENESIS], 4000, threads=1),
            Case("genesis-4000-threads2", [GENESIS], 4000, threads=2),
            Case("genesis+korean-1000-minfreq2", [GENESIS, KOREAN], 1000, min_frequency=2),
            Case("genesis+korean-4000-no-nfc", [GENESIS, KOREAN], 4000, nfc=False),
            Case("korean-2000-custom-specials", [KOREAN], 2000, specials=["<|endoftext|>", "<pad>"],
                 eos="<|endoftext|>"),
            Case("korean-300-no-specials", [KOREAN], 300, specials=[]),
            Case("chat-specials-in-text-2000", [chat], 2000, specials_in_text=True),
        ]
        if shared and not args.quick:
            base = os.path.join(shared, "data", "corpora")
            big = [os.path.join(base, "en", "kjv.txt"), os.path.join(base, "en", "gnome-user-docs-en.txt"),
                   os.path.join(base, "ko", "gnome-user-docs-ko.txt"), os.path.join(base, "ko", "constitution-of-korea.txt")]
            cases += [Case("shared-en+ko-4000", big, 4000), Case("shared-en+ko-16000-minfreq2", big, 16000,
                                                                 min_frequency=2)]
        elif not shared:
            print(f"../shared/data/corpora not found at {args.shared}: the large English/Korean cases are skipped")
        first = None
        for case in cases:
            path = check_case(args.exatrain, case, work, failed)
            first = first or path
        check_config_for_transformers(first, failed)
        check_errors(args.exatrain, work, failed)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("all trained tokenizers identical to tokenizers'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
