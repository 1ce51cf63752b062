#!/usr/bin/env python3
"""Reference outputs of Gemma 3 270M (the Q4_K_M GGUF that scripts/gemma/fetch-weights.sh
fetches) for roar-gemma's tests; run once, output committed.

Reference: transformers 5.25 loading the same GGUF (gguf 0.19 dequantises every tensor to
float32; the norm weights' +1 that llama.cpp's converter adds is taken off again), run in
float32 on the CPU. `pip install torch==2.11.0 transformers==5.25.0 gguf==0.19.0 accelerate
safetensors`.

    python gen_gemma3_reference.py ../../../.roar/models/gemma/gemma3-270m/model.gguf

Writes into ../tests/fixtures/:
  gemma3_270m_ref.safetensors
    long_ids      [600]      a lyric text longer than the 512-token sliding window
    positions     [P]        positions of long_ids whose logits are kept
    vocab_ids     [S]        a fixed random sample of the vocabulary
    logits        [P, S]     logits at those positions for those ids
    top_ids       [P, 16]    the 16 most likely ids at each kept position
    top_logits    [P, 16]
    logits_q      [P, S]     the same with the GGML kernels' activation quantisation emulated
    top_ids_q     [P, 16]    (see `quantize_inputs`)
    prompt_ids    [N]        the lyric-cleaning prompt (roar's lyrics::clean::prompt) tokenised
    greedy_ids    [32]       greedy continuation of prompt_ids
  gemma3_270m_tokens.json    strings and their token ids (no <bos>)
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")

# Original lines, written for this fixture.
LYRIC = """[Verse 1]
I left my coat beside the station door,
The rain was counting footsteps on the floor.
You said the night was only made for two,
And every streetlight hummed a song for you.

[Chorus]
Oh, carry me home, carry me slow,
Over the river where the willows grow.
Don't let the morning take what we know,
Carry me home, carry me slow.

[Verse 2]
The radio was playing '99,
A broken tune that somehow still felt fine.
We counted stars until the numbers ran —
12, 13, 14... and then we ran.
"""

# The prompt roar-gemma's lyrics::clean::prompt builds for this transcript chunk; the Rust
# test builds it again and checks the ids, so a drift in either shows.
INSTRUCTION = ("Speech-recognised song transcripts rewritten as lyrics: one sung line per line, "
               "the same words in the same order, capitalised, a blank line between verses.")
EXAMPLES = [
    ("i walked along the river the water running cold and i was thinking of you",
     "I walked along the river\nThe water running cold\nAnd I was thinking of you"),
    ("oh oh don't you know the night is young so come on let's go dancing till the morning sun",
     "Oh, oh, don't you know\nThe night is young\nSo come on, let's go\nDancing till the morning sun"),
]
CHUNK = "carry me home carry me slow over the river where the willows grow"

TOKEN_CASES = [
    "Hello world", "a  b", "a   b c", "x\n\ny\n", "<start_of_turn>user\nhi<end_of_turn>\n",
    "<table><tr>", "émoji 🎵 ok", " leading", "trailing ", "don't stop", "\t tab",
    "<bos>text<eos>", "Ça va? Très bien — merci!", "数字 123 4567", "I'm gonna love you, baby",
    "   ", "\n", "ooh-ooh-ooh (yeah)", "C'est la vie\r\nnext", "snake_case and CamelCase",
    LYRIC,
]


def round_away(x):
    """C's roundf (half away from zero), as the GGML kernels round; numpy rounds half to even."""
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def q8_0(x):
    """GGML's Q8_0 rows (blocks of 32): scale amax/127 stored as float16, values rounded."""
    b = x.reshape(-1, 32)
    d = np.abs(b).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = round_away(b * inv)
    return (q * d.astype(np.float16).astype(np.float32)).reshape(x.shape)


def q8_k(x):
    """Q8_K rows (blocks of 256) as candle quantises them: scale from the signed value of
    largest magnitude, -127/max, values rounded and clamped to [-128, 127], float32 scale."""
    b = x.reshape(-1, 256)
    idx = np.abs(b).argmax(axis=1)
    mx = b[np.arange(b.shape[0]), idx][:, None]
    with np.errstate(divide="ignore"):
        iscale = np.where(mx != 0, np.float32(-127) / mx, np.float32(0)).astype(np.float32)
    q = np.clip(round_away(b * iscale), -128, 127)
    with np.errstate(divide="ignore"):
        d = np.where(iscale != 0, np.float32(1) / iscale, np.float32(0)).astype(np.float32)
    return (q * d).reshape(x.shape)


# Which activation format each weight type's dot product takes (GGML's vec_dot_type).
ACT_QUANT = {"Q4_0": q8_0, "Q5_0": q8_0, "Q8_0": q8_0,
             "Q2_K": q8_k, "Q3_K": q8_k, "Q4_K": q8_k, "Q5_K": q8_k, "Q6_K": q8_k}
GGUF_TO_HF = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
              "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def quantize_inputs(model, gguf_path):
    """Hooks that round every quantised matmul's input as the GGML CPU kernels (llama.cpp's,
    candle's) do before their integer dot products; the dequantised weights then give the
    kernels' arithmetic up to summation order."""
    from gguf import GGUFReader
    types = {t.name: t.tensor_type.name for t in GGUFReader(gguf_path).tensors}
    hooks = []
    for name, kind in types.items():
        if kind not in ACT_QUANT:
            continue
        if name == "token_embd.weight":
            mod = model.lm_head
        else:
            _, layer, part, _ = name.split(".")
            mod = model.model.layers[int(layer)].get_submodule(GGUF_TO_HF[part])
        fn = ACT_QUANT[kind]

        def pre(_m, args, fn=fn):
            x = args[0]
            y = fn(x.detach().float().numpy().astype(np.float32))
            return (torch.from_numpy(y).to(x.dtype),)
        hooks.append(mod.register_forward_pre_hook(pre))
    return hooks


def prompt(chunk):
    p = INSTRUCTION + "\n\n"
    for t, l in EXAMPLES:
        p += f"Transcript: {t}\nLyrics:\n{l}\n###\n"
    return p + f"Transcript: {chunk.strip()}\nLyrics:\n"


def main():
    gguf = os.path.abspath(sys.argv[1])
    d, f = os.path.split(gguf)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()

    cases = [{"text": s, "ids": tok(s, add_special_tokens=False).input_ids} for s in TOKEN_CASES]
    with open(os.path.join(OUT, "gemma3_270m_tokens.json"), "w") as fh:
        json.dump(cases, fh, ensure_ascii=False, indent=1)

    ids = tok(LYRIC * 5, add_special_tokens=True).input_ids[:600]
    assert len(ids) == 600, len(ids)
    long_ids = torch.tensor([ids])
    with torch.no_grad():
        logits = model(long_ids).logits[0]
    positions = torch.tensor([0, 1, 7, 100, 300, 510, 511, 512, 513, 540, 599])
    rng = np.random.default_rng(7)
    vocab_ids = torch.tensor(np.sort(rng.choice(logits.shape[1], 2048, replace=False)))
    kept = logits[positions]
    top = kept.topk(16, dim=-1)

    hooks = quantize_inputs(model, gguf)
    with torch.no_grad():
        logits_q = model(long_ids).logits[0][positions]
    for h in hooks:
        h.remove()
    top_q = logits_q.topk(16, dim=-1)

    p_ids = tok(prompt(CHUNK), add_special_tokens=True, return_tensors="pt").input_ids
    # Plain argmax, 32 steps, no stop token (the Rust test decodes the same way).
    seq = p_ids
    with torch.no_grad():
        for _ in range(32):
            nxt = model(seq).logits[0, -1].argmax()
            seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    greedy = seq[0, p_ids.shape[1]:]
    print("greedy:", repr(tok.decode(greedy)))

    save_file({
        "long_ids": long_ids[0].contiguous(),
        "positions": positions.contiguous(),
        "vocab_ids": vocab_ids.contiguous(),
        "logits": kept[:, vocab_ids].contiguous(),
        "top_ids": top.indices.contiguous(),
        "top_logits": top.values.contiguous(),
        "logits_q": logits_q[:, vocab_ids].contiguous(),
        "top_ids_q": top_q.indices.contiguous(),
        "prompt_ids": p_ids[0].contiguous(),
        "greedy_ids": greedy.contiguous(),
    }, os.path.join(OUT, "gemma3_270m_ref.safetensors"))


if __name__ == "__main__":
    main()
