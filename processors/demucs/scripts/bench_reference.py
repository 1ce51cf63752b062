#!/usr/bin/env python3
"""The reference side of roar-demucs' benchmark: PyTorch HTDemucs (demucs 4.0.1) with random
weights of the released shape, timed on the same input as benches/separate.rs.

    python bench_reference.py --mode segment|track --seconds 60 --threads 2 [--variation htdemucs]

Prints one JSON line: implementation, mode, audio seconds, wall seconds, peak RSS (MiB).
"""
import argparse
import json
import resource
import time

import torch
from demucs.apply import apply_model
from demucs.htdemucs import HTDemucs

SOURCES = {"htdemucs": ["drums", "bass", "other", "vocals"],
           "htdemucs_6s": ["drums", "bass", "other", "vocals", "guitar", "piano"]}
BOTTOM = {"htdemucs": 512, "htdemucs_6s": 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["segment", "track"], default="track")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variation", default="htdemucs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = HTDemucs(SOURCES[a.variation], bottom_channels=BOTTOM[a.variation], dconv_mode=3,
                     segment=7.8).eval()
    rate = model.samplerate
    length = int(model.segment * rate) if a.mode == "segment" else int(a.seconds * rate)
    mix = 0.1 * torch.randn(2, length)
    with torch.no_grad():
        start = time.perf_counter()
        if a.mode == "segment":
            model(mix[None])
        else:
            # What `demucs.separate` does around apply_model.
            ref = mix.mean(0)
            wav = (mix - ref.mean()) / ref.std()
            out = apply_model(model, wav[None], shifts=1, split=True, overlap=0.25)[0]
            out = out * ref.std() + ref.mean()
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch " + torch.__version__, "mode": a.mode,
                      "audio_s": round(length / rate, 2), "threads": a.threads,
                      "wall_s": round(wall, 3), "peak_rss_mib": round(peak, 1)}))


if __name__ == "__main__":
    main()
