#!/usr/bin/env python3
"""Long context on the CPU: peak memory and step time against sequence length, exatrain against
transformers + PyTorch eager (SDPA with its mask), same model, same threads, same run.

For each --seq-lens S, one training step (forward, mean cross-entropy, backward, AdamW) of
batch 1 x S tokens runs in a fresh process per side; the peak resident memory of that process
(ru_maxrss from wait4) and the step's wall time are reported. exatrain runs `bench train
--kernels auto` (the CPU flash attention) and, with --reference, `--kernels reference` (ATen
SDPA with a [seq, seq] mask, as before the kernels). A side that runs out of memory (killed, or
over --mem-limit-gib of address space) is reported as such, not retried.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
DEFAULT_MODEL = os.path.join(HERE, "long_context_model.yaml")


def hf_child(model_path, seq_len, threads, steps):
    """One process: transformers' step on batch 1 x seq_len; prints seconds per step as JSON."""
    import torch
    from transformers import Exaone4ForCausalLM
    from exaone4_presets import load_preset, make_config
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = make_config(load_preset(model_path), attn_implementation="sdpa")
    model = Exaone4ForCausalLM(config).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (1, seq_len))
    start = time.perf_counter()
    for _ in range(steps):
        model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    print(json.dumps({"step_s": (time.perf_counter() - start) / steps}))


def run_side(cmd, mem_limit_gib):
    """Runs cmd in a wrapper process that waits for it with wait4 and prints its ru_maxrss."""
    wrapper = ("import json, os, resource, sys\n"
               "cap = int(float(sys.argv[1]) * 2**30)\n"
               "pid = os.fork()\n"
               "if pid == 0:\n"
               "    if cap: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
               "    os.execvp(sys.argv[2], sys.argv[2:])\n"
               "_, status, usage = os.wait4(pid, 0)\n"
               "print(json.dumps({'status': status, 'maxrss_kib': usage.ru_maxrss}), file=sys.stderr)\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper, str(mem_limit_gib or 0), *cmd], capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    info = json.loads(proc.stderr.strip().splitlines()[-1])
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    status = info["status"]
    ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and result is not None
    tail = "\n".join(proc.stderr.strip().splitlines()[-4:-1])
    oom = not ok and ("memory" in tail.lower() or "alloc" in tail.lower() or
                      (os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9))
    return {"ok": ok, "peak_gib": info["maxrss_kib"] / 2**20, "wall_s": wall, "result": result,
            "error": None if ok else ("out of memory" if oom else tail or f"status {status}")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exatrain", required=True, help="path to the exatrain binary")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model preset YAML (default: %(default)s)")
    ap.add_argument("--seq-lens", default="1024,2048,4096,8192,16384,32768")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1, help="timed steps per run (after one untimed step)")
    ap.add_argument("--mem-limit-gib", type=float, default=20.0,
                    help="address-space cap per run, so an out-of-memory side fails fast (0: none)")
    ap.add_argument("--reference", action="store_true", help="also run exatrain with --kernels reference")
    ap.add_argument("--skip-hf-above", type=int, default=0,
                    help="do not run transformers above this many tokens (0: run every length)")
    ap.add_argument("--out", help="also append the JSON result line to this file")
    ap.add_argument("--hf-child", nargs=3, metavar=("MODEL", "SEQ", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hf_child:
        hf_child(args.hf_child[0], int(args.hf_child[1]), int(args.hf_child[2]), args.steps)
        return

    sides = {"exatrain": lambda s: [args.exatrain, "bench", "train", "--config", args.model, "--batch", "1",
                                    "--seq-len", str(s), "--steps", str(args.steps), "--warmup", "1",
                                    "--threads", str(args.threads), "--kernels", "auto", "--json"]}
    if args.reference:
        sides["exatrain reference"] = lambda s: sides["exatrain"](s)[:-2] + ["reference", "--json"]
    sides["transformers"] = lambda s: [sys.executable, os.path.abspath(__file__), "--exatrain", args.exatrain,
                                       "--steps", str(args.steps), "--hf-child", args.model, str(s),
                                       str(args.threads)]
    rows = []
    print(f"model {args.model}, batch 1, {args.threads} threads, fp32; peak RSS per process, seconds per step")
    print(f"{'tokens':>8}" + "".join(f"{name + ' GiB':>26}{'s/step':>9}" for name in sides))
    for s in (int(x) for x in args.seq_lens.split(",")):
        row = {"seq_len": s}
        cells = []
        for name, make in sides.items():
            if name == "transformers" and args.skip_hf_above and s > args.skip_hf_above:
                row[name] = {"ok": False, "error": "not run"}
                cells.append(f"{'not run':>26}{'':>9}")
                continue
            r = run_side(make(s), args.mem_limit_gib)
            row[name] = r
            if r["ok"]:
                step = r["result"].get("step_s") or 1.0 / r["result"]["steps_per_s"]
                r["step_s"] = step
                cells.append(f"{r['peak_gib']:>26.2f}{step:>9.2f}")
            else:
                cells.append(f"{r['error'][:24]:>26}{'':>9}")
        rows.append(row)
        print(f"{s:>8}" + "".join(cells), flush=True)
    line = json.dumps({"model": args.model, "threads": args.threads, "rows": rows})
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
