#!/usr/bin/env python3
"""How much arithmetic one HTDemucs segment is, and how fast PyTorch runs it on this machine:
the floor any implementation faces, next to roar-demucs' `examples/profile.rs`.

    python flops_reference.py [--threads 2] [--variation htdemucs] [--calls 3]

Counts FLOPs of one forward pass per module (torch.utils.flop_counter; a multiply-add is two),
times `--calls` warm forward passes, and times a large square f32 matmul, the best rate the
CPU's gemm reaches here. Prints one JSON line.
"""
import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from demucs.htdemucs import HTDemucs

SOURCES = {"htdemucs": ["drums", "bass", "other", "vocals"],
           "htdemucs_6s": ["drums", "bass", "other", "vocals", "guitar", "piano"]}
BOTTOM = {"htdemucs": 512, "htdemucs_6s": 0}


def gemm_rate(n=2048, reps=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variation", default="htdemucs")
    ap.add_argument("--calls", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = HTDemucs(SOURCES[a.variation], bottom_channels=BOTTOM[a.variation], dconv_mode=3,
                     segment=7.8).eval()
    mix = 0.1 * torch.randn(1, 2, int(model.segment * model.samplerate))
    with torch.no_grad():
        counter = FlopCounterMode(display=False, depth=2)
        with counter:
            model(mix)
        per_module = {k: round(sum(v.values()) / 1e9, 2)
                      for k, v in counter.get_flop_counts().items() if k.count(".") == 1}
        total = counter.get_total_flops() / 1e9
        model(mix)
        walls = []
        for _ in range(a.calls):
            start = time.perf_counter()
            model(mix)
            walls.append(time.perf_counter() - start)
    warm = min(walls)
    print(json.dumps({"impl": "pytorch " + torch.__version__, "threads": a.threads,
                      "gflop_per_segment": round(total, 1), "gflop_by_module": per_module,
                      "warm_segment_s": round(warm, 3),
                      "achieved_gflops": round(total / warm, 1),
                      "gemm_2048_gflops": round(gemm_rate(), 1)}))


if __name__ == "__main__":
    main()
