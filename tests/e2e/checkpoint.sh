#!/usr/bin/env bash
# Distributed checkpoints end to end (issue 8 §2, §5):
#   - resume is exact: 12 steps straight == 6 steps + save + new process + --resume + 6 steps,
#     bit-identical final weights and per-step loss / grad norm (one rank, prepared datasets,
#     so the loader position is part of the state); metrics.jsonl continues without repeats;
#   - resharding: saved under tp 2 x pp 2, resumed as dp 4 ZeRO-1 (and the reverse); both equal
#     the single-rank run within the parallel tolerance (compare_runs.py, rtol 1e-5);
#   - `checkpoint inspect` / `verify`; checkpoint.keep prunes; --resume on an empty run starts fresh;
#   - faults: a flipped byte, a truncated or missing data file, another model, another tokenizer:
#     one-line errors, never a silent load;
#   - SIGKILL at >= 20 random instants inside saves (a run that saves every step): `latest` always
#     names a complete checkpoint that verifies, and the run resumes.
#   checkpoint.sh EXATRAIN_BIN PYTHON
set -uo pipefail
BIN=$1 PY=$2
SRC=${EXATRAIN_SOURCE_DIR:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
TIMEOUT=120
source "$SRC/tests/e2e/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
TOK=$SRC/tests/parity/tokenizer/genesis-bpe.json
die() { echo "FAIL - $*"; exit 1; }

"$BIN" data prepare --tokenizer "$TOK" --eos "[|endofturn|]" --input "$SRC/data/corpora/kjv-genesis.txt" \
  --format text --output "$T/genesis" --name genesis --license LicenseRef-PublicDomain \
  --source "KJV Genesis" >"$T/prep.log" 2>&1 || { cat "$T/prep.log"; die "prepare genesis"; }

# A constant schedule after warm-up: the learning rate of steps 1-6 does not depend on
# train.steps, so a 6-step run continued to 12 is the same computation as 12 straight.
cat >"$T/run.yaml" <<YAML
model:
  preset: tiny
  vocab_size: 1216
train:
  steps: 12
  global_batch: 8
  micro_batch: 2
  seq_len: 64
  threads: 1
optimizer:
  lr: 3.0e-3
schedule:
  type: constant
  warmup_steps: 4
data:
  tokenizer: $TOK
  datasets:
    - path: genesis
checkpoint:
  every: 6
log:
  every: 1
YAML
train() { "$BIN" train "$T/run.yaml" "$@"; }
mpi() { local n=$1; shift; mpirun -n "$n" "$BIN" train "$T/run.yaml" "$@"; }

# --- exact resume at the same layout ------------------------------------------------------------
train --run-dir "$T/straight" >"$T/straight.log" 2>&1 || { cat "$T/straight.log"; die "12 steps straight"; }
train --run-dir "$T/resumed" --set train.steps=6 >"$T/r1.log" 2>&1 || { cat "$T/r1.log"; die "6 steps"; }
# An interrupted process logs steps after its last checkpoint: they must not repeat on resume.
echo '{"step": 7, "loss": 99}' >>"$T/resumed/metrics.jsonl"
train --run-dir "$T/resumed" --resume >"$T/r2.log" 2>&1 || { cat "$T/r2.log"; die "--resume"; }
grep -q "resumed from $T/resumed/checkpoints/step_00000006" "$T/r2.log" || die "no 'resumed from' line: $(tail -3 "$T/r2.log")"
cmp -s "$T/straight/final/model.safetensors" "$T/resumed/final/model.safetensors" \
  && pass "resume: final weights bit-identical to 12 steps straight" \
  || fail "resume: final weights" "differ from the straight run"
"$PY" - "$T/straight/metrics.jsonl" "$T/resumed/metrics.jsonl" <<'PY' && pass "resume: loss and grad norm bit-identical at every step; metrics.jsonl continues" || fail "resume metrics" "see above"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [m["step"] for m in b] == list(range(1, 13)), f"steps in resumed metrics.jsonl: {[m['step'] for m in b]}"
for x, y in zip(a, b):
    for k in ("loss", "grad_norm", "lr"):
        assert x[k] == y[k], f"step {x['step']}: {k} {x[k]!r} vs {y[k]!r}"
PY

# --- bf16 weights (train.weights: bf16): resume is exact too ---------------------------------------
# The checkpoint holds the fp32 master weights and moments; the bf16 weights the model computes
# with are their rounding, made again on load.
BW=(--set train.precision=bf16 --set train.weights=bf16)
train --run-dir "$T/bw-straight" "${BW[@]}" >"$T/bw1.log" 2>&1 || { cat "$T/bw1.log"; die "bf16 weights: 12 steps"; }
train --run-dir "$T/bw-resumed" "${BW[@]}" --set train.steps=6 >"$T/bw2.log" 2>&1 || { cat "$T/bw2.log"; die "bf16 weights: 6 steps"; }
train --run-dir "$T/bw-resumed" "${BW[@]}" --resume >"$T/bw3.log" 2>&1 || { cat "$T/bw3.log"; die "bf16 weights: --resume"; }
cmp -s "$T/bw-straight/final/model.safetensors" "$T/bw-resumed/final/model.safetensors" \
  && "$PY" - "$T/bw-straight/metrics.jsonl" "$T/bw-resumed/metrics.jsonl" <<'PY' \
  && pass "bf16 weights: resume bit-identical (final weights, loss and grad norm at every step)" \
  || fail "bf16 weights resume" "differs from 12 steps straight"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 12 and all(x["loss"] == y["loss"] and x["grad_norm"] == y["grad_norm"] for x, y in zip(a, b))
PY

# --- asynchronous saving writes the same bytes ---------------------------------------------------
train --run-dir "$T/async" --set checkpoint.async=true --set checkpoint.every=3 >"$T/async.log" 2>&1 \
  || { cat "$T/async.log"; die "async run"; }
cmp -s "$T/async/final/model.safetensors" "$T/straight/final/model.safetensors" && grep -q '"async":true' "$T/async/checkpoints.jsonl" \
  && cmp -s "$T/async/checkpoints/step_00000012/rank_00000.bin" "$T/straight/checkpoints/step_00000012/rank_00000.bin" \
  && pass "checkpoint.async: the same checkpoint bytes and final weights as synchronous saving" \
  || fail "checkpoint.async" "differs from the synchronous run"

# --- inspect, verify, keep ------------------------------------------------------------------------
expect_ok "checkpoint inspect (run directory -> latest)" "step: 12" "tp 1 x pp 1 x dp 1" \
  "optimizer.exp_avg.model.layers.0.mlp.gate_proj.weight" -- "$BIN" checkpoint inspect "$T/resumed"
expect_ok "checkpoint inspect --json" '"step": 6' -- "$BIN" checkpoint inspect --json "$T/resumed/checkpoints/step_00000006"
expect_ok "checkpoint verify" "every checksum matches" -- "$BIN" checkpoint verify "$T/resumed/checkpoints/step_00000012"
train --run-dir "$T/keep" --set checkpoint.every=2 --set checkpoint.keep=2 --set train.steps=8 >"$T/keep.log" 2>&1 \
  || { cat "$T/keep.log"; die "keep run"; }
kept=$(cd "$T/keep/checkpoints" && ls -d step_* | tr '\n' ' ')
[[ $kept == "step_00000006 step_00000008 " && $(cat "$T/keep/checkpoints/latest") == step_00000008 ]] \
  && pass "checkpoint.keep 2 keeps the newest two; latest names the last" || fail "checkpoint.keep" "kept: $kept"
train --run-dir "$T/fresh" --resume --set train.steps=4 >"$T/fresh.log" 2>&1 && grep -q "holds no checkpoint yet" "$T/fresh.log" \
  && pass "--resume on a run without checkpoints starts fresh" || fail "--resume fresh" "$(tail -2 "$T/fresh.log")"

# --- resharding: tp 2 x pp 2 <-> dp 4 ZeRO-1 ----------------------------------------------------
L1=(--set parallel.tp=2 --set parallel.pp=2) L2=(--set parallel.dp=4 --set parallel.zero=1)
mpi 4 --run-dir "$T/a" "${L1[@]}" --set train.steps=6 >"$T/a1.log" 2>&1 || { cat "$T/a1.log"; die "tp2 pp2 6 steps"; }
mpi 4 --run-dir "$T/a" "${L2[@]}" --resume --set checkpoint.export_max_shard_size=1MB >"$T/a2.log" 2>&1 || { cat "$T/a2.log"; die "resume as dp4 zero1"; }
mpi 4 --run-dir "$T/b" "${L2[@]}" --set train.steps=6 >"$T/b1.log" 2>&1 || { cat "$T/b1.log"; die "dp4 zero1 6 steps"; }
# ... with another micro-batch too (2 -> 1: four micro-batches per DP rank instead of two)
mpi 4 --run-dir "$T/b" "${L1[@]}" --resume --set train.micro_batch=1 >"$T/b2.log" 2>&1 || { cat "$T/b2.log"; die "resume as tp2 pp2"; }
# RUN/final of a 4-rank run in 1 MB shards: each rank wrote its share; transformers loads it.
shards=$(ls "$T/a/final" | grep -c '^model-.*safetensors$')
"$PY" - "$T/a/final" "$T/straight/final" <<'PY' && pass "RUN/final of 4 ranks: $shards shards written by the ranks in parallel; transformers loads it, weights equal the 1-rank run's within 1e-5" || fail "parallel RUN/final" "see above"
import sys, torch
from transformers import AutoModelForCausalLM
a = AutoModelForCausalLM.from_pretrained(sys.argv[1]).state_dict()
b = AutoModelForCausalLM.from_pretrained(sys.argv[2]).state_dict()
num = sum(float(((a[k] - b[k]).double() ** 2).sum()) for k in b)
den = sum(float((b[k].double() ** 2).sum()) for k in b)
assert (num / den) ** 0.5 < 1e-5, (num / den) ** 0.5
PY
for run in a b; do
  if out=$("$PY" "$SRC/tests/multirank/compare_runs.py" "$T/straight" "$T/$run" 2>&1); then
    pass "resharded resume: $(grep -o 'saved under [^;]*) in' "$T/${run}2.log" | sed 's/) in$//'), resumed as $([[ $run == a ]] && echo 'dp 4 zero 1' || echo 'tp 2 x pp 2, micro-batch 1'): $out"
  else fail "resharded resume $run" "$out"; fi
done

# --- faults: one line, exit 1, nothing loaded -----------------------------------------------------
cp -r "$T/resumed" "$T/bad"
CK=$T/bad/checkpoints/step_00000012
"$PY" - "$CK/rank_00000.bin" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4096); b = f.read(1); f.seek(4096); f.write(bytes([b[0] ^ 0x01]))
PY
expect_fail "verify names the file with a flipped byte" "rank_00000.bin" "is corrupt" -- "$BIN" checkpoint verify "$CK"
expect_fail "--resume from a corrupt checkpoint" "rank_00000.bin" "is corrupt" -- \
  "$BIN" train "$T/run.yaml" --run-dir "$T/bad" --resume --set train.steps=14
truncate -s 1000 "$CK/rank_00000.bin"
expect_fail "truncated data file" "rank_00000.bin is truncated" -- "$BIN" checkpoint verify "$CK"
rm "$CK/rank_00000.bin"
expect_fail "missing data file" "rank_00000.bin is missing" -- "$BIN" checkpoint verify "$CK"
expect_fail "checkpoint of another model" "was saved from another model" "model.hidden_size" -- \
  "$BIN" train "$T/run.yaml" --run-dir "$T/other" --resume "$T/resumed/checkpoints/step_00000006" \
  --set model.hidden_size=96
expect_absent "another model: no run directory" "$T/other"
"$BIN" tokenizer train --vocab-size 400 --output "$T/tok2.json" "$SRC/data/corpora/kjv-genesis.txt" >/dev/null 2>&1
expect_fail "checkpoint of another tokenizer" "trained with tokenizer sha256" -- \
  "$BIN" train "$T/run.yaml" --run-dir "$T/other" --resume "$T/resumed/checkpoints/step_00000006" \
  --set data.tokenizer="$T/tok2.json" --set data.datasets='[]' --set data.path="$SRC/data/corpora/kjv-genesis.txt"
expect_fail "train.steps below the checkpoint's step" "raise train.steps" -- \
  "$BIN" train "$T/run.yaml" --run-dir "$T/resumed" --resume --set train.steps=4
expect_fail "a run directory with a run, without --resume" "continue it with --resume" -- \
  "$BIN" train "$T/run.yaml" --run-dir "$T/resumed"

# --- init.from_hf: bad combinations --------------------------------------------------------------
expect_fail "init.from_hf with a disagreeing model key" "model.hidden_size" "96, but $T/straight/final/config.json says 128" -- \
  "$BIN" train "$T/run.yaml" --run-dir "$T/hf1" --set init.from_hf="$T/straight/final" --set model.hidden_size=96
expect_fail "init.from_hf of a directory without config.json" "config.json" -- \
  "$BIN" train "$T/run.yaml" --run-dir "$T/hf1" --set init.from_hf="$T/genesis"
expect_absent "init.from_hf errors: no run directory" "$T/hf1"
train --run-dir "$T/hf2" --set init.from_hf="$T/straight/final" --set train.steps=4 --set checkpoint.save_final=false \
  >"$T/hf2.log" 2>&1 && grep -q "weights from $T/straight/final" "$T/hf2.log" \
  && pass "init.from_hf of an exported run starts from its weights" || fail "init.from_hf" "$(tail -3 "$T/hf2.log")"
"$PY" - "$T/straight/metrics.jsonl" "$T/hf2/metrics.jsonl" <<'PY' && pass "the imported model continues where the export stopped (loss below the fresh start)" || fail "init.from_hf loss" "see above"
import json, sys
fresh = json.loads(open(sys.argv[1]).readline())["loss"]
hf = json.loads(open(sys.argv[2]).readline())["loss"]
assert hf < 0.8 * fresh, f"step-1 loss from the export {hf} vs fresh {fresh}"
print(f"   step-1 loss: fresh {fresh:.4f}, from the 12-step export {hf:.4f}")
PY

# --- the release: tokenizer files and special token ids ------------------------------------------
"$BIN" export --checkpoint "$T/straight" --output "$T/release" --dtype bf16 --max-shard-size 1MB --verify \
  --license CC0-1.0 >"$T/export.log" 2>&1 || fail "export" "$(cat "$T/export.log")"
"$PY" - "$T/release" "$TOK" <<'PY' && pass "the release: AutoTokenizer loads it, ids equal tokenizers', config ids are the tokenizer's specials, the chat template renders" || fail "release tokenizer" "see above"
import json, sys
from tokenizers import Tokenizer
from transformers import AutoTokenizer
release, tok_path = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(release)
ref = Tokenizer.from_file(tok_path)
text = "In the beginning God created the heaven and the earth."
assert tok(text, add_special_tokens=False)["input_ids"] == ref.encode(text, add_special_tokens=False).ids
cfg = json.load(open(f"{release}/config.json"))
for key, name in (("bos_token_id", "[BOS]"), ("eos_token_id", "[|endofturn|]"), ("pad_token_id", "[PAD]")):
    assert cfg[key] == ref.token_to_id(name), f"{key} {cfg[key]} != id of {name} {ref.token_to_id(name)}"
chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
assert chat.startswith("[|user|]\nHi[|endofturn|]\n[|assistant|]"), chat
print(f"   bos/eos/pad = {cfg['bos_token_id']}/{cfg['eos_token_id']}/{cfg['pad_token_id']}; template: {chat!r}")
PY

train --run-dir "$T/hf3" --set init.from_hf="$T/release" --set train.steps=4 --set checkpoint.save_final=false \
  >"$T/hf3.log" 2>&1 && grep -q "weights from $T/release" "$T/hf3.log" && [[ -e $T/release/model.safetensors.index.json ]] \
  && pass "init.from_hf of a bf16 release in $(ls "$T/release" | grep -c 'model-.*safetensors') shards (index.json)" \
  || fail "init.from_hf of the sharded bf16 release" "$(tail -3 "$T/hf3.log")"

# --- SIGKILL at random instants inside saves --------------------------------------------------------
# A watcher sees the save's .tmp- directory appear, waits a random 0-10 ms and kills the run with
# SIGKILL; a kill counts as inside a save when the .tmp- directory is still there afterwards.
# After every kill `latest` must name a checkpoint that verifies; at the end the run resumes.
KILLS=${EXATRAIN_CHECKPOINT_KILLS:-20}
"$PY" - "$BIN" "$T/run.yaml" "$T/kill" "$KILLS" <<'PY' && pass "SIGKILL inside saves: $(cat "$T/kill.summary")" || fail "SIGKILL inside saves" "$(cat "$T/kill.summary" 2>/dev/null)"
import glob, os, random, signal, subprocess, sys, time
binary, config, run, wanted = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ckpts = os.path.join(run, "checkpoints")
random.seed(8)
inside = attempts = verified = 0
summary = open(run + ".summary", "w")
while inside < wanted and attempts < 8 * wanted:
    attempts += 1
    p = subprocess.Popen([binary, "train", config, "--run-dir", run, "--resume", "--set", "train.steps=100000",
                          "--set", "checkpoint.every=1", "--set", "checkpoint.keep=2", "--set", "log.every=1000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = set(glob.glob(os.path.join(ckpts, ".tmp-*")))
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        if set(glob.glob(os.path.join(ckpts, ".tmp-*"))) - before:
            time.sleep(random.uniform(0, 0.01))
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    if glob.glob(os.path.join(ckpts, ".tmp-*")):
        inside += 1
    if os.path.exists(os.path.join(ckpts, "latest")):
        r = subprocess.run([binary, "checkpoint", "verify", run], capture_output=True, text=True)
        if r.returncode != 0:
            summary.write(f"after kill {attempts}: latest does not verify: {r.stderr.strip()}")
            sys.exit(1)
        verified += 1
latest = open(os.path.join(ckpts, "latest")).read().strip()
step = int(latest.split("_")[1])
r = subprocess.run([binary, "train", config, "--run-dir", run, "--resume", "--set", f"train.steps={step + 1}",
                    "--set", "checkpoint.every=1"], capture_output=True, text=True)
if r.returncode != 0:
    summary.write(f"resume from {latest} failed: {r.stderr.strip()[-500:]}")
    sys.exit(1)
summary.write(f"{attempts} kills, {inside} inside a save (a .tmp- directory left behind); latest verified after "
              f"{verified}; resumed from {latest} and finished step {step + 1}")
sys.exit(0 if inside >= wanted else 1)
PY

echo "$failures failure(s)"
exit $((failures > 0))
