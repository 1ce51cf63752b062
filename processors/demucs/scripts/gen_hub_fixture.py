#!/usr/bin/env python3
"""Generate the `.th` fixture for roar-demucs' hub tests (run once after gen_fixtures.py; committed).

Packs the weights of ../tests/fixtures/small.safetensors the way the official Demucs v4 releases
are packed: `demucs.states.serialize_model` (half-precision state, `klass`/`args`/`kwargs`, the
training args as a plain container) written by `save_with_checksum`, so the file is named
`<sig>-<first 8 hex of its sha256>.th`. The kwargs carry, like the releases', training-only
arguments and a `Fraction` segment, and the sources travel as the positional argument.

Reference: `pip install demucs==4.0.1 torch==2.11.0 safetensors`.
Writes ../tests/fixtures/hub/0cafe000-<sha8>.th (older ones there are removed).
"""
import glob
import json
import os
from fractions import Fraction
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from demucs.htdemucs import HTDemucs
from demucs.states import save_with_checksum, serialize_model

HERE = os.path.dirname(__file__)
SMALL = os.path.join(HERE, "..", "tests", "fixtures", "small.safetensors")
OUT = Path(HERE, "..", "tests", "fixtures", "hub")
SIG = "0cafe000"


def main():
    with safe_open(SMALL, "pt") as f:
        config = json.loads(f.metadata()["config"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    sources = config.pop("sources")
    kwargs = dict(config)
    kwargs["segment"] = Fraction(config["segment"]).limit_denominator(100)
    # Training-only arguments the released kwargs also carry; the converter must skip them.
    kwargs.update(t_dropout=0.0, t_cape_glob_loc_scale=[5000.0, 1.0, 1.4], rescale=0.1,
                  t_mask_type="diag", t_sparse_attn_window=500, samplerate=44100)
    model = HTDemucs(sources, **kwargs)
    model.load_state_dict(state)
    training_args = OmegaConf.create({"model": "htdemucs", "seed": 42,
                                      "dset": {"segment": 11, "sources": sources},
                                      "optim": {"lr": 3e-4, "betas": [0.9, 0.999]}})
    pkg = serialize_model(model, training_args)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in glob.glob(str(OUT / f"{SIG}-*.th")):
        os.remove(old)
    save_with_checksum(pkg, OUT / f"{SIG}.th")
    print(*glob.glob(str(OUT / f"{SIG}-*.th")))


if __name__ == "__main__":
    main()
