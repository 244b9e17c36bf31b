#!/usr/bin/env python3
"""Parity of chat data preparation with transformers' apply_chat_template (the outside judge).

Conversations (hand-written edge cases: multi-turn, system prompts, a late system message, tool
calls and runs of tool results, reasoning in content and in reasoning_content, Korean text, empty
content, JSON escapes, Unicode spaces; plus seeded random ones built from the bundled Genesis and
Korean constitution texts) go through `exatrain data prepare --format chat` into shards. The shard
files are then read here, straight from their bytes (layout: data/shards/shard_format.h), and
every conversation's document is compared with the judge:

  ids   transformers' apply_chat_template(messages, chat_template=data/chat/exaone4_chat_template.jinja,
        tokenize=True) with the fixture tokenizer (tests/parity/tokenizer/genesis-bpe.json, which has
        the EXAONE-4 special tokens), minus the final "\\n" after the last [|endofturn|] (exatrain's
        documents end with EOS = [|endofturn|]; docs/data.md).
  mask  computed here without exatrain: the assistant spans of the rendered string (after each
        "[|assistant|]\\n" through the next "[|endofturn|]"), and a token is a target iff its
        character offsets (the `tokenizers` offsets) lie inside a span.

Both skip_think (the template default) and --keep-reasoning (skip_think=False) are checked. Then
bad input: exit code 1 and one error line naming file:line. Every mismatch is printed; the exit
status is 1 if there is any.

    check_chat.py --exatrain build/bin/exatrain [--random N]
"""
import argparse
import glob
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("EXATRAIN_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
TOKENIZER = os.path.join(HERE, "tokenizer", "genesis-bpe.json")
TEMPLATE = os.path.join(ROOT, "data", "chat", "exaone4_chat_template.jinja")
GENESIS = os.path.join(ROOT, "data", "corpora", "kjv-genesis.txt")
KOREAN = os.path.join(HERE, "tokenizer", "constitution-ko-excerpt.txt")


def u(content):
    return {"role": "user", "content": content}


def a(content, **extra):
    return {"role": "assistant", "content": content, **extra}


def s(content):
    return {"role": "system", "content": content}


def t(content):
    return {"role": "tool", "content": content}


def edge_cases():
    return [
        # multi-turn with a system prompt
        [s("You are EXAONE, a helpful assistant."), u("In the beginning?"), a("God created the heaven and the earth."),
         u("And then?"), a("And the earth was without form, and void.")],
        # reasoning in the content: dropped for every message unless --keep-reasoning, then kept for the last only
        [u("Why?"), a("<think>\nfirst, think.\n</think>\n\nBecause."), u("Sure?"),
         a("<think>\nThe light was good.\nSo it stays.\n</think>\n\nYes, it was good.")],
        # reasoning_content overrides; several </think>; no <think> opener; Unicode spaces around
        [u("q"), a("x</think>y</think>\u3000 answer\u00a0", reasoning_content="kept reasoning")],
        [u("q"), a(" plan</think>\n\nthe answer ")],
        [u("q"), a("<think>ab why</think>a")],  # upstream's [9:] eats two characters after <think>
        # Korean
        [s("당신은 친절한 비서입니다."), u("대한민국의 주권은 누구에게 있나요?"),
         a("<think>\n헌법 제1조를 봅니다.\n</think>\n\n대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."),
         u("고맙습니다!"), a("천만에요 😊")],
        # empty contents and a late system message
        [s(""), u(""), a(""), s("a late system message"), u("x"), a("y")],
        # tool calls (OpenAI style with function, and flat), runs of tool results with JSON escapes
        [u("What is the weather in Seoul?"),
         a(None, tool_calls=[{"type": "function", "function": {"name": "get_weather",
                                                                "arguments": {"city": "서울", "unit": "celsius",
                                                                              "days": 3, "detail": 0.5,
                                                                              "tiny": 1e-05, "flags": [True, None]}}}]),
         t("{\"temp\": 21, \"sky\": \"clear\"}"), a("It is 21 degrees and clear.")],
        [u("two tools"),
         a("Let me check.", tool_calls=[{"name": "a", "arguments": {}}, {"name": "b", "parameters": "raw \"s\""}]),
         t("line1\nline2\ttab \\ back"), t(""), t("\u0001 control and é"), a("Done.")],
        [t("a tool result first"), u("then a user"), a("then me")],
        # whitespace and newlines everywhere
        [u("  spaced  \n\n"), a("\r\nCRLF answer\r\n"), u("\n"), a("\n\n\n")],
        # a conversation that ends with a user turn still trains on the assistant before it
        [u("one"), a("two"), u("three")],
        # long answer
        [u("Tell me everything."), a(" ".join(["And God said, Let there be light: and there was light."] * 60))],
    ]


def random_conversations(n, seed):
    rng = random.Random(seed)
    with open(GENESIS, encoding="utf-8") as f:
        en = [line.strip() for line in f if line.strip()]
    with open(KOREAN, encoding="utf-8") as f:
        ko = [line.strip() for line in f if line.strip()]
    lines = en + ko

    def text():
        return " ".join(rng.choice(lines) for _ in range(rng.randint(0, 3)))

    out = []
    for _ in range(n):
        conv = []
        if rng.random() < 0.5:
            conv.append(s(text()))
        for turn in range(rng.randint(1, 4)):
            conv.append(u(text()))
            r = rng.random()
            if r < 0.2:
                conv.append(a(f"<think>\n{text()}\n</think>\n\n{text()}"))
            elif r < 0.3:
                conv.append(a(text(), reasoning_content=text()))
            elif r < 0.4:
                conv.append(a(text() if rng.random() < 0.5 else "",
                              tool_calls=[{"function": {"name": f"tool_{turn}", "arguments": {"q": text(), "n": turn}}}]))
                for _ in range(rng.randint(1, 3)):
                    conv.append(t(text()))
                conv.append(a(text()))
            else:
                conv.append(a(text()))
        out.append(conv)
    return out


# ---- the judge -------------------------------------------------------------------------------

class Judge:
    def __init__(self):
        self.tok = PreTrainedTokenizerFast(tokenizer_file=TOKENIZER)
        with open(TEMPLATE, encoding="utf-8") as f:
            self.template = f.read()
        self.eot = self.tok.convert_tokens_to_ids("[|endofturn|]")

    def document(self, messages, skip_think):
        """The ids and loss mask exatrain must write for this conversation."""
        kw = {} if skip_think else {"skip_think": False}
        text = self.tok.apply_chat_template(messages, chat_template=self.template, tokenize=False, **kw)
        ids = self.tok.apply_chat_template(messages, chat_template=self.template, tokenize=True, **kw)["input_ids"]
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        assert enc["input_ids"] == ids, "apply_chat_template(tokenize=True) is not the tokenized text"
        spans = []
        at = 0
        while (start := text.find("[|assistant|]\n", at)) >= 0:
            begin = start + len("[|assistant|]\n")
            end = text.index("[|endofturn|]", begin) + len("[|endofturn|]")
            spans.append((begin, end))
            at = end
        mask = [int(any(b <= lo and hi <= e for b, e in spans)) for lo, hi in enc["offset_mapping"]]
        assert text.endswith("[|endofturn|]\n") and ids[-2] == self.eot and self.tok.decode(ids[-1:]) == "\n", \
            "the template no longer ends with [|endofturn|]\\n"
        return ids[:-1], mask[:-1]


# ---- reading the shards (independently of exatrain) ----------------------------------------

def read_dataset(directory):
    ids, mask, starts = [], [], []
    for path in sorted(glob.glob(os.path.join(directory, "shard-*.bin"))):
        with open(path, "rb") as f:
            data = f.read()
        magic, version, width, tokens, documents, vocab = struct.unpack_from("<8sIIQQQ", data, 0)
        flags = struct.unpack_from("<I", data, 40)[0] if version >= 2 else 0
        assert magic == b"EXASHARD" and version == 2 and flags == 1, (path, magic, version, flags)
        fmt = {2: "H", 4: "I"}[width]
        base = len(ids)
        ids += struct.unpack_from(f"<{tokens}{fmt}", data, 64)
        mask_at = (64 + tokens * width + 7) // 8 * 8
        bits = data[mask_at:mask_at + (tokens + 7) // 8]
        mask += [(bits[i // 8] >> (i % 8)) & 1 for i in range(tokens)]
        index_at = (mask_at + len(bits) + 7) // 8 * 8
        starts += [base + x for x in struct.unpack_from(f"<{documents}Q", data, index_at)]
        assert index_at + 8 * documents == len(data), path
    bounds = starts + [len(ids)]
    return [(list(ids[bounds[i]:bounds[i + 1]]), mask[bounds[i]:bounds[i + 1]]) for i in range(len(starts))]


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def prepare(exatrain, jsonl, out, extra=()):
    proc = run([exatrain, "data", "prepare", "--tokenizer", TOKENIZER, "--input", jsonl, "--format", "chat",
                "--output", out, "--name", "chat-parity", "--license", "CC0-1.0", "--source", "check_chat.py",
                "--shard-tokens", "1000", "--threads", "2", *extra])
    return proc


def describe(tok, ids, mask, at):
    lo = max(0, at - 4)
    return " ".join(f"{tok.decode([i])!r}:{m}" for i, m in zip(ids[lo:at + 5], mask[lo:at + 5]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exatrain", required=True)
    ap.add_argument("--random", type=int, default=300, help="random conversations besides the edge cases")
    args = ap.parse_args()
    judge = Judge()
    conversations = edge_cases() + random_conversations(args.random, seed=4)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = os.path.join(tmp, "chat.jsonl")
        with open(jsonl, "w", encoding="utf-8") as f:
            for conv in conversations:
                f.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
        for skip_think in (True, False):
            out = os.path.join(tmp, f"ds-{int(skip_think)}")
            proc = prepare(args.exatrain, jsonl, out, () if skip_think else ("--keep-reasoning",))
            if proc.returncode != 0:
                print(f"FAIL prepare (skip_think={skip_think}): {proc.stderr.strip()}")
                failures += 1
                continue
            verify = run([args.exatrain, "data", "verify", out])
            if verify.returncode != 0:
                print(f"FAIL verify: {verify.stderr.strip()}")
                failures += 1
            docs = read_dataset(out)
            if len(docs) != len(conversations):
                print(f"FAIL: {len(docs)} documents for {len(conversations)} conversations")
                failures += 1
                continue
            mismatches = 0
            targets = 0
            for n, (conv, (ids, mask)) in enumerate(zip(conversations, docs)):
                want_ids, want_mask = judge.document(conv, skip_think)
                targets += sum(want_mask)
                if ids != want_ids or mask != want_mask:
                    mismatches += 1
                    which = "ids" if ids != want_ids else "mask"
                    got, want = (ids, want_ids) if which == "ids" else (mask, want_mask)
                    at = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
                    print(f"MISMATCH conversation {n} (skip_think={skip_think}): {which} differ at token {at} "
                          f"({len(ids)} vs {len(want_ids)} tokens)\n  exatrain: {describe(judge.tok, ids, mask, at)}\n"
                          f"  judge:    {describe(judge.tok, want_ids, want_mask, at)}")
            info = run([args.exatrain, "data", "info", out]).stdout
            if f"\nloss_mask_tokens: {targets}\n" not in info:
                print(f"FAIL: the manifest does not record loss_mask_tokens: {targets}")
                failures += 1
            print(f"skip_think={skip_think}: {len(conversations)} conversations, {sum(len(d[0]) for d in docs)} tokens, "
                  f"{targets} targets: {mismatches} mismatches")
            failures += mismatches

        # Bad input: exit 1, one error line, naming file:line and the problem.
        bad_cases = [
            ({"messages": [u("q"), {"role": "bot", "content": "x"}]}, ["unknown role 'bot'", "message 2"]),
            ({"messages": [u("q"), {"role": "assistant"}]}, ["message 2 (assistant)", "no \"content\""]),
            ({"messages": [u("q")]}, ["no assistant message"]),
            ("{\"messages\": [", ["malformed JSON"]),
        ]
        for n, (record, parts) in enumerate(bad_cases):
            path = os.path.join(tmp, f"bad{n}.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                f.write(json.dumps({"messages": [u("fine"), a("fine")]}) + "\n")
                f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
            proc = prepare(args.exatrain, path, os.path.join(tmp, f"bad-out{n}"))
            err = proc.stderr.strip()
            ok = (proc.returncode == 1 and len(err.splitlines()) == 1 and f"{path}:2: " in err
                  and all(p in err for p in parts))
            skipped = prepare(args.exatrain, path, os.path.join(tmp, f"skip-out{n}"), ("--skip-bad",))
            ok = ok and skipped.returncode == 0
            print(f"{'ok' if ok else 'FAIL'} - bad input {parts[0]!r}: {err}")
            failures += 0 if ok else 1
    print("check_chat: " + ("all match" if failures == 0 else f"{failures} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
