"""Generates the small audio files the end-to-end tests upload (run once; outputs committed).

    pip install soundfile numpy && python scripts/make_audio_fixtures.py

Each file is 1.5 s of a 440 Hz sine at -6 dBFS peak, 22.05 kHz stereo, in one container/codec.
"""
import pathlib

import numpy as np
import soundfile as sf

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio"
RATE = 22050
SECONDS = 1.5


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(RATE * SECONDS)) / RATE
    mono = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    stereo = np.stack([mono, mono], axis=1).astype(np.float32)
    sf.write(OUT / "sine.wav", stereo, RATE, subtype="PCM_16")
    sf.write(OUT / "sine.flac", stereo, RATE, subtype="PCM_16")
    sf.write(OUT / "sine.ogg", stereo, RATE, format="OGG", subtype="VORBIS")
    sf.write(OUT / "sine.mp3", stereo, RATE, format="MP3", subtype="MPEG_LAYER_III")
    for p in sorted(OUT.iterdir()):
        print(p.name, p.stat().st_size)


if __name__ == "__main__":
    main()
