#!/usr/bin/env python3
"""`exatrain generate` against transformers' generate(do_sample=False) on the same weights.

A random Exaone4ForCausalLM (hybrid attention, GQA, window shorter than the output) is saved
by save_pretrained next to the fixture tokenizer (tests/parity/tokenizer/genesis-bpe.json, which
holds the EXAONE-4 chat tokens). For plain prompts and for --chat prompts (transformers'
apply_chat_template with add_generation_prompt=True and the repository's EXAONE-4 template):
  - the prompt ids equal the tokenizer's (transformers' PreTrainedTokenizerFast);
  - the greedy continuation equals transformers' token for token, stopping at the same EOS /
    end-of-turn token;
  - nucleus sampling with top_p -> 0 keeps only the most likely token: it equals greedy;
  - sampling with one seed twice gives the same tokens.
Weights are drawn with std 0.5 (and the [|endofturn|] row of lm_head 1.6 times louder, so one
output stops at it) so the logits are spread out: fp32 rounding differences (~1e-6)
between the two implementations cannot flip an argmax unless two logits tie that closely.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from transformers import Exaone4Config, Exaone4ForCausalLM, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("EXATRAIN_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
TOKENIZER = os.path.join(HERE, "tokenizer", "genesis-bpe.json")
TEMPLATE = os.path.join(ROOT, "data", "chat", "exaone4_chat_template.jinja")
NEW_TOKENS = 40


def main():
    exatrain = sys.argv[sys.argv.index("--exatrain") + 1]
    tok = PreTrainedTokenizerFast(tokenizer_file=TOKENIZER)
    with open(TEMPLATE) as f:
        tok.chat_template = f.read()
    end_of_turn = tok.convert_tokens_to_ids("[|endofturn|]")
    vocab = len(tok)
    config = Exaone4Config(vocab_size=vocab, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=12,
                           sliding_window_pattern=4, tie_word_embeddings=False, max_position_embeddings=256,
                           pad_token_id=0, bos_token_id=1, eos_token_id=end_of_turn, rms_norm_eps=1e-5,
                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    torch.manual_seed(5)
    model = Exaone4ForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn(p.shape) if name.endswith("norm.weight") else 0.5 * torch.randn(p.shape))
        # A louder [|endofturn|] row: the first prompt's greedy output then ends with it after 27
        # tokens (measured), so stopping is compared too.
        model.lm_head.weight[end_of_turn] *= 1.6
    fails = []
    stops = 0
    with tempfile.TemporaryDirectory() as work:
        model.save_pretrained(work, safe_serialization=True)
        shutil.copy(TOKENIZER, os.path.join(work, "tokenizer.json"))

        def ours(*args):
            cmd = [exatrain, "generate", "--hf", work, "--max-new-tokens", str(NEW_TOKENS), "--threads", "1",
                   "--json", *args]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
            return json.loads(proc.stdout.strip().splitlines()[-1])

        cases = [("plain", "In the beginning God created", []),
                 ("plain", "And the LORD said unto", []),
                 ("chat", "Who divided the light from the darkness?", ["--chat"])]
        for kind, prompt, flags in cases:
            if kind == "chat":
                want_prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                                      add_generation_prompt=True)
                if isinstance(want_prompt, dict) or hasattr(want_prompt, "input_ids"):
                    want_prompt = want_prompt["input_ids"]
            else:
                want_prompt = tok(prompt, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([want_prompt])
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=NEW_TOKENS, eos_token_id=end_of_turn, pad_token_id=0)
            want = out[0, len(want_prompt):].tolist()
            got = ours("--prompt", prompt, *flags)
            label = f"{kind} {prompt!r}"
            if got["prompt_ids"] != list(want_prompt):
                fails.append(f"{label}: prompt ids differ:\n  exatrain {got['prompt_ids']}\n  transformers {want_prompt}")
                continue
            if got["output_ids"] != want:
                fails.append(f"{label}: greedy tokens differ:\n  exatrain     {got['output_ids']}\n"
                             f"  transformers {want}")
                continue
            stopped = bool(want) and want[-1] == end_of_turn
            stops += stopped
            if got["stopped"] != stopped:
                fails.append(f"{label}: stopped={got['stopped']}, transformers stopped={stopped}")
            print(f"ok - {label}: {len(want_prompt)} prompt ids and {len(want)} greedy tokens equal "
                  f"transformers'{' (stopped at [|endofturn|])' if stopped else ''}")
        if stops == 0:
            fails.append("no greedy output reached [|endofturn|]: the stop was not compared")
        # Nucleus sampling: a vanishing top_p leaves only the argmax; a seed repeats itself.
        prompt = cases[0][1]
        greedy = ours("--prompt", prompt)["output_ids"]
        nucleus = ours("--prompt", prompt, "--temperature", "1.0", "--top-p", "1e-9", "--seed", "3")["output_ids"]
        if nucleus != greedy:
            fails.append(f"top_p 1e-9 differs from greedy: {nucleus} vs {greedy}")
        else:
            print("ok - sampling with top_p 1e-9 equals greedy")
        a = ours("--prompt", prompt, "--temperature", "1.0", "--top-p", "0.9", "--seed", "11")["output_ids"]
        b = ours("--prompt", prompt, "--temperature", "1.0", "--top-p", "0.9", "--seed", "11")["output_ids"]
        if a != b:
            fails.append(f"one seed, two samples: {a} vs {b}")
        elif a == greedy:
            fails.append("sampling at temperature 1 gave exactly the greedy tokens: is it sampling at all?")
        else:
            print("ok - sampling (temperature 1, top_p 0.9) repeats with its seed and differs from greedy")
    for f in fails:
        print("FAIL -", f)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
