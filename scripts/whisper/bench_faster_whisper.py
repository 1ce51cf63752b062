"""Times faster-whisper (CTranslate2) on raw 16 kHz f32 audio; prints one JSON line per run.

    python scripts/whisper/bench_faster_whisper.py MODEL_DIR AUDIO.f32 --threads 2 --beam 1 5

Used by `cargo bench -p roar-whisper --bench whisper`, which writes the audio and compares.
Needs `pip install faster-whisper` (tested with 1.2.1, ctranslate2 4.8.5).
"""
import argparse
import json
import time

import numpy as np
from faster_whisper import WhisperModel

ap = argparse.ArgumentParser()
ap.add_argument("model_dir")
ap.add_argument("audio")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--beam", type=int, nargs="+", default=[1, 5])
ap.add_argument("--compute-type", nargs="+", default=["float32", "int8"])
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--word-timestamps", action="store_true")
args = ap.parse_args()

audio = np.fromfile(args.audio, dtype=np.float32)
seconds = len(audio) / 16000
for ct in args.compute_type:
    model = WhisperModel(args.model_dir, device="cpu", compute_type=ct, cpu_threads=args.threads)
    for beam in args.beam:
        def run():
            segs, _ = model.transcribe(audio, beam_size=beam, language="en",
                                       word_timestamps=args.word_timestamps, vad_filter=False)
            return "".join(s.text for s in segs)
        run()  # warm-up
        times, text = [], ""
        for _ in range(args.runs):
            t0 = time.perf_counter()
            text = run()
            times.append(time.perf_counter() - t0)
        med = sorted(times)[len(times) // 2]
        print(json.dumps({"engine": f"faster-whisper {ct}", "beam": beam, "seconds": med,
                          "rtf": med / seconds, "text": text}), flush=True)
