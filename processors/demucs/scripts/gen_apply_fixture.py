#!/usr/bin/env python3
"""Generate the apply-loop fixture: the reference `apply_model` (demucs 4.0.1) run over a
1.2 s track with the small fixture model, as `demucs.separate` calls it (whole-track
normalisation around it), unshifted so the result is deterministic.

Reference: `pip install demucs==4.0.1 torch==2.11.0 torchaudio==2.11.0 safetensors`.
Writes ../tests/fixtures/apply_io.safetensors: `mix` [2, L] and, per case, the stems
[4, 2, ceil(L / 3)] (every third sample, to keep the file small). Cases: `default` (1 s
segments, overlap 0.25: a full chunk and a short one padded with real context) and `seg05`
(a 0.5 s segment override: four chunks, each run at the model's 1 s training length).
"""
import json
import os
from fractions import Fraction

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from demucs.apply import apply_model
from demucs.htdemucs import HTDemucs

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def main():
    path = os.path.join(FIXTURES, "small.safetensors")
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    sources = cfg.pop("sources")
    cfg["segment"] = Fraction(cfg["segment"]).limit_denominator(1000)
    model = HTDemucs(sources, **cfg)
    model.load_state_dict(load_file(path))
    model.eval()

    n = int(1.2 * 44100)
    gen = torch.Generator().manual_seed(7)
    t = torch.arange(n) / 44100
    wav = torch.stack([
        0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(n, generator=gen),
        0.2 * torch.sin(2 * torch.pi * 330 * t) + 0.05 * torch.randn(n, generator=gen),
    ])
    out = {"mix": wav.clone()}
    for name, segment in [("default", None), ("seg05", 0.5)]:
        w = wav.clone()
        ref = w.mean(0)
        w -= ref.mean()
        w /= ref.std()
        with torch.no_grad():
            s = apply_model(model, w[None], shifts=0, split=True, overlap=0.25,
                            segment=segment)[0]
        s *= ref.std()
        s += ref.mean()
        out[name] = s[..., ::3].contiguous()
    save_file(out, os.path.join(FIXTURES, "apply_io.safetensors"))


if __name__ == "__main__":
    main()
