#!/usr/bin/env python3
"""The reference side of roar-musicgen's benchmark: transformers' MusicgenForConditionalGeneration
at the musicgen-small shape (t5-base, 24-layer 1024-wide decoder, 32 kHz EnCodec) with random
weights, generating from the same prompt ids as benches/generate.rs with the released sampling
defaults (top-k 250, guidance 3), timed from the ids to the audio.

    python bench_reference.py --seconds 10 --threads 2

Prints one JSON line: implementation, audio seconds, wall seconds, seconds per audio second,
peak RSS (MiB).
"""
import argparse
import json
import resource
import time

import torch
import transformers
from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig,
                          MusicgenForConditionalGeneration, T5Config)

PROMPT_IDS = [3, 9, 3480, 7, 53, 3, 15, 9, 2491, 63, 2201, 1]


def small_config():
    t5 = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
                  feed_forward_proj="relu")
    enc = EncodecConfig(target_bandwidths=[2.2], sampling_rate=32000, audio_channels=1,
                        normalize=False, hidden_size=128, num_filters=64,
                        upsampling_ratios=[8, 5, 4, 4], codebook_size=2048, codebook_dim=128,
                        use_causal_conv=False, pad_mode="reflect", num_lstm_layers=2,
                        use_conv_shortcut=False, compress=2)
    dec = MusicgenDecoderConfig()  # its defaults are musicgen-small's decoder
    return MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=enc.to_dict(), decoder=dec.to_dict())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(small_config()).eval()
    ids = torch.tensor([PROMPT_IDS])
    frame_rate = 50
    frames = round(a.seconds * frame_rate)
    with torch.no_grad():
        start = time.perf_counter()
        audio = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                               guidance_scale=3.0, top_k=250, max_new_tokens=frames + 3)
        wall = time.perf_counter() - start
    audio_s = audio.shape[-1] / 32000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": f"pytorch {torch.__version__} + transformers {transformers.__version__}",
                      "audio_s": round(audio_s, 2), "threads": a.threads, "wall_s": round(wall, 3),
                      "s_per_audio_s": round(wall / audio_s, 3), "peak_rss_mib": round(peak, 1)}))


if __name__ == "__main__":
    main()
