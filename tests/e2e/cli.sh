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
  "tokenizer train" "data" "data prepare" "data verify" "data info" "data bench"; do
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
