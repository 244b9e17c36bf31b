#!/usr/bin/env python3
"""fp32 CPU training throughput: `exatrain bench train` against transformers, same run.

The baseline is transformers' Exaone4ForCausalLM built from the same preset (SDPA attention,
fp32, torch.set_num_threads(--threads), torch.optim.AdamW), timing --steps steps of forward
with labels, backward, optimizer.step and zero_grad after --warmup untimed ones, on a random
token batch. Prints a table and, last, one JSON line (also appended to --out FILE if given).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
from exaone4_presets import load_preset, make_config  # noqa: E402


def bench_transformers(preset, batch, seq_len, steps, warmup, threads):
    from transformers import Exaone4ForCausalLM
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = make_config(preset, attn_implementation="sdpa")
    model = Exaone4ForCausalLM(config).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (batch, seq_len))

    def step():
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    elapsed = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    return {"steps_per_s": steps / elapsed, "tokens_per_s": steps * batch * seq_len / elapsed,
            "params": n_params, "last_loss": loss}


def bench_exatrain(binary, preset_args, batch, seq_len, steps, warmup, threads):
    cmd = [binary, "bench", "train", *preset_args, "--batch", str(batch), "--seq-len", str(seq_len),
           "--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads), "--json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        sys.exit(f"FAIL: cannot run {binary}: {e}")
    if proc.returncode != 0:
        sys.exit(f"FAIL: `{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stderr.strip()}")
    for line in reversed(proc.stdout.strip().splitlines()):  # the JSON object is the last one
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(result, dict):
            continue
        missing = {"steps_per_s", "tokens_per_s", "model_flops_per_step", "gemm_peak_flops", "mfu"} - set(result)
        if missing:
            sys.exit(f"FAIL: exatrain bench JSON lacks {sorted(missing)}: {line}")
        return result
    sys.exit(f"FAIL: `{' '.join(cmd)}` printed no JSON object:\n{proc.stdout.strip()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exatrain", help="path to the exatrain binary (not needed with --hf-only)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="configs/models/NAME.yaml")
    src.add_argument("--config", help="a model preset YAML file")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also append the JSON result line to this file")
    ap.add_argument("--hf-only", action="store_true", help="only run the transformers baseline")
    args = ap.parse_args()
    if not args.hf_only and not args.exatrain:
        ap.error("--exatrain BIN is required unless --hf-only")
    preset = args.preset or args.config
    preset_args = ["--preset", args.preset] if args.preset else ["--config", args.config]
    shape = (args.batch, args.seq_len, args.steps, args.warmup, args.threads)

    hf = bench_transformers(load_preset(preset), *shape)
    ex = None if args.hf_only else bench_exatrain(args.exatrain, preset_args, *shape)

    print(f"preset {preset}: batch {args.batch} x seq {args.seq_len}, {args.steps} steps after "
          f"{args.warmup} warmup, {args.threads} threads, fp32, {hf['params']:,} parameters")
    print(f"{'':14}{'steps/s':>10}{'tokens/s':>12}")
    print(f"{'transformers':14}{hf['steps_per_s']:>10.3f}{hf['tokens_per_s']:>12.1f}")
    result = {"preset": preset, "batch": args.batch, "seq_len": args.seq_len, "steps": args.steps,
              "warmup": args.warmup, "threads": args.threads,
              "transformers": {k: hf[k] for k in ("steps_per_s", "tokens_per_s")}}
    if ex:
        ratio = ex["steps_per_s"] / hf["steps_per_s"]
        # transformers' MFU with exatrain's model FLOPs and measured GEMM peak: same yardstick
        hf_mfu = hf["steps_per_s"] * ex["model_flops_per_step"] / ex["gemm_peak_flops"]
        print(f"{'exatrain':14}{ex['steps_per_s']:>10.3f}{ex['tokens_per_s']:>12.1f}")
        print(f"ratio exatrain/transformers: {ratio:.3f}")
        print(f"exatrain MFU {ex['mfu']:.3f} (transformers {hf_mfu:.3f}) of GEMM peak "
              f"{ex['gemm_peak_flops'] / 1e9:.1f} GFLOP/s; model {ex['model_flops_per_step'] / 1e9:.1f} GFLOP/step")
        result.update(exatrain=ex, ratio=ratio, transformers_mfu=hf_mfu)
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
