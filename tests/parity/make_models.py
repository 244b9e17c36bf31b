#!/usr/bin/env python3
"""Build small random Exaone4ForCausalLM models (fp32) for the parity tests.

Each case is saved with save_pretrained to OUTDIR/NAME (config.json + model.safetensors) next
to OUTDIR/NAME/tokens.txt: 2 lines of 48 random token ids (200 for long_window), at least one
holding pad_token_id.
"""
import argparse
import json
import os

import torch
from transformers import Exaone4Config, Exaone4ForCausalLM
from transformers.utils import logging as hf_logging

SEED = 1234
SEQ_LEN = 48

CASES = {
    # Hybrid attention with a window shorter than the sequence, an explicit non-default
    # layer_types mix, GQA 8/2, llama3 RoPE scaling, untied lm_head.
    "hybrid": dict(
        vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, head_dim=16, sliding_window=16,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
        tie_word_embeddings=False, max_position_embeddings=256, pad_token_id=0, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 32}),
    # No sliding window: RoPE and full attention on every layer; tied embeddings; head_dim
    # derived from hidden / heads (not named in the config). Exaone4Config cannot derive
    # layer_types without a window, so they are named.
    "full_tied": dict(
        vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, sliding_window=None,
        layer_types=["full_attention"] * 3, tie_word_embeddings=True,
        max_position_embeddings=256, pad_token_id=7, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    # layer_types derived from sliding_window_pattern 4 (LLLG): save_pretrained writes the
    # derived list, so it is removed from config.json again (see DERIVE_LAYER_TYPES) and the
    # reader must derive it too. head_dim 24 is named and differs from hidden / heads = 16.
    "pattern": dict(
        vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=24, sliding_window=8,
        sliding_window_pattern=4, tie_word_embeddings=False, max_position_embeddings=256,
        pad_token_id=319, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    # A sequence much longer than the window, neither a multiple of the other nor of the
    # attention kernel's 64-token tiles: 200 tokens, window 23 (keys reach back across tiles).
    "long_window": dict(
        vocab_size=320, hidden_size=64, intermediate_size=160, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, sliding_window=23,
        sliding_window_pattern=4, tie_word_embeddings=True, max_position_embeddings=256,
        pad_token_id=0, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
}
DERIVE_LAYER_TYPES = {"pattern"}
SEQ_LENS = {"long_window": 200}  # tokens per line; the others use SEQ_LEN


def randomize_(model, gen):
    """Non-trivial values: N(0, 0.02) matrices, norm weights 1 + 0.1 * N(0, 1).

    The pad row of the embedding stays random (not zero): the forward reads it like any other
    row, only its gradient through the lookup is zero."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))


def make_tokens(vocab, pad_id, gen, seq_len=SEQ_LEN):
    ids = torch.randint(0, vocab, (2, seq_len), generator=gen)
    # pad id inside line 0 as an input and as a label, and as line 1's first token
    ids[0, 5] = ids[0, 30] = pad_id
    ids[1, 0] = pad_id
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", help="directory to create the model directories in")
    args = ap.parse_args()
    hf_logging.disable_progress_bar()
    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    for name, kw in CASES.items():
        config = Exaone4Config(**kw)
        model = Exaone4ForCausalLM(config).float()
        randomize_(model, gen)
        path = os.path.join(args.outdir, name)
        model.save_pretrained(path, safe_serialization=True)
        if name in DERIVE_LAYER_TYPES:
            cfg_path = os.path.join(path, "config.json")
            with open(cfg_path) as f:
                cfg = json.load(f)
            del cfg["layer_types"]
            with open(cfg_path, "w") as f:
                json.dump(cfg, f, indent=2)
        ids = make_tokens(config.vocab_size, config.pad_token_id, gen, SEQ_LENS.get(name, SEQ_LEN))
        with open(os.path.join(path, "tokens.txt"), "w") as f:
            for row in ids.tolist():
                f.write(" ".join(map(str, row)) + "\n")
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {path}  params={n}  vocab={config.vocab_size}  pad={config.pad_token_id}  "
              f"window={config.sliding_window}  tied={config.tie_word_embeddings}  "
              f"layer_types={config.layer_types}  tokens={tuple(ids.shape)}")


if __name__ == "__main__":
    main()
