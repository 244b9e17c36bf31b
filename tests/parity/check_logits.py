#!/usr/bin/env python3
"""Check `exatrain logits` against transformers on the models made by make_models.py.

For every OUTDIR/NAME holding config.json and tokens.txt: transformers (fp32, eager attention,
eval mode, one thread) computes the logits, the mean causal-LM cross-entropy and, after one
backward, every parameter's gradient. `BIN logits ... --grads` must match: logits max-abs diff
<= --tol, loss within 1e-5 relative, and ||g_ex - g_hf|| / ||g_hf|| <= --grad-rtol for every
parameter (four named ones are printed). Exits non-zero on any failure.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import Exaone4ForCausalLM
from transformers.utils import logging as hf_logging

LOSS_RTOL = 1e-5
NAMED_GRADS = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_norm.weight",
               "model.layers.1.self_attn.k_proj.weight", "model.norm.weight"]


def read_tokens(path):
    with open(path) as f:
        rows = [[int(t) for t in line.split()] for line in f if line.strip()]
    return torch.tensor(rows, dtype=torch.long)


def reference(model_dir):
    """transformers' logits [B, T, V], loss and {hf name: grad} for model_dir/tokens.txt."""
    model = Exaone4ForCausalLM.from_pretrained(model_dir, attn_implementation="eager",
                                               dtype=torch.float32)
    model.eval()
    ids = read_tokens(os.path.join(model_dir, "tokens.txt"))
    out = model(ids, labels=ids)
    # transformers' loss appends ignore_index to the labels and shifts, so it is the mean CE of
    # logits[:, :-1] against ids[:, 1:] over all B * (T - 1) tokens, pad ids included (labels
    # = input_ids, nothing is set to -100). Checked here rather than assumed.
    logits = out.logits
    explicit = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    if abs(out.loss.item() - explicit.item()) > 1e-6 * abs(explicit.item()):
        sys.exit(f"{model_dir}: transformers' loss {out.loss.item()} is not the shifted mean CE "
                 f"{explicit.item()}; the reference itself is wrong")
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return logits.detach(), out.loss.item(), grads


def run_exatrain(binary, model_dir, workdir, threads):
    logits_path = os.path.join(workdir, "logits.safetensors")
    grads_path = os.path.join(workdir, "grads.safetensors")
    cmd = [binary, "logits", "--hf", model_dir, "--input", os.path.join(model_dir, "tokens.txt"),
           "--output", logits_path, "--grads", grads_path, "--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise RuntimeError(f"cannot run {binary}: {e}") from e
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}:\n"
                           + ("\n".join(proc.stderr.strip().splitlines()[-20:]) or "(no stderr)"))
    for path in (logits_path, grads_path):
        if not os.path.isfile(path):
            raise RuntimeError(f"`{' '.join(cmd)}` exited 0 but wrote no {path}")
    out = load_file(logits_path)
    for key in ("logits", "loss"):
        if key not in out:
            raise RuntimeError(f"{logits_path}: no tensor {key!r} (found {sorted(out)})")
    return out["logits"], float(out["loss"].reshape(-1)[0]), load_file(grads_path)


def rel_err(ex, hf):
    denom = hf.norm().item()
    return (ex - hf).norm().item() / (denom if denom > 0 else 1.0)


def compare(name, ref, got, tol, grad_rtol):
    """One line of numbers for this model and a list of failures."""
    (lg_hf, loss_hf, g_hf), (lg_ex, loss_ex, g_ex) = ref, got
    fails = []
    if lg_ex.shape != lg_hf.shape or lg_ex.dtype != torch.float32:
        return f"{name}: logits {lg_ex.dtype} {tuple(lg_ex.shape)}", [
            f"{name}: logits are {lg_ex.dtype} {tuple(lg_ex.shape)}, expected float32 {tuple(lg_hf.shape)}"]
    dmax = (lg_ex - lg_hf).abs().max().item()
    if dmax > tol:
        fails.append(f"{name}: logits max abs diff {dmax:.3e} > {tol:.1e}")
    loss_rel = abs(loss_ex - loss_hf) / abs(loss_hf)
    if loss_rel > LOSS_RTOL:
        fails.append(f"{name}: loss {loss_ex:.8f} vs transformers {loss_hf:.8f} (rel {loss_rel:.2e} > {LOSS_RTOL:.0e})")
    missing, extra = sorted(set(g_hf) - set(g_ex)), sorted(set(g_ex) - set(g_hf))
    if missing or extra:
        fails.append(f"{name}: gradient names differ: missing {missing}, unexpected {extra}")
    errs = {}
    for n in sorted(set(g_hf) & set(g_ex)):
        if g_ex[n].shape != g_hf[n].shape:
            fails.append(f"{name}: gradient {n} shape {tuple(g_ex[n].shape)}, expected {tuple(g_hf[n].shape)}")
            continue
        errs[n] = rel_err(g_ex[n].float(), g_hf[n])
    bad = sorted((n for n in errs if errs[n] > grad_rtol), key=errs.get, reverse=True)
    if bad:
        worst3 = ", ".join(f"{n} {errs[n]:.3e}" for n in bad[:3])
        fails.append(f"{name}: {len(bad)} of {len(errs)} gradients have relative error > "
                     f"{grad_rtol:.1e}; worst: {worst3}")
    worst = max(errs, key=errs.get) if errs else "-"
    named = "  ".join(f"{n.split('.', 1)[1]}={errs.get(n, float('nan')):.2e}" for n in NAMED_GRADS)
    line = (f"{name}: logits max|d|={dmax:.2e}  loss hf={loss_hf:.6f} ex={loss_ex:.6f} "
            f"rel={loss_rel:.1e}  grad rel: {named}  worst={errs.get(worst, float('nan')):.2e} ({worst})")
    return line, fails


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exatrain", help="path to the exatrain binary (not needed with --hf-only)")
    ap.add_argument("--models", required=True, help="OUTDIR of make_models.py")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs logits difference (default 1e-4)")
    ap.add_argument("--grad-rtol", type=float, default=1e-4,
                    help="max ||g_ex - g_hf|| / ||g_hf|| for every parameter (default 1e-4)")
    ap.add_argument("--threads", type=int, default=1, help="--threads passed to exatrain (default 1)")
    ap.add_argument("--hf-only", action="store_true", help="only print transformers' reference numbers")
    args = ap.parse_args()
    if not args.hf_only and not args.exatrain:
        ap.error("--exatrain BIN is required unless --hf-only")
    if not args.hf_only and not os.access(args.exatrain, os.X_OK):
        sys.exit(f"FAIL: exatrain binary {args.exatrain} does not exist or is not executable")
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    models = sorted(d for d in os.listdir(args.models)
                    if os.path.isfile(os.path.join(args.models, d, "tokens.txt")))
    if not models:
        sys.exit(f"FAIL: no model directories with tokens.txt under {args.models}")
    failures = []
    for name in models:
        model_dir = os.path.join(args.models, name)
        ref = reference(model_dir)
        if args.hf_only:
            logits, loss, grads = ref
            norms = "  ".join(f"{n.split('.', 1)[1]}={grads[n].norm().item():.4e}" for n in NAMED_GRADS)
            print(f"{name}: logits {tuple(logits.shape)} |logits|max={logits.abs().max().item():.4f}  "
                  f"loss={loss:.6f}  {len(grads)} grads  |g|: {norms}")
            continue
        with tempfile.TemporaryDirectory() as work:
            try:
                got = run_exatrain(args.exatrain, model_dir, work, args.threads)
            except RuntimeError as e:
                failures.append(f"{name}: {e}")
                print(f"{name}: exatrain failed")
                continue
        line, fails = compare(name, ref, got, args.tol, args.grad_rtol)
        print(line)
        failures += fails
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"{'reference computed' if args.hf_only else 'PASS'}: {len(models)} models")


if __name__ == "__main__":
    main()
