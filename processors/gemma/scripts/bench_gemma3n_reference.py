#!/usr/bin/env python3
"""The reference side of roar-gemma's `gemma3n` bench: a Gemma 3n at the E2B widths (random
init, LAYERS decoder layers instead of 30, so that it fits in memory), written as a Hugging Face
directory that roar loads, and transformers' own decode-step time on the same weights. The
bench runs it; by hand:

    python bench_gemma3n_reference.py OUT_DIR LAYERS THREADS PROMPT_TOKENS STEPS RUNS

Writes OUT_DIR/config.json and OUT_DIR/model.safetensors (bfloat16, as released; both sides
compute in float32), then prints one JSON line: the median over RUNS of the milliseconds per
decode step (one token through the KV cache after a PROMPT_TOKENS prompt, STEPS steps) and of
the prefill, and the greedy tokens.
The audio tower is a small stand-in (the text decoder is what is timed; the loader needs one);
there is no vision tower (roar has none). The KV-sharing layers keep E2B's proportion (a third).
Needs torch 2.11 and transformers 5.25 (as gen_gemma3n_reference.py).
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
from safetensors.torch import save_file

import transformers.models.gemma3n.modeling_gemma3n as m
from transformers import Gemma3nConfig, Gemma3nForConditionalGeneration

AUTO_MODEL = m.AutoModel


class NoVision:
    """Stands in for AutoModel while the model is built: no timm vision tower."""

    @staticmethod
    def from_config(config, **kw):
        if config.model_type == "gemma3n_vision":
            return nn.Module()
        return AUTO_MODEL.from_config(config, **kw)


def e2b_text(layers):
    """google/gemma-3n-E2B's text config with `layers` layers instead of 30, E2B's proportions
    kept: four sliding-window layers to one global, activation sparsity on the first third
    (E2B: 10 of 30), the last third reading earlier layers' KV (E2B: 10 of 30)."""
    types = ["full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(layers)]
    sparse = max(1, layers // 3)
    return dict(
        vocab_size=262400, vocab_size_per_layer_input=262144, hidden_size=2048,
        hidden_size_per_layer_input=256, intermediate_size=[8192] * layers,
        num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=2, head_dim=256,
        sliding_window=512, layer_types=types, num_kv_shared_layers=layers // 3, laurel_rank=64,
        altup_num_inputs=4, altup_active_idx=0,
        activation_sparsity_pattern=[0.95] * sparse + [0.0] * (layers - sparse),
        final_logit_softcapping=30.0,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
        rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=2, eos_token_id=1,
    )


AUDIO = dict(
    vocab_size=128, vocab_offset=262272, input_feat_size=128, hidden_size=32, rms_norm_eps=1e-6,
    conf_attention_chunk_size=4, conf_attention_context_left=5, conf_attention_context_right=0,
    conf_attention_logit_cap=50.0, conf_num_attention_heads=4, conf_num_hidden_layers=1,
    conf_conv_kernel_size=5, conf_reduction_factor=4, conf_residual_weight=0.5,
    sscp_conv_channel_size=[8, 16], sscp_conv_group_norm_eps=1e-3,
    sscp_conv_kernel_size=[[3, 3], [3, 3]], sscp_conv_stride_size=[[2, 2], [2, 2]],
)
VISION = dict(hidden_size=16, vocab_size=128, vocab_offset=262144, rms_norm_eps=1e-6)


def main():
    out_dir = sys.argv[1]
    layers, threads, prompt_len, steps, runs = map(int, sys.argv[2:7])
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    config = Gemma3nConfig(
        text_config=e2b_text(layers), audio_config=AUDIO, vision_config=VISION,
        audio_soft_tokens_per_image=188, boa_token_id=256000, eoa_token_id=262272,
        audio_token_id=262273, boi_token_id=255999, eoi_token_id=262144, image_token_id=262145,
    )
    m.AutoModel = NoVision
    try:
        model = Gemma3nForConditionalGeneration(config).eval()
    finally:
        m.AutoModel = AUTO_MODEL
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
             if not k.startswith(("model.vision_tower.", "lm_head."))}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    del state
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=1, sort_keys=True)
    # The same bfloat16-rounded values roar reads, in float32.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())

    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, 255_999, (1, prompt_len), generator=gen)
    step_ms, prefill_ms, tokens = [], [], []
    with torch.inference_mode():
        for _ in range(runs):
            t0 = time.perf_counter()
            out = model(input_ids=prompt, use_cache=True)
            t1 = time.perf_counter()
            cache, tokens = out.past_key_values, []
            nxt = out.logits[0, -1].argmax()
            for _ in range(steps):
                tokens.append(int(nxt))
                out = model(input_ids=nxt.view(1, 1), past_key_values=cache, use_cache=True)
                nxt = out.logits[0, -1].argmax()
            t2 = time.perf_counter()
            prefill_ms.append((t1 - t0) * 1e3)
            step_ms.append((t2 - t1) * 1e3 / steps)
    print(json.dumps(dict(prompt=prompt[0].tolist(), step_ms=statistics.median(step_ms),
                          prefill_ms=statistics.median(prefill_ms), tokens=tokens)))


if __name__ == "__main__":
    main()
