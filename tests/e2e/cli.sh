#!/usr/bin/env bash
# The command line's happy paths: help and version, model info numbers, config show/keys,
# and logits on a freshly trained tiny model.
#
#   EXATRAIN_SOURCE_DIR=/path/to/repo bash tests/e2e/cli.sh /path/to/exatrain
set -u
HERE=$(cd "$(dirname "$0")" && pwd)  # before any cd: lib.sh lives here

EXATRAIN=$(realpath "${1:?usage: cli.sh /path/to/exatrain}")
SRC=$(realpath "${EXATRAIN_SOURCE_DIR:?set EXATRAIN_SOURCE_DIR to the repository root}")
PY=${EXATRAIN_PYTHON:-$SRC/.venv/bin/python}   # has safetensors, to read the logits file
TIMEOUT=${EXATRAIN_TEST_TIMEOUT:-300}
DEMO=$SRC/configs/train/tiny-demo.yaml
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
ulimit -c 0

# Shared helpers: pass/fail/run/expect_ok/expect_fail/expect_absent.
source "$HERE/lib.sh"

# json_check PYTHON_EXPR: true when the expression holds for `d`, the JSON on stdin (system python3).
json_check() {
  python3 -c 'import json, sys
d = json.load(sys.stdin)
ok = eval("(" + sys.argv[1] + ")")
sys.exit(0 if ok else 1)' "$1"
}

echo "# exatrain: $EXATRAIN"

# ---------------------------------------------------------------------------------------------
# Version and help
# ---------------------------------------------------------------------------------------------
run "$EXATRAIN" --version
if ((rc == 0)) && grep -qE '^exatrain 0\.1\.0 \(commit [^)]+\)$' "$T/stdout"; then
  pass "--version"
else
  fail "--version" "exit code $rc, stdout: $(cat "$T/stdout")"
fi

for sub in "" "config" "config show" "config keys" "model" "model info" "logits" "train" \
  "bench" "bench train" "tokenizer" "tokenizer encode" "tokenizer decode" "tokenizer info" "tokenizer bench" \
  "tokenizer train" "data" "data prepare" "data verify" "data info" "data bench" "selftest" "bench attention" \
  "bench comm" "bench gemm" "generate" "data preview" "eval" "plan"; do
  # shellcheck disable=SC2086  # $sub is meant to split into words
  expect_ok "--help ${sub:-(top level)}" "Usage" -- "$EXATRAIN" $sub --help
done

run "$EXATRAIN"
if ((rc != 0)) && grep -qF -- "--help" "$T/stdout" "$T/stderr"; then
  pass "no subcommand: non-zero exit and a usage hint"
else
  fail "no subcommand: non-zero exit and a usage hint" "exit code $rc; output: $(cat "$T/stdout" "$T/stderr")"
fi

# ---------------------------------------------------------------------------------------------
# model info
# ---------------------------------------------------------------------------------------------
if expect_ok "model info --preset exaone4-32b --json" -- "$EXATRAIN" model info --preset exaone4-32b --json; then
  json_check 'd["parameters"] == 32003216384 and d["layers"] == 64' <"$T/stdout" &&
    pass "exaone4-32b has 32003216384 parameters in 64 layers" ||
    fail "exaone4-32b has 32003216384 parameters in 64 layers" "$(head -c 400 "$T/stdout")"
fi

if expect_ok "model info --preset exaone4-1.2b --json" -- "$EXATRAIN" model info --preset exaone4-1.2b --json; then
  json_check 'd["parameters"] == 1279391488' <"$T/stdout" &&
    pass "exaone4-1.2b has 1279391488 parameters" ||
    fail "exaone4-1.2b has 1279391488 parameters" "$(head -c 400 "$T/stdout")"
fi

if expect_ok "model info --preset tiny --json" -- "$EXATRAIN" model info --preset tiny --json; then
  json_check 'len(d["layer_attention"]) == 4
    and sum(a.startswith("sliding") for a in d["layer_attention"]) == 3
    and sum(a.startswith("full") for a in d["layer_attention"]) == 1
    and d["layer_attention"][3].startswith("full")' <"$T/stdout" &&
    pass "tiny: 4 layers, 3 sliding + 1 full (the last)" ||
    fail "tiny: 4 layers, 3 sliding + 1 full (the last)" "$(cat "$T/stdout")"
fi

if expect_ok "model info --config --set model.num_layers=8" -- \
  "$EXATRAIN" model info --config "$DEMO" --set model.num_layers=8; then
  grep -qE '^layers: +8 ' "$T/stdout" &&
    pass "model info reports 8 layers" ||
    fail "model info reports 8 layers" "$(grep layers "$T/stdout")"
fi

if expect_ok "model info --config --set --json" -- \
  "$EXATRAIN" model info --config "$DEMO" --set model.num_layers=8 --json; then
  json_check 'd["layers"] == 8 and len(d["layer_attention"]) == 8' <"$T/stdout" &&
    pass "model info --json reports 8 layers" ||
    fail "model info --json reports 8 layers" "$(head -c 400 "$T/stdout")"
fi

# Per-rank figures of a run config's layout, against the parameter counts worked out here from
# the preset's shape (TP splits heads, MLP width and vocabulary; norms are whole; the last stage
# of a tied model holds a copy of the embedding).
per_rank_judge() {  # per_rank_judge TP PP DP ZERO < model info --json
  python3 -c 'import json, sys
tp, pp, dp, zero = map(int, sys.argv[1:5])
d = json.load(sys.stdin)
V, H, I, L, nh, kv, hd = 320, 128, 384, 4, 4, 2, 32     # configs/models/tiny.yaml (tied embeddings)
kv_local = kv // tp if kv >= tp else 1
layer = H * nh * hd // tp + 2 * H * kv_local * hd + nh * hd // tp * H + 2 * hd + 2 * H + 3 * H * I // tp
per_stage = [L // pp + (1 if s < L % pp else 0) for s in range(pp)]
stages = []
for s, n in enumerate(per_stage):
    e = n * layer
    if s == 0: e += V // tp * H
    if s == pp - 1: e += H + (V // tp * H if pp > 1 else 0)   # final norm; the tied copy
    stages.append(e)
ok = len(d["stages"]) == pp
for s, e in enumerate(stages):
    owned = -(-e // dp) if zero and dp > 1 else e
    st = d["stages"][s]
    b = st["bytes"]
    want = {"stage": s, "parameters": e, "optimizer_elements": owned}
    got = {k: st[k] for k in want}
    good = got == want and b["weights"] == 4 * e and b["optimizer_state"] == (16 if zero and dp > 1 else 8) * owned
    print(got, want) if not good else None
    ok = ok and good
# per_rank: the stage that needs the most memory in total (activations included)
totals = [st["bytes"]["total"] for st in d["stages"]]
ok = ok and d["per_rank"]["largest_stage"] == totals.index(max(totals)) and d["per_rank"]["bytes"]["total"] == max(totals)
sys.exit(0 if ok else 1)' "$@"
}
for layout in "2 2 1 0" "1 2 2 1" "2 1 2 1" "1 4 1 0"; do
  read -r tp pp dp zero <<<"$layout"
  if expect_ok "model info --config RUN --json: per rank under tp $tp pp $pp dp $dp zero $zero" -- \
    "$EXATRAIN" model info --config "$DEMO" --json --set parallel.tp="$tp" --set parallel.pp="$pp" \
    --set parallel.dp="$dp" --set parallel.zero="$zero"; then
    per_rank_judge "$tp" "$pp" "$dp" "$zero" <"$T/stdout" &&
      pass "every stage's parameters and bytes equal the count from the preset's shape (tp $tp pp $pp dp $dp zero $zero)" ||
      fail "per-rank figures (tp $tp pp $pp dp $dp zero $zero)" "$(head -c 400 "$T/stdout")"
  fi
done
expect_ok "model info --config RUN --ranks 8: dp from the ranks" "tp 2 x pp 1 x dp 4 = 8 ranks, ZeRO-1" "largest rank:" -- \
  "$EXATRAIN" model info --config "$DEMO" --ranks 8 --set parallel.tp=2 --set parallel.zero=1 --set train.micro_batch=4
expect_fail "model info --ranks with a layout that does not fit" "does not divide the job's 3 ranks" -- \
  "$EXATRAIN" model info --config "$DEMO" --ranks 3 --set parallel.tp=2

# plan: every layout fits its GPU and is ranked best first; --emit writes a config that config
# check accepts under the same layout; --layout evaluates one layout (trainer/plan).
if expect_ok "plan --preset exaone4-32b --gpus 64 --json" -- \
  "$EXATRAIN" plan --preset exaone4-32b --gpus 64 --gpu h100-80g --top 20 --json --emit plan32.yaml; then
  python3 -c 'import json, sys
d = json.load(sys.stdin)
L = d["layouts"]
need = {"tp", "pp", "dp", "zero", "micro_batch", "recompute", "memory_gib_per_gpu", "memory_parts_gib", "step_s",
        "tokens_per_s_per_gpu", "tflops_per_gpu", "mfu"}
ok = len(L) == 20 and all(need <= set(x) for x in L)
ok = ok and all(x["tp"] * x["pp"] * x["dp"] == 64 and x["tp"] <= 8 and x["fits"] and x["memory_gib_per_gpu"] * 2**30 <= 80e9 for x in L)
ok = ok and all(a["tokens_per_s_per_gpu"] >= b["tokens_per_s_per_gpu"] for a, b in zip(L, L[1:]))
x = L[0]
ok = ok and abs(x["tokens_per_s_per_gpu"] * 64 * x["step_s"] - 1024 * 4096) < 1e-3 * 1024 * 4096
ok = ok and 0 < x["mfu"] < 1
sys.exit(0 if ok else 1)' <"$T/stdout" && pass "plan --json: 20 fitting layouts of 64 GPUs, TP inside a node, best first" ||
    fail "plan --json" "$(head -c 600 "$T/stdout")"
  best=$(python3 -c 'import json, sys; x = json.load(sys.stdin)["layouts"][0]; print(x["tp"], x["pp"], x["dp"])' <"$T/stdout")
  read -r btp bpp bdp <<<"$best"
  expect_ok "plan --emit: config check accepts it on 64 ranks of 80 GB" "ok: tp $btp x pp $bpp x dp $bdp = 64 ranks" -- \
    "$EXATRAIN" config check plan32.yaml --ranks 64 --ranks-per-node 8 --gpu-memory 80
fi
expect_ok "plan --layout: one layout" "  8   2    4    1   1      full yes" -- \
  "$EXATRAIN" plan --preset exaone4-32b --gpus 64 --layout tp=8,pp=2,zero=1,micro_batch=1,recompute=full
expect_ok "plan --layout that does not fit says so" "does not fit in 80 GB" -- \
  "$EXATRAIN" plan --preset exaone4-32b --gpus 8 --layout tp=8,pp=1
# model info and plan share one cost model: the same layout, the same bytes per GPU.
if expect_ok "model info --config RUN --json (tp 2 pp 2)" -- "$EXATRAIN" model info --config "$DEMO" --json \
  --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=1; then
  mi=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["per_rank"]["bytes"]["total"])' <"$T/stdout")
  if expect_ok "plan --config RUN --layout tp=2,pp=2,sp=0" -- "$EXATRAIN" plan --config "$DEMO" --gpus 4 --gpus-per-node 4 \
    --layout tp=2,pp=2,micro_batch=8,sp=0 --json; then
    python3 -c 'import json, sys
x = json.load(sys.stdin)["layouts"][0]
sys.exit(0 if abs(x["memory_gib_per_gpu"] - x["memory_parts_gib"]["reserve"] - float(sys.argv[1]) / 2**30) < 1e-9 else 1)' "$mi" \
      <"$T/stdout" && pass "plan and model info agree on the bytes per rank" || fail "plan vs model info" "$(head -c 400 "$T/stdout")"
  fi
fi

# launch/gpu_check.sh on a machine without a GPU: one line, exit 0 (on a GPU node it runs for real).
if ! { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; }; then
  if expect_ok "launch/gpu_check.sh without a GPU" "gpu_check: no GPU on this node" -- "$SRC/launch/gpu_check.sh"; then
    [[ $(grep -c . "$T/stdout") == 1 ]] && pass "gpu_check.sh: exactly one line" || fail "gpu_check.sh: one line" "$(cat "$T/stdout")"
  fi
fi
expect_ok "launch/gpu_check.sh --help" "--skip-bench" -- "$SRC/launch/gpu_check.sh" --help

# The kernel selftest: every row within its bound, and the JSON says so row by row. The same
# kernels are judged more closely by unit_model (FlashAttention*) and parity_transformers.
expect_ok "selftest --kernels" "attention fwd+bwd" "checks passed" -- "$EXATRAIN" selftest --kernels --threads 2
if expect_ok "selftest --kernels --json" "max_error" -- "$EXATRAIN" selftest --kernels --json --threads 1; then
  json_check 'd["passed"] and len(d["checks"]) >= 5 and all(c["max_error"] <= c["bound"] for c in d["checks"])
              and {c["op"] for c in d["checks"]} >= {"attention fwd+bwd", "rms_norm fwd+bwd"}' <"$T/stdout" \
    && pass "selftest JSON: every check within its bound" || fail "selftest JSON" "$(head -c 600 "$T/stdout")"
fi
expect_fail "selftest without --kernels" "--kernels" -- "$EXATRAIN" selftest
for script in launch/slurm/submit.sh launch/slurm/train.sbatch; do
  if expect_ok "$script --help" "train.sbatch" -- bash "$SRC/$script" --help; then
    ! grep -qE '^(set |usage\(|#SBATCH)' "$T/stdout" && pass "$script --help prints its header only" \
      || fail "$script --help" "prints code: $(grep -E '^(set |usage\(|#SBATCH)' "$T/stdout" | head -2)"
  fi
done

# ---------------------------------------------------------------------------------------------
# config show / config keys
# ---------------------------------------------------------------------------------------------
# (warmup_steps comes down too: the demo's 20 warm-up steps would exceed 7 steps)
if expect_ok "config show with --set" "  steps: 7" "  warmup_steps: 3" "hidden_size: 128" "preset: \"tiny\"" \
  "lr: 0.003" -- "$EXATRAIN" config show "$DEMO" --set train.steps=7 --set schedule.warmup_steps=3; then
  cp "$T/stdout" shown.yaml
  # The output is itself a config: showing it again prints the same thing.
  if expect_ok "config show of config show's output" -- "$EXATRAIN" config show shown.yaml; then
    if cmp -s shown.yaml "$T/stdout"; then
      pass "config show round trip is identical"
    else
      fail "config show round trip is identical" "$(diff shown.yaml "$T/stdout" | head -n 10)"
    fi
  fi
fi

if expect_ok "config keys" -- "$EXATRAIN" config keys; then
  for key in optimizer.lr model.rope_scaling.type train.steps schedule.warmup_steps data.path; do
    grep -qE "^$key " "$T/stdout" && pass "config keys lists $key" ||
      fail "config keys lists $key" "not found"
  done
fi

# ---------------------------------------------------------------------------------------------
# bench train (tiny, one step): prints one JSON object with the ratio against the GEMM peak
# ---------------------------------------------------------------------------------------------
if expect_ok "bench train --json" -- \
  "$EXATRAIN" bench train --preset tiny --steps 1 --warmup 0 --batch 1 --seq-len 16 --threads 1 --json; then
  json_check 'd["steps"] == 1 and d["batch"] == 1 and d["seq_len"] == 16 and d["threads"] == 1
    and 0 < d["mfu"] <= 1 and d["tokens_per_s"] > 0' <"$T/stdout" &&
    pass "bench train JSON fields" ||
    fail "bench train JSON fields" "$(cat "$T/stdout")"
fi

# bench comm: the trainer's collectives over 2 ranks, bandwidth as nccl-tests (busbw = algbw x
# 2 (n - 1) / n for all_reduce, (n - 1) / n for reduce_scatter and all_gather, 1 for send_recv)
expect_fail "bench comm on one rank" "needs 2 or more ranks" -- "$EXATRAIN" bench comm
expect_fail "bench comm with an unknown operation" "unknown operation 'allreduce'" -- \
  "$EXATRAIN" bench comm --ops allreduce
expect_fail "bench comm with a bad size" "'12Q' is not a size" -- "$EXATRAIN" bench comm --bytes 12Q
if expect_ok "bench comm on 2 ranks --json" -- env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none \
  mpirun -n 2 "$EXATRAIN" bench comm --bytes 64K,1M --iters 2 --json; then
  json_check 'd["ranks"] == 2 and [r["op"] for r in d["results"]] == [o for o in ("all_reduce", "reduce_scatter",
    "all_gather", "send_recv") for _ in (0, 1)] and [r["bytes"] for r in d["results"]] == [65536, 1048576] * 4
    and all(r["seconds"] > 0 and abs(r["algbw_gb_s"] - r["bytes"] / r["seconds"] / 1e9) < 1e-6 * r["algbw_gb_s"]
            and abs(r["busbw_gb_s"] - r["algbw_gb_s"] * (0.5 if r["op"] in ("reduce_scatter", "all_gather") else 1))
                < 1e-9 for r in d["results"])' <"$T/stdout" &&
    pass "bench comm JSON: 4 operations x 2 sizes, algbw and busbw" ||
    fail "bench comm JSON" "$(cat "$T/stdout")"
fi

# bench gemm: FLOPs as the planner counts them (2 M N K per product; 12 heads dim seq^2 for causal
# attention forward + backward), TFLOP/s = FLOPs / seconds
if expect_ok "bench gemm --json" -- "$EXATRAIN" bench gemm --shapes 64x32x16,8x8x8 --attention 2x32x16 \
  --dtype fp32 --iters 2 --warmup 1 --threads 1 --json; then
  json_check '[r["flops"] for r in d["results"]] == [2 * 64 * 32 * 16, 2 * 8 * 8 * 8, 12 * 2 * 16 * 32 * 32]
    and [r["shape"] for r in d["results"]] == [[64, 32, 16], [8, 8, 8], [2, 32, 16]]
    and all(r["seconds"] > 0 and abs(r["tflops"] - r["flops"] / r["seconds"] / 1e12) < 1e-9 * r["tflops"]
            for r in d["results"])' <"$T/stdout" &&
    pass "bench gemm JSON: FLOPs and TFLOP/s" ||
    fail "bench gemm JSON" "$(cat "$T/stdout")"
fi
expect_fail "bench gemm with a bad shape" "'12x3': expected three positive integers" -- \
  "$EXATRAIN" bench gemm --shapes 12x3

# ---------------------------------------------------------------------------------------------
# train 2 steps, then logits on the result
# ---------------------------------------------------------------------------------------------
# warmup_steps must come down with steps: the demo's 20 warm-up steps exceed 2 steps.
expect_ok "train the tiny demo for 2 steps" -- \
  "$EXATRAIN" train "$DEMO" --run-dir "$T/run" \
  --set train.steps=2 --set schedule.warmup_steps=0 --set log.sample_tokens=0
for f in final/config.json final/model.safetensors config.resolved.yaml metrics.jsonl train.log; do
  [[ -s $T/run/$f ]] && pass "run dir has $f" || fail "run dir has $f" "missing or empty"
done
if [[ -s $T/run/metrics.jsonl ]]; then
  [[ $(grep -c '' "$T/run/metrics.jsonl") -ge 1 ]] && python3 -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]' "$T/run/metrics.jsonl" &&
    pass "metrics.jsonl is JSON lines" || fail "metrics.jsonl is JSON lines" "$(head -n 3 "$T/run/metrics.jsonl")"
fi

# The resolved config reproduces the run: same seed, same data, so the same losses.
if expect_ok "train again from the run's config.resolved.yaml" -- \
  "$EXATRAIN" train "$T/run/config.resolved.yaml" --run-dir "$T/rerun" --set checkpoint.save_final=false; then
  python3 - "$T/run/metrics.jsonl" "$T/rerun/metrics.jsonl" <<'EOF' && pass "the rerun has the same losses" ||
import json, math, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert [r["step"] for r in a] == [r["step"] for r in b], (a, b)
for x, y in zip(a, b):
    assert math.isclose(x["loss"], y["loss"], rel_tol=1e-5), (x["loss"], y["loss"])
EOF
    fail "the rerun has the same losses" "see the Python error above"
fi

# data preview: the trained spans of chat data are the assistant turns, marked in the text.
CHAT_TOK=$SRC/tests/parity/tokenizer/genesis-bpe.json
cat >chat.jsonl <<'EOF'
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who made the light?"}, {"role": "assistant", "content": "God."}]}
{"messages": [{"role": "user", "content": "And the darkness?"}, {"role": "assistant", "content": "Night."}]}
EOF
if expect_ok "data prepare (chat, for preview)" "2 documents" -- "$EXATRAIN" data prepare --tokenizer "$CHAT_TOK" \
    --format chat --name sft --license CC0-1.0 --source cli.sh --input chat.jsonl --output chat_ds; then
  expect_ok "data preview" "document 0: 32 tokens, 10 trained" "⟦<think>" "God.[|endofturn|]⟧" "marks the tokens" -- \
    "$EXATRAIN" data preview chat_ds --tokenizer "$CHAT_TOK"
  if expect_ok "data preview --json --skip 1" "trained_spans" -- \
      "$EXATRAIN" data preview chat_ds --tokenizer "$CHAT_TOK" --skip 1 --n 5 --json; then
    json_check 'len(d) == 1 and d[0]["document"] == 1 and d[0]["trained_spans"] == ["<think>\n\n</think>\n\nNight.[|endofturn|]"]
                and d[0]["text"].startswith("[|user|]\nAnd the darkness?")' <"$T/stdout" \
      && pass "data preview: the trained span is the assistant turn" || fail "data preview JSON" "$(cat "$T/stdout")"
  fi
  { cat "$CHAT_TOK"; echo; } >other-tokenizer.json  # the same tokenizer, another file hash
  expect_fail "data preview with another tokenizer" "is not the tokenizer of chat_ds" -- \
    "$EXATRAIN" data preview chat_ds --tokenizer other-tokenizer.json
fi

# generate: the checkpoint and the release it became continue a prompt identically (greedy; the
# tiny demo learns raw bytes, so --byte-level). transformers judges generate in parity_generate.
if expect_ok "generate from the final release" -- "$EXATRAIN" generate --hf "$T/run/final" --byte-level \
    --prompt "And God said" --max-new-tokens 8 --json; then
  cp "$T/stdout" gen_hf.json
  if expect_ok "generate from the checkpoint" -- "$EXATRAIN" generate --checkpoint "$T/run" --byte-level \
      --prompt "And God said" --max-new-tokens 8 --json; then
    python3 - gen_hf.json "$T/stdout" <<'EOF' && pass "generate: checkpoint and release give the same 8 tokens" ||
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["prompt_ids"] == [ord(c) for c in "And God said"], a["prompt_ids"]
assert len(a["output_ids"]) == 8 and a["output_ids"] == b["output_ids"], (a, b)
EOF
      fail "generate: checkpoint and release agree" "see the Python error above"
  fi
fi
expect_fail "generate without a tokenizer for a text prompt" "--byte-level" -- \
  "$EXATRAIN" generate --hf "$T/run/final" --prompt "And God said"
expect_fail "generate with a prompt id outside the vocabulary" "not a token id in [0, 320)" -- \
  "$EXATRAIN" generate --hf "$T/run/final" --prompt-ids "1 2 999"

printf '1 2 3 4 5\n6 7 8 9 10\n255 256 257 258 319\n' >tokens.txt
if expect_ok "logits on the trained directory" -- \
  "$EXATRAIN" logits --hf "$T/run/final" --input tokens.txt --output logits.safetensors; then
  "$PY" - logits.safetensors <<'EOF' && pass "logits tensor is F32 [3, 5, 320] and finite" ||
import sys
import numpy as np
from safetensors import safe_open
with safe_open(sys.argv[1], framework="np") as f:
    assert list(f.keys()) == ["logits"], f.keys()
    s = f.get_slice("logits")
    assert s.get_shape() == [3, 5, 320], s.get_shape()
    assert s.get_dtype() == "F32", s.get_dtype()
    assert np.isfinite(f.get_tensor("logits")).all()
EOF
    fail "logits tensor is F32 [3, 5, 320] and finite" "see the Python error above"
  # The same input gives the same logits, whatever the thread count.
  if expect_ok "logits again with --threads 1" -- \
    "$EXATRAIN" logits --hf "$T/run/final" --input tokens.txt --output logits1.safetensors --threads 1; then
    "$PY" - logits.safetensors logits1.safetensors <<'EOF' && pass "logits agree across thread counts" ||
import sys
import numpy as np
from safetensors.numpy import load_file
a, b = (load_file(p)["logits"] for p in sys.argv[1:3])
assert np.allclose(a, b, rtol=1e-4, atol=1e-4), np.abs(a - b).max()
EOF
      fail "logits agree across thread counts" "see the Python error above"
  fi
fi

echo
if ((failures > 0)); then
  echo "# $failures case(s) failed"
  exit 1
fi
echo "# all cases passed"
