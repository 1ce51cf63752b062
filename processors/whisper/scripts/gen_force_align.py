#!/usr/bin/env python3
"""Forced-alignment fixture for roar-whisper (`Whisper::force_align`), made by openai-whisper.

    /path/to/python processors/whisper/scripts/gen_force_align.py [--models .roar/models/whisper]

Uses the committed speech of gen_fixtures.py (`english.flac` with tiny.en, `german.flac` with
base) and its known sentences. The sentences are found in the audio by the digital silence
gen_fixtures.py put between them (runs of exact zeros); a span is a stretch of whole
sentences, cut in the middle of the pauses around it, at most 30 s, with the sentences' text.
The reference times each span's text as openai-whisper's `add_word_timestamps` does for a
window's words: `find_alignment` over the text tokens (the model's alignment heads, the same
heads roar reads from the model directory), the cut of over-long words at sentence ends, and
`merge_punctuations`; the words are then offset by the span's start.

Output: `tests/fixtures/whisper/force_align.json`. Tested with openai-whisper 20250625, torch 2.11.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import whisper
from whisper.timing import find_alignment, merge_punctuations
from whisper.tokenizer import get_tokenizer

from gen_fixtures import CASES, FIXTURES, HERE, RATE, read_audio, torch_whisper

# Pauses between sentences are at least 0.3 s of exact zeros; espeak-ng's own silences inside a
# sentence are shorter or not exactly zero.
MIN_GAP = 0.25

# (case, language given to roar and the reference, [(first sentence, last sentence)]): from
# the start of the audio, and spans in the middle (the time offset). German sentences 3 and 12
# are left out: roar's tokenizer.json and openai-whisper's tiktoken split a word of each
# differently (" tanzen", both valid byte-level BPE), and the test compares tokens first.
SPANS = {
    "en_tiny": ("en", [(0, 2), (8, 11)]),
    "de_base": ("de", [(0, 2), (4, 6)]),
}


def sentence_bounds(audio, n):
    """(start, end) in seconds of each of the n sentences, from the zero runs between them."""
    silent = audio == 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    runs = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= MIN_GAP * RATE]
    # Runs strictly inside the audio separate sentences; the last is the trailing pause.
    inner = [(a, b) for a, b in runs if a > 0 and b < len(audio)]
    if runs and runs[-1][1] == len(audio):
        inner.append(runs[-1])
    assert len(inner) == n, f"found {len(inner)} pauses for {n} sentences"
    starts = [0] + [b for _, b in inner[:-1]]
    ends = [a for a, _ in inner]
    return [(s / RATE, e / RATE) for s, e in zip(starts, ends)], inner


def reference_words(model, tok, audio, start, end, text):
    mel = whisper.audio.log_mel_spectrogram(torch.from_numpy(audio), model.dims.n_mels,
                                            padding=whisper.audio.N_SAMPLES)
    content = mel.shape[-1] - whisper.audio.N_FRAMES
    seek = int(round(start * 100))
    frames = min(int(round(end * 100)), content) - seek
    segment = whisper.audio.pad_or_trim(mel[:, seek:seek + frames], whisper.audio.N_FRAMES)
    tokens = tok.encode(" " + text)
    al = find_alignment(model, tok, tokens, segment, frames)
    durations = np.array([w.end - w.start for w in al])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    if len(durations):
        # add_word_timestamps' cut of over-long words at sentence ends.
        marks = ".。!！?？"
        for i in range(1, len(al)):
            if al[i].end - al[i].start > 2 * median:
                if al[i].word in marks:
                    al[i].end = al[i].start + 2 * median
                elif al[i - 1].word in marks:
                    al[i].start = al[i].end - 2 * median
    merge_punctuations(al, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    words = [dict(word=w.word, start=seek / 100 + float(w.start), end=seek / 100 + float(w.end),
                  probability=float(w.probability)) for w in al if w.word]
    return tokens, words


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=str(HERE.parents[2] / ".roar" / "models" / "whisper"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    out = dict(versions=dict(openai_whisper=whisper.__version__, torch=torch.__version__), cases={})
    for name, (language, picks) in SPANS.items():
        case = CASES[name]
        audio = read_audio(FIXTURES / case["audio"])
        model_dir = Path(args.models) / case["model"]
        model = torch_whisper(model_dir)
        heads = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in json.loads((model_dir / "config.json").read_text())["alignment_heads"]:
            heads[layer, head] = True
        model.register_buffer("alignment_heads", heads.to_sparse(), persistent=False)
        tok = get_tokenizer(model.is_multilingual, num_languages=model.num_languages,
                            language=language, task="transcribe")
        sentences = [t for t, _ in case["text"]]
        bounds, pauses = sentence_bounds(audio, len(sentences))
        spans = []
        for first, last in picks:
            # Cut in the middle of the pauses around the sentences.
            start = 0.0 if first == 0 else (pauses[first - 1][0] + pauses[first - 1][1]) / 2 / RATE
            end = (pauses[last][0] + pauses[last][1]) / 2 / RATE
            start, end = round(start, 2), round(min(end, start + 30), 2)
            assert bounds[last][1] < end <= start + 30, (name, first, last, start, end)
            text = " ".join(sentences[first:last + 1])
            tokens, words = reference_words(model, tok, audio, start, end, text)
            spans.append(dict(start=start, end=end, text=text, tokens=tokens, words=words,
                              sentence_starts=[round(bounds[i][0], 3) for i in range(first, last + 1)]))
            print(name, start, end, len(words), "words;", " ".join(
                f"{w['word'].strip()}@{w['start']:.2f}" for w in words[:6]), "...")
        out["cases"][name] = dict(model=case["model"], audio=case["audio"], language=language,
                                  spans=spans)
    path = FIXTURES / "force_align.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
