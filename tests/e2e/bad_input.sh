#!/usr/bin/env bash
# Every class of bad input gets exit code 1 and ONE clear line on stderr:
#   exatrain: error: <where>: <what>, expected vs found, (did you mean ...)
# and never a crash, a hang, a backtrace or a half-written run directory.
#
#   EXATRAIN_SOURCE_DIR=/path/to/repo bash tests/e2e/bad_input.sh /path/to/exatrain
#
set -u
HERE=$(cd "$(dirname "$0")" && pwd)  # before any cd: lib.sh lives here

EXATRAIN=$(realpath "${1:?usage: bad_input.sh /path/to/exatrain}")
SRC=$(realpath "${EXATRAIN_SOURCE_DIR:?set EXATRAIN_SOURCE_DIR to the repository root}")
PY=${EXATRAIN_PYTHON:-$SRC/.venv/bin/python}   # only to write corrupt safetensors fixtures
TIMEOUT=${EXATRAIN_TEST_TIMEOUT:-300}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
ulimit -c 0   # a crash shows up as a signal exit code, not as a core file in the temp dir

# Shared helpers: pass/fail/run/expect_ok/expect_fail/expect_absent.
source "$HERE/lib.sh"

# A run config: the tiny preset, 2 tiny steps, then whatever lines are piped in.
# Usage: run_config FILE <<'EOF' ... EOF
run_config() {
  {
    echo 'model: {preset: tiny}'
    echo 'train: {steps: 2, global_batch: 2, micro_batch: 2, seq_len: 16}'
    echo 'log: {sample_tokens: 0}'
    cat
  } >"$1"
}

# uint32 little-endian ids, N copies of id 1.
ones() { local i; for ((i = 0; i < $1; i++)); do printf '\x01\x00\x00\x00'; done; }

echo "# exatrain: $EXATRAIN"
echo "# temp dir: $T"
touch "$T/file"   # a regular file, used as a "parent directory" that cannot hold anything
cat >"$T/base.yaml" <<'EOF'
model: {preset: tiny}
train: {steps: 5}
EOF

# ---------------------------------------------------------------------------------------------
# Config files that cannot be read
# ---------------------------------------------------------------------------------------------
expect_fail "missing config file" "cannot read config file" "nothere.yaml" "No such file" -- \
  "$EXATRAIN" config show nothere.yaml

if [[ $(id -u) -eq 0 ]]; then
  pass "unreadable config file - skipped (root)"
else
  cp base.yaml unreadable.yaml && chmod 000 unreadable.yaml
  expect_fail "unreadable config file" "unreadable.yaml" "Permission denied" -- \
    "$EXATRAIN" config show unreadable.yaml
fi

mkdir cfgdir
expect_fail "directory given as config" "config 'cfgdir' is a directory" -- \
  "$EXATRAIN" config show cfgdir

# ---------------------------------------------------------------------------------------------
# YAML syntax and structure
# ---------------------------------------------------------------------------------------------
printf 'model: {preset: tiny\ntrain: [1,\n' >unclosed.yaml
expect_fail "invalid YAML (unclosed bracket)" "unclosed.yaml:2:6:" "invalid YAML" -- \
  "$EXATRAIN" config show unclosed.yaml

printf -- '- 1\n- 2\n' >list.yaml
expect_fail "config that is a list" "list.yaml:1:1:" "must be a mapping" "found a list" -- \
  "$EXATRAIN" config show list.yaml

cat >dup.yaml <<'EOF'
model: {preset: tiny}
train:
  steps: 5
  steps: 6
EOF
expect_fail "duplicate key in a mapping" "dup.yaml:4:3:" "'steps' appears twice" -- \
  "$EXATRAIN" config show dup.yaml

cat >dup_section.yaml <<'EOF'
model: {preset: tiny}
train: {steps: 5}
train: {seed: 1}
EOF
expect_fail "duplicate section" "dup_section.yaml:3:1:" "'train' appears twice" -- \
  "$EXATRAIN" config show dup_section.yaml

cat >multi_doc.yaml <<'EOF'
model: {preset: tiny}
train: {steps: 5}
---
train: {steps: 6}
EOF
expect_fail "several YAML documents in one file" "multi_doc.yaml:4:1:" "holds 2 YAML documents" -- \
  "$EXATRAIN" config show multi_doc.yaml

printf 'model: {preset: tiny}\ntrain: {steps: ~}\n' >null_value.yaml
expect_fail "null value" "null_value.yaml:2:16:" "train.steps" "found nothing (null)" -- \
  "$EXATRAIN" config show null_value.yaml

# Anchors and aliases are refused before yaml-cpp builds its node graph (which crashed on a
# self-reference and expanded "billion laughs" to gigabytes); the address space is capped so a
# regression fails fast.
printf 'model: {preset: tiny}\nx: &a [*a]\n' >alias_self.yaml
expect_fail "self-referencing YAML alias" "alias_self.yaml:2:4:" "YAML anchors (&a) are not supported" \
  "write the value out in full" -- \
  "$EXATRAIN" config show alias_self.yaml
{
  echo 'model: {preset: tiny}'
  echo 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
  prev=a
  for c in b c d e f g h i j k l m n o p q r s; do
    echo "$c: &$c [*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev,*$prev]"
    prev=$c
  done
} >laughs.yaml
expect_fail "YAML alias bomb (billion laughs)" "laughs.yaml:2:4:" "YAML anchors (&a) are not supported" -- \
  bash -c 'ulimit -v 4000000 && exec "$@"' _ "$EXATRAIN" config show laughs.yaml
printf 'model: {preset: tiny}\ntrain: {steps: *n}\n' >alias_only.yaml
expect_fail "YAML alias" "alias_only.yaml:2:16:" "YAML aliases (*name) are not supported" -- \
  "$EXATRAIN" config show alias_only.yaml
printf 'model: {preset: tiny}\nlog: {sample_prompt: "&a *b"}  # &c *d\n' >amp_in_string.yaml
expect_ok "& and * inside a string and a comment are text" 'sample_prompt: "&a *b"' -- \
  "$EXATRAIN" config show amp_in_string.yaml

# yaml-cpp 0.7 let a quoted string run to the end of the file when a line break came first: the
# keys below it vanished into the string and the run used defaults (exit 0).
printf 'model: {preset: tiny}\nlog:\n  sample_prompt: "Hello\ntrain:\n  steps: 9\n' >open_quote.yaml
expect_fail "unterminated double quote" "open_quote.yaml:3:18:" \
  "the double-quoted string that opens here is never closed" "add the closing \"" -- \
  "$EXATRAIN" config show open_quote.yaml
printf "model: {preset: tiny}\nlog: {level: 'info}\ntrain: {steps: 9}\n" >open_quote1.yaml
expect_fail "unterminated single quote in a flow mapping" "open_quote1.yaml:2:14:" \
  "the single-quoted string that opens here is never closed" -- \
  "$EXATRAIN" config show open_quote1.yaml

# ---------------------------------------------------------------------------------------------
# Unknown keys
# ---------------------------------------------------------------------------------------------
cat >unknown_top.yaml <<'EOF'
model: {preset: tiny}
trian: {steps: 5}
EOF
expect_fail "unknown top-level key" "unknown_top.yaml:2:1:" "unknown key 'trian'" \
  "did you mean 'train'?" "valid keys: model, parallel, train" -- \
  "$EXATRAIN" config show unknown_top.yaml

cat >unknown_flow.yaml <<'EOF'
model: {preset: tiny}
train: {stpes: 5}
EOF
expect_fail "unknown nested key (flow)" "unknown_flow.yaml:2:9:" "unknown key 'train.stpes'" \
  "did you mean 'steps'?" "valid keys in train: steps" -- \
  "$EXATRAIN" config show unknown_flow.yaml

cat >unknown_block.yaml <<'EOF'
model: {preset: tiny}
train:
  stpes: 5
EOF
expect_fail "unknown nested key (block)" "unknown_block.yaml:3:3:" "unknown key 'train.stpes'" \
  "did you mean 'steps'?" -- \
  "$EXATRAIN" config show unknown_block.yaml

# ---------------------------------------------------------------------------------------------
# Wrong types
# ---------------------------------------------------------------------------------------------
printf 'model: {preset: tiny}\ntrain: {steps: many}\n' >t_string.yaml
expect_fail "string for an int" "t_string.yaml:2:16:" "train.steps" "expected an integer" "found 'many'" -- \
  "$EXATRAIN" config show t_string.yaml

printf 'model: {preset: tiny}\ntrain: {steps: "5"}\n' >t_quoted.yaml
expect_fail "quoted number for an int" "t_quoted.yaml:2:16:" "train.steps" "found the string '5'" -- \
  "$EXATRAIN" config show t_quoted.yaml

printf 'model: {preset: tiny}\ntrain: {steps: [5]}\n' >t_list.yaml
expect_fail "list for a scalar" "t_list.yaml:2:16:" "train.steps" "expected an integer >= 1" "found a list" -- \
  "$EXATRAIN" config show t_list.yaml

printf 'model: {preset: tiny}\ntrain: {steps: {a: 1}}\n' >t_map.yaml
expect_fail "mapping for a scalar" "t_map.yaml:2:16:" "train.steps" "found a mapping" -- \
  "$EXATRAIN" config show t_map.yaml

printf 'model: {preset: tiny}\noptimizer: {decay_norms: yes}\n' >t_bool.yaml
expect_fail "bool given 'yes'" "t_bool.yaml:2:26:" "optimizer.decay_norms" "expected true or false" "found 'yes'" -- \
  "$EXATRAIN" config show t_bool.yaml

printf 'model: {preset: tiny}\ntrain: 5\n' >t_section.yaml
expect_fail "scalar for a section" "t_section.yaml:2:8:" "train: expected a section" "found a scalar" -- \
  "$EXATRAIN" config show t_section.yaml

# ---------------------------------------------------------------------------------------------
# Out of range, invalid choices
# ---------------------------------------------------------------------------------------------
printf 'model: {preset: tiny}\ntrain: {steps: 99999999999999999999}\n' >t_overflow.yaml
expect_fail "integer overflow" "t_overflow.yaml:2:16:" "train.steps" "found '99999999999999999999'" -- \
  "$EXATRAIN" config show t_overflow.yaml

printf 'model: {preset: tiny}\noptimizer: {lr: .nan}\n' >t_nan.yaml
expect_fail "NaN for a float" "t_nan.yaml:2:17:" "optimizer.lr" "found '.nan'" -- \
  "$EXATRAIN" config show t_nan.yaml

printf 'model: {preset: tiny, layer_types: full_attention}\n' >t_not_list.yaml
expect_fail "scalar for a list" "t_not_list.yaml:1:36:" "model.layer_types" "expected a list of strings" "found a scalar" -- \
  "$EXATRAIN" config show t_not_list.yaml

printf 'model: {preset: tiny}\ntrain: {steps: 0}\n' >r_steps.yaml
expect_fail "steps: 0" "r_steps.yaml:2:16:" "train.steps" "expected an integer >= 1" "found 0" -- \
  "$EXATRAIN" config show r_steps.yaml

printf 'model: {preset: tiny}\noptimizer: {lr: -1}\n' >r_lr.yaml
expect_fail "optimizer.lr: -1" "r_lr.yaml:2:17:" "optimizer.lr" "expected a number > 0" "found -1" -- \
  "$EXATRAIN" config show r_lr.yaml

printf 'model: {preset: tiny}\noptimizer: {beta2: 1.5}\n' >r_beta2.yaml
expect_fail "optimizer.beta2: 1.5" "r_beta2.yaml:2:20:" "optimizer.beta2" "between 0 and" "found 1.5" -- \
  "$EXATRAIN" config show r_beta2.yaml

printf 'model: {preset: tiny}\ntrain: {precision: fp16}\n' >c_precision.yaml
expect_fail "precision: fp16" "c_precision.yaml:2:20:" "train.precision" "expected one of fp32, bf16" "found 'fp16'" -- \
  "$EXATRAIN" config show c_precision.yaml

printf 'model: {preset: tiny}\nschedule: {type: cosin}\n' >c_schedule.yaml
expect_fail "schedule type typo" "c_schedule.yaml:2:18:" "schedule.type" "constant, cosine, wsd" \
  "found 'cosin'" "did you mean 'cosine'?" -- \
  "$EXATRAIN" config show c_schedule.yaml

expect_fail "log.level not a level" "--set log.level=verbose" "'verbose'" "debug, info, warn, error" -- \
  "$EXATRAIN" config show base.yaml --set log.level=verbose

printf 'model: {preset: tinny}\n' >c_preset.yaml
expect_fail "unknown preset" "c_preset.yaml:1:17: model.preset:" "unknown model preset 'tinny'" \
  "did you mean 'tiny'?" "built-in presets: exaone4-1.2b, exaone4-32b, small, tiny" -- \
  "$EXATRAIN" config show c_preset.yaml

printf 'model: {preset: /nonexistent/preset.yaml}\n' >c_preset_path.yaml
expect_fail "preset path missing" "c_preset_path.yaml:1:17: model.preset:" "/nonexistent/preset.yaml" \
  "No such file" -- \
  "$EXATRAIN" config show c_preset_path.yaml

printf 'model: {preset: c_preset_self.yaml}\n' >c_preset_self.yaml
expect_fail "preset naming a run config" "c_preset_self.yaml:1:17:" "a preset cannot name another preset" -- \
  "$EXATRAIN" config show c_preset_self.yaml

expect_fail "unknown preset (model info)" "unknown model preset 'tinny'" "did you mean 'tiny'?" -- \
  "$EXATRAIN" model info --preset tinny

# ---------------------------------------------------------------------------------------------
# Inconsistent combinations
# ---------------------------------------------------------------------------------------------
expect_fail "num_heads % num_kv_heads (--set)" "--set model.num_kv_heads=3" \
  "num_heads (4) must be a multiple of num_kv_heads (3)" -- \
  "$EXATRAIN" config show base.yaml --set model.num_kv_heads=3

printf 'model: {preset: tiny, num_kv_heads: 3}\n' >x_kv.yaml
expect_fail "num_heads % num_kv_heads (file)" "x_kv.yaml:1:37:" "model.num_kv_heads" \
  "num_heads (4) must be a multiple of num_kv_heads (3)" -- \
  "$EXATRAIN" config show x_kv.yaml

printf 'model: {preset: tiny, layer_types: [sliding_attention, full_attention]}\n' >x_lt_len.yaml
expect_fail "layer_types length != num_layers" "x_lt_len.yaml:1:" "model.layer_types" \
  "has 2 entries but num_layers is 4" -- \
  "$EXATRAIN" config show x_lt_len.yaml

printf 'model: {preset: tiny, layer_types: [sliding_attention, full_attention, sliding_attention, global]}\n' >x_lt_bad.yaml
expect_fail "layer_types invalid entry" "x_lt_bad.yaml:1:" "model.layer_types" "'global'" \
  "expected sliding_attention or full_attention" -- \
  "$EXATRAIN" config show x_lt_bad.yaml

cat >x_lt_window.yaml <<'EOF'
model:
  preset: tiny
  sliding_window: 0
  layer_types: [full_attention, sliding_attention, full_attention, full_attention]
EOF
expect_fail "sliding_attention with sliding_window 0" "x_lt_window.yaml:" "model.layer_types" \
  "entry 1 is sliding_attention but sliding_window is 0" -- \
  "$EXATRAIN" config show x_lt_window.yaml

printf 'model: {preset: tiny, hidden_size: 130, head_dim: 0}\n' >x_head_dim.yaml
# The location is the user's hidden_size, not the embedded preset's num_heads.
expect_fail "hidden_size not divisible by num_heads (file)" "x_head_dim.yaml:1:36: model.hidden_size:" \
  "hidden_size (130) is not divisible by num_heads (4)" "head_dim" -- \
  "$EXATRAIN" config show x_head_dim.yaml

expect_fail "hidden_size not divisible by num_heads (--set)" \
  "hidden_size (130) is not divisible by num_heads (4)" "head_dim" -- \
  "$EXATRAIN" config show base.yaml --set model.head_dim=0 --set model.hidden_size=130

printf 'model: {preset: tiny}\ntrain: {global_batch: 10, micro_batch: 4}\n' >x_batch.yaml
expect_fail "global_batch not a multiple of micro_batch" "x_batch.yaml:2:" "train.global_batch" \
  "10 is not a multiple of train.micro_batch (4)" -- \
  "$EXATRAIN" config show x_batch.yaml

printf 'model: {preset: tiny, pad_token_id: 320}\n' >x_pad.yaml
expect_fail "pad_token_id >= vocab_size" "x_pad.yaml:1:37:" "model.pad_token_id" \
  "320 must be below vocab_size (320)" -- \
  "$EXATRAIN" config show x_pad.yaml

printf 'model: {preset: tiny}\ntrain: {seq_len: 2048}\n' >x_seq.yaml
expect_fail "seq_len > max_position_embeddings" "x_seq.yaml:2:18:" "train.seq_len" \
  "2048 exceeds model.max_position_embeddings (1024)" -- \
  "$EXATRAIN" config show x_seq.yaml

printf 'model: {preset: tiny}\ntrain: {steps: 5}\nschedule: {warmup_steps: 6}\n' >x_warmup.yaml
expect_fail "warmup_steps > steps" "x_warmup.yaml:3:26:" "schedule.warmup_steps" "6 exceeds train.steps (5)" -- \
  "$EXATRAIN" config show x_warmup.yaml

# ---------------------------------------------------------------------------------------------
# --set
# ---------------------------------------------------------------------------------------------
expect_fail "--set without '='" "--set train.steps:" "expected KEY.PATH=VALUE" -- \
  "$EXATRAIN" config show base.yaml --set train.steps

expect_fail "--set unknown key" "--set train.stpes=3:" "unknown key 'train.stpes'" "did you mean 'steps'?" -- \
  "$EXATRAIN" config show base.yaml --set train.stpes=3

expect_fail "--set a section to a scalar" "--set train=5:" "train: expected a section" "found a scalar" -- \
  "$EXATRAIN" config show base.yaml --set train=5

expect_fail "--set out of range (model info)" "--set model.num_layers=0:" "model.num_layers" \
  "expected an integer between 1 and 10000, found 0" -- \
  "$EXATRAIN" model info --config base.yaml --set model.num_layers=0

# Command-line usage errors (from CLI11) get the same one-line form and exit code.
expect_fail "unknown command-line option" "--bogus" "--help" -- \
  "$EXATRAIN" config show base.yaml --bogus

expect_fail "missing positional argument" "CONFIG is required" "--help" -- \
  "$EXATRAIN" train

expect_fail "--set without a value" "--set" "--help" -- \
  "$EXATRAIN" config show base.yaml --set

expect_fail "non-numeric --threads" "--threads" "abc" -- \
  "$EXATRAIN" logits --hf x --input y --output z --threads abc

expect_fail "no subcommand" "subcommand is required" "--help" -- \
  "$EXATRAIN"

# ---------------------------------------------------------------------------------------------
# A failed train with a config error writes nothing
# ---------------------------------------------------------------------------------------------
expect_fail "train: bad config" "t_string.yaml:2:16:" "train.steps" -- \
  "$EXATRAIN" train t_string.yaml --run-dir "$T/run_bad_config"
expect_absent "train: bad config leaves no run dir" "$T/run_bad_config"

expect_fail "train: bad --set" "--set train.stpes=3:" -- \
  "$EXATRAIN" train base.yaml --run-dir "$T/run_bad_set" --set train.stpes=3
expect_absent "train: bad --set leaves no run dir" "$T/run_bad_set"

expect_fail "train: device cuda without a GPU" "train.device: cuda, but this machine has no usable CUDA device" -- \
  "$EXATRAIN" train base.yaml --run-dir "$T/run_cuda" --set train.device=cuda --set data.path=x.txt
expect_absent "train: device cuda leaves no run dir" "$T/run_cuda"

expect_fail "train: no data" "no training data: list prepared datasets" -- \
  "$EXATRAIN" train base.yaml --run-dir "$T/run_no_data"
expect_absent "train: no data leaves no run dir" "$T/run_no_data"

expect_fail "train: tp=2 on one rank" "parallel.tp (2) x parallel.pp (1) = 2 does not divide the job's 1 ranks" \
  "launch a multiple of 2 ranks" -- \
  "$EXATRAIN" train base.yaml --run-dir "$T/run_tp" --set parallel.tp=2
expect_absent "train: tp=2 on one rank leaves no run dir" "$T/run_tp"
expect_fail "train: explicit dp that does not fit" "parallel.tp (1) x parallel.pp (1) x parallel.dp (2) = 2" \
  "the job has 1 ranks" -- \
  "$EXATRAIN" train base.yaml --run-dir "$T/run_dp" --set parallel.dp=2 --set train.micro_batch=4
expect_fail "train: pipeline stages exceed layers" "4 pipeline stages but only 2 layers" -- \
  "$EXATRAIN" train base.yaml --run-dir "$T/run_pp" --set parallel.pp=4 --set model.num_layers=2 --set parallel.dp=1

# ---------------------------------------------------------------------------------------------
# Training data
# ---------------------------------------------------------------------------------------------
run_config d_missing.yaml <<'EOF'
data: {path: nothere.bin, format: tokens}
EOF
expect_fail "data file missing" "cannot read data file '$T/nothere.bin'" "No such file" -- \
  "$EXATRAIN" train d_missing.yaml --run-dir "$T/run_d_missing"
expect_absent "train: data file missing leaves no run dir" "$T/run_d_missing"

{ ones 4; printf '\x02\x00\x00'; } >odd.bin
run_config d_odd.yaml <<'EOF'
data: {path: odd.bin, format: tokens}
EOF
expect_fail "token file size not a multiple of 4" "odd.bin" "has 19 bytes, not a multiple of 4" -- \
  "$EXATRAIN" train d_odd.yaml --run-dir "$T/run_d_odd"

{ ones 40; printf '\x40\x01\x00\x00'; } >big_id.bin   # id 320 = 0x140 at token 40
run_config d_big_id.yaml <<'EOF'
data: {path: big_id.bin, format: tokens}
EOF
expect_fail "token id >= vocab_size" "big_id.bin" "id 320 at token 40 (byte offset 160)" \
  "not below model.vocab_size (320)" -- \
  "$EXATRAIN" train d_big_id.yaml --run-dir "$T/run_d_big_id"

ones 16 >short.bin   # seq_len 16 needs 17 tokens
run_config d_short.yaml <<'EOF'
data: {path: short.bin, format: tokens}
EOF
expect_fail "data shorter than one window" "short.bin" "holds 16 tokens" "one training window of 17" -- \
  "$EXATRAIN" train d_short.yaml --run-dir "$T/run_d_short"

printf 'hello' >short.txt
run_config d_short_text.yaml <<'EOF'
data: {path: short.txt, format: text}
EOF
expect_fail "text data shorter than one window" "short.txt" "holds 5 tokens" "one training window of 17" -- \
  "$EXATRAIN" train d_short_text.yaml --run-dir "$T/run_d_short_text"

head -c 4096 "$SRC/data/corpora/kjv-genesis.txt" >genesis.txt
run_config d_text.yaml <<'EOF'
data: {path: genesis.txt, format: text}
EOF
expect_fail "text data with vocab_size < 256" "is text (byte ids 0-255) but model.vocab_size is 200" -- \
  "$EXATRAIN" train d_text.yaml --run-dir "$T/run_d_vocab" --set model.vocab_size=200 \
  --set model.pad_token_id=0 --set model.bos_token_id=1 --set model.eos_token_id=2

expect_fail "run dir under a regular file" "cannot create run directory" "file/run" "Not a directory" -- \
  "$EXATRAIN" train d_text.yaml --run-dir file/run

# A model too large for memory is refused before anything is allocated (the address space is
# also capped, so a regression fails fast instead of meeting the OOM killer).
expect_fail "model too large for memory" "32003216384 parameters" "GiB available" -- \
  bash -c 'ulimit -v 4000000 && exec "$@"' _ \
  "$EXATRAIN" train d_text.yaml --run-dir "$T/run_too_big" --set model.preset=exaone4-32b \
  --set model.pad_token_id=0

# train.device: auto on a job that asked for GPUs but has none usable: an error, not a silent CPU
# run (this machine has no GPU: exactly that case). A CPU job (--gpus-per-node=0) and
# train.device: cpu still run.
expect_fail "device auto, GPUs asked for (CUDA_VISIBLE_DEVICES) but none usable" "train.device" \
  "this job asked for GPUs (CUDA_VISIBLE_DEVICES=0,1)" "set train.device: cpu" -- \
  env CUDA_VISIBLE_DEVICES=0,1 "$EXATRAIN" train d_text.yaml --run-dir "$T/run_gpu_asked" --set train.steps=1
expect_fail "device auto, GPUs asked for (SLURM_GPUS_PER_NODE=h100:8)" "SLURM_GPUS_PER_NODE=h100:8" -- \
  env SLURM_GPUS_PER_NODE=h100:8 "$EXATRAIN" train d_text.yaml --run-dir "$T/run_gpu_asked2" --set train.steps=1
expect_absent "device auto, GPUs asked for: no run directory" "$T/run_gpu_asked"
if env SLURM_GPUS_PER_NODE=0 CUDA_VISIBLE_DEVICES=-1 "$EXATRAIN" train d_text.yaml --run-dir "$T/run_gpu_zero" \
     --set train.steps=1 --set log.sample_tokens=0 --set checkpoint.save_final=false >/dev/null 2>&1 \
   && env CUDA_VISIBLE_DEVICES=0 "$EXATRAIN" train d_text.yaml --run-dir "$T/run_gpu_cpu" --set train.device=cpu \
     --set train.steps=1 --set log.sample_tokens=0 --set checkpoint.save_final=false >/dev/null 2>&1; then
  pass "a CPU job (SLURM_GPUS_PER_NODE=0) and train.device: cpu with GPUs asked for both run"
else
  fail "CPU job / train.device: cpu" "one of them did not run"
fi

# A failed train must not clobber an existing run: keep its log and resolved config.
mkdir -p existing_run
echo "log of an earlier run" >existing_run/train.log
echo "config of an earlier run" >existing_run/config.resolved.yaml
expect_fail "train into an existing run dir, bad data" "cannot read data file" -- \
  "$EXATRAIN" train d_missing.yaml --run-dir existing_run
if [[ $(cat existing_run/train.log existing_run/config.resolved.yaml) == \
  $'log of an earlier run\nconfig of an earlier run' ]]; then
  pass "failed train keeps an existing run's files"
else
  fail "failed train keeps an existing run's files" "train.log / config.resolved.yaml were overwritten"
fi

# ---------------------------------------------------------------------------------------------
# Hugging Face directories (logits)
# ---------------------------------------------------------------------------------------------
expect_ok "fixture: train the tiny demo for 2 steps" -- \
  "$EXATRAIN" train "$SRC/configs/train/tiny-demo.yaml" --run-dir "$T/run" \
  --set train.steps=2 --set schedule.warmup_steps=0 --set log.sample_tokens=0
HF=$T/run/final
printf '1 2 3 4\n5 6 7 8\n' >tokens.txt
expect_ok "fixture: logits on the trained directory" -- \
  "$EXATRAIN" logits --hf "$HF" --input tokens.txt --output ok.safetensors

# copy_hf NAME: a fresh copy of the trained directory to corrupt.
copy_hf() { rm -rf "${T:?}/${1:?}"; cp -r "$HF" "$T/$1"; }

# rewrite_weights NAME PYTHON: copy_hf, then run PYTHON on the dict `w` of numpy arrays.
rewrite_weights() {
  copy_hf "$1"
  "$PY" - "$HF/model.safetensors" "$T/$1/model.safetensors" "$2" <<'EOF' ||
import sys
import numpy as np
from safetensors.numpy import load_file, save_file
w = load_file(sys.argv[1])
exec(sys.argv[3])
save_file(w, sys.argv[2])
EOF
    fail "fixture $1" "$PY could not rewrite the safetensors file"
}

copy_hf hf_no_config
rm hf_no_config/config.json
expect_fail "HF: config.json missing" "hf_no_config/config.json" "not found" "needs a config.json" -- \
  "$EXATRAIN" logits --hf hf_no_config --input tokens.txt --output out.safetensors

copy_hf hf_bad_json
printf '{"model_type": "exaone4",\n' >hf_bad_json/config.json
expect_fail "HF: config.json invalid JSON" "hf_bad_json/config.json" "invalid JSON" "line 2, column 1" -- \
  "$EXATRAIN" logits --hf hf_bad_json --input tokens.txt --output out.safetensors

# A number beyond a double (nlohmann's out_of_range 406) used to be an "internal error" naming
# no file; now the file, line and column.
copy_hf hf_overflow
sed -i 's/"rms_norm_eps": [^,]*/"rms_norm_eps": 1e999/' hf_overflow/config.json
expect_fail "HF: config.json number overflow" "hf_overflow/config.json: invalid JSON" \
  "number overflow parsing '1e999' at line" -- \
  "$EXATRAIN" logits --hf hf_overflow --input tokens.txt --output out.safetensors

copy_hf hf_llama
sed -i 's/"model_type": "exaone4"/"model_type": "llama"/' hf_llama/config.json
expect_fail "HF: model_type llama" "hf_llama/config.json" "model_type is 'llama'" "exaone4" -- \
  "$EXATRAIN" logits --hf hf_llama --input tokens.txt --output out.safetensors

rewrite_weights hf_missing_tensor "del w['model.layers.2.mlp.up_proj.weight']"
expect_fail "HF: missing tensor" "hf_missing_tensor" "'model.layers.2.mlp.up_proj.weight' is missing" \
  "[384, 128]" -- \
  "$EXATRAIN" logits --hf hf_missing_tensor --input tokens.txt --output out.safetensors

rewrite_weights hf_bad_shape "w['model.layers.1.self_attn.k_proj.weight'] = np.zeros((128, 128), np.float32)"
expect_fail "HF: tensor with a wrong shape" "hf_bad_shape/model.safetensors" \
  "'model.layers.1.self_attn.k_proj.weight' has shape [128, 128]" "config.json implies [64, 128]" -- \
  "$EXATRAIN" logits --hf hf_bad_shape --input tokens.txt --output out.safetensors

rewrite_weights hf_int_dtype "w['model.norm.weight'] = np.ones((128,), np.int32)"
expect_fail "HF: tensor with dtype I32" "hf_int_dtype/model.safetensors" \
  "tensor 'model.norm.weight' has dtype I32" "expected F32" -- \
  "$EXATRAIN" logits --hf hf_int_dtype --input tokens.txt --output out.safetensors

copy_hf hf_trunc_data
truncate -s 1000000 hf_trunc_data/model.safetensors
expect_fail "HF: safetensors truncated in the data" "hf_trunc_data/model.safetensors" \
  "reach past the end of the data section" "truncated" -- \
  "$EXATRAIN" logits --hf hf_trunc_data --input tokens.txt --output out.safetensors

copy_hf hf_trunc_header
truncate -s 100 hf_trunc_header/model.safetensors
expect_fail "HF: safetensors truncated in the header" "hf_trunc_header/model.safetensors" \
  "truncated: header says" "the file has 100" -- \
  "$EXATRAIN" logits --hf hf_trunc_header --input tokens.txt --output out.safetensors

copy_hf hf_trunc_tiny
truncate -s 4 hf_trunc_tiny/model.safetensors
expect_fail "HF: safetensors shorter than its length field" "hf_trunc_tiny/model.safetensors" \
  "fewer than the 8-byte header length" -- \
  "$EXATRAIN" logits --hf hf_trunc_tiny --input tokens.txt --output out.safetensors

copy_hf hf_no_weights
rm hf_no_weights/model.safetensors
expect_fail "HF: no safetensors file" "hf_no_weights" "no model.safetensors or model.safetensors.index.json" -- \
  "$EXATRAIN" logits --hf hf_no_weights --input tokens.txt --output out.safetensors

# The tensors must fill the data section exactly, as the safetensors library requires. A header
# length a few bytes short still parses (only the padding is cut) and used to shift every tensor
# (all-NaN logits); bytes after the last tensor went unnoticed. The library is the judge here.
copy_hf hf_short_len
"$PY" - hf_short_len/model.safetensors <<'EOF' || fail "fixture hf_short_len" "could not rewrite the file"
import json, struct, sys
path = sys.argv[1]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
text = json.dumps(json.loads(raw[8:8 + n]))
open(path, "wb").write(struct.pack("<Q", len(text) + 5) + (text + " " * 8).encode() + raw[8 + n:])
EOF
if "$PY" -c 'import sys; from safetensors import safe_open; safe_open(sys.argv[1], "np")' \
  hf_short_len/model.safetensors 2>/dev/null; then
  fail "judge: safetensors refuses a header length 3 bytes short" "the Python library accepted it"
else
  pass "judge: safetensors refuses a header length 3 bytes short"
fi
expect_fail "HF: header length 3 bytes short" "hf_short_len/model.safetensors" "3 bytes after the last tensor" \
  "header length is wrong" -- \
  "$EXATRAIN" logits --hf hf_short_len --input tokens.txt --output out.safetensors

copy_hf hf_trailing
printf 'trailing bytes' >>hf_trailing/model.safetensors
expect_fail "HF: bytes after the last tensor" "hf_trailing/model.safetensors" "14 bytes after the last tensor" -- \
  "$EXATRAIN" logits --hf hf_trailing --input tokens.txt --output out.safetensors

# tie_word_embeddings: true (the tiny preset) with a stored lm_head.weight: transformers ties them
# only when they are equal; when they differ it keeps both, so exatrain refuses rather than tie.
rewrite_weights hf_tied_head_differs "w['lm_head.weight'] = w['model.embed_tokens.weight'] * 2"
expect_fail "HF: tied config with a different lm_head.weight" "hf_tied_head_differs/model.safetensors" \
  "tie_word_embeddings: true, but lm_head.weight is stored and differs" \
  "set \"tie_word_embeddings\": false in config.json" -- \
  "$EXATRAIN" logits --hf hf_tied_head_differs --input tokens.txt --output out.safetensors
rewrite_weights hf_tied_head_equal "w['lm_head.weight'] = w['model.embed_tokens.weight'].copy()"
if expect_ok "HF: tied config with an equal lm_head.weight" -- \
  "$EXATRAIN" logits --hf hf_tied_head_equal --input tokens.txt --output tied_equal.safetensors; then
  if cmp -s ok.safetensors tied_equal.safetensors; then pass "HF: an equal lm_head.weight gives the tied logits"
  else fail "HF: an equal lm_head.weight gives the tied logits" "tied_equal.safetensors differs from ok.safetensors"; fi
fi

# ---------------------------------------------------------------------------------------------
# Token input and output of logits
# ---------------------------------------------------------------------------------------------
printf '1 2 3\n4 320 6\n' >tok_big.txt
expect_fail "tokens: id >= vocab size" "tok_big.txt:2:" "token id 320 is not below the vocabulary size (320)" -- \
  "$EXATRAIN" logits --hf "$HF" --input tok_big.txt --output out.safetensors

printf '1 2 3\n4 5\n' >tok_ragged.txt
expect_fail "tokens: lines of different lengths" "tok_ragged.txt:2:" "line has 2 tokens but line 1 has 3" -- \
  "$EXATRAIN" logits --hf "$HF" --input tok_ragged.txt --output out.safetensors

printf '1 2 3\n4 x 6\n' >tok_word.txt
expect_fail "tokens: non-numeric token" "tok_word.txt:2:" "'x' is not a token id" -- \
  "$EXATRAIN" logits --hf "$HF" --input tok_word.txt --output out.safetensors

printf '1 2 3\n4 -1 6\n' >tok_negative.txt
expect_fail "tokens: negative token" "tok_negative.txt:2:" "'-1' is not a token id" -- \
  "$EXATRAIN" logits --hf "$HF" --input tok_negative.txt --output out.safetensors

printf '1 2 3\n4 99999999999999999999 6\n' >tok_huge.txt
expect_fail "tokens: id overflowing 64 bits" "tok_huge.txt:2:" "'99999999999999999999' is not a token id" -- \
  "$EXATRAIN" logits --hf "$HF" --input tok_huge.txt --output out.safetensors

: >tok_empty.txt
expect_fail "tokens: empty file" "tok_empty.txt" "has no lines of token ids" -- \
  "$EXATRAIN" logits --hf "$HF" --input tok_empty.txt --output out.safetensors

expect_fail "tokens: missing file" "cannot read token file" "nothere.txt" "No such file" -- \
  "$EXATRAIN" logits --hf "$HF" --input nothere.txt --output out.safetensors

for ((i = 0; i < 1100; i++)); do printf '5 '; done >tok_long.txt
echo >>tok_long.txt
expect_fail "tokens: longer than max_position_embeddings" "tok_long.txt" "1100 tokens" \
  "max_position_embeddings is 1024" -- \
  "$EXATRAIN" logits --hf "$HF" --input tok_long.txt --output out.safetensors

expect_absent "failed logits runs wrote no output" "$T/out.safetensors"

expect_fail "logits: output under a regular file" "file/out.safetensors" "Not a directory" -- \
  "$EXATRAIN" logits --hf "$HF" --input tokens.txt --output file/out.safetensors

mkdir out_dir
expect_fail "logits: output is a directory" "out_dir" "Is a directory" -- \
  "$EXATRAIN" logits --hf "$HF" --input tokens.txt --output out_dir

# ---------------------------------------------------------------------------------------------
# tokenizer.json, and output that cannot be written
# ---------------------------------------------------------------------------------------------
sed '0,/"id": 0,/s//"id": 1e999,/' "$SRC/tests/parity/tokenizer/genesis-bpe.json" >tok_overflow.json
expect_fail "tokenizer.json number overflow" "tok_overflow.json: not valid JSON" \
  "number overflow parsing '1e999' at line" -- \
  bash -c 'echo hello | "$@"' _ "$EXATRAIN" tokenizer encode --tokenizer tok_overflow.json
expect_fail "tokenizer encode --json: number overflow" "<stdin>:1: not a JSON string: number overflow parsing '1e999'" -- \
  bash -c 'echo 1e999 | "$@"' _ "$EXATRAIN" tokenizer encode --json --tokenizer "$SRC/tests/parity/tokenizer/genesis-bpe.json"

# Every command checks that its output arrived (stdout on a full device used to exit 0).
expect_fail "config show to a full device" "cannot write to standard output: No space left on device" -- \
  bash -c '"$@" >/dev/full' _ "$EXATRAIN" config show base.yaml
expect_fail "tokenizer decode to a full device" "cannot write to standard output: No space left on device" -- \
  bash -c 'echo 1 2 3 | "$@" >/dev/full' _ "$EXATRAIN" tokenizer decode --tokenizer "$SRC/tests/parity/tokenizer/genesis-bpe.json"
expect_fail "tokenizer encode to a full device" "cannot write to standard output: No space left on device" -- \
  bash -c 'yes "In the beginning" | head -n 20000 | "$@" >/dev/full' _ "$EXATRAIN" tokenizer encode \
  --tokenizer "$SRC/tests/parity/tokenizer/genesis-bpe.json"
# plan: unknown GPU, a bad --layout, a layout the model does not allow, a bad hardware file
expect_fail "plan: unknown GPU" "unknown GPU 'h100'" "h100-80g" -- "$EXATRAIN" plan --preset tiny --gpus 8 --gpu h100
expect_fail "plan: --layout not key=value" "--layout: 'tp8' is not key=value" -- \
  "$EXATRAIN" plan --preset tiny --gpus 8 --layout tp8
expect_fail "plan: --layout unknown key" "unknown key 'tpp'" -- "$EXATRAIN" plan --preset tiny --gpus 8 --layout tpp=2
expect_fail "plan: --layout against --gpus" "tp 2 x pp 1 x dp 2 = 4 but --gpus is 8" -- \
  "$EXATRAIN" plan --preset tiny --gpus 8 --layout tp=2,dp=2
expect_fail "plan: --layout the model does not allow" "model.num_heads (4) is not divisible by tp (8)" -- \
  "$EXATRAIN" plan --preset tiny --gpus 8 --layout tp=8
printf 'efficiency: {gemm: 0.7, attention: 0.4, link: 0.8}\ngpus:\n  x:\n    memory_gb: lots\n' >hw.yaml
expect_fail "plan: bad hardware file" "hw.yaml:4:16" "'memory_gb' is 'lots', expected a positive number" -- \
  "$EXATRAIN" plan --preset tiny --gpus 8 --gpu x --hardware hw.yaml
printf 'efficiency: {gemm: 0.7, attention: 0.4, nvlink: 0.8}\ngpus:\n  x:\n    memory_gb: 80\n' >hw.yaml
expect_fail "plan: hardware file with no network efficiency" "'network' is missing, and no 'link' default" -- \
  "$EXATRAIN" plan --preset tiny --gpus 8 --gpu x --hardware hw.yaml
expect_fail "model info to a full device" "cannot write to standard output" -- \
  bash -c '"$@" >/dev/full' _ "$EXATRAIN" model info --preset tiny
expect_fail "config keys to a full device (fails mid-way)" "cannot write to standard output" -- \
  bash -c '"$@" >/dev/full' _ "$EXATRAIN" config keys
expect_fail "--help to a full device" "cannot write to standard output" -- \
  bash -c '"$@" >/dev/full' _ "$EXATRAIN" --help
expect_fail "config show with stdout closed" "cannot write to standard output: Bad file descriptor" -- \
  bash -c '"$@" >&-' _ "$EXATRAIN" config show base.yaml

# LoRA and freezing: a target that is no linear, a freeze pattern that matches nothing
printf 'model: {preset: tiny}\nlora: {rank: 4, targets: [q_proj, qkv_proj]}\n' >lora_target.yaml
expect_fail "lora: unknown target" "lora_target.yaml:2:26:" "lora.targets" "item 2: 'qkv_proj' is not one of" \
  "did you mean 'q_proj'?" -- "$EXATRAIN" config show lora_target.yaml
printf 'model: {preset: tiny}\ntrain: {freeze: [model.embed_tokens.weight, model.layer.*]}\n' >freeze.yaml
expect_fail "train.freeze: a pattern that matches nothing" "freeze.yaml:2:17:" "train.freeze" \
  "item 2: 'model.layer.*' matches no parameter" -- "$EXATRAIN" config check freeze.yaml --ranks 1
printf 'model: {preset: tiny}\ntrain: {freeze: ["*"]}\n' >freeze_all.yaml
expect_fail "train.freeze: everything" "freeze_all.yaml" "freezes every parameter: nothing would train" -- \
  "$EXATRAIN" config check freeze_all.yaml --ranks 1
expect_fail "export --adapter-only with --verify" "--adapter-only writes the PEFT adapter only" -- \
  "$EXATRAIN" export --checkpoint nothere --output out --adapter-only --verify

echo
if ((failures > 0)); then
  echo "# $failures case(s) failed"
  exit 1
fi
echo "# all cases passed"
