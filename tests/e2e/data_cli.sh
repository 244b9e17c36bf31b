#!/usr/bin/env bash
# `exatrain data`: prepare with a real tokenizer.json, judged by the Python `tokenizers` library
# (every id of every document, and every document boundary, read straight from the shard files);
# verify, info and bench; and every bad-input case: exit code 1, ONE line on stderr.
#
#   EXATRAIN_SOURCE_DIR=/path/to/repo bash tests/e2e/data_cli.sh /path/to/exatrain
#
# Needs ../shared/data/tokenizers/qwen3 (skips with a message when it is absent).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)  # before any cd: lib.sh lives here

EXATRAIN=$(realpath "${1:?usage: data_cli.sh /path/to/exatrain}")
SRC=$(realpath "${EXATRAIN_SOURCE_DIR:?set EXATRAIN_SOURCE_DIR to the repository root}")
PY=${EXATRAIN_PYTHON:-$SRC/.venv/bin/python}
SHARED=${EXATRAIN_SHARED_DATA:-$SRC/../shared/data}
TOK=$SHARED/tokenizers/qwen3/tokenizer.json
TIMEOUT=${EXATRAIN_TEST_TIMEOUT:-300}
if [[ ! -f $TOK ]]; then
  echo "SKIP: $TOK not found (the shared reference data is absent)"
  exit 77  # ctest reports it as skipped (SKIP_RETURN_CODE), not passed
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
ulimit -c 0

# Shared helpers: pass/fail/run/expect_ok/expect_fail/expect_absent.
source "$HERE/lib.sh"

# ---- inputs: the bundled KJV slice, and Korean text when the shared corpora are there --------
cp "$SRC/data/corpora/kjv-genesis.txt" en.txt
inputs=(en.txt)
if [[ -f $SHARED/corpora/ko/constitution-of-korea.txt ]]; then
  tr -d '\r' <"$SHARED/corpora/ko/constitution-of-korea.txt" >ko.txt
  inputs+=(ko.txt)
fi
SHA=$(sha256sum "$TOK" | cut -d' ' -f1)

# ---- prepare (text), judged by `tokenizers` ----------------------------------------------------
expect_ok "prepare text" "shards (uint32 ids); EOS id 151645; tokenizer sha256 $SHA" -- \
  "$EXATRAIN" data prepare --tokenizer "$TOK" --input "${inputs[@]}" --format text --output ds \
  --name bible-and-constitution --license CC0-1.0 --source "KJV Genesis; Constitution of Korea" --shard-tokens 4096 --threads 2

# The judge: documents split here by the documented paragraph rule, encoded by `tokenizers`,
# each followed by EOS; compared with the ids and the document index in the shard files.
cat >judge.py <<'PYEOF'
import glob, json, struct, sys
from array import array
from tokenizers import Tokenizer

tok_path, fmt, ds, eos_token = sys.argv[1:5]
inputs = sys.argv[5:]
tok = Tokenizer.from_file(tok_path)
eos = tok.token_to_id(eos_token)

def documents(path):
    text = open(path, encoding="utf-8").read()
    if fmt == "jsonl":
        return [json.loads(line)["text"] for line in text.split("\n") if line.strip()]
    docs, para = [], []
    for line in text.split("\n"):
        if line.strip(" \t\r\v\f") == "":
            if para: docs.append("\n".join(para))
            para = []
        else:
            para.append(line)
    if para: docs.append("\n".join(para))
    return docs

expected, starts = [], []
for path in inputs:
    for doc in documents(path):
        starts.append(len(expected))
        expected += tok.encode(doc, add_special_tokens=False).ids + [eos]

ids, got_starts = [], []
for f in sorted(glob.glob(ds + "/shard-*.bin")):
    b = open(f, "rb").read()
    magic, version, width, n, docs, vocab, flags = struct.unpack_from("<8sIIQQQI", b, 0)
    assert magic == b"EXASHARD" and version == 2 and flags == 0, (f, magic, version, flags)  # no loss mask
    a = array("H" if width == 2 else "I")
    a.frombytes(b[64:64 + n * width])
    index = (64 + n * width + 7) // 8 * 8
    got_starts += [len(ids) + s for s in struct.unpack_from("<%dQ" % docs, b, index)]
    ids += a.tolist()
    assert len(b) == index + 8 * docs, f
if ids != expected:
    i = next(i for i in range(min(len(ids), len(expected))) if ids[i] != expected[i]) if ids[:len(expected)] != expected[:len(ids)] else min(len(ids), len(expected))
    print(f"ids differ at token {i}: exatrain {ids[i:i+8]} tokenizers {expected[i:i+8]} ({len(ids)} vs {len(expected)} tokens)")
    sys.exit(1)
if got_starts != starts:
    print(f"document starts differ: {len(got_starts)} vs {len(starts)} documents")
    sys.exit(1)
print(f"judge: {len(ids)} ids in {len(starts)} documents identical to tokenizers {__import__('tokenizers').__version__}")
PYEOF
if out=$("$PY" judge.py "$TOK" text ds '<|im_end|>' "${inputs[@]}" 2>&1); then pass "text shards == tokenizers ($out)"; else fail "text shards == tokenizers" "$out"; fi

# ---- prepare (jsonl) of the same documents: the same ids --------------------------------------
"$PY" - "${inputs[@]}" >docs.jsonl <<'PYEOF'
import json, sys
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    para = []
    for line in text.split("\n") + [""]:
        if line.strip(" \t\r\v\f") == "":
            if para: print(json.dumps({"id": len(para), "text": "\n".join(para)}, ensure_ascii=False))
            para = []
        else:
            para.append(line)
PYEOF
expect_ok "prepare jsonl" "shards (uint32 ids)" -- \
  "$EXATRAIN" data prepare --tokenizer "$TOK" --input docs.jsonl --format jsonl --field text --output dsj \
  --name same-as-jsonl --license CC0-1.0 --source "the same paragraphs" --eos '<|im_end|>'
if out=$("$PY" judge.py "$TOK" jsonl dsj '<|im_end|>' docs.jsonl 2>&1); then pass "jsonl shards == tokenizers ($out)"; else fail "jsonl shards == tokenizers" "$out"; fi

# ---- verify, info -------------------------------------------------------------------------------
expect_ok "verify" "ds: ok:" "(matches)" -- "$EXATRAIN" data verify ds --tokenizer "$TOK"
expect_ok "verify by sha256" "ds: ok:" -- "$EXATRAIN" data verify ds --tokenizer-sha256 "$SHA"
expect_ok "info" 'license: "CC0-1.0"' 'name: "bible-and-constitution"' "tokenizer_sha256: \"$SHA\"" -- "$EXATRAIN" data info ds

# ---- bench ----------------------------------------------------------------------------------------
expect_ok "bench" "x baseline" "M tokens/s per rank" -- "$EXATRAIN" data bench ds --seq-len 256 --batch 8 --dp 2 --batches 50

# ---- bad input: prepare -------------------------------------------------------------------------
printf '{"text": "fine"}\n{"text": "broken"\n{"text": "fine"}\n' >bad.jsonl
common=(--tokenizer "$TOK" --name x --license MIT --source test --eos '<|im_end|>')
expect_fail "malformed jsonl" "bad.jsonl:2: malformed JSON" "--skip-bad" -- \
  "$EXATRAIN" data prepare "${common[@]}" --input bad.jsonl --format jsonl --output out1
[[ -e out1 ]] && fail "failed prepare leaves nothing" "out1 exists" || pass "failed prepare leaves nothing"
expect_ok "skip-bad" "2 documents" -- \
  "$EXATRAIN" data prepare "${common[@]}" --input bad.jsonl --format jsonl --output out2 --skip-bad
expect_ok "skip-bad is counted" "skipped_bad_records: 1" -- "$EXATRAIN" data info out2
printf 'good\n\nbad \xff byte\n' >bad.txt
expect_fail "invalid utf-8 (error policy)" "bad.txt:3: invalid UTF-8 at byte 4" -- \
  "$EXATRAIN" data prepare "${common[@]}" --input bad.txt --output out3 --invalid-utf8 error
expect_ok "invalid utf-8 (replace policy)" "2 documents" -- \
  "$EXATRAIN" data prepare "${common[@]}" --input bad.txt --output out4
expect_ok "invalid utf-8 is counted" "invalid_utf8_documents: 1" 'invalid_utf8_policy: "replace"' -- "$EXATRAIN" data info out4
expect_fail "output not empty" "out4" "is not empty" -- "$EXATRAIN" data prepare "${common[@]}" --input bad.txt --output out4
expect_fail "license not SPDX" "'MIT License' is not an SPDX license expression" -- \
  "$EXATRAIN" data prepare --tokenizer "$TOK" --name x --license "MIT License" --source s --input bad.txt --output out5
expect_fail "unknown EOS token" "the EOS token '<nope>' is not in the vocabulary" -- \
  "$EXATRAIN" data prepare --tokenizer "$TOK" --name x --license MIT --source s --eos '<nope>' --input bad.txt --output out6
expect_fail "missing input" "missing.txt" -- \
  "$EXATRAIN" data prepare "${common[@]}" --input missing.txt --output out7

# ---- bad input: verify ----------------------------------------------------------------------------
expect_fail "tokenizer mismatch" "tokenized with tokenizer sha256 $SHA" "this run's tokenizer is 0000" -- \
  "$EXATRAIN" data verify ds --tokenizer-sha256 0000000000000000000000000000000000000000000000000000000000000000
cp -r ds ds_flip
printf 'X' | dd of=ds_flip/shard-00001.bin bs=1 seek=200 conv=notrunc status=none
expect_fail "checksum mismatch" "1 problem: shard-00001.bin: sha256 is" "the manifest says" -- "$EXATRAIN" data verify ds_flip
cp -r ds ds_trunc
truncate -s -8 ds_trunc/shard-00002.bin
expect_fail "truncated shard" "shard-00002.bin" "truncated" -- "$EXATRAIN" data verify ds_trunc
cp -r ds ds_missing
rm ds_missing/shard-00000.bin
expect_fail "missing shard" "shard-00000.bin: missing" -- "$EXATRAIN" data verify ds_missing
expect_fail "not a dataset" "no manifest.pb" -- "$EXATRAIN" data verify "$T"
expect_fail "info of a non-dataset" "no manifest.pb" -- "$EXATRAIN" data info "$T"

# A string field of manifest.pb with invalid UTF-8: protobuf's own "[libprotobuf ERROR ...]" line
# used to come before ours (expect_fail allows exactly one line).
cp -r ds ds_utf8
"$PY" - ds_utf8/manifest.pb <<'PYEOF' || fail "fixture ds_utf8" "could not rewrite manifest.pb"
import sys
path = sys.argv[1]
b = bytearray(open(path, "rb").read())
i = b.index(b"KJV Genesis")  # the source field
b[i] = 0xFF
open(path, "wb").write(b)
PYEOF
expect_fail "manifest.pb with invalid UTF-8: one line, no protobuf log" "ds_utf8/manifest.pb" \
  "not a valid Protocol Buffers message" -- "$EXATRAIN" data info ds_utf8
expect_fail "verify: manifest.pb with invalid UTF-8" "ds_utf8/manifest.pb" -- "$EXATRAIN" data verify ds_utf8
# A JSON number beyond a double: nlohmann's out_of_range used to escape as an internal error.
printf '{"text": "fine"}\n{"text": 1e999}\n' >overflow.jsonl
expect_fail "jsonl: number overflow" "overflow.jsonl:2: malformed JSON: number overflow parsing '1e999' at line 1, column 10" -- \
  "$EXATRAIN" data prepare "${common[@]}" --input overflow.jsonl --format jsonl --output out8
# Output that cannot be written is a failure, not exit 0.
expect_fail "info to a full device" "cannot write to standard output: No space left on device" -- \
  bash -c '"$@" >/dev/full' _ "$EXATRAIN" data info ds

# ---- chat data (the fixture tokenizer has the EXAONE-4 special tokens; ids and mask are judged
# by tests/parity/check_chat.py, here the CLI around it) -------------------------------------------
CHAT_TOK=$SRC/tests/parity/tokenizer/genesis-bpe.json
chat=(--tokenizer "$CHAT_TOK" --format chat --name sft --license CC0-1.0 --source "data_cli.sh")
cat >chat.jsonl <<'EOF2'
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who made the light?"}, {"role": "assistant", "content": "God."}]}

{"messages": [{"role": "user", "content": "대한민국의 주권은?"}, {"role": "assistant", "content": "<think>\n제1조\n</think>\n\n국민에게 있다."}]}
EOF2
expect_ok "prepare chat" "2 documents" "EOS id 2;" "loss mask:" "are training targets" -- \
  "$EXATRAIN" data prepare "${chat[@]}" --input chat.jsonl --output chat_ds
expect_ok "verify chat" "chat_ds: ok:" -- "$EXATRAIN" data verify chat_ds
expect_ok "info chat" 'input_format: "chat"' "has_loss_mask: true" 'chat_template: "exaone4"' "skipped_empty_documents: 1" \
  "shard_format_version: 2" -- "$EXATRAIN" data info chat_ds
printf '%s\n' '{"messages": [{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]}' >chat_bad.jsonl
expect_fail "chat: unknown role" "chat_bad.jsonl:1: message 2: unknown role 'robot'" "--skip-bad" -- \
  "$EXATRAIN" data prepare "${chat[@]}" --input chat_bad.jsonl --output chat_out1
printf '%s\n' '{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}' >chat_bad2.jsonl
expect_fail "chat: missing content" "chat_bad2.jsonl:1: message 1 (user): no \"content\"" -- \
  "$EXATRAIN" data prepare "${chat[@]}" --input chat_bad2.jsonl --output chat_out2
expect_fail "chat: EOS other than [|endofturn|]" "chat conversations end with [|endofturn|]" "--eos '[|endofturn|]'" -- \
  "$EXATRAIN" data prepare "${chat[@]}" --eos '[BOS]' --input chat.jsonl --output chat_out3
expect_fail "chat: tokenizer without the EXAONE tokens" "chat data needs an EXAONE-4 tokenizer" "has no [|endofturn|]" -- \
  "$EXATRAIN" data prepare --tokenizer "$TOK" --format chat --name x --license MIT --source s --input chat.jsonl --output chat_out4
expect_fail "keep-reasoning without chat" "--keep-reasoning is for --format chat" -- \
  "$EXATRAIN" data prepare "${common[@]}" --keep-reasoning --input en.txt --output chat_out5

if ((failures > 0)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "all passed"
