#!/usr/bin/env python3
"""Judge: `exatrain plan --layout` against published training throughputs.

published_runs.py EXATRAIN_BIN [--report]
For every row of tests/plan/published_runs.json (sources, and what each source leaves unsaid,
are in that file), writes the model as a model YAML, runs
  exatrain plan --config MODEL.yaml --variant V --gpu G --gpus N --seq-len S --global-batch B
                --layout tp=..,pp=..,dp=..,micro_batch=..,recompute=.. [--overlap-comm] --json
and compares the predicted per-GPU throughput with the published one, in the source's own
FLOPs convention (hardware FLOPs with recomputation for Narayanan et al. 2021; model FLOPs for
the 2024 H100 table; tokens/s for TorchTitan, whose GPUs' peak is bracketed: predicted at both
ends, the error is the distance from the published figure to that interval). Rows marked
"not_expressed" (what the planner cannot model, and why) are printed, not predicted. Rows marked "known_miss" are ones the planner does not match within TOLERANCE (the
value says by how much; docs/planning.md says why): the judge fails if one of them comes within
it (so the mark is dropped) and if any other judged row is not within it. --report prints the
table without failing (for docs/planning.md).
"""
import json
import os
import subprocess
import sys
import tempfile

TOLERANCE = 0.15
HERE = os.path.dirname(os.path.abspath(__file__))


def model_yaml(path, hidden, layers, heads, kv_heads, intermediate, vocab, seq_len, tied):
    with open(path, "w") as f:
        f.write(f"vocab_size: {vocab}\nhidden_size: {hidden}\nintermediate_size: {intermediate}\n"
                f"num_layers: {layers}\nnum_heads: {heads}\nnum_kv_heads: {kv_heads}\nhead_dim: {hidden // heads}\n"
                f"max_position_embeddings: {seq_len}\nsliding_window: 0\ntie_embeddings: {'true' if tied else 'false'}\n"
                f"pad_token_id: 0\nbos_token_id: 1\neos_token_id: 2\n")


def plan(exe, yaml, variant, src, gpus, seq_len, batch, layout):
    cmd = [exe, "plan", "--config", yaml, "--variant", variant, "--gpu", src["gpu"], "--gpus", str(gpus),
           "--seq-len", str(seq_len), "--global-batch", str(batch), "--layout", layout, "--json"]
    if src["overlap_comm"]:
        cmd.append("--overlap-comm")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"FAIL - {' '.join(cmd)}: {out.stderr.strip()}")
    return json.loads(out.stdout)["layouts"][0]


def main():
    exe, report = sys.argv[1], "--report" in sys.argv[2:]
    data = json.load(open(os.path.join(HERE, "published_runs.json")))["sources"]
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        yaml = os.path.join(tmp, "model.yaml")
        src = data["megatron_2021"]
        m = src["model"]
        for r in src["rows"]:
            tp = min(r["mp"], 8)
            pp = r["mp"] // tp
            dp = r["gpus"] // r["mp"]
            model_yaml(yaml, r["hidden"], r["layers"], r["hidden"] // 128, r["hidden"] // 128, 4 * r["hidden"],
                       m["vocab_size"], m["seq_len"], m["tie_embeddings"])
            got = plan(exe, yaml, "gpt", src, r["gpus"], m["seq_len"], r["batch"],
                       f"tp={tp},pp={pp},dp={dp},micro_batch=1,recompute=full,sp=0,loss=megatron,attention=unfused")
            rows.append(("Narayanan 2021 A100", r["name"], f"tp{tp} pp{pp} dp{dp}", "TFLOP/s (hw)",
                         r["tflops_per_gpu"], got["hardware_tflops_per_gpu"], True, got["fits"]))
        src = data["megatron_h100_2024"]
        m = src["model"]
        for r in src["rows"]:
            model_yaml(yaml, r["hidden"], r["layers"], r["heads"], r["heads"], 4 * r["hidden"], m["vocab_size"],
                       m["seq_len"], m["tie_embeddings"])
            got = plan(exe, yaml, "gpt", src, r["gpus"], m["seq_len"], r["batch"],
                       f"tp={r['tp']},pp={r['pp']},dp={r['dp']},zero=1,weights=bf16,micro_batch=1,recompute=none,"
                       f"sp={int(r['tp'] > 1)},loss=megatron")
            rows.append(("Megatron-LM H100 2024", r["name"], f"tp{r['tp']} pp{r['pp']} dp{r['dp']}", "TFLOP/s",
                         r["tflops_per_gpu"], got["tflops_per_gpu"], "known" if "known_miss" in r else True,
                         got["fits"]))
        src = data["torchtitan_2024"]
        m = src["model"]
        for r in src["rows"]:
            if "not_expressed" in r:  # printed, with the reason, not predicted
                rows.append(("TorchTitan 2024 H100", r["name"], "-", "tokens/s", r["tokens_per_s_per_gpu"], None,
                             "not", False))
                continue
            shape = dict(m, **src["models"][r["model"]]) if "model" in r else m
            model_yaml(yaml, shape["hidden"], shape["layers"], shape["heads"], shape["kv_heads"], shape["intermediate"],
                       m["vocab_size"], m["seq_len"], m["tie_embeddings"])
            tp, pp = r.get("tp", 1), r.get("pp", 1)
            layout = (f"tp={tp},pp={pp},dp={r['dp']},zero=3,micro_batch={r['micro_batch']},"
                      f"recompute={r.get('recompute', 'op')},float8={int(r.get('float8', False))},sp={int(tp > 1)},"
                      f"tp_overlap={r.get('tp_overlap', 'all')},elementwise={'fused' if r['compile'] else 'eager'},loss=eager,"
                      f"virtual_stages={r.get('virtual_stages', 1)}")
            # The GPUs' peak is unpublished but bracketed (the source): predict at both ends.
            got = [plan(exe, yaml, "llama", dict(src, gpu=gpu), r["gpus"], m["seq_len"], r["batch"], layout)
                   for gpu in src["gpus_bracket"]]
            lo, hi = sorted(g["tokens_per_s_per_gpu"] for g in got)
            rows.append(("TorchTitan 2024 H100", r["name"], f"{f'tp{tp} ' if tp > 1 else ''}{f'pp{pp} ' if pp > 1 else ''}dp{r['dp']} (FSDP)", "tokens/s",
                         r["tokens_per_s_per_gpu"], (lo, hi), "known" if "known_miss" in r else True,
                         all(g["fits"] for g in got)))
    print(f"| source | model | layout | unit | published | predicted | error | fits |")
    print(f"|---|---|---|---|---|---|---|---|")
    for source, name, layout, unit, pub, pred, judged, fits in rows:
        if pred is None:
            print(f"| {source} | {name} | {layout} | {unit} | {pub:g} | - | not expressed | - |")
            continue
        if isinstance(pred, tuple):  # an interval: the error is the distance to it
            lo, hi = pred
            err = lo / pub - 1 if pub < lo else hi / pub - 1 if pub > hi else 0.0
            shown = f"{lo:.0f}-{hi:.0f}"
        else:
            err, shown = pred / pub - 1, f"{pred:.1f}"
        mark = {True: "", "known": " (known miss)"}[judged]
        print(f"| {source} | {name} | {layout} | {unit} | {pub:g} | {shown} | {100 * err:+.1f}%{mark} | "
              f"{'yes' if fits else 'no'} |")
        if judged is True and abs(err) > TOLERANCE:
            failures.append(f"{source} {name}: predicted {shown}, published {pub:g} ({100 * err:+.1f}%)")
        if judged == "known" and abs(err) <= TOLERANCE:  # the model improved: record it
            failures.append(f"{source} {name} is marked known_miss but is now within {100 * TOLERANCE:.0f}% "
                            f"({100 * err:+.1f}%): drop known_miss in published_runs.json")
    judged = sum(1 for r in rows if r[6] is True)
    known = sum(1 for r in rows if r[6] == "known")
    unexpressed = sum(1 for r in rows if r[6] == "not")
    if failures and not report:
        sys.exit(f"FAIL - {len(failures)} of {judged} rows off by more than {100 * TOLERANCE:.0f}%: " + "; ".join(failures))
    print(f"{'report' if report else 'ok'} - {judged - len(failures)} of {judged} judged rows within "
          f"{100 * TOLERANCE:.0f}% of the published throughput; {known} known misses beyond it (not hidden: "
          f"listed above and in docs/planning.md); {unexpressed} rows the planner cannot express")


if __name__ == "__main__":
    main()
