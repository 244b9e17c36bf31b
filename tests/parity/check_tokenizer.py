#!/usr/bin/env python3
"""Parity of `exatrain tokenizer` with the Python `tokenizers` library (the outside judge).

For each tokenizer (the in-repo fixture tests/parity/tokenizer/genesis-bpe.json, variants of it
that exercise every supported component, and ../shared/data/tokenizers/qwen3/tokenizer.json
when ../shared is present), the ids of `exatrain tokenizer encode` must equal
`Tokenizer.from_file(...).encode(text, add_special_tokens=...).ids` and the text of
`exatrain tokenizer decode` must equal `Tokenizer.decode(ids, skip_special_tokens=...)`, on:
  - every line of the corpora (../shared/data/corpora/{en,ko}/*.txt and the bundled texts),
  - adversarial strings (emoji ZWJ sequences, combining marks, CRLF, runs of spaces and
    newlines, digits, mixed scripts, special tokens inside words, empty, only whitespace),
  - lines with invalid UTF-8 (exatrain's policy: U+FFFD per maximal invalid subsequence, i.e.
    the judge sees bytes.decode("utf-8", "replace")),
  - (--sweep) every Unicode code point, in two strings each.
decode(encode(x)) == x is checked wherever `tokenizers` gives that. Every mismatch is printed and
counted; the exit status is 1 if any check has one.

    check_tokenizer.py --exatrain build/bin/exatrain [--shared ../shared] [--sweep] [--quick]
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import unicodedata

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("EXATRAIN_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURE = os.path.join(HERE, "tokenizer", "genesis-bpe.json")
BUNDLED = [os.path.join(ROOT, "data", "corpora", "kjv-genesis.txt"),
           os.path.join(HERE, "tokenizer", "constitution-ko-excerpt.txt")]


# ---- running exatrain -----------------------------------------------------------------------

class Exatrain:
    def __init__(self, binary, threads):
        self.binary = binary
        self.threads = threads

    def run(self, args, data):
        proc = subprocess.run([self.binary, "tokenizer"] + args, input=data, capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"exatrain tokenizer {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout, proc.stderr.decode(errors="replace")

    def encode_lines(self, tok, data, add_special=False):
        args = ["encode", "--tokenizer", tok, "--threads", str(self.threads)]
        if add_special:
            args.append("--add-special-tokens")
        out, err = self.run(args, data)
        return parse_ids(out), err

    def encode_texts(self, tok, texts, add_special=False):
        data = "".join(json.dumps(t) + "\n" for t in texts).encode()
        args = ["encode", "--tokenizer", tok, "--json", "--threads", str(self.threads)]
        if add_special:
            args.append("--add-special-tokens")
        out, _ = self.run(args, data)
        return parse_ids(out)

    def decode(self, tok, id_lists, skip_special=False):
        data = "".join(" ".join(map(str, ids)) + "\n" for ids in id_lists).encode()
        args = ["decode", "--tokenizer", tok, "--json"]
        if skip_special:
            args.append("--skip-special-tokens")
        out, _ = self.run(args, data)
        return [json.loads(line) for line in out.decode().split("\n")[:-1]]


def parse_ids(out):
    lines = out.decode().split("\n")
    assert lines[-1] == "", "output must end with a newline"
    return [[int(x) for x in line.split()] for line in lines[:-1]]


def split_lines(data):
    """The CLI's lines: split on \\n; a final \\n does not start another line."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return lines


# ---- bookkeeping ------------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.rows = []  # (check, compared, mismatches)
        self.failed = False

    def compare(self, check, got, want, inputs, show=3):
        assert len(got) == len(want), f"{check}: {len(got)} results for {len(want)} inputs"
        bad = [i for i in range(len(want)) if got[i] != want[i]]
        self.rows.append((check, len(want), len(bad)))
        for i in bad[:show]:
            print(f"  MISMATCH {check} #{i}: input {inputs[i]!r:.300}\n    exatrain {got[i]!r:.300}\n"
                  f"    tokenizers {want[i]!r:.300}")
        if bad:
            self.failed = True
        return bad

    def note(self, check, compared, mismatches):
        self.rows.append((check, compared, mismatches))
        if mismatches:
            self.failed = True

    def print(self):
        width = max(len(r[0]) for r in self.rows)
        print(f"{'check':<{width}}  {'compared':>9}  {'mismatches':>10}")
        for check, n, bad in self.rows:
            print(f"{check:<{width}}  {n:>9}  {bad:>10}")
        total = sum(r[1] for r in self.rows)
        bad = sum(r[2] for r in self.rows)
        print(f"{'total':<{width}}  {total:>9}  {bad:>10}")


# ---- inputs -----------------------------------------------------------------------------------

def adversarial_texts():
    t = [
        "", " ", "  ", "\t", "\n", "\r", "\r\n", "a\r\nb", "a\rb", "line1\nline2\n\nline4\n",
        " " * 1000, "\n" * 500, "\r\n" * 200, " \n " * 100, "\t \u3000\u00a0 x", "    leading", "trailing    ",
        "a  b   c    d", " \u00a0 \u2009 \u202f\u205f\u3000", "x\u0085y", "\u2028\u2029", "\x1c\x1d\x1e\x1f text",
        # emoji: ZWJ sequences, modifiers, flags, keycaps, variation selectors
        "👨‍👩‍👧‍👦", "🏳️‍🌈 pride", "👍🏽👍🏿", "🇰🇷🇺🇸🇯🇵", "❤️‍🔥", "1️⃣2️⃣#️⃣", "🧑🏻‍💻 coding at 3am",
        "😀" * 300, "I ❤ NY ☕",
        # combining marks and normalization
        "e\u0301", "\u00e9", "A\u030a", "\u212b", "\ufb01ne", "\uff48\uff45\uff4c\uff4c\uff4f", "\u2460\u2461\u2462",
        "\u1e00\u0334", "a\u0323\u0308", "\u0061\u0308\u0323", "\uac00\u11a8", "\u1100\u1161\u11a8",
        "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307l\u036e\u0312\u036bg\u0301\u0317\u034d\u0316o",
        "\u0915\u093c\u093f", "\u0e01\u0e34\u0e4a", "\u05e9\u05c1\u05b8", "\u0627\u0651\u064e",
        "\u00c5\u0041\u030a\u212b", "\u1e9b\u0323", "\u0344\u0300",
        # digits and numbers
        "1234567890", "3.14159", "1,000,000.00", "0x1F 0b1010 1e-9", "\u0663\u0664\u0665", "\u0967\u0968\u0969",
        "\u216b \u00bd \u00b2\u00b3", "12\u00a0345", "2024-11-23T19:15:00Z",
        # mixed scripts
        "Hello 世界 안녕하세요 Привет مرحبا שלום नमस्ते", "日本語のテキスト、カタカナ。", "ภาษาไทย ไม่มีช่องว่าง",
        "Ελληνικά και English", "한국어와 English가 섞인 문장입니다.", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３",
        # special and added tokens inside text
        "<|im_start|>user\nhi<|im_end|>", "foo<|endoftext|>bar", "<|endoftext|><|endoftext|>",
        "<|im_start", "<|im_start|", "<<|im_start|>>", "a<|endoftext|>", "[BOS]x[|endofturn|]",
        "[|user|]hello[|assistant|]<think>why</think>answer[|endofturn|]", "<tool_call>{\"a\": 1}</tool_call>",
        "the LORD God said", "LORD  God", "LORD God LORD God", "xLORD Godx", "[PAD][PAD] [PAD]",
        "<think>\n\n</think>\n\n", "in<|im_start|>the<|im_end|>middle",
        # contractions and case
        "I'm can't we'll they'd it's He'S DON'T", "'s'''t", "''''", "rock'n'roll",
        # code, urls
        "def f(x):\n    return x**2  # comment\n", "if (a&&b) { c++; }\n\t\treturn;", "https://example.com/p?q=1&r=2#f",
        "user@example.com", "<html><body class=\"x\">&amp;</body></html>", "$$\\frac{a}{b}$$", "....!!!???",
        # control and odd characters
        "\x00\x01\x7f", "\u200b\u200c\u200d\ufeff", "\ue000\uf8ff", "\ufdd0\ufffe\uffff", "\U0010fffd",
        "tab\tseparated\tvalues", "a\u00adb", "\u0301 leading mark", "\U0001d54f\U0001d550 math",
        # long and repetitive
        "a" * 5000, "ab" * 3000, "가" * 2000, "the " * 1000, "\u00e9" * 1000, ("Lorem ipsum dolor sit amet, " * 40),
    ]
    return t


def corpus_files(shared):
    files = list(BUNDLED)
    if shared:
        base = os.path.join(shared, "data", "corpora")
        for lang in ("en", "ko"):
            d = os.path.join(base, lang)
            files += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".txt"))
    return files


def invalid_utf8_lines():
    return [
        b"abc\xffdef", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(", b"\xf0\x9f\x98", b"\xf0\x9f\x98 smile",
        b"\xed\xa0\x80 surrogate", b"\xc0\x80 overlong", b"\xe0\x80\x80", b"\xf4\x90\x80\x80 too big",
        b"\xf5\xf6\xf7\xf8\xff", b"\x80\x80\x80", b"ok \xe4\xb8\xad\xe6\x96 cut", b"\xfe\xfe<|endoftext|>\xfe",
        b"caf\xe9 latin-1", b"\xef\xbb\xbfBOM then text", b"\xe2\x80\xa8ok", b"\xf0\x90\x80", b"end\xf0",
    ]


# ---- tokenizer variants (each a feature the fixture does not use) ----------------------------

def variants(base_path, work):
    """(name, path) of tokenizer.json variants derived from the fixture."""
    base = json.load(open(base_path, encoding="utf-8"))
    out = []

    def save(name, d):
        p = os.path.join(work, name + ".json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)
        out.append((name, p))

    def pre(*steps):
        return {"type": "Sequence", "pretokenizers": list(steps)}

    def split(pattern, behavior="Isolated", invert=False, literal=False):
        return {"type": "Split", "pattern": {"String" if literal else "Regex": pattern}, "behavior": behavior,
                "invert": invert}

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}

    d = copy.deepcopy(base); d["normalizer"] = {"type": "NFKC"}; save("nfkc", d)
    d = copy.deepcopy(base); d["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "NFC"}]}
    save("nfkd-nfc", d)
    d = copy.deepcopy(base); d["normalizer"] = {"type": "NFD"}; save("nfd", d)
    d = copy.deepcopy(base); d["normalizer"] = None; save("no-normalizer", d)
    for prefix in (True, False):
        d = copy.deepcopy(base)
        d["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": True}
        save(f"gpt2-prefix-{str(prefix).lower()}", d)
    d = copy.deepcopy(base)
    d["pre_tokenizer"] = pre(split(r"\s+", "Removed"), dict(byte_level, add_prefix_space=True))
    save("split-removed-prefix", d)
    for behavior in ("Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous", "Isolated"):
        for invert in (False, True):
            d = copy.deepcopy(base)
            d["pre_tokenizer"] = pre(split(r"\p{P}+|\s", behavior, invert), byte_level)
            save(f"split-{behavior}-{'inv' if invert else 'fwd'}", d)
    d = copy.deepcopy(base); d["pre_tokenizer"] = pre(split(" ", "MergedWithNext", literal=True), byte_level)
    save("split-string-space", d)
    d = copy.deepcopy(base); d["pre_tokenizer"] = pre(split("a.b|c", "Isolated", literal=True), byte_level)
    save("split-string-meta", d)
    for behavior in ("Isolated", "MergedWithNext", "Contiguous"):
        d = copy.deepcopy(base); d["pre_tokenizer"] = pre(split(r"\d*", behavior), byte_level)
        save(f"empty-matches-{behavior}", d)
    d = copy.deepcopy(base); d["pre_tokenizer"] = pre(split(r"(?<=\p{Ll})(?=\p{Lu})|\b", "Isolated"), byte_level)
    save("lookaround-empty", d)
    # ByteLevel twice: the second one sees (and maps again) the first one's characters.
    d = copy.deepcopy(base)
    d["pre_tokenizer"] = pre(byte_level, dict(byte_level, add_prefix_space=True))
    save("byte-level-twice", d)
    d = copy.deepcopy(base); d["pre_tokenizer"] = pre(byte_level, split("Ġ", "MergedWithNext", literal=True))
    save("split-after-byte-level", d)
    d = copy.deepcopy(base); d["model"]["ignore_merges"] = True; save("ignore-merges", d)
    d = copy.deepcopy(base)
    d["model"]["merges"] = ["#version: 0.2"] + [" ".join(m) for m in base["model"]["merges"]]
    save("legacy-merges", d)
    d = copy.deepcopy(base); m = d["model"]["merges"]; d["model"]["merges"] = m + m[:200:3]
    save("duplicate-merges", d)
    d = copy.deepcopy(base); d["model"]["merges"] = list(reversed(base["model"]["merges"]))
    save("reversed-merges", d)
    # Added tokens: wrong ids in the file, flags, normalized matching, tokens already in the vocab.
    d = copy.deepcopy(base)
    for t in d["added_tokens"]:
        t["id"] = t["id"] + 7
    save("added-wrong-ids", d)
    d = copy.deepcopy(base)
    d["normalizer"] = {"type": "NFKC"}
    d["added_tokens"] += [
        {"id": 0, "content": "LORD", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
        {"id": 0, "content": "[|user|]", "single_word": False, "lstrip": True, "rstrip": True, "normalized": False, "special": True},
        {"id": 0, "content": "<tool_call>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": True, "special": False},
        {"id": 0, "content": "the", "single_word": True, "lstrip": False, "rstrip": True, "normalized": True, "special": False},
        {"id": 0, "content": "ﬁ", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
        {"id": 0, "content": "①", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": 0, "content": "God said", "single_word": True, "lstrip": True, "rstrip": True, "normalized": True, "special": False},
        {"id": 0, "content": "é", "single_word": True, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
        {"id": 0, "content": " ", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
        {"id": 0, "content": "Ġthe", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
    ]
    save("added-flags", d)
    d = copy.deepcopy(base); d["post_processor"] = {"type": "RobertaProcessing", "sep": ["[|endofturn|]", 2], "cls": ["[BOS]", 1],
                                                    "trim_offsets": True, "add_prefix_space": False}
    save("roberta", d)
    d = copy.deepcopy(base); d["post_processor"] = {"type": "BertProcessing", "sep": ["[|endofturn|]", 2], "cls": ["[BOS]", 1]}
    save("bert", d)
    d = copy.deepcopy(base)
    d["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}, base["post_processor"]]}
    save("post-sequence", d)
    d = copy.deepcopy(base); d["decoder"] = None; save("no-decoder", d)
    d = copy.deepcopy(base); d["pre_tokenizer"] = None; d["decoder"] = None; save("no-pre-tokenizer", d)
    d = copy.deepcopy(base); d["decoder"] = {"type": "Sequence", "decoders": [base["decoder"]]}; save("decoder-sequence", d)
    out += char_level_variants(work)
    return out


def char_level_variants(work):
    """BPE over characters (no ByteLevel): byte_fallback, unk / fuse_unk, continuing_subword_prefix,
    end_of_word_suffix; trained by `tokenizers` on the bundled texts."""
    from tokenizers import models, pre_tokenizers, trainers, Regex
    out = []
    text = open(BUNDLED[0], encoding="utf-8").read()[:60000]
    specs = [
        ("char-unk", dict(unk_token="[UNK]"), dict()),
        ("char-unk-fused", dict(unk_token="[UNK]", fuse_unk=True), dict()),
        ("char-byte-fallback", dict(unk_token="[UNK]", byte_fallback=True), dict()),
        ("char-no-unk", dict(), dict()),
        ("char-prefix-suffix", dict(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"),
         dict(continuing_subword_prefix="##", end_of_word_suffix="</w>")),
        ("char-prefix-fallback", dict(unk_token="[UNK]", continuing_subword_prefix="##", byte_fallback=True),
         dict(continuing_subword_prefix="##")),
    ]
    for name, model_args, trainer_args in specs:
        tok = Tokenizer(models.BPE(**model_args))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+"), behavior="removed")
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]"], show_progress=False, **trainer_args)
        tok.train_from_iterator([text], trainer)
        p = os.path.join(work, name + ".json")
        tok.save(p)
        d = json.load(open(p, encoding="utf-8"))
        if model_args.get("byte_fallback"):
            vocab = d["model"]["vocab"]
            n = max(vocab.values()) + 1
            for b in range(256):
                if b < 0xF0:  # leave some bytes out: those characters fall back to unk
                    vocab[f"<0x{b:02X}>"] = n
                    n += 1
        with open(p, "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)
        out.append((name, p))
    return out


def sweep_texts():
    """Every code point (surrogates excluded) in two contexts."""
    texts = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        texts.append(f"a{c}b {c}1{c}\n{c}{c}x")
        texts.append(f"{c}\u0301 {c}")
    return texts


def unassigned_in_14(text):
    return any(unicodedata.category(c) == "Cn" for c in text)


# ---- the checks -------------------------------------------------------------------------------

def check_corpus(report, exa, name, tok_path, judge, files, quick):
    for path in files:
        data = open(path, "rb").read()
        if quick:
            data = data[:200000]
            data = data[:data.rfind(b"\n") + 1]
        lines = split_lines(data)
        texts = [l.decode("utf-8", "replace") for l in lines]
        label = f"{name}: {os.path.basename(path)}"
        got, _ = exa.encode_lines(tok_path, data)
        want = [e.ids for e in judge.encode_batch(texts, add_special_tokens=False)]
        report.compare(f"{label} encode", got, want, texts)
        got, _ = exa.encode_lines(tok_path, data, add_special=True)
        want_special = [e.ids for e in judge.encode_batch(texts, add_special_tokens=True)]
        report.compare(f"{label} encode +special", got, want_special, texts)
        check_decode(report, exa, label, tok_path, judge, want, texts)


def check_decode(report, exa, label, tok_path, judge, id_lists, texts):
    got = exa.decode(tok_path, id_lists)
    want = judge.decode_batch(id_lists, skip_special_tokens=False)
    report.compare(f"{label} decode", got, want, id_lists)
    got_skip = exa.decode(tok_path, id_lists, skip_special=True)
    want_skip = judge.decode_batch(id_lists, skip_special_tokens=True)
    report.compare(f"{label} decode -special", got_skip, want_skip, id_lists)
    # Round trip wherever the judge has one.
    idx = [i for i in range(len(texts)) if want[i] == texts[i]]
    report.compare(f"{label} decode(encode(x))==x [{len(idx)}/{len(texts)}]", [got[i] for i in idx],
                   [texts[i] for i in idx], [texts[i] for i in idx])


def check_texts(report, exa, name, tok_path, judge, texts, label="adversarial", decode=True):
    got = exa.encode_texts(tok_path, texts)
    want = [e.ids for e in judge.encode_batch(texts, add_special_tokens=False)]
    report.compare(f"{name}: {label} encode", got, want, texts)
    got_s = exa.encode_texts(tok_path, texts, add_special=True)
    want_s = [e.ids for e in judge.encode_batch(texts, add_special_tokens=True)]
    report.compare(f"{name}: {label} encode +special", got_s, want_s, texts)
    if decode:
        check_decode(report, exa, f"{name}: {label}", tok_path, judge, want, texts)


def check_invalid_utf8(report, exa, name, tok_path, judge):
    lines = invalid_utf8_lines()
    data = b"\n".join(lines) + b"\n"
    got, err = exa.encode_lines(tok_path, data)
    texts = [l.decode("utf-8", "replace") for l in lines]
    want = [e.ids for e in judge.encode_batch(texts, add_special_tokens=False)]
    report.compare(f"{name}: invalid UTF-8 encode", got, want, lines)
    n_seq = sum(t.count("\ufffd") for t in texts)
    n_lines = sum(1 for t in texts if "\ufffd" in t)
    expected = f"{n_seq} invalid UTF-8 sequence(s) in {n_lines} line(s)"
    ok = expected in err
    if not ok:
        print(f"  MISMATCH {name}: invalid UTF-8 count: expected {expected!r} in stderr, got {err.strip()!r}")
    report.note(f"{name}: invalid UTF-8 counted on stderr", 1, 0 if ok else 1)


def check_sweep(report, exa, name, tok_path, judge):
    texts = sweep_texts()
    got = exa.encode_texts(tok_path, texts)
    want = [e.ids for e in judge.encode_batch(texts, add_special_tokens=False)]
    bad = [i for i in range(len(texts)) if got[i] != want[i]]
    newer = [i for i in bad if unassigned_in_14(texts[i])]
    other = [i for i in bad if not unassigned_in_14(texts[i])]
    for i in other[:5]:
        print(f"  MISMATCH {name}: sweep {texts[i]!r}: exatrain {got[i]} tokenizers {want[i]}")
    report.note(f"{name}: Unicode sweep (chars of Unicode <= 14.0)", len(texts) - len(newer), len(other))
    print(f"  {name}: Unicode sweep: {len(newer)} of {len(texts)} strings differ, all holding characters assigned "
          f"after Unicode 14.0 (Debian's Oniguruma 6.9.8 property tables; see docs/tokenizer.md)")


def check_errors(report, exa, work):
    """Files `tokenizers` refuses are refused by exatrain too, with a message naming the place."""
    base = json.load(open(FIXTURE, encoding="utf-8"))
    cases = []
    d = copy.deepcopy(base); d["model"]["merges"].append(["Ġthe", "zzzq"]); cases.append(("merge-unknown", d, "model.merges[935]"))
    d = copy.deepcopy(base); d["version"] = "2.0"; cases.append(("bad-version", d, "version"))
    d = copy.deepcopy(base); d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"
    cases.append(("bad-regex", d, "pre_tokenizer.pretokenizers[0].pattern"))
    d = copy.deepcopy(base); d["model"]["merges"][3] = "a b c"; cases.append(("bad-legacy-merge", d, "model.merges[3]"))
    d = copy.deepcopy(base); del d["added_tokens"][2]["special"]; cases.append(("added-missing-field", d, "added_tokens[2]"))
    bad = 0
    for name, d, where in cases:
        p = os.path.join(work, f"error-{name}.json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)
        judge_refuses = False
        try:
            Tokenizer.from_file(p)
        except Exception:
            judge_refuses = True
        proc = subprocess.run([exa.binary, "tokenizer", "encode", "--tokenizer", p], input=b"x\n", capture_output=True)
        err = proc.stderr.decode(errors="replace")
        ok = judge_refuses and proc.returncode == 1 and err.count("\n") == 1 and where in err and p in err
        if not ok:
            bad += 1
            print(f"  MISMATCH error case {name}: judge refuses={judge_refuses}, exit {proc.returncode}, stderr {err!r}")
    report.note("malformed tokenizer.json refused (one line naming the place)", len(cases), bad)

    # Bad input on the command line: exit 1 and one line naming the input and line.
    cli = [
        (["decode", "--tokenizer", FIXTURE], b"12 13\n12 abc\n", "<stdin>:2: \"abc\" is not a token id"),
        (["decode", "--tokenizer", FIXTURE], b"99999999999\n", "<stdin>:1: \"99999999999\" is not a token id"),
        (["encode", "--tokenizer", FIXTURE, "--json"], b'"ok"\nnot json\n', "<stdin>:2: not a JSON string"),
        (["encode", "--tokenizer", FIXTURE, "--json"], b'"ok"\n[1]\n', "<stdin>:2: expected a JSON string"),
        (["encode", "--tokenizer", os.path.join(work, "missing.json")], b"x\n", "missing.json: cannot open"),
    ]
    bad = 0
    for args, data, expected in cli:
        proc = subprocess.run([exa.binary, "tokenizer"] + args, input=data, capture_output=True)
        err = proc.stderr.decode(errors="replace")
        if not (proc.returncode == 1 and err.count("\n") == 1 and expected in err):
            bad += 1
            print(f"  MISMATCH cli {args[0]} {data!r}: exit {proc.returncode}, stderr {err!r}, expected {expected!r}")
    report.note("bad command-line input refused (one line naming the place)", len(cli), bad)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exatrain", required=True)
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"), help="the shared/ folder (optional)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sweep", action="store_true", help="also every Unicode code point (slow: a few minutes)")
    ap.add_argument("--sweep-only", action="store_true", help="only the Unicode sweep")
    ap.add_argument("--quick", action="store_true", help="the first 200 kB of each corpus file")
    args = ap.parse_args()
    exa = Exatrain(args.exatrain, args.threads)
    report = Report()

    shared = args.shared if os.path.isdir(os.path.join(args.shared, "data")) else None
    qwen = os.path.join(shared, "data", "tokenizers", "qwen3", "tokenizer.json") if shared else None
    if not shared:
        print(f"note: {args.shared} is absent: Qwen3 and the shared corpora are skipped; the bundled fixture "
              "and texts are checked")

    adversarial = adversarial_texts()
    with tempfile.TemporaryDirectory() as work:
        tokenizers_to_check = [("fixture", FIXTURE)] + ([("qwen3", qwen)] if qwen else [])
        for name, path in tokenizers_to_check:
            judge = Tokenizer.from_file(path)
            if not args.sweep_only:
                check_corpus(report, exa, name, path, judge, corpus_files(shared), args.quick)
                check_texts(report, exa, name, path, judge, adversarial)
                check_invalid_utf8(report, exa, name, path, judge)
            if args.sweep or args.sweep_only:
                check_sweep(report, exa, name, path, judge)
        if not args.sweep_only:
            sample = [l.decode() for l in split_lines(open(BUNDLED[0], "rb").read())[:400]]
            sample += [l.decode() for l in split_lines(open(BUNDLED[1], "rb").read())[:60]]
            names = []
            for name, path in variants(FIXTURE, work):
                judge = Tokenizer.from_file(path)
                check_texts(report, exa, name, path, judge, adversarial + sample, label="adversarial+sample")
                names.append(name)
            print(f"{len(names)} tokenizer variants: {', '.join(names)}")
            check_errors(report, exa, work)

    report.print()
    if report.failed:
        print("FAILED: exatrain and tokenizers differ")
        return 1
    print("OK: exatrain and tokenizers agree on every case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
