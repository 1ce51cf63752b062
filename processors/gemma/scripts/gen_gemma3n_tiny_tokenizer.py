#!/usr/bin/env python3
"""A tokenizer for the tiny random Gemma 3n fixture (../tests/fixtures/gemma3n_tiny/), so the
lyrics worker can run that model end to end; run once, output committed.

The fixture's vocabulary has 512 ids: text below 384 (the vision range starts there), the
begin-of-audio token at 300. This writes `tokenizer.json` in the Hugging Face layout the real
checkpoints use (a BPE model, spaces written as U+2581, the same special-token names:
<pad> 0, <eos> 1, <bos> 2, <unk> 3, <start_of_turn> 4, <end_of_turn> 5), with one piece per
printable ASCII character and no merges, and `<unused…>` special tokens filling the rest of
the text range (skipped when decoding, as the real tokenizer's are). Needs only the
`tokenizers` package; checks its own round trip.

    python gen_gemma3n_tiny_tokenizer.py
"""
import json
import os
import string

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "gemma3n_tiny", "tokenizer.json")

TEXT_VOCAB = 384  # the vision range starts here
BOA = 300  # <start_of_audio> in the fixture's config; 300..383 stay unused pieces

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
CHARS = ["\u2581", "\n"] + [c for c in string.printable if c not in " \t\n\r\x0b\x0c"]


def main():
    pieces = SPECIALS + CHARS
    pieces += [f"<unused{i}>" for i in range(TEXT_VOCAB - len(pieces))]
    pieces[BOA] = "<start_of_audio>"
    vocab = {p: i for i, p in enumerate(pieces)}
    added = [
        {
            "id": i,
            "content": p,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, p in enumerate(pieces)
        if p.startswith("<") and p.endswith(">") and len(p) > 1
    ]
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "Fuse"},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_str(text)
    sample = "<start_of_turn>user\nSing it, don't stop!<end_of_turn>"
    ids = tok.encode(sample, add_special_tokens=False).ids
    assert ids[0] == 4 and ids[-1] == 5, ids
    assert tok.decode(ids, skip_special_tokens=True) == "user\nSing it, don't stop!", ids
    assert max(ids) < BOA
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(f"wrote {OUT} ({len(pieces)} pieces)")


if __name__ == "__main__":
    main()
