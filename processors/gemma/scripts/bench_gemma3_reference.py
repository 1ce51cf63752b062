#!/usr/bin/env python3
"""The reference side of roar-gemma's `gemma3` bench: transformers decoding the same GGUF
(dequantised to float32, as roar's `Precision::Dequantized`) with the same prompt, threads and
token count. The bench runs it; by hand:

    python bench_gemma3_reference.py MODEL.gguf THREADS NEW_TOKENS RUNS < prompt_ids.json

Prints one JSON line: median prefill and decode tokens/s over RUNS, and the greedy tokens (so
the bench can say whether both sides decoded the same text).
Needs `torch transformers gguf` (the versions of gen_gemma3_reference.py).
"""
import json
import os
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    gguf, threads, new_tokens, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    prompt = json.load(sys.stdin)
    torch.set_num_threads(threads)
    d, f = os.path.split(os.path.abspath(gguf))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()

    prefill, decode, tokens = [], [], []
    with torch.inference_mode():
        for _ in range(runs):
            ids = torch.tensor([prompt])
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True)
            t1 = time.perf_counter()
            cache, tokens = out.past_key_values, []
            nxt = out.logits[0, -1].argmax()
            for _ in range(new_tokens):
                tokens.append(int(nxt))
                out = model(input_ids=nxt.view(1, 1), past_key_values=cache, use_cache=True)
                cache, nxt = out.past_key_values, out.logits[0, -1].argmax()
            t2 = time.perf_counter()
            prefill.append(len(prompt) / (t1 - t0))
            decode.append(new_tokens / (t2 - t1))
    print(json.dumps({
        "prefill_tok_s": statistics.median(prefill),
        "decode_tok_s": statistics.median(decode),
        "tokens": tokens,
    }))


if __name__ == "__main__":
    main()
