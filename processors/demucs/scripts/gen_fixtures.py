#!/usr/bin/env python3
"""Generate roar-demucs' fidelity fixtures from the reference HTDemucs (run once; committed).

Reference: `pip install demucs==4.0.1 torch==2.11.0 torchaudio==2.11.0 safetensors`.
Writes into ../tests/fixtures/:
  small.safetensors      small 4-source model (bottom channels, group norms), config in metadata
  small_6s.safetensors   small 6-source model without bottom channels
  small_io.safetensors   inputs, key intermediates and outputs of both, from the reference
  shapes.json            name -> shape of the full-size htdemucs / htdemucs_6s state dicts
  head64.safetensors     small model whose transformer has 64-wide heads, like the released
                         ones (the others have 16- and 32-wide heads), on a quarter-second
                         segment: the attention kernel the released models run (float16)
  head64_io.safetensors  its input, transformer outputs and output

    python gen_fixtures.py            # all of them
    python gen_fixtures.py head64     # only the head64 files (each set has its own seed)

Random init with a fixed seed, then every parameter is perturbed so that layer scales and
norms are far from their (near-zero / identity) initial values: otherwise the DConv and
transformer branches would hide behind 1e-3 scales and a wrong implementation could pass.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from convert_demucs import config_of, save_model  # noqa: E402
from demucs.htdemucs import HTDemucs  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
SOURCES4 = ["drums", "bass", "other", "vocals"]
SOURCES6 = SOURCES4 + ["guitar", "piano"]


def small(sources, **kw):
    args = dict(channels=8, growth=2, depth=4, t_layers=3, t_heads=2, segment=1.0, dconv_comp=4,
                dconv_mode=3, norm_starts=2, norm_groups=4, bottom_channels=32)
    args.update(kw)
    model = HTDemucs(sources, **args)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):
                p.copy_(0.5 + 0.5 * torch.rand_like(p))
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or \
                    name.endswith("norm3.weight") or "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.add_(0.05 * torch.randn_like(p))
    model.eval()
    return model, args


def capture(model, mix, prefix, out, intermediates=True):
    """Runs the reference forward, recording intermediates by hooks."""
    hooks = []
    if not intermediates:
        with torch.no_grad():
            out[f"{prefix}.output"] = model(mix).contiguous()
        return

    def keep(name):
        def hook(_mod, _inp, res):
            if isinstance(res, tuple):
                res = res[0]
            out[f"{prefix}.{name}"] = res.detach().clone().contiguous()
        return hook

    for i, m in enumerate(model.encoder):
        hooks.append(m.register_forward_hook(keep(f"encoder.{i}")))
    for i, m in enumerate(model.tencoder):
        hooks.append(m.register_forward_hook(keep(f"tencoder.{i}")))
    for i, m in enumerate(model.tdecoder):
        if i < 2:  # the outer ones are large; the output covers them
            hooks.append(m.register_forward_hook(keep(f"tdecoder.{i}")))
    for i, m in enumerate(model.decoder):
        if i < 2:  # the outer ones are large; the output covers them
            hooks.append(m.register_forward_hook(keep(f"decoder.{i}")))
    if model.crosstransformer is not None:
        def tr(_mod, _inp, res):
            out[f"{prefix}.transformer.x"] = res[0].detach().clone().contiguous()
            out[f"{prefix}.transformer.xt"] = res[1].detach().clone().contiguous()
        hooks.append(model.crosstransformer.register_forward_hook(tr))
    with torch.no_grad():
        out[f"{prefix}.spec"] = model._magnitude(model._spec(mix)).contiguous()
        out[f"{prefix}.output"] = model(mix).contiguous()
    for h in hooks:
        h.remove()


def head64():
    """Two 64-wide heads (bottom_channels 128, t_heads 2) in a self- and a cross-attention
    layer, a narrow feed-forward (t_hidden_scale 1) and a 0.25 s segment keep the file and the
    test small; the time branch has 44 tokens and the frequency branch 88 (8 bins x 11 frames),
    so the kernel's blocks of 48 queries and panels of 64 keys are both cut unevenly."""
    torch.manual_seed(64)
    model, _ = small(SOURCES4, bottom_channels=128, t_heads=2, t_layers=2, t_hidden_scale=1.0,
                     segment=0.25)
    # Stored in float16 (half the bytes; the loader widens it, as for the released models),
    # so the reference runs on the same float16-rounded weights.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    half = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(half, os.path.join(OUT, "head64.safetensors"),
              metadata={"config": json.dumps(config_of(model))})
    n = 11025
    t = torch.arange(n) / 44100.0
    tone = 0.3 * torch.sin(2 * torch.pi * 330.0 * t) + 0.2 * torch.sin(2 * torch.pi * 2750.0 * t)
    mix = (torch.stack([tone, 0.7 * tone]) + 0.05 * torch.randn(2, n))[None].contiguous()
    io = {"mix": mix}

    def tr(_mod, _inp, res):
        io["head64.transformer.x"] = res[0].detach().clone().contiguous()
        io["head64.transformer.xt"] = res[1].detach().clone().contiguous()
    hook = model.crosstransformer.register_forward_hook(tr)
    with torch.no_grad():
        io["head64.output"] = model(mix).contiguous()
    hook.remove()
    save_file(io, os.path.join(OUT, "head64_io.safetensors"))
    for k, v in io.items():
        print(k, tuple(v.shape), float(v.abs().max()))


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:] == ["head64"]:
        head64()
        return
    torch.manual_seed(0)
    io = {}
    t = torch.arange(44100) / 44100.0
    tone = 0.3 * torch.sin(2 * torch.pi * 220.0 * t) + 0.2 * torch.sin(2 * torch.pi * 1375.0 * t)
    mix = torch.stack([tone, 0.5 * tone]) + 0.05 * torch.randn(2, 44100)
    mix = mix[None].contiguous()
    io["mix"] = mix
    io["mix_short"] = mix[..., :30000].contiguous()

    m4, _ = small(SOURCES4)
    save_model(m4.state_dict(), config_of(m4), os.path.join(OUT, "small.safetensors"))
    capture(m4, mix, "small", io)
    with torch.no_grad():
        io["small.output_short"] = m4(io["mix_short"]).contiguous()

    m6, _ = small(SOURCES6, bottom_channels=0, norm_starts=4, t_layers=2)
    save_model(m6.state_dict(), config_of(m6), os.path.join(OUT, "small_6s.safetensors"))
    capture(m6, mix, "small_6s", io, intermediates=False)

    save_file(io, os.path.join(OUT, "small_io.safetensors"))

    shapes = {}
    for name, kw in [("htdemucs", dict(bottom_channels=512, dconv_mode=3, segment=7.8)),
                     ("htdemucs_6s", dict(bottom_channels=0, dconv_mode=3, segment=7.8))]:
        srcs = SOURCES6 if name.endswith("6s") else SOURCES4
        full = HTDemucs(srcs, **kw)
        shapes[name] = {"config": config_of(full),
                        "tensors": {k: list(v.shape) for k, v in full.state_dict().items()}}
    with open(os.path.join(OUT, "shapes.json"), "w") as f:
        json.dump(shapes, f, indent=1, sort_keys=True)
    for k, v in io.items():
        print(k, tuple(v.shape), float(v.abs().max()))
    head64()


if __name__ == "__main__":
    main()
