#!/usr/bin/env python3
"""Convert official Demucs v4 checkpoints (`.th`) into roar's layout.

    <out>/<variation>/model.safetensors          one model (htdemucs, htdemucs_6s)
    <out>/<variation>/bag.json + <sig>.safetensors   a bag (htdemucs_ft)

Each safetensors file holds the PyTorch state dict under its own key names and the model's
constructor kwargs as JSON in the `config` metadata entry, which roar-demucs reads as its
HTDemucsConfig. Needs `pip install demucs==4.0.1 safetensors` (and torch).

    python convert_demucs.py --variation htdemucs --checkpoint 955717e8-8726e21a.th --out .roar/models/demucs
    python convert_demucs.py --variation htdemucs_ft --out .roar/models/demucs \
        --checkpoint f7e0c4bc-ba3fe64a.th --checkpoint d12395a8-e57c48e6.th \
        --checkpoint 92cfc3b6-ef3bcb9c.th --checkpoint 04573f0d-f3cf25b2.th

Bag weights default to the reference's `htdemucs_ft.yaml` (model i serves source i only);
`--weights '[[1,0,0,0],...]'` overrides them.
"""
import argparse
import json
import os
from fractions import Fraction

import torch
from safetensors.torch import save_file

# Constructor arguments that only matter for training; dropped from the config.
TRAINING_ONLY = {"t_dropout", "t_weight_decay", "t_lr", "end_iters", "wiener_residual",
                 "rescale", "t_cape_augment", "t_cape_glob_loc_scale", "t_cape_mean_normalize",
                 "t_mask_type", "t_mask_random_seed", "t_sparse_attn_window", "t_global_window",
                 "t_sparsity", "t_auto_sparsity", "t_max_positions", "multi_freqs_depth",
                 "emb_scale_unused"}


def config_of(model_or_kwargs):
    """The inference config of an HTDemucs (or its kwargs) as a JSON-ready dict."""
    if isinstance(model_or_kwargs, dict):
        kwargs = dict(model_or_kwargs)
    else:
        args, kwargs = model_or_kwargs._init_args_kwargs
        kwargs = dict(kwargs)
        if args:
            kwargs.setdefault("sources", list(args[0]))
    out = {}
    for k, v in kwargs.items():
        if k in TRAINING_ONLY:
            continue
        if isinstance(v, Fraction):
            v = float(v)
        if isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def save_model(state, config, path):
    """Writes a state dict + config as safetensors (contiguous float32 tensors)."""
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}
    save_file(tensors, path, metadata={"config": json.dumps(config)})


def load_checkpoint(path):
    """An official `.th` package: {'klass', 'args', 'kwargs', 'state'} (quantized ones unsupported)."""
    pkg = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(pkg, dict) or "state" not in pkg or "kwargs" not in pkg:
        raise SystemExit(f"{path}: not a demucs model package")
    state = pkg["state"]
    if "__quantized" in state:
        raise SystemExit(f"{path}: quantized checkpoints are not supported; use the float ones")
    kwargs = dict(pkg["kwargs"])
    if pkg.get("args"):
        kwargs.setdefault("sources", pkg["args"][0])
    if pkg["klass"].__name__ != "HTDemucs":
        raise SystemExit(f"{path}: {pkg['klass'].__name__} is not HTDemucs (v4)")
    return state, config_of(kwargs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variation", required=True)
    ap.add_argument("--checkpoint", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights", help="bag weights as JSON, one list per checkpoint")
    a = ap.parse_args()
    dest = os.path.join(a.out, a.variation)
    os.makedirs(dest, exist_ok=True)
    if len(a.checkpoint) == 1:
        state, cfg = load_checkpoint(a.checkpoint[0])
        save_model(state, cfg, os.path.join(dest, "model.safetensors"))
        print(f"wrote {dest}/model.safetensors ({len(state)} tensors)")
        return
    names, sources = [], None
    for ckpt in a.checkpoint:
        state, cfg = load_checkpoint(ckpt)
        sources = cfg["sources"]
        name = os.path.basename(ckpt).split("-")[0] + ".safetensors"
        save_model(state, cfg, os.path.join(dest, name))
        names.append(name)
    if a.weights:
        weights = json.loads(a.weights)
    else:
        n = len(sources)
        weights = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(len(names))]
    with open(os.path.join(dest, "bag.json"), "w") as f:
        json.dump({"models": names, "weights": weights}, f, indent=2)
    print(f"wrote {dest}/bag.json with {len(names)} models")


if __name__ == "__main__":
    main()
