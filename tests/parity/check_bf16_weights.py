#!/usr/bin/env python3
"""Judge for train.weights: bf16: `exatrain logits --dtype bf16` (every weight held in bf16,
bf16 autocast, the residual stream in bf16) against transformers' bf16 model
(`from_pretrained(dtype=torch.bfloat16)`: weights and hidden states in bf16), on the models of
make_models.py.

check_bf16_weights.py --exatrain BIN --models DIR [--tol T]
Per model, RMS differences of the logits over the RMS of transformers' fp32 logits:
  d_bf16 = exatrain bf16 against transformers bf16,
  d_ref  = transformers bf16 against transformers fp32 (what bf16 itself changes),
  d_ex32 = exatrain bf16 against transformers fp32.
Passes when d_bf16 <= --tol, d_bf16 < d_ref (exatrain's bf16 model is closer to transformers'
bf16 model than bf16 is to fp32) and d_ex32 >= 0.8 d_ref (it really computes in bf16: an fp32
residual stream or weights left in fp32 land near transformers' fp32 logits, as `exatrain logits`
without --dtype does, at 1e-6). Measured 2026-11-30: d_bf16 9.1e-3 to 1.15e-2, d_ref 1.07e-2 to
1.46e-2, d_ex32 0.98 to 1.07 d_ref. The two bf16 models run the same bf16 operations but not the
same kernels (our attention accumulates in fp32 and keeps fp32 probabilities; transformers' eager
attention rounds them to bf16; RoPE multiplies by fp32 tables here, bf16 ones there), so they are
not equal bit for bit, and the max difference is noisier than the RMS.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import Exaone4ForCausalLM


def read_tokens(path):
    with open(path) as f:
        return torch.tensor([[int(t) for t in line.split()] for line in f if line.strip()], dtype=torch.long)


def hf_logits(model_dir, dtype):
    model = Exaone4ForCausalLM.from_pretrained(model_dir, attn_implementation="eager", dtype=dtype).eval()
    with torch.no_grad():
        return model(read_tokens(os.path.join(model_dir, "tokens.txt"))).logits.float()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exatrain", required=True)
    ap.add_argument("--models", required=True, help="OUTDIR of make_models.py")
    ap.add_argument("--tol", type=float, default=1.5e-2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    models = sorted(d for d in os.listdir(a.models) if os.path.isfile(os.path.join(a.models, d, "tokens.txt")))
    failures = []
    for name in models:
        d = os.path.join(a.models, name)
        with tempfile.TemporaryDirectory() as work:
            out = os.path.join(work, "logits.safetensors")
            subprocess.run([a.exatrain, "logits", "--hf", d, "--input", os.path.join(d, "tokens.txt"), "--output", out,
                            "--threads", "1", "--dtype", "bf16"], check=True, capture_output=True)
            ex = load_file(out)["logits"]
        hf16, hf32 = hf_logits(d, torch.bfloat16), hf_logits(d, torch.float32)
        rms = lambda t: t.pow(2).mean().sqrt().item()
        scale = rms(hf32)
        d_bf16, d_ref, d_ex32 = rms(ex - hf16) / scale, rms(hf16 - hf32) / scale, rms(ex - hf32) / scale
        print(f"{name}: exatrain bf16 vs transformers bf16 {d_bf16:.2e}; transformers bf16 vs fp32 {d_ref:.2e}; "
              f"exatrain bf16 vs transformers fp32 {d_ex32:.2e}")
        if d_bf16 > a.tol or d_bf16 >= d_ref:
            failures.append(f"{name}: {d_bf16:.2e} from transformers' bf16 model (bound {a.tol:.1e}, and below bf16's "
                            f"own effect {d_ref:.2e})")
        if d_ex32 < 0.8 * d_ref:
            failures.append(f"{name}: {d_ex32:.2e} from transformers' fp32 model, closer than bf16 allows "
                            f"({d_ref:.2e}): the weights or hidden states are not bf16")
    if failures:
        sys.exit("FAIL:\n  " + "\n  ".join(failures))
    print(f"PASS: {len(models)} models in bf16 weights match transformers' bf16 model")


if __name__ == "__main__":
    main()
