#!/usr/bin/env python3
"""Regenerates genesis-bpe.json, the in-repo tokenizer fixture: a byte-level BPE trained with the
`tokenizers` library itself on the bundled public-domain texts (Genesis, KJV, and an excerpt of
the Constitution of the Republic of Korea), with the Qwen3 pipeline (NFC, the Qwen3 Split regex,
ByteLevel without its own regex), EXAONE-style special tokens and two plain added tokens.

    .venv/bin/python tests/parity/tokenizer/make_fixture.py
"""
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["[PAD]", "[BOS]", "[|endofturn|]", "[|system|]", "[|user|]", "[|assistant|]", "[|tool|]",
            "<think>", "</think>"]


def main():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    files = [os.path.join(ROOT, "data", "corpora", "kjv-genesis.txt"),
             os.path.join(HERE, "constitution-ko-excerpt.txt")]
    tok.train(files, trainer)
    # Plain (non-special) added tokens, one of them matched on normalized text.
    tok.add_tokens([AddedToken("<tool_call>", normalized=False), AddedToken("LORD God", normalized=True)])
    bos = tok.token_to_id("[BOS]")
    eot = tok.token_to_id("[|endofturn|]")
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [|endofturn|]", special_tokens=[("[BOS]", bos), ("[|endofturn|]", eot)])
    out = os.path.join(HERE, "genesis-bpe.json")
    tok.save(out)
    print(f"wrote {out}: vocab {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
