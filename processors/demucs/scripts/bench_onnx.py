#!/usr/bin/env python3
"""The ONNX Runtime side of roar-demucs' benchmark: HTDemucs exported to ONNX by the
`demucs-onnx` package (0.3.4) and run by onnxruntime, on the same shape, input and threads as
benches/separate.rs and bench_reference.py.

No registry ships HTDemucs weights here, so, like the other two sides, the model is the released
htdemucs *shape* with random weights (torch.manual_seed(0)). `export` builds it with demucs
4.0.1, saves it and exports it with `demucs_onnx.export.export_to_onnx` (which patches the
complex STFT, the fused attention and the random positional shift, and itself refuses an export
whose PyTorch or ONNX Runtime output differs from the original model's by more than 1e-3 on one
segment); then it compares ONNX Runtime with PyTorch once more on one segment of the bench's
input (0.1 × randn) and prints the max abs difference. Export needs torch + demucs + onnx:

    python bench_onnx.py export --out target/demucs-onnx/htdemucs.onnx

Timing imports only numpy and onnxruntime (what a demucs-onnx user runs), so the peak RSS is
the runtime's alone:

    python bench_onnx.py --onnx target/demucs-onnx/htdemucs.onnx --mode segment|track \
        [--seconds 60] [--threads 2]

`segment`: the session is created first (reported as load_s, not in wall_s), then one forward
pass over one 7.8 s segment, the first call in the process, as on the other two sides. `track`:
a random stereo track normalised as `demucs.separate` does, through demucs-onnx's own
overlap-add loop (quarter-segment overlap and a triangular window, like the reference's
apply_model with shifts 1, overlap 0.25). Prints one JSON line.
"""
import argparse
import json
import resource
import time

SOURCES = {"htdemucs": ["drums", "bass", "other", "vocals"],
           "htdemucs_6s": ["drums", "bass", "other", "vocals", "guitar", "piano"]}
BOTTOM = {"htdemucs": 512, "htdemucs_6s": 0}
RATE = 44100
SEGMENT = int(7.8 * RATE)


def export(a):
    import pathlib
    import tempfile

    import numpy as np
    import onnxruntime as ort
    import torch
    from demucs.htdemucs import HTDemucs
    from demucs_onnx.export import export_to_onnx

    torch.manual_seed(0)
    model = HTDemucs(SOURCES[a.variation], bottom_channels=BOTTOM[a.variation], dconv_mode=3,
                     segment=7.8).eval()
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = pathlib.Path(tmp) / f"{a.variation}-random.th"
        torch.save(model, checkpoint)
        export_to_onnx(checkpoint, out, verbose=True)
    # The bench's own input scale, not the exporter's unit-variance probe.
    mix = 0.1 * torch.randn(1, 2, SEGMENT)
    with torch.no_grad():
        reference = model(mix).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    session = ort.InferenceSession(str(out), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    got = session.run(["stems"], {"mix": mix.numpy()})[0]
    diff = float(np.abs(got - reference).max())
    scale = float(np.abs(reference).max())
    print(json.dumps({"check": "onnxruntime vs pytorch, one segment", "max_abs_diff": diff,
                      "max_abs_reference": scale, "onnx": str(out),
                      "onnx_mib": round(out.stat().st_size / 2**20, 1)}))
    if not np.isfinite(got).all() or diff > 1e-3:
        raise SystemExit(f"ONNX export differs from PyTorch by {diff} (> 1e-3)")


def bench(a):
    import numpy as np
    import onnxruntime as ort
    from demucs_onnx.inference import _chunked_separate_single

    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # What demucs-onnx's own session factory sets.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    start = time.perf_counter()
    session = ort.InferenceSession(a.onnx, sess_options=options,
                                   providers=["CPUExecutionProvider"])
    load = time.perf_counter() - start
    length = SEGMENT if a.mode == "segment" else int(a.seconds * RATE)
    mix = (0.1 * np.random.default_rng(0).standard_normal((2, length))).astype(np.float32)
    start = time.perf_counter()
    if a.mode == "segment":
        session.run(["stems"], {"mix": mix[None]})
    else:
        ref = mix.mean(0)
        wav = (mix - ref.mean()) / ref.std()
        stems = _chunked_separate_single(session, SOURCES[a.variation], wav, progress=False)
        for s in stems.values():
            s *= ref.std()
            s += ref.mean()
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "onnxruntime " + ort.__version__ + " (demucs-onnx export)",
                      "mode": a.mode, "audio_s": round(length / RATE, 2),
                      "threads": a.threads, "load_s": round(load, 3),
                      "wall_s": round(wall, 3), "peak_rss_mib": round(peak, 1)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", nargs="?", choices=["export", "bench"], default="bench")
    ap.add_argument("--out", default="target/demucs-onnx/htdemucs.onnx")
    ap.add_argument("--onnx", default="target/demucs-onnx/htdemucs.onnx")
    ap.add_argument("--mode", choices=["segment", "track"], default="track")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variation", default="htdemucs")
    a = ap.parse_args()
    if a.command == "export":
        export(a)
    else:
        bench(a)


if __name__ == "__main__":
    main()
