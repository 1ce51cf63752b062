#!/usr/bin/env python3
"""openai-whisper's own long-form beam search on the committed English speech: the reference
for roar-whisper's beam-5 transcription (the fidelity fixtures' decoding reference is
faster-whisper).

    /path/to/python processors/whisper/scripts/gen_beam_long_form.py [--models .roar/models/whisper]

Audio: `tests/fixtures/whisper/english.flac` (75 s of espeak-ng English, three 30 s windows,
made by `gen_fixtures.py`). Reference: openai-whisper's `transcribe` (beam 5, patience 1, best
of 5 when it falls back to sampling, temperature fallback, previous text as prompt, no word
timestamps, float32) running its PyTorch model with the weights read from the same
CTranslate2 `model.bin` roar loads (`gen_fixtures.torch_whisper`, tiny.en). faster-whisper's
beam-5 text (float32) is recorded beside it as a second opinion.

Output: `tests/fixtures/whisper/en_tiny_openai_beam5.json` (the spoken text; openai-whisper's
text and segments with seek, times, tokens and scores; faster-whisper's text).
Tested with openai-whisper 20250625, torch 2.11, faster-whisper 1.2.1, ctranslate2 4.8.5.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import whisper
from faster_whisper import WhisperModel

import gen_fixtures as g

CASE = g.CASES["en_tiny"]
OUT = g.FIXTURES / "en_tiny_openai_beam5.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=str(g.HERE.parents[2] / ".roar" / "models" / "whisper"))
    args = ap.parse_args()
    audio = g.read_audio(g.FIXTURES / CASE["audio"])
    model_dir = Path(args.models) / CASE["model"]
    torch.manual_seed(0)  # only sampling (a fallback) draws random numbers
    ref = g.torch_whisper(model_dir)
    r = whisper.transcribe(ref, audio, language="en", beam_size=5, patience=1.0, best_of=5,
                           fp16=False, condition_on_previous_text=True, word_timestamps=False,
                           verbose=None)
    fw = WhisperModel(str(model_dir), device="cpu", compute_type="float32", cpu_threads=2)
    segs, _ = fw.transcribe(audio, language="en", beam_size=5, vad_filter=False)
    meta = dict(
        audio=CASE["audio"], model=CASE["model"], samples=len(audio), beam_size=5,
        sample_sum=int(np.round(audio.astype(np.float64) * 32768).sum()),
        spoken=" ".join(t for t, _ in CASE["text"]),
        versions=dict(openai_whisper=whisper.__version__, torch=torch.__version__),
        openai_whisper=dict(
            text=r["text"],
            segments=[dict(seek=s["seek"], start=s["start"], end=s["end"], text=s["text"],
                           tokens=s["tokens"], temperature=s["temperature"],
                           avg_logprob=s["avg_logprob"],
                           compression_ratio=s["compression_ratio"],
                           no_speech_prob=s["no_speech_prob"]) for s in r["segments"]],
        ),
        faster_whisper_text="".join(s.text for s in segs),
    )
    OUT.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    seeks = sorted({s["seek"] for s in r["segments"]})
    print(f"openai-whisper: windows at {seeks}, temperatures "
          f"{sorted({s['temperature'] for s in r['segments']})}: {r['text']!r}")
    print(f"faster-whisper agrees: {meta['faster_whisper_text'] == r['text']}")


if __name__ == "__main__":
    main()
