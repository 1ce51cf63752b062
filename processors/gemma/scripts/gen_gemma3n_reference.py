#!/usr/bin/env python3
"""Reference outputs of a tiny random Gemma 3n (text decoder + audio tower) for roar-gemma's
fidelity tests; run once, output committed.

Reference: transformers 5.25 `Gemma3nForConditionalGeneration` and `Gemma3nAudioFeatureExtractor`,
float32 on the CPU. `pip install torch==2.11.0 transformers==5.25.0 safetensors numpy`.
The vision tower (a timm model) is replaced by an empty module: roar has none, and the text
and audio paths never call it (the vision embedder, which embeds the vision range's hard
tokens, is kept: a random model's greedy output may contain them).

    python gen_gemma3n_reference.py

The config is small but keeps every feature of the E2B/E4B layout: 6 layers of which the last
2 reuse earlier layers' keys and values (one sliding, one global), a sliding window of 8 (the
prompt is longer), activation sparsity on the first 2 layers, AltUp with 4 streams, LAuReL,
per-layer embeddings (ids from 384 up fall back to row 0), soft-capped logits; an audio tower
with both subsampling convolutions, 2 conformer blocks with chunked local attention and a
reduction factor of 2; a 512-token vocabulary whose last 64 ids are the audio range (hard
audio tokens and the soft-token placeholder), 384..447 the vision range.

Every parameter is drawn afresh (linear weights ~ N(0, 1/fan_in), embeddings ~ N(0, 1) (the tied text
embedding ~ N(0, 0.1²)),
norm scales and AltUp's output scale ~ 1 + N(0, 0.1²), the audio query scale ~ N(0, 0.1²)):
the default init leaves some at zero (AltUp's output scale, the audio per-dimension scale),
which would hide a path that is missing. Weights are rounded to bfloat16 and stored so (as
the released checkpoints are); the reference computes in float32 on the same values.

Writes into ../tests/fixtures/:
  gemma3n_tiny/config.json, gemma3n_tiny/model.safetensors   the model (Hugging Face layout)
  gemma3n_tiny_ref.safetensors
    audio          [S]         1.2 s of 16 kHz test audio (tones, a chirp, noise)
    mel            [F, 128]    its features (the clip alone: padded to a multiple of 128)
    mel_padded     [F2, 128]   its features padded to 1.6 s, as in a batch with a longer clip
    mel_padding    [F2]        1 where a frame is padding
    audio_states   [T, 32]     audio tower output for mel_padded (padding rows zero)
    audio_padding  [T]         1 where a state is padding
    soft_tokens    [24, 64]    the audio embedder's soft tokens, padded to the reserved 24
    prompt_ids     [L]         <bos> text, <boa>, 24 audio placeholders, <eoa>, a hard audio
                               token, text
    logits         [L, 512]    logits at every prompt position (audio = mel_padded)
    greedy_ids     [32]        greedy continuation of prompt_ids with that audio
    text_ids       [40]        a text-only sequence
    text_logits    [40, 512]   its logits at every position
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

import transformers.models.gemma3n.modeling_gemma3n as m
from transformers import Gemma3nAudioFeatureExtractor, Gemma3nConfig, Gemma3nForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
MODEL_DIR = os.path.join(OUT, "gemma3n_tiny")

LAYERS = 6
TEXT = dict(
    vocab_size=512, vocab_size_per_layer_input=384, hidden_size=64, hidden_size_per_layer_input=16,
    intermediate_size=[128, 128, 96, 96, 128, 96], num_hidden_layers=LAYERS, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, sliding_window=8,
    layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
    num_kv_shared_layers=2, laurel_rank=8, altup_num_inputs=4, altup_active_idx=0,
    activation_sparsity_pattern=[0.95, 0.95, 0.0, 0.0, 0.0, 0.0], final_logit_softcapping=30.0,
    rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
    rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=2, eos_token_id=1,
)
AUDIO = dict(
    vocab_size=64, vocab_offset=448, input_feat_size=128, hidden_size=32, rms_norm_eps=1e-6,
    conf_attention_chunk_size=4, conf_attention_context_left=5, conf_attention_context_right=0,
    conf_attention_logit_cap=50.0, conf_num_attention_heads=4, conf_num_hidden_layers=2,
    conf_conv_kernel_size=5, conf_reduction_factor=2, conf_residual_weight=0.5,
    sscp_conv_channel_size=[8, 16], sscp_conv_group_norm_eps=1e-3,
    sscp_conv_kernel_size=[[3, 3], [3, 3]], sscp_conv_stride_size=[[2, 2], [2, 2]],
)
VISION = dict(hidden_size=16, vocab_size=64, vocab_offset=384, rms_norm_eps=1e-6)
SOFT_TOKENS = 24
BOA, EOA, AUDIO_TOKEN = 300, 448, 449
SR = 16_000


class NoVision:
    """Stands in for AutoModel while the model is built: no timm vision tower."""

    @staticmethod
    def from_config(config, **kw):
        if config.model_type == "gemma3n_vision":
            return nn.Module()
        return AUTO_MODEL.from_config(config, **kw)


AUTO_MODEL = m.AutoModel


def perturb(model, gen):
    """Fresh draws for every parameter (see the module docstring)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name or leaf == "correct_output_scale":
                p.copy_(1.0 + 0.1 * noise)
            elif leaf == "per_dim_scale":
                p.copy_(0.1 * noise)
            elif name.endswith("language_model.embed_tokens.weight"):
                # Small enough that a token's own embedding does not dominate the residual
                # stream: with tied weights a random model would otherwise repeat its input.
                p.copy_(0.1 * noise)
            elif "embedding" in name or "embed_tokens" in name:
                p.copy_(noise)
            else:
                fan_in = int(np.prod(p.shape[1:])) if p.dim() > 1 else p.shape[0]
                p.copy_(noise / np.sqrt(fan_in))
            p.copy_(p.to(torch.bfloat16).float())


def test_audio(rng):
    t = np.arange(int(1.2 * SR)) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)
         + 0.2 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * rng.standard_normal(t.size))
    x[: SR // 10] *= np.linspace(0, 1, SR // 10)
    return x.astype(np.float32)


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    rng = np.random.default_rng(1234)
    config = Gemma3nConfig(
        text_config=TEXT, audio_config=AUDIO, vision_config=VISION,
        audio_soft_tokens_per_image=SOFT_TOKENS, boa_token_id=BOA, eoa_token_id=EOA,
        audio_token_id=AUDIO_TOKEN, boi_token_id=301, eoi_token_id=384, image_token_id=385,
    )
    m.AutoModel = NoVision
    try:
        model = Gemma3nForConditionalGeneration(config).eval()
    finally:
        m.AutoModel = AUTO_MODEL
    perturb(model, gen)

    os.makedirs(MODEL_DIR, exist_ok=True)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
             if not k.startswith(("model.vision_tower.", "lm_head."))}
    save_file(state, os.path.join(MODEL_DIR, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(MODEL_DIR, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=1, sort_keys=True)

    fx = Gemma3nAudioFeatureExtractor(feature_size=128)
    audio = test_audio(rng)
    alone = fx(audio, return_tensors="np")
    padded = fx(audio, padding="max_length", max_length=int(1.6 * SR), return_tensors="np")
    mel = torch.from_numpy(padded["input_features"])
    valid = torch.from_numpy(padded["input_features_mask"])
    assert (~valid).sum() > 20, "the padded features must end in padding frames"

    prompt = ([2, 17, 93, 211, 5, BOA] + [AUDIO_TOKEN] * SOFT_TOKENS + [EOA, 140, 470, 77, 260]
              + [31, 383, 12, 9, 150, 222, 64, 18])
    ids = torch.tensor([prompt])

    with torch.no_grad():
        enc = model.model.audio_tower(mel, ~valid)
        audio_states, audio_pad = enc.last_hidden_state[0], enc.audio_mel_mask[0]
        feats = model.model.get_audio_features(mel, ~valid).pooler_output
        fill = model.model.embed_audio(input_ids=torch.tensor([[TEXT["vocab_size"] - 1]]))
        soft = torch.where(audio_pad[None, :, None], fill, feats)
        soft = torch.cat([soft, fill.expand(1, SOFT_TOKENS - soft.shape[1], -1)], dim=1)[0]
        logits = model(input_ids=ids, input_features=mel, input_features_mask=valid).logits[0]

        # Plain argmax over full recomputations (no cache): the Rust side decodes through its
        # cache, so equal tokens also prove the cache. Each step's top-two margin is checked
        # so that a 1e-4 difference cannot flip a token.
        seq, margins = ids, []
        for _ in range(32):
            last = model(input_ids=seq, input_features=mel, input_features_mask=valid).logits[0, -1]
            top2 = last.topk(2).values
            margins.append(float(top2[0] - top2[1]))
            seq = torch.cat([seq, last.argmax().view(1, 1)], dim=1)
        greedy = seq[0, len(prompt):]

        text_ids = torch.tensor([[2] + rng.integers(3, 384, 39).tolist()])
        text_logits = model(input_ids=text_ids).logits[0]

    print("audio states", tuple(audio_states.shape), "padding", int(audio_pad.sum()))
    print("greedy", greedy.tolist())
    print("smallest greedy margin", min(margins))
    # Ten times the Rust test's logit bound (1e-4): no step is a near-tie that bound could flip.
    assert min(margins) > 1e-3, "a greedy step is too close to a tie to be a fair test"
    assert len(set(greedy.tolist())) > 4, "greedy output is degenerate"

    save_file({
        "audio": torch.from_numpy(audio),
        "mel": torch.from_numpy(alone["input_features"][0]).contiguous(),
        "mel_padded": mel[0].contiguous(),
        "mel_padding": (~valid[0]).to(torch.uint8).contiguous(),
        "audio_states": audio_states.contiguous(),
        "audio_padding": audio_pad.to(torch.uint8).contiguous(),
        "soft_tokens": soft.contiguous(),
        "prompt_ids": ids[0].contiguous(),
        "logits": logits.contiguous(),
        "greedy_ids": greedy.contiguous(),
        "text_ids": text_ids[0].contiguous(),
        "text_logits": text_logits.contiguous(),
    }, os.path.join(OUT, "gemma3n_tiny_ref.safetensors"))


if __name__ == "__main__":
    main()
