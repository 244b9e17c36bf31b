#!/usr/bin/env bash
# Training on prepared datasets (the streaming loader wired into `exatrain train`):
#   - two datasets (English KJV Genesis, Korean constitution) tokenized with a BPE tokenizer,
#     blended 3:1, each with a validation split; validation loss every 10 steps, per dataset;
#     the sample prompt is encoded and the sample decoded through the run's tokenizer;
#   - `exatrain eval` on the final checkpoint and release gives the trainer's last val_loss;
#   - the loss and final weights of dp 2 and tp 2 x pp 2 runs equal the single-rank run (the
#     global batches do not depend on the layout);
#   - evaluation-only datasets (eval_only, weight 0): never trained on, validated before the
#     first step and after the last, not again at step 0 on resume; data.packing: false;
#   - a tokenizer other than the datasets', a vocabulary too small for the tokenizer, evaluation
#     without a validation split, a misspelled dataset key: one clear error, no run directory;
#   - corrupt shards (an id changed, shards swapped, EOS removed, ids outside the vocabulary):
#     the run stops with one error naming the shard and writes no final weights.
#   train_data.sh EXATRAIN_BIN PYTHON
set -euo pipefail
BIN=$1 PY=$2
SRC=${EXATRAIN_SOURCE_DIR:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
TOK=$SRC/tests/parity/tokenizer/genesis-bpe.json
fail() { echo "FAIL - $*"; exit 1; }

"$BIN" data prepare --tokenizer "$TOK" --eos "[|endofturn|]" --input "$SRC/data/corpora/kjv-genesis.txt" \
  --format text --output "$T/genesis" --name genesis --license LicenseRef-PublicDomain \
  --source "KJV Genesis" >"$T/prep1.log" 2>&1 || { cat "$T/prep1.log"; fail "prepare genesis"; }
"$BIN" data prepare --tokenizer "$TOK" --eos "[|endofturn|]" \
  --input "$SRC/tests/parity/tokenizer/constitution-ko-excerpt.txt" --format text --output "$T/ko" --name ko \
  --license LicenseRef-PublicDomain --source "Constitution of the Republic of Korea" >"$T/prep2.log" 2>&1 \
  || { cat "$T/prep2.log"; fail "prepare ko"; }
echo "ok - two datasets prepared"

cat >"$T/run.yaml" <<YAML
model:
  preset: tiny
  vocab_size: 1216
train:
  steps: 30
  global_batch: 8
  micro_batch: 2
  seq_len: 64
  eval_every: 10
  eval_batches: 2
  threads: 1
optimizer:
  lr: 3.0e-3
schedule:
  warmup_steps: 5
data:
  tokenizer: $TOK
  datasets:
    - path: genesis
      weight: 3
      validation_sequences: 8
    - path: ko
      weight: 1
      validation_fraction: 0.1
log:
  every: 5
  sample_tokens: 16
  sample_prompt: "And God said"
  sample_temperature: 0
YAML

"$BIN" train "$T/run.yaml" --run-dir "$T/single" >"$T/single.log" 2>&1 || { cat "$T/single.log"; fail "single-rank run"; }
"$PY" - "$T/single/metrics.jsonl" <<'PY'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
evals = [x for x in m if "val_loss" in x]
assert [x["step"] for x in evals] == [0, 10, 20, 30], f"validation at steps {[x['step'] for x in evals]}, expected 0, 10, 20, 30"
assert "loss" not in evals[0], "the step-0 line holds only the validation before training"
for x in evals:
    assert set(x["val_loss"]) == {"genesis", "ko"}, f"validation sets {sorted(x['val_loss'])}"
g = [x["val_loss"]["genesis"] for x in evals]
assert g[-1] < g[0], f"genesis validation loss did not fall: {g}"
assert all("data_wait_share" in x and 0 <= x["data_wait_share"] < 1 for x in m if "loss" in x), "data_wait_share missing or out of range"
print(f"ok - validation loss per dataset at steps 0 (before training)/10/20/30; genesis {g[0]:.3f} -> {g[-1]:.3f}")
PY
# exatrain eval: the final weights, from the checkpoint and from the release, give the trainer's
# last val_loss on each dataset (same batches, same masked mean).
for src in "--checkpoint $T/single" "--hf $T/single/final"; do
  # shellcheck disable=SC2086  # $src is two words
  "$BIN" eval "$T/run.yaml" $src --threads 1 --json >"$T/eval.json" 2>"$T/eval.log" || { cat "$T/eval.log"; fail "eval $src"; }
  "$PY" - "$T/single/metrics.jsonl" "$T/eval.json" "$src" <<'PY'
import json, math, sys
last = [json.loads(l) for l in open(sys.argv[1]) if "val_loss" in l][-1]["val_loss"]
got = json.load(open(sys.argv[2]))["datasets"]
assert set(got) == set(last), (sorted(got), sorted(last))
for name, want in last.items():
    loss = got[name]["loss"]
    assert abs(loss - want) <= 1e-5 * want, f"{name}: eval {loss} vs the trainer's val_loss {want}"
    assert math.isclose(got[name]["perplexity"], math.exp(loss), rel_tol=1e-9)
print(f"ok - eval {sys.argv[3].split()[0]}: " + ", ".join(f"{n} {got[n]['loss']:.5f}" for n in sorted(got)) +
      " = the trainer's last val_loss")
PY
done
grep -q 'sample: "And God said" -> "' "$T/single/train.log" || fail "train.log has no decoded sample"
grep -q "dataset genesis: " "$T/single/train.log" || fail "train.log does not describe the datasets"
echo "ok - decoded sample: $(grep -o 'sample: .*' "$T/single/train.log" | head -c 160)"

for layout in "dp2 2 --set parallel.dp=2" "tp2-pp2 4 --set parallel.tp=2 --set parallel.pp=2 --set parallel.sequence_parallel=true"; do
  read -r name n sets <<<"$layout"
  # shellcheck disable=SC2086
  mpirun -n "$n" -x OMP_NUM_THREADS "$BIN" train "$T/run.yaml" --run-dir "$T/$name" $sets \
    </dev/null >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; fail "$name run"; }
  # 30 steps: rounding differences of the layouts grow through AdamW's early, sign-like updates
  # (tests/multirank checks 1e-5 over 10 steps); a different batch would differ by O(1).
  "$PY" "$SRC/tests/multirank/compare_runs.py" "$T/single" "$T/$name" --rtol 5e-5 || fail "$name differs from one rank"
  "$PY" - "$T/single/metrics.jsonl" "$T/$name/metrics.jsonl" <<'PY' || fail "$name validation loss differs"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
for x, y in zip(a, b):
    for k, v in x.get("val_loss", {}).items():
        # the bound of the parameters after 30 steps (compare_runs --rtol 5e-5 above); measured
        # 1.3e-5 for tp 2 x pp 2 with sequence parallelism
        assert abs(v - y["val_loss"][k]) <= 5e-5 * abs(v), f"step {x['step']} val {k}: {v} vs {y['val_loss'][k]}"
print("  validation losses equal")
PY
done

# ---- evaluation-only datasets (eval_only: true, or weight: 0) -----------------------------------
# Never trained on: the training losses equal, bit for bit, those of a run without the dataset;
# validated whole before the first step and after the last (train.eval_every 0); a resumed run
# does not repeat the step-0 validation and ends bit-identical.
cat >"$T/evalonly.yaml" <<YAML
model: {preset: tiny, vocab_size: 1216}
train: {steps: 8, global_batch: 4, micro_batch: 2, seq_len: 64, threads: 1}
optimizer: {lr: 3.0e-3}
schedule: {type: constant}
data:
  tokenizer: $TOK
  datasets:
    - {path: genesis}
    - {path: ko, eval_only: true}
checkpoint: {every: 4}
log: {every: 1, sample_tokens: 0}
YAML
sed 's/{path: ko, eval_only: true}/{path: ko, weight: 0}/' "$T/evalonly.yaml" >"$T/weight0.yaml"
grep -v "path: ko" "$T/evalonly.yaml" >"$T/genesis-only.yaml"
for name in evalonly weight0 genesis-only; do
  "$BIN" train "$T/$name.yaml" --run-dir "$T/$name" >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; fail "$name run"; }
done
"$BIN" train "$T/evalonly.yaml" --run-dir "$T/eo-resumed" --set train.steps=4 >"$T/eo1.log" 2>&1 \
  || { cat "$T/eo1.log"; fail "evaluation-only: 4 steps"; }
"$BIN" train "$T/evalonly.yaml" --run-dir "$T/eo-resumed" --resume >"$T/eo2.log" 2>&1 \
  || { cat "$T/eo2.log"; fail "evaluation-only: --resume"; }
grep -q "evaluation only" "$T/evalonly/train.log" || fail "train.log does not say ko is evaluation only"
! grep -q "before training" "$T/eo2.log" || fail "the resumed run repeated the step-0 validation"
"$PY" - "$T/evalonly" "$T/weight0" "$T/genesis-only" "$T/eo-resumed" <<'PY' || fail "evaluation-only datasets"
import json, sys
eo, w0, alone, resumed = ([json.loads(l) for l in open(f"{d}/metrics.jsonl")] for d in sys.argv[1:5])
evals = [(m["step"], m["val_loss"]) for m in eo if "val_loss" in m]
assert [s for s, _ in evals] == [0, 8], f"validation at steps {[s for s, _ in evals]}, expected 0 and 8"
assert all(set(v) == {"ko"} for _, v in evals), f"validation sets {[sorted(v) for _, v in evals]}"
assert evals[1][1]["ko"] != evals[0][1]["ko"], "ko's validation loss did not change with training"
train = lambda ms: [(m["step"], m["loss"], m["grad_norm"]) for m in ms if "loss" in m]
assert train(eo) == train(alone), "training losses differ from the run without the evaluation-only dataset"
assert [(m["step"], m.get("loss"), m.get("val_loss")) for m in w0] == \
       [(m["step"], m.get("loss"), m.get("val_loss")) for m in eo], "weight: 0 differs from eval_only: true"
steps = [m["step"] for m in resumed]
assert steps == [0, 1, 2, 3, 4, 5, 6, 7, 8], f"steps in the resumed metrics.jsonl: {steps}"
ends = {m["step"]: m for m in resumed}
assert ends[8]["val_loss"] == eo[-1]["val_loss"] and ends[0]["val_loss"] == eo[0]["val_loss"], "resumed validation differs"
assert train(resumed) == train(eo), "the resumed run's losses differ from the straight run's"
print(f"ok - evaluation-only ko: val_loss {evals[0][1]['ko']:.4f} (step 0) -> {evals[1][1]['ko']:.4f} (step 8); "
      "training bit-identical to genesis alone; weight 0 = eval_only; resume adds no step-0 validation")
PY

# ---- data.packing: false: one document per row, padded; longer ones truncated and counted ------
"$BIN" train "$T/evalonly.yaml" --run-dir "$T/unpacked" --set data.packing=false --set train.steps=3 \
  --set checkpoint.every=0 >"$T/unpacked.log" 2>&1 || { cat "$T/unpacked.log"; fail "data.packing: false"; }
"$PY" - "$T/genesis" "$T/unpacked" <<'PY' || fail "data.packing: false"
import glob, json, re, struct, sys
lengths, carried = [], 0
for path in sorted(glob.glob(f"{sys.argv[1]}/shard-*.bin")):  # the document index, read here
    raw = open(path, "rb").read()
    width, tokens, docs = struct.unpack_from("<IQQ", raw, 12)
    starts = struct.unpack_from(f"<{docs}Q", raw, len(raw) - 8 * docs)
    if lengths and (not starts or starts[0] > 0):
        lengths[-1] += starts[0] if starts else tokens
    bounds = list(starts) + [tokens]
    lengths += [bounds[i + 1] - bounds[i] for i in range(docs)]
longer = sum(n > 65 for n in lengths)
log = open(f"{sys.argv[2]}/train.log").read()
m = re.search(r"dataset genesis: (\d+) of (\d+) documents are longer than a row", log)
assert m, "train.log does not count the truncated documents"
assert (int(m[1]), int(m[2])) == (longer, len(lengths)), f"log says {m[1]} of {m[2]}, the shards {longer} of {len(lengths)}"
losses = [x["loss"] for x in map(json.loads, open(f"{sys.argv[2]}/metrics.jsonl")) if "loss" in x]
assert len(losses) == 3 and all(l == l and 0 < l < 20 for l in losses), losses
print(f"ok - data.packing: false: {longer} of {len(lengths)} genesis documents longer than a row, as the log says")
PY

expect_error() {  # expect_error NAME TEXT -- ARGS...
  local name=$1 text=$2; shift 3
  rm -rf "$T/bad"
  if "$BIN" "$@" --run-dir "$T/bad" >"$T/bad.out" 2>"$T/bad.err"; then fail "$name: exit 0"; fi
  grep -qF -- "$text" "$T/bad.err" || fail "$name: stderr lacks '$text': $(cat "$T/bad.err")"
  [[ $(wc -l <"$T/bad.err") == 1 ]] || fail "$name: expected one line of error, got $(cat "$T/bad.err")"
  [[ ! -e "$T/bad" ]] || fail "$name: the run directory was created"
  echo "ok - $name: $(cat "$T/bad.err")"
}
sed 's/"model"/"model" /' "$TOK" >"$T/other-tokenizer.json"
expect_error "another tokenizer" "was tokenized with tokenizer sha256" -- train "$T/run.yaml" --set data.tokenizer="$T/other-tokenizer.json"
expect_error "vocabulary too small" "raise model.vocab_size" -- train "$T/run.yaml" --set model.vocab_size=1000
sed 's/validation_sequences: 8/validation_sequences: 0/; s/validation_fraction: 0.1/validation_fraction: 0/' \
  "$T/run.yaml" >"$T/noval.yaml"
expect_error "no validation split" "no dataset has a validation split" -- train "$T/noval.yaml"
sed 's/- {path: genesis}/- {path: genesis, weight: 0}/' "$T/evalonly.yaml" >"$T/noeval.yaml"
expect_error "every dataset evaluation-only" "data.datasets: every dataset is evaluation-only (weight 0 or eval_only); at least one must be trained on" -- train "$T/noeval.yaml"
expect_error "document masks on a raw file" "data.document_mask: needs data.datasets" -- train "$SRC/configs/train/tiny-demo.yaml" --set data.document_mask=true
sed 's/      weight: 3/      wieght: 3/' "$T/run.yaml" >"$T/typo.yaml"
expect_error "misspelled dataset key" "unknown key 'data.datasets[0].wieght' (did you mean 'weight'?)" -- train "$T/typo.yaml"
# ---- corrupt shards (a fuzzing probe's finds): the run stops with one line naming the shard ----
# Shards of 8192 tokens; each case corrupts a fresh copy. The checksums are hashed in the
# background (data/shards/loader.h): the run ends at the first step after the mismatch is found
# and at the latest before its last step, so it never finishes (no RUN/final) on bad data.
"$BIN" data prepare --tokenizer "$TOK" --eos "[|endofturn|]" --input "$SRC/data/corpora/kjv-genesis.txt" \
  --format text --output "$T/small_shards" --name genesis --license LicenseRef-PublicDomain \
  --source "KJV Genesis" --shard-tokens 8192 >"$T/prep3.log" 2>&1 || { cat "$T/prep3.log"; fail "prepare small shards"; }
cat >"$T/corrupt.yaml" <<YAML
model: {preset: tiny, vocab_size: 1216}
train: {steps: 3, global_batch: 4, micro_batch: 2, seq_len: 32, threads: 1}
data:
  tokenizer: $TOK
  datasets: [{path: corrupt}]
log: {sample_tokens: 0}
YAML
# corrupt MODE: a fresh copy of the dataset in $T/corrupt, changed as MODE says.
corrupt() {
  rm -rf "$T/corrupt" && cp -r "$T/small_shards" "$T/corrupt"
  "$PY" - "$T/corrupt" "$1" <<'PY'
import hashlib, struct, sys
d, mode = sys.argv[1:3]
def shard(i): return f"{d}/shard-{i:05d}.bin"
if mode == "swap":
    a, b = open(shard(0), "rb").read(), open(shard(1), "rb").read()
    open(shard(0), "wb").write(b); open(shard(1), "wb").write(a)
    sys.exit()
path = shard(2)
raw = bytearray(open(path, "rb").read())
ids = 64  # uint16 ids after the 64-byte header
if mode == "valid_id":       # one id for another id inside the vocabulary
    old = struct.unpack_from("<H", raw, ids + 2 * 100)[0]
    struct.pack_into("<H", raw, ids + 2 * 100, 500 if old != 500 else 501)
elif mode == "no_eos":       # the EOS before the second document becomes a word
    tokens, docs = struct.unpack_from("<QQ", raw, 16)
    start = struct.unpack_from("<Q", raw, len(raw) - 8 * docs + 8)[0]
    assert struct.unpack_from("<H", raw, ids + 2 * (start - 1))[0] == 2, "expected EOS (id 2)"
    struct.pack_into("<H", raw, ids + 2 * (start - 1), 500)
elif mode == "oov":          # every id of every shard outside the model's vocabulary, checksums made to match
    for i in range(100):
        try: raw = bytearray(open(shard(i), "rb").read())
        except FileNotFoundError: break
        tokens = struct.unpack_from("<Q", raw, 16)[0]
        old = hashlib.sha256(raw).hexdigest()
        raw[ids:ids + 2 * tokens] = struct.pack("<H", 60000) * tokens
        new = hashlib.sha256(raw).hexdigest()
        open(shard(i), "wb").write(raw)
        for m in ("manifest.pb", "manifest.txtpb"):
            b = open(f"{d}/{m}", "rb").read()
            open(f"{d}/{m}", "wb").write(b.replace(old.encode(), new.encode()))
    sys.exit()
open(path, "wb").write(raw)
PY
}
# expect_stop NAME TEXT...: the run exits 1, its last stderr line is one "exatrain: error:" naming
# TEXT, no torch or internal error, and there is no RUN/final.
expect_stop() {
  local name=$1; shift
  rm -rf "$T/stopped"
  if "$BIN" train "$T/corrupt.yaml" --run-dir "$T/stopped" >"$T/stop.out" 2>"$T/stop.err"; then fail "$name: exit 0"; fi
  local last; last=$(tail -n 1 "$T/stop.err")
  [[ $last == "exatrain: error: "* ]] || fail "$name: last line is not the error: $(tail -n 3 "$T/stop.err")"
  for text in "$@"; do [[ $last == *"$text"* ]] || fail "$name: '$text' missing in: $last"; done
  ! grep -q "internal error\|error: torch" "$T/stop.err" || fail "$name: $(cat "$T/stop.err")"
  [[ ! -e "$T/stopped/final" ]] || fail "$name: the run wrote final weights"
  echo "ok - $name: ${last:0:160}..."
}
corrupt valid_id
expect_stop "shard with one id changed to another valid id" "corrupt/shard-00002.bin': sha256 is" \
  "exatrain data verify"
corrupt swap
expect_stop "two shards swapped" "corrupt/shard-0000" "sha256 is" "swapped with another shard"
corrupt no_eos
expect_stop "EOS removed" "corrupt/shard-00002.bin': sha256 is"
corrupt oov
expect_stop "ids outside the vocabulary (checksums fixed up)" "corrupt/shard-0000" "is id 60000, outside the dataset's vocabulary (size 1202)"
[[ ! -s "$T/stopped/metrics.jsonl" ]] || fail "out-of-vocabulary ids: a step ran before the error"

echo "PASS: training on prepared datasets"
