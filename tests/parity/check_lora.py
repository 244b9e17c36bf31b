#!/usr/bin/env python3
"""Judge for LoRA fine-tuning: layouts equal one rank, PEFT loads the adapter, resume continues.

A random Exaone4ForCausalLM (fp32, hybrid attention, GQA 4/2, untied lm_head) saved by
transformers is the base; random multi-turn conversations (check_chat.py's generator) go through
`exatrain data prepare --format chat`. `exatrain train` fine-tunes it with LoRA (rank 4, every
target) from init.from_hf for 6 steps:
  1. on 1 rank, and on tp 2, tp 2 x pp 2, tp 2 with sequence parallelism and dp 2 ZeRO-1: the
     loss at every step within 1e-5 relative and every adapter tensor of RUN/final/adapter
     within 1e-4 relative (compare_runs.py says why fp32 layouts differ by rounding; the adapters
     start from B = 0, so their relative differences are larger than the whole model's);
  2. PEFT: PeftModel.from_pretrained(base, RUN/final/adapter) computes the same logits as
     transformers on RUN/final (exatrain's merged export) within 1e-4 max-abs, and the merged
     export differs from the base (the adapter learned: logits move by more than 1e-3);
  3. the frozen weights leave the run exactly as they came (norms, embeddings, every weight
     LoRA does not target), and the checkpoint holds no optimizer state for them;
  4. `export --adapter-only` writes the same adapter tensors as RUN/final/adapter;
  5. a run stopped at step 3 and resumed equals the 6-step run (losses, adapters) bit for bit,
     and resumed from the same checkpoint on tp 2 x pp 2 within the layout bounds of 1.;
  6. lora.dropout 0.1: tp 2 equals one rank, and recompute equals no recompute (the masks are a
     function of step, micro-batch, layer and target, so a recomputed layer draws the same one);
  7. partial fine-tuning without LoRA (train.freeze: the embedding and layer 0): tp 2 x pp 2
     equals one rank (compare_runs.py, 1e-5), and the frozen tensors leave exactly as they came;
     a pp 2 run whose first stage trains nothing, stopped at step 3 and resumed, equals one rank;
  8. bf16 LoRA (frozen linears held in bf16) trains, and its merged export loads in transformers;
  9. `exatrain generate --checkpoint` on the LoRA run (adapters merged on load) gives PEFT's
     greedy generate(do_sample=False) tokens.

check_lora.py --exatrain BIN
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, Exaone4Config, Exaone4ForCausalLM
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_chat  # noqa: E402  (the conversation generator)

SEQ = 64
MPI_ENV = dict(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **MPI_ENV), **kw)
    if proc.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd[:6])} ... exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def losses(run_dir):
    return [json.loads(line)["loss"] for line in open(os.path.join(run_dir, "metrics.jsonl")) if "loss" in line]


def adapter(run_dir):
    return load_file(os.path.join(run_dir, "final", "adapter", "adapter_model.safetensors"))


def make_base(path):
    hf_logging.set_verbosity_error()
    torch.manual_seed(11)
    config = Exaone4Config(
        vocab_size=1216, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=16, sliding_window_pattern=4, tie_word_embeddings=False,
        max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    Exaone4ForCausalLM(config).to(torch.float32).save_pretrained(path)


def losses_by_step(run_dir):
    return {m["step"]: m["loss"] for m in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl"))) if "loss" in m}


def compare(name, ref_dir, got_dir, rtol=1e-5, adapter_rtol=1e-4, exact=False):
    # the steps both logged (a run resumed into a new directory logs from its checkpoint on)
    ref, got = losses_by_step(ref_dir), losses_by_step(got_dir)
    if not set(got) <= set(ref) or len(got) < 3:
        sys.exit(f"FAIL {name}: logged steps {sorted(got)}, the reference {sorted(ref)}")
    lr, lg = [ref[k] for k in sorted(got)], [got[k] for k in sorted(got)]
    worst = max(abs(a - b) / abs(a) for a, b in zip(lr, lg))
    ar, ag = adapter(ref_dir), adapter(got_dir)
    if set(ar) != set(ag):
        sys.exit(f"FAIL {name}: adapter tensors differ: {sorted(set(ar) ^ set(ag))[:4]}")
    worst_t, which = 0.0, ""
    for k in ar:
        d = ((ag[k] - ar[k]).norm() / ar[k].norm()).item()
        if d > worst_t:
            worst_t, which = d, k
    if exact and (worst != 0 or worst_t != 0):
        sys.exit(f"FAIL {name}: expected bit-identical, loss {worst:.3g}, adapter {worst_t:.3g} ({which})")
    if worst > rtol or worst_t > adapter_rtol:
        sys.exit(f"FAIL {name}: loss within {worst:.3g} (bound {rtol}), adapters within {worst_t:.3g} ({which}; bound "
                 f"{adapter_rtol})")
    print(f"ok   {name}: losses within {worst:.2e} relative, adapters within {worst_t:.2e} ({len(ar)} tensors)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exatrain", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lora-") as work:
        check(a.exatrain, work)
    print("PASS: LoRA layouts equal one rank; PEFT loads the adapter; frozen weights stay; resume continues")


def check(exe, work):
    base = os.path.join(work, "base")
    make_base(base)
    jsonl = os.path.join(work, "chat.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:
        for conv in check_chat.random_conversations(80, seed=5):
            f.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
    data = os.path.join(work, "chat")
    run([exe, "data", "prepare", "--tokenizer", check_chat.TOKENIZER, "--input", jsonl, "--format", "chat",
         "--output", data, "--name", "chat", "--license", "CC0-1.0", "--source", "check_lora.py"])
    config = os.path.join(work, "lora.yaml")
    with open(config, "w") as f:
        f.write(f"""init: {{from_hf: {base}}}
lora: {{rank: 4, alpha: 8, targets: [{", ".join(TARGETS)}], init_seed: 3}}
train: {{steps: 6, global_batch: 8, micro_batch: 2, seq_len: {SEQ}, threads: 1}}
optimizer: {{lr: 1.0e-2, weight_decay: 0.01}}
schedule: {{type: constant}}
data:
  tokenizer: {check_chat.TOKENIZER}
  datasets: [{{path: {data}}}]
checkpoint: {{export_dtype: fp32}}
log: {{sample_tokens: 0, every: 1}}
""")

    def train(name, ranks=1, *sets):
        out = os.path.join(work, name)
        cmd = [exe, "train", config, "--run-dir", out]
        for s in sets:
            cmd += ["--set", s]
        run((["mpirun", "-n", str(ranks)] if ranks > 1 else []) + cmd)
        return out

    single = train("single")
    log = open(os.path.join(single, "train.log")).read()
    if "trainable:" not in log:
        sys.exit("FAIL: the log does not say how many parameters train")
    print("     " + next(line for line in log.splitlines() if "trainable:" in line).split("] ")[-1])

    # 1. Layouts.
    for name, ranks, sets in [("tp2", 2, ["parallel.tp=2"]),
                              ("tp2-pp2", 4, ["parallel.tp=2", "parallel.pp=2"]),
                              ("tp2-sp", 2, ["parallel.tp=2", "parallel.sequence_parallel=true"]),
                              ("dp2-zero1", 2, ["parallel.dp=2", "parallel.zero=1"])]:
        compare(name, single, train(name, ranks, *sets))

    # 2. PEFT on the base against the merged export.
    from peft import PeftModel
    hf_logging.set_verbosity_error()
    ids = torch.randint(3, 1216, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        base_model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
        base_logits = base_model(ids).logits
        peft_model = PeftModel.from_pretrained(base_model, os.path.join(single, "final", "adapter"))
        peft_logits = peft_model(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(os.path.join(single, "final"), torch_dtype=torch.float32)
        merged_logits = merged(ids).logits
    diff = (peft_logits - merged_logits).abs().max().item()
    moved = (merged_logits - base_logits).abs().max().item()
    if diff > 1e-4:
        sys.exit(f"FAIL: PEFT on the base and the merged export differ by {diff:.3g} (bound 1e-4)")
    if moved < 1e-3:
        sys.exit(f"FAIL: the merged export computes what the base does (logits move {moved:.3g}): nothing was learned")
    cfg = json.load(open(os.path.join(single, "final", "adapter", "adapter_config.json")))
    if cfg["peft_type"] != "LORA" or cfg["r"] != 4 or cfg["lora_alpha"] != 8 or sorted(cfg["target_modules"]) != sorted(TARGETS):
        sys.exit(f"FAIL: adapter_config.json: {cfg}")
    print(f"ok   PEFT: base + adapter equals the merged export within {diff:.2e} max-abs logits; "
          f"the fine-tune moved the logits by {moved:.3f}")

    # 9. Greedy generation from the checkpoint against PEFT's.
    prompt = [1] + ids[0, :12].tolist()
    with torch.no_grad():
        want = peft_model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                   do_sample=False, max_new_tokens=16, eos_token_id=2, pad_token_id=0)
    want = want[0, len(prompt):].tolist()
    got = json.loads(run([exe, "generate", "--checkpoint", single, "--prompt-ids", " ".join(map(str, prompt)),
                          "--max-new-tokens", "16", "--json", "--threads", "1"]).stdout.strip().splitlines()[-1])["output_ids"]
    if got != want:
        sys.exit(f"FAIL: generate --checkpoint: {got}, PEFT's greedy generate: {want}")
    print(f"ok   generate --checkpoint: {len(got)} greedy tokens equal PEFT's on the base + adapter")

    # 3. Frozen weights: exactly the base's; adapters changed only what they target.
    base_w = load_file(os.path.join(base, "model.safetensors"))
    final_w = {}
    for name in os.listdir(os.path.join(single, "final")):
        if name.startswith("model") and name.endswith(".safetensors"):
            final_w.update(load_file(os.path.join(single, "final", name)))
    untouched = [k for k in base_w if not any(f".{t}." in k for t in TARGETS)]
    for k in untouched:
        if not torch.equal(base_w[k], final_w[k]):
            sys.exit(f"FAIL: frozen '{k}' changed by {(base_w[k] - final_w[k]).abs().max().item():.3g}")
    changed = sum(not torch.equal(base_w[k], final_w[k]) for k in base_w if k not in untouched)
    if changed == 0:
        sys.exit("FAIL: no targeted weight changed")
    inspect = run([exe, "checkpoint", "inspect", os.path.join(single, "checkpoints"), "--json"]).stdout
    names = [t["name"] for t in json.loads(inspect)["tensors"]]
    moments = [n for n in names if n.startswith("optimizer.") and "lora_" not in n]
    if moments or not any("lora_A" in n for n in names) or "model.embed_tokens.weight" not in names:
        sys.exit(f"FAIL: the checkpoint's tensors: {len(names)}, moments of frozen weights {moments[:3]}")
    print(f"ok   frozen: {len(untouched)} tensors equal the base exactly, {changed} targeted weights changed; the "
          f"checkpoint holds {len(names)} tensors, optimizer state only for adapters")

    # 4. --adapter-only.
    only = os.path.join(work, "adapter-only")
    run([exe, "export", "--checkpoint", single, "--output", only, "--adapter-only"])
    a1, a2 = load_file(os.path.join(only, "adapter_model.safetensors")), adapter(single)
    if set(a1) != set(a2) or any(not torch.equal(a1[k], a2[k]) for k in a1):
        sys.exit("FAIL: export --adapter-only differs from RUN/final/adapter")
    print(f"ok   export --adapter-only: the same {len(a1)} tensors")

    # 5. Stop at step 3, resume to 6: on the same layout (bit for bit), and resharded onto
    #    tp 2 x pp 2 from the single rank's checkpoint (the adapters' TP split and the frozen
    #    weights read from pieces saved whole).
    part = train("resumed", 1, "train.steps=3", "checkpoint.every=3")
    resharded = os.path.join(work, "resharded")
    run(["mpirun", "-n", "4", exe, "train", config, "--run-dir", resharded, "--resume",
         os.path.join(part, "checkpoints", "step_00000003"), "--set", "parallel.tp=2", "--set", "parallel.pp=2"])
    run([exe, "train", config, "--run-dir", part, "--resume"])
    compare("resume 3 -> 6", single, part, exact=True)
    compare("resume 3 -> 6 resharded onto tp 2 x pp 2", single, resharded)

    # 6. Dropout.
    drop = train("dropout", 1, "lora.dropout=0.1")
    if losses(drop) == losses(single):
        sys.exit("FAIL: lora.dropout 0.1 changed nothing")
    compare("dropout tp2", drop, train("dropout-tp2", 2, "lora.dropout=0.1", "parallel.tp=2"))
    compare("dropout recompute", drop, train("dropout-recompute", 1, "lora.dropout=0.1", "train.recompute=full"))

    # 7. train.freeze without LoRA.
    # lr 3e-3 as multirank_equivalence, for whose full-model runs compare_runs.py's 1e-5 bound is
    # argued (at 1e-2 the near-zero-gradient elements it describes reach 1.1e-5 of the model).
    freeze = ["lora.rank=0", "train.freeze=[model.embed_tokens.weight, model.layers.0.*]", "optimizer.lr=3e-3"]
    f1 = train("freeze", 1, *freeze)
    f4 = train("freeze-tp2-pp2", 4, "parallel.tp=2", "parallel.pp=2", *freeze)
    judge = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "multirank", "compare_runs.py")
    out = run([sys.executable, judge, f1, f4, "--rtol", "1e-5"]).stdout.strip().splitlines()
    final_f = load_file(os.path.join(f1, "final", "model.safetensors"))
    frozen = [k for k in base_w if k == "model.embed_tokens.weight" or k.startswith("model.layers.0.")]
    for k in frozen:
        if not torch.equal(base_w[k], final_f[k]):
            sys.exit(f"FAIL: train.freeze: '{k}' changed")
    if all(torch.equal(base_w[k], final_f[k]) for k in base_w if k not in frozen):
        sys.exit("FAIL: train.freeze: nothing trained")
    print(f"ok   train.freeze: tp2-pp2 equals one rank ({out[-1] if out else ''}); {len(frozen)} frozen tensors "
          f"unchanged")
    # A pipeline stage with nothing to train (the embedding and layers 0-1 of stage 0 frozen):
    # its rank holds no optimizer segment, yet rank 0 records the step count in checkpoints; a
    # run stopped at step 3 and resumed equals the straight one.
    whole = ["lora.rank=0", "train.freeze=[model.embed_tokens.weight, model.layers.0.*, model.layers.1.*]",
             "optimizer.lr=3e-3"]
    straight = train("frozen-stage", 1, *whole)
    stopped = train("frozen-stage-pp2", 2, "parallel.pp=2", "train.steps=3", "checkpoint.every=3", *whole)
    run(["mpirun", "-n", "2", exe, "train", config, "--run-dir", stopped, "--resume", "--set", "parallel.pp=2",
         *sum((["--set", w] for w in whole), [])])
    out = run([sys.executable, judge, straight, stopped, "--rtol", "1e-5"]).stdout.strip().splitlines()
    print(f"ok   a frozen pipeline stage, stopped at 3 and resumed, equals one rank ({out[-1] if out else ''})")

    # 8. bf16.
    b = train("bf16", 1, "train.precision=bf16", "checkpoint.export_dtype=bf16")
    log = open(os.path.join(b, "train.log")).read()
    fp32_log = open(os.path.join(single, "train.log")).read()
    def param_mib(text):
        line = next(x for x in text.splitlines() if "memory on this rank" in x)
        return line.split("parameters ")[1].split(" MiB")[0]
    with torch.no_grad():
        m = AutoModelForCausalLM.from_pretrained(os.path.join(b, "final"), torch_dtype=torch.float32)
        bf16_logits = m(ids).logits
    if not torch.isfinite(bf16_logits).all() or losses(b)[-1] >= losses(b)[0]:
        sys.exit(f"FAIL: bf16 LoRA: losses {losses(b)}")
    # Frozen linears in bf16: 2 bytes instead of 4 for the 4 x 7 targeted base weights and the
    # (untied) lm_head; the adapters, norms and the embedding stay fp32.
    linears = sum(v.numel() for k, v in base_w.items() if any(f".{t}." in k for t in TARGETS) or k == "lm_head.weight")
    saved = float(param_mib(fp32_log)) - float(param_mib(log))
    if abs(saved - 2 * linears / 2**20) > 0.01:
        sys.exit(f"FAIL: bf16 LoRA holds {param_mib(log)} MiB of parameters, fp32 {param_mib(fp32_log)} MiB: expected "
                 f"{2 * linears / 2**20:.2f} MiB less")
    print(f"ok   bf16 LoRA: loss {losses(b)[0]:.4f} -> {losses(b)[-1]:.4f}; parameters held "
          f"{param_mib(log)} MiB (fp32 run: {param_mib(fp32_log)} MiB: the frozen linears in bf16)")


if __name__ == "__main__":
    main()
