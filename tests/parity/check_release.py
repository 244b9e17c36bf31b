#!/usr/bin/env python3
"""The open-weight release writer (checkpoints/hf_release.h) judged by transformers.

Random tiny Exaone4ForCausalLM models (one untied hybrid, one tied full-attention; vocabulary
large enough for the fixture tokenizer tests/parity/tokenizer/genesis-bpe.json, whose [PAD],
[BOS], [|endofturn|] are ids 0, 1, 2) are saved by transformers, then released by the test tool
release_from_hf (a transformers directory -> write_hf_release, the streaming path `exatrain
export` uses) twice each: fp32 in one file and bf16 in several 200KB shards. Each release:

  files     model.safetensors, or model-0000K-of-0000N.safetensors + model.safetensors.index.json
            (total_size, weight_map); every header says format "pt"; tied: no lm_head.weight
  load      AutoModelForCausalLM.from_pretrained(DIR) gives the release's dtype (config.json's
            dtype); loaded as fp32, every weight equals the original's rounded by torch
            (.to(torch.bfloat16), round-to-nearest-even): bit for bit
  logits    fp32 release vs the original model: max |diff| <= --tol (1e-6; measured 0).
            bf16 release: the bound is that of rounding every weight to bf16 once and nothing
            more, i.e. its logits (computed in fp32) equal those of the original model with its
            weights rounded to bf16 by torch, max |diff| <= --tol (1e-6; measured 0). How far that is
            from the fp32 model is printed (a property of bf16, not of the writer).
  checksums `sha256sum -c SHA256SUMS` passes; a flipped byte makes it fail
  tokenizer AutoTokenizer.from_pretrained(DIR): special tokens named as config.json's ids say;
            apply_chat_template of a 2-turn conversation (with and without a generation prompt)
            equals data/chat/exaone4_chat_template.jinja rendered directly with jinja2 (the
            environment transformers uses) and the format written out by hand; its ids equal
            the `tokenizers` library's encoding of that text
  card      README.md front matter; the dataset prepared by `exatrain data prepare` (name,
            source, license, tokens, manifest sha256); the card's own Python snippet runs

    check_release.py --tool build/bin/release_from_hf [--exatrain build/bin/exatrain] [--tol 1e-6]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jinja2
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, Exaone4Config, Exaone4ForCausalLM, GenerationConfig
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_models import randomize_  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("EXATRAIN_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
TOKENIZER = os.path.join(HERE, "tokenizer", "genesis-bpe.json")
TEMPLATE = os.path.join(ROOT, "data", "chat", "exaone4_chat_template.jinja")
GENESIS = os.path.join(ROOT, "data", "corpora", "kjv-genesis.txt")
SEED = 4321

CASES = {
    "untied_hybrid": dict(
        vocab_size=1208, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, head_dim=16, sliding_window=16,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
        tie_word_embeddings=False, max_position_embeddings=256, rms_norm_eps=1e-5,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 32}),
    "tied_full": dict(
        vocab_size=1208, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, sliding_window=None,
        layer_types=["full_attention"] * 3, tie_word_embeddings=True,
        max_position_embeddings=256, rms_norm_eps=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
}

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "In the beginning?"},
    {"role": "assistant", "content": "God created the heaven and the earth."},
    {"role": "user", "content": "And the earth?"},
    {"role": "assistant", "content": "<think>\nGenesis 1:2.\n</think>\n\nIt was without form, and void."},
]
# The EXAONE-4 format written out by hand (data/chat/chat_template.h): reasoning is dropped.
EXPECTED_CHAT = ("[|system|]\nYou are a helpful assistant.[|endofturn|]\n"
                 "[|user|]\nIn the beginning?[|endofturn|]\n"
                 "[|assistant|]\n<think>\n\n</think>\n\nGod created the heaven and the earth.[|endofturn|]\n"
                 "[|user|]\nAnd the earth?[|endofturn|]\n"
                 "[|assistant|]\n<think>\n\n</think>\n\nIt was without form, and void.[|endofturn|]\n")

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def render_direct(messages, **kwargs):
    """The template file rendered with jinja2 as transformers sets it up (chat_template_utils)."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    with open(TEMPLATE, encoding="utf-8") as f:
        return env.from_string(f.read()).render(messages=messages, **kwargs)


def ids_of(result):
    if hasattr(result, "keys") and "input_ids" in result:
        result = result["input_ids"]
    if isinstance(result, torch.Tensor):
        result = result.tolist()
    if result and isinstance(result[0], list):
        result = result[0]
    return list(result)


def run_tool(tool, src, out, *args):
    cmd = [tool, src, out, *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr)
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {r.returncode}")


def check_files(out, case, dtype, tied):
    files = sorted(os.listdir(out))
    index_path = os.path.join(out, "model.safetensors.index.json")
    if dtype == "fp32":
        check("model.safetensors" in files and not os.path.exists(index_path), f"{case}/{dtype}: one model.safetensors")
        shards = ["model.safetensors"]
    else:
        with open(index_path) as f:
            index = json.load(f)
        shards = sorted(set(index["weight_map"].values()))
        n = len(shards)
        check(n >= 3 and shards == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)],
              f"{case}/{dtype}: {n} shards named model-0000K-of-{n:05d}.safetensors")
        total = 0
        for s in shards:
            with safe_open(os.path.join(out, s), "pt") as f:
                for k in f.keys():
                    numel = 1
                    for d in f.get_slice(k).get_shape():
                        numel *= d
                    total += 2 * numel  # bf16
        check(index["metadata"]["total_size"] == total, f"{case}/{dtype}: index total_size {total}")
    names = set()
    for s in shards:
        with safe_open(os.path.join(out, s), "pt") as f:
            check(f.metadata() == {"format": "pt"}, f"{case}/{dtype}: {s} metadata {f.metadata()}")
            names |= set(f.keys())
    check(("lm_head.weight" in names) == (not tied), f"{case}/{dtype}: lm_head.weight {'absent (tied)' if tied else 'present'}")
    for name in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
                 "SHA256SUMS"]:
        check(name in files, f"{case}/{dtype}: {name} written")


def check_checksums(out, case, dtype, work):
    r = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    listed = len(open(os.path.join(out, "SHA256SUMS")).read().splitlines())
    check(r.returncode == 0 and listed == len(os.listdir(out)) - 1,
          f"{case}/{dtype}: sha256sum -c SHA256SUMS passes ({listed} files)")
    tampered = os.path.join(work, "tampered")
    shutil.rmtree(tampered, ignore_errors=True)
    shutil.copytree(out, tampered)
    with open(os.path.join(tampered, "config.json"), "r+b") as f:
        f.seek(5)
        b = f.read(1)
        f.seek(5)
        f.write(bytes([b[0] ^ 1]))
    r = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tampered, capture_output=True, text=True)
    check(r.returncode != 0 and "config.json: FAILED" in r.stdout, f"{case}/{dtype}: a flipped byte fails sha256sum -c")


def check_model(out, case, dtype, original, tokens, tol):
    torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    default = AutoModelForCausalLM.from_pretrained(out)
    check(default.dtype == torch_dtype, f"{case}/{dtype}: from_pretrained loads {default.dtype}")
    loaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    # The reference: the original model with every weight rounded as torch rounds (nearest even).
    reference = Exaone4ForCausalLM(original.config).eval()
    reference.load_state_dict(original.state_dict())
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(p.to(torch_dtype).to(torch.float32))
    ref_state, got_state = reference.state_dict(), loaded.state_dict()
    check(ref_state.keys() == got_state.keys(), f"{case}/{dtype}: same parameter names")
    worst = max((ref_state[k] - got_state[k]).abs().max().item() for k in ref_state)
    check(worst == 0.0, f"{case}/{dtype}: every weight equals torch's rounding (max |diff| {worst:g})")
    with torch.no_grad():
        got = loaded(tokens).logits
        ref = reference(tokens).logits
        full = original(tokens).logits
    diff = (got - ref).abs().max().item()
    if dtype == "fp32":
        check(diff <= tol, f"{case}/{dtype}: logits vs the original model: max |diff| {diff:.3g} <= {tol:g}")
    else:
        check(diff <= tol, f"{case}/{dtype}: logits vs the original with bf16-rounded weights: max |diff| "
                           f"{diff:.3g} <= {tol:g}")
        rounding = (ref - full).abs().max().item()
        with torch.no_grad():
            in_bf16 = default(tokens).logits.float()
        print(f"      {case}/{dtype}: bf16 rounding itself moves logits by max {rounding:.3g} "
              f"(|logits| up to {full.abs().max().item():.3g}); computing in bf16 too: {(in_bf16 - full).abs().max().item():.3g}")


def check_tokenizer(out, case, dtype, config):
    tok = AutoTokenizer.from_pretrained(out)
    check((tok.bos_token, tok.eos_token, tok.pad_token) == ("[BOS]", "[|endofturn|]", "[PAD]")
          and (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (config.bos_token_id, config.eos_token_id,
                                                                         config.pad_token_id),
          f"{case}/{dtype}: special tokens {tok.bos_token} {tok.eos_token} {tok.pad_token} match config.json's ids")
    gen = GenerationConfig.from_pretrained(out)
    check((gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (1, 2, 0), f"{case}/{dtype}: generation_config ids")
    rendered = tok.apply_chat_template(CONVERSATION, tokenize=False)
    direct = render_direct(CONVERSATION)
    check(rendered == direct == EXPECTED_CHAT, f"{case}/{dtype}: apply_chat_template == template file via jinja2 == "
                                               f"the EXAONE-4 format")
    with open(TEMPLATE, encoding="utf-8") as f:
        via_file = tok.apply_chat_template(CONVERSATION, chat_template=f.read(), tokenize=False)
    check(rendered == via_file, f"{case}/{dtype}: the stored template is the file's")
    prompt = tok.apply_chat_template(CONVERSATION[:4], tokenize=False, add_generation_prompt=True)
    check(prompt == render_direct(CONVERSATION[:4], add_generation_prompt=True)
          and prompt.endswith("[|assistant|]\n<think>\n\n</think>\n\n"), f"{case}/{dtype}: generation prompt")
    ids = ids_of(tok.apply_chat_template(CONVERSATION, tokenize=True))
    expected_ids = Tokenizer.from_file(TOKENIZER).encode(EXPECTED_CHAT, add_special_tokens=False).ids
    check(ids == expected_ids, f"{case}/{dtype}: chat ids equal the tokenizers library's ({len(ids)} ids)")


def check_card(out, case, dtype, dataset):
    with open(os.path.join(out, "README.md"), encoding="utf-8") as f:
        card = f.read()
    front = card.split("---\n")[1] if card.startswith("---\n") else ""
    check("library_name: transformers" in front and "license: apache-2.0" in front and "tags:" in front,
          f"{case}/{dtype}: model card front matter")
    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(out).parameters())
    check(f"| parameters | {n_params:,} (" in card, f"{case}/{dtype}: card counts {n_params:,} parameters")
    check("| steps | 70 |" in card and "| tokens | 286,720 " in card and "tp 2 x pp 2 x dp 1, zero 1" in card,
          f"{case}/{dtype}: card has steps, tokens and layout")
    if dataset:
        row = (f"| {dataset['name']} | {dataset['source']} | {dataset['license']} | {dataset['tokens']:,} |")
        check(row in card and dataset["manifest_sha256"] in card, f"{case}/{dtype}: card lists the dataset: {row}")
    code = re.search(r"```python\n(.*?)```", card, re.S)
    check(code is not None, f"{case}/{dtype}: card has a Python snippet")
    if code and dtype == "bf16":  # once per model: each run starts a Python with torch
        snippet = re.sub(r'^path = .*$', f"path = {out!r}", code.group(1), flags=re.M)
        r = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True)
        check(r.returncode == 0, f"{case}/{dtype}: the card's snippet runs (chat + generate)")
        if r.returncode:
            print(r.stderr[-2000:])


def prepare_dataset(exatrain, work):
    if not exatrain or not os.path.exists(exatrain):
        print("no --exatrain: the model card's dataset check is skipped")
        return None
    out = os.path.join(work, "kjv")
    source = "King James Version, Genesis (public domain), data/corpora/kjv-genesis.txt"
    subprocess.run([exatrain, "data", "prepare", "--tokenizer", TOKENIZER, "--input", GENESIS, "--format", "lines",
                    "--output", out, "--name", "kjv-genesis", "--license", "CC0-1.0", "--source", source,
                    "--eos", "[|endofturn|]", "--threads", "1"], check=True, capture_output=True)
    with open(os.path.join(out, "manifest.txtpb"), encoding="utf-8") as f:
        tokens = int(re.search(r"^total_tokens: (\d+)", f.read(), re.M).group(1))
    with open(os.path.join(out, "manifest.pb"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return {"dir": out, "name": "kjv-genesis", "source": source, "license": "CC0-1.0", "tokens": tokens,
            "manifest_sha256": sha}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="build/bin/release_from_hf")
    ap.add_argument("--exatrain", help="build/bin/exatrain (prepares a dataset for the model card)")
    ap.add_argument("--tol", type=float, default=1e-6)  # measured: 0 (the weights are bit-identical)
    args = ap.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    with tempfile.TemporaryDirectory() as work:
        dataset = prepare_dataset(args.exatrain, work)
        for case, kw in CASES.items():
            config = Exaone4Config(**kw)
            original = Exaone4ForCausalLM(config).float().eval()
            randomize_(original, gen)
            src = os.path.join(work, case)
            original.save_pretrained(src)
            tokens = torch.randint(0, config.vocab_size, (2, 48), generator=gen)
            tokens[0, 7] = tokens[1, 0] = config.pad_token_id
            for dtype, shard in [("fp32", "5GB"), ("bf16", "200KB")]:
                out = os.path.join(work, f"{case}-{dtype}")
                extra = ["--dataset", dataset["dir"]] if dataset else []
                run_tool(args.tool, src, out, "--dtype", dtype, "--max-shard-size", shard, "--tokenizer", TOKENIZER,
                         "--name", f"tiny-{case}", "--license", "Apache-2.0", "--steps", "70", "--tokens", "286720",
                         "--layout", "tp 2 x pp 2 x dp 1, zero 1", *extra)
                check(not os.path.exists(out + ".tmp"), f"{case}/{dtype}: no {os.path.basename(out)}.tmp left")
                check_files(out, case, dtype, config.tie_word_embeddings)
                check_checksums(out, case, dtype, work)
                check_model(out, case, dtype, original, tokens, args.tol)
                check_tokenizer(out, case, dtype, config)
                check_card(out, case, dtype, dataset)

        # A release never goes into a directory that holds something: one line, exit code 1.
        busy = os.path.join(work, "busy")
        os.makedirs(busy)
        open(os.path.join(busy, "notes.txt"), "w").close()
        r = subprocess.run([args.tool, os.path.join(work, "tied_full"), busy], capture_output=True, text=True)
        check(r.returncode == 1 and r.stderr.count("\n") == 1 and busy in r.stderr and "not empty" in r.stderr
              and os.listdir(busy) == ["notes.txt"], f"non-empty output directory refused: {r.stderr.strip()}")

    if failures:
        print(f"\n{len(failures)} check(s) failed")
        sys.exit(1)
    print("\nall release checks passed")


if __name__ == "__main__":
    main()
