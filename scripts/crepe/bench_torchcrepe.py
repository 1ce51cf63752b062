#!/usr/bin/env python3
"""torchcrepe throughput on the CPU, on the same input as processors/crepe/benches/crepe.rs.

  python bench_torchcrepe.py [--threads N] [--frames-tiny 1000] [--frames-full 200]

Input: a 220 -> 880 Hz exponential glide at 16 kHz, hop 160, padded, so that
it yields exactly the requested number of frames. Reports frames/s for
preprocess + network at a few batch sizes, and for torchcrepe.predict
(Viterbi decoding, one batch per call as predict does by default).
Needs torch and torchcrepe (see make_fixture.py for the venv).
"""

import argparse
import sys
import time
import types

import numpy as np
import torch

try:
    import torchaudio  # noqa: F401
except Exception:  # torchcrepe imports torchaudio only to read files
    sys.modules['torchaudio'] = types.ModuleType('torchaudio')
import torchcrepe  # noqa: E402

REPS = 5


def glide(frames):
    n = (frames - 1) * 160
    secs = n / 16000
    f0, f1 = 220.0, 880.0
    k = np.log(f1 / f0) / secs
    t = np.arange(n) / 16000
    return (0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)).astype(np.float32)


def timed(fn):
    fn()
    ts = []
    for _ in range(REPS):
        start = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - start)
    return sorted(ts)[REPS // 2]


def bench(cap, frames, batches):
    audio = torch.from_numpy(glide(frames))[None]

    def activations(batch):
        n = 0
        for fr in torchcrepe.preprocess(audio, 16000, 160, batch, 'cpu', True):
            n += torchcrepe.infer(fr, cap, 'cpu').shape[0]
        assert n == frames

    for batch in batches:
        s = timed(lambda: activations(batch))
        print(f'{cap:<5} activations  batch {batch:>4}: {frames} frames in {s:.3f} s '
              f'= {frames / s:.1f} frames/s')
    s = timed(lambda: torchcrepe.predict(audio, 16000, 160, model=cap, batch_size=None))
    print(f'{cap:<5} predict (viterbi, one batch): {frames} frames in {s:.3f} s '
          f'= {frames / s:.1f} frames/s, {frames * 0.01 / s:.1f}x real time')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--frames-tiny', type=int, default=1000)
    ap.add_argument('--frames-full', type=int, default=200)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torchcrepe CPU bench: torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads')
    with torch.inference_mode():
        bench('tiny', args.frames_tiny, [16, 64, 256])
        bench('full', args.frames_full, [8, 32, 64])


if __name__ == '__main__':
    main()
