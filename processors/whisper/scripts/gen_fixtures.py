#!/usr/bin/env python3
"""Fidelity fixtures for roar-whisper, made by the reference implementations on the same weights.

    /path/to/python processors/whisper/scripts/gen_fixtures.py [--models .roar/models/whisper] [--speak]

Two cases, each more than 60 s long so that long-form decoding runs over several 30 s windows
(with pauses between sentences and one long pause):

* `en_tiny`: English (espeak-ng `en-us`) with tiny.en;
* `de_base`: German (espeak-ng `de`) with the multilingual base, language detected.

The audio is committed (`tests/fixtures/whisper/*.flac`, 16 kHz 16-bit mono); `--speak` makes it
again with espeak-ng (the result depends on espeak-ng's version, hence the committed copy).

References, both loading the CTranslate2 `model.bin` that roar loads:

* faster-whisper (CTranslate2, `compute_type="float32"`) gives the log-mel features and the
  long-form transcription: window by window its seek, prompt, tokens and scores, at beam 1 and 5
  without word timestamps, and the segments and word timings of beam 1 with word timestamps.
* openai-whisper's PyTorch model, with the weights read from `model.bin` by the small parser
  below (float16 on disk, float32 here), gives the encoder output and the first-step logits in
  float32, which CTranslate2 does not hand out unmasked (its float32 encoder output is 1e-3 to
  4e-3 from PyTorch's: it computes differently, not more exactly). The script checks that the
  PyTorch model decodes the probed windows greedily to CTranslate2's tokens, and measures how
  far float32 itself is from exact there: the same model in float64 (stored beside the float32
  values as `encoder64_w*`, `logits64_w*`; its error over the whole window goes in `checks`).

Output per case in `tests/fixtures/whisper/`: `<case>.json` (metadata, checks, probes,
windows, segments, words) and `<case>.safetensors` (every 16th mel frame, every 15th encoder
frame of the probed windows, their first-step logits).
Tested with faster-whisper 1.2.1, ctranslate2 4.8.5, openai-whisper 20250625, torch 2.11.
"""

import argparse
import json
import logging
import os
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import av
import ctranslate2
import faster_whisper
import numpy as np
import scipy.signal
import torch
import whisper
from faster_whisper import WhisperModel
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures" / "whisper"
RATE = 16_000

ENGLISH = [
    ("Good morning, and welcome to the weekly planning meeting.", 0.5),
    ("Before we begin, please make sure your microphone is muted.", 0.4),
    ("The first item on the agenda is the new office in Berlin.", 0.6),
    ("Construction started in March and should be finished by the end of the summer.", 0.4),
    ("We still need three more desks, a printer, and a coffee machine.", 0.8),
    ("The second item is the customer survey.", 0.3),
    ("Most people said they liked the new design, but some found the menus confusing.", 0.5),
    ("Maria will prepare a short report for next Tuesday.", 3.0),
    ("Now let us talk about the budget.", 0.4),
    ("We spent a little more than we planned on travel this quarter.", 0.5),
    ("Next quarter we will try to hold more meetings online.", 0.4),
    ("If you have ideas about saving money, send them to Peter.", 1.0),
    ("The last item is the summer party.", 0.3),
    ("It will take place in the garden behind the library.", 0.5),
    ("There will be music, food, and a small boat race on the river.", 0.4),
    ("Please tell us by Friday whether you can come.", 0.6),
    ("Thank you all for listening, and have a wonderful week.", 0.5),
]

GERMAN = [
    ("Guten Morgen und herzlich willkommen zu unserer kleinen Stadtführung.", 0.5),
    ("Wir beginnen am alten Marktplatz, der schon im Mittelalter das Zentrum der Stadt war.", 0.4),
    ("Rechts sehen Sie das Rathaus mit seiner schönen Uhr.", 0.6),
    ("Jeden Mittag um zwölf Uhr tanzen dort kleine Figuren.", 0.4),
    ("Danach gehen wir über die Brücke zum Fluss.", 0.5),
    ("Im Sommer fahren hier viele Boote, und die Kinder baden im Wasser.", 2.5),
    ("Auf der anderen Seite liegt der große Park.", 0.4),
    ("Dort gibt es einen Biergarten, einen Spielplatz und einen See mit Enten.", 0.6),
    ("Am Nachmittag besuchen wir das Museum für Geschichte.", 0.4),
    ("Es zeigt alte Karten, Münzen und Kleider aus vielen Jahrhunderten.", 0.8),
    ("Bitte bleiben Sie während der Führung immer in der Gruppe.", 0.4),
    ("Wenn Sie Fragen haben, können Sie mich jederzeit ansprechen.", 0.5),
    ("Zum Schluss trinken wir gemeinsam einen Kaffee in der Altstadt.", 0.4),
    ("Vielen Dank und viel Spaß in unserer schönen Stadt.", 0.5),
]

CASES = {
    "en_tiny": dict(model="tiny.en", audio="english.flac", voice="en-us", text=ENGLISH,
                    language="en"),
    "de_base": dict(model="base", audio="german.flac", voice="de", text=GERMAN, language=None),
}

# Every 16th mel frame, every 15th encoder frame: enough to catch any change in the model
# (every output depends on every weight) while keeping the fixtures small.
MEL_STRIDE = 16
ENC_STRIDE = 15


# ---------------------------------------------------------------------------------------------
# Audio


def speak(text, voice):
    """espeak-ng at 150 words/min, resampled to 16 kHz (float64 in [-1, 1])."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", path, text], check=True)
        with wave.open(path) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    x = x.astype(np.float64) / 32768.0
    g = np.gcd(rate, RATE)
    return scipy.signal.resample_poly(x, RATE // g, rate // g)


def make_audio(sentences, voice, path):
    parts = []
    for text, pause in sentences:
        parts.append(speak(text, voice))
        parts.append(np.zeros(int(round(pause * RATE))))
    x = np.concatenate(parts)
    q = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    out = av.open(str(path), "w", format="flac")
    stream = out.add_stream("flac", rate=RATE, layout="mono")
    frame = av.AudioFrame.from_ndarray(q[None, :], format="s16", layout="mono")
    frame.rate = RATE
    for packet in stream.encode(frame):
        out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()


def read_audio(path):
    """The FLAC's 16-bit samples / 32768, exactly what the Rust test reads."""
    with av.open(str(path)) as c:
        s = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert s.dtype == np.int16
    return s.astype(np.float32) / np.float32(32768.0)


# ---------------------------------------------------------------------------------------------
# The same weights in PyTorch

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path):
    """Variables of a CTranslate2 model.bin (version 6 layout), aliases resolved."""
    b = Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("<H")
        s = b[pos:pos + n].rstrip(b"\0").decode()
        pos += n
        return s

    version = take("<I")
    assert version == 6, version
    assert string() == "WhisperSpec"
    take("<I")
    out = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype = CT2_DTYPES[take("<B")]
        nbytes = take("<I")
        count = int(np.prod(shape)) if shape else 1
        out[name] = np.frombuffer(b, dtype=dtype, count=count, offset=pos).reshape(shape)
        pos += nbytes
    for _ in range(take("<I")):
        alias, target = string(), string()
        out[alias] = out[target]
    return out


# openai-whisper's LayerNorm computes in float32 whatever the input; let it follow the input so
# that the float64 copy of the model (the accuracy check) is float64 throughout. Unchanged for
# float32 inputs.
whisper.model.LayerNorm.forward = lambda self, x: torch.nn.LayerNorm.forward(self, x)


def torch_whisper(model_dir):
    v = read_ct2(Path(model_dir) / "model.bin")
    f32 = lambda name: torch.from_numpy(np.asarray(v[name], dtype=np.float32).copy())
    layers = lambda side: sum(1 for k in v if k.startswith(f"{side}/layer_") and k.endswith("ffn/linear_0/weight"))
    vocab, state = v["decoder/embeddings/weight"].shape
    dims = whisper.model.ModelDimensions(
        n_mels=v["encoder/conv1/weight"].shape[1],
        n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=state,
        n_audio_head=int(v["encoder/num_heads"]),
        n_audio_layer=layers("encoder"),
        n_vocab=vocab,
        n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=state,
        n_text_head=int(v["decoder/num_heads"]),
        n_text_layer=layers("decoder"),
    )
    sd = {}

    def linear(ct, pt, bias=True):
        sd[f"{pt}.weight"] = f32(f"{ct}/weight")
        if bias:
            sd[f"{pt}.bias"] = f32(f"{ct}/bias")

    def norm(ct, pt):
        sd[f"{pt}.weight"] = f32(f"{ct}/gamma")
        sd[f"{pt}.bias"] = f32(f"{ct}/beta")

    def fused(ct, pt, names):
        w = f32(f"{ct}/weight").chunk(len(names))
        b = f32(f"{ct}/bias").chunk(len(names))
        for n, wi, bi in zip(names, w, b):
            sd[f"{pt}.{n}.weight"] = wi
            if n != "key":  # Whisper's key projections have no bias (CTranslate2 stores zeros)
                sd[f"{pt}.{n}.bias"] = bi

    for c in ("conv1", "conv2"):
        linear(f"encoder/{c}", f"encoder.{c}")
    sd["encoder.positional_embedding"] = f32("encoder/position_encodings/encodings")
    norm("encoder/layer_norm", "encoder.ln_post")
    sd["decoder.token_embedding.weight"] = f32("decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = f32("decoder/position_encodings/encodings")
    norm("decoder/layer_norm", "decoder.ln")
    for side, n in (("encoder", dims.n_audio_layer), ("decoder", dims.n_text_layer)):
        for i in range(n):
            ct, pt = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            fused(f"{ct}/self_attention/linear_0", f"{pt}.attn", ["query", "key", "value"])
            linear(f"{ct}/self_attention/linear_1", f"{pt}.attn.out")
            norm(f"{ct}/self_attention/layer_norm", f"{pt}.attn_ln")
            linear(f"{ct}/ffn/linear_0", f"{pt}.mlp.0")
            linear(f"{ct}/ffn/linear_1", f"{pt}.mlp.2")
            norm(f"{ct}/ffn/layer_norm", f"{pt}.mlp_ln")
            if side == "decoder":
                linear(f"{ct}/attention/linear_0", f"{pt}.cross_attn.query")
                fused(f"{ct}/attention/linear_1", f"{pt}.cross_attn", ["key", "value"])
                linear(f"{ct}/attention/linear_2", f"{pt}.cross_attn.out")
                norm(f"{ct}/attention/layer_norm", f"{pt}.cross_attn_ln")
    m = whisper.model.Whisper(dims)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all("alignment_heads" in k for k in missing), (missing, unexpected)
    return m.float().eval()


# ---------------------------------------------------------------------------------------------
# faster-whisper, window by window


class WindowLog(logging.Handler):
    """Collects faster-whisper's per-window debug lines ("Processing segment at ...")."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seeks = []

    def emit(self, record):
        if record.getMessage().startswith("Processing segment at"):
            hms = record.args[0]
            h, m, s = hms.split(":") if hms.count(":") == 2 else ("0", *hms.split(":"))
            self.seeks.append(round((int(h) * 3600 + int(m) * 60 + float(s)) * 100))


def transcribe(fw, audio, language, beam, words):
    """Runs faster-whisper's long-form transcription, recording every decoded window."""
    windows = []
    original = fw.generate_with_fallback

    def recording(encoder_output, prompt, tokenizer, options):
        r = original(encoder_output, prompt, tokenizer, options)
        result, avg_logprob, temperature, ratio = r
        windows.append(dict(
            prompt=list(prompt),
            tokens=list(result.sequences_ids[0]),
            avg_logprob=float(avg_logprob),
            temperature=float(temperature),
            compression_ratio=float(ratio),
            no_speech_prob=float(result.no_speech_prob),
        ))
        return r

    log = WindowLog()
    logger = fw.logger
    logger.setLevel(logging.DEBUG)
    logger.addHandler(log)
    fw.generate_with_fallback = recording
    try:
        segs, info = fw.transcribe(audio, language=language, beam_size=beam,
                                   word_timestamps=words, vad_filter=False)
        segs = list(segs)
    finally:
        fw.generate_with_fallback = original
        logger.removeHandler(log)
    assert len(log.seeks) == len(windows), (log.seeks, len(windows))
    for w, seek in zip(windows, log.seeks):
        w["seek"] = seek
    return dict(
        language=info.language,
        text="".join(s.text for s in segs),
        windows=windows,
        segments=[dict(
            seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=list(s.tokens),
            words=[dict(start=w.start, end=w.end, word=w.word, probability=w.probability)
                   for w in (s.words or [])],
        ) for s in segs],
    )


# ---------------------------------------------------------------------------------------------


def window_mel(features, seek):
    content = features.shape[-1] - 1
    n = min(3000, content - seek)
    return faster_whisper.audio.pad_or_trim(features[:, seek:seek + n]), n


def make_case(name, case, models_dir, speak_again):
    audio_path = FIXTURES / case["audio"]
    if speak_again or not audio_path.exists():
        make_audio(case["text"], case["voice"], audio_path)
    audio = read_audio(audio_path)
    model_dir = Path(models_dir) / case["model"]
    fw = WhisperModel(str(model_dir), device="cpu", compute_type="float32", cpu_threads=2)
    ref = torch_whisper(model_dir)
    ref64 = torch_whisper(model_dir).double()
    tensors, checks = {}, {}

    # Log-mel: faster-whisper's features (what its transcription used); openai-whisper's agree.
    features = fw.feature_extractor(audio)
    content = features.shape[-1] - 1
    frames = np.arange(0, content, MEL_STRIDE, dtype=np.int32)
    tensors["mel"] = np.ascontiguousarray(features[:, frames], dtype=np.float32)
    pt_mel = whisper.audio.log_mel_spectrogram(torch.from_numpy(audio), ref.dims.n_mels,
                                               padding=whisper.audio.N_SAMPLES).numpy()
    checks["mel_openai_vs_faster_whisper"] = float(np.abs(pt_mel[:, :content] - features[:, :content]).max())

    runs = {
        "greedy": transcribe(fw, audio, case["language"], 1, False),
        "beam5": transcribe(fw, audio, case["language"], 5, False),
        "greedy_words": transcribe(fw, audio, case["language"], 1, True),
    }
    language = runs["greedy"]["language"]

    # Probes: the first window (no previous text) and the second (previous text as prompt).
    probes = []
    for j, w in enumerate(runs["greedy"]["windows"][:2]):
        mel, n = window_mel(features, w["seek"])
        x = torch.from_numpy(mel[None].astype(np.float32))
        with torch.no_grad():
            enc = ref.encoder(x)
            tokens = torch.tensor([w["prompt"]])
            logits = ref.decoder(tokens, enc)[0, -1].numpy()
        enc = enc[0].numpy()
        # How far float32 itself is from exact here: the same model in float64.
        with torch.no_grad():
            enc64 = ref64.encoder(x.double())
            logits64 = ref64.decoder(tokens, enc64)[0, -1].numpy()
        enc64 = enc64[0].numpy()
        checks[f"encoder_w{j}_torch_f32_vs_f64"] = float(np.abs(enc - enc64).max())
        checks[f"logits_w{j}_torch_f32_vs_f64"] = float(np.abs(logits - logits64).max())
        tensors[f"encoder64_w{j}"] = np.ascontiguousarray(enc64[np.arange(0, enc.shape[0], ENC_STRIDE)], dtype=np.float32)
        tensors[f"logits64_w{j}"] = logits64.astype(np.float32)
        ct2_enc = np.array(fw.model.encode(ctranslate2.StorageView.from_array(x.numpy()), to_cpu=True))
        checks[f"encoder_w{j}_torch_vs_ct2"] = float(np.abs(ct2_enc[0] - enc).max())
        rows = np.arange(0, enc.shape[0], ENC_STRIDE, dtype=np.int32)
        tensors[f"encoder_w{j}"] = np.ascontiguousarray(enc[rows], dtype=np.float32)
        tensors[f"logits_w{j}"] = logits.astype(np.float32)
        # The PyTorch model decodes this window greedily to CTranslate2's tokens.
        sot = w["prompt"].index(fw.hf_tokenizer.token_to_id("<|startoftranscript|>"))
        opts = whisper.DecodingOptions(language=language,
                                       prompt=w["prompt"][1:sot] or None, fp16=False,
                                       temperature=0.0)
        pt = whisper.decoding.decode(ref, x[0], opts)
        checks[f"greedy_w{j}_torch_equals_ct2"] = pt.tokens == [t for t in w["tokens"]]
        probes.append(dict(seek=w["seek"], frames=n, prompt=w["prompt"]))

    meta = dict(
        case=name, model=case["model"], audio=case["audio"], samples=len(audio),
        # Decoding checks for the Rust side: the same 16-bit samples, in the same order.
        sample_sum=int(np.round(audio.astype(np.float64) * 32768).sum()),
        sample_weighted_sum=int((np.round(audio.astype(np.float64) * 32768) * (np.arange(len(audio)) % 1000)).sum()),
        content_frames=int(content),
        language=case["language"], detected_language=language,
        versions=dict(faster_whisper=faster_whisper.__version__, ctranslate2=ctranslate2.__version__,
                      openai_whisper=whisper.__version__, torch=torch.__version__,
                      espeak_ng=subprocess.run(["espeak-ng", "--version"], capture_output=True,
                                               text=True).stdout.strip()),
        sentences=[t for t, _ in case["text"]],
        mel_stride=MEL_STRIDE, encoder_stride=ENC_STRIDE,
        checks=checks, probes=probes, **runs,
    )
    (FIXTURES / f"{name}.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    save_file(tensors, str(FIXTURES / f"{name}.safetensors"))
    print(name, json.dumps(checks))
    for k, r in runs.items():
        print(f"  {k}: {len(r['windows'])} windows, seeks {[w['seek'] for w in r['windows']]}: {r['text']!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=str(HERE.parents[2] / ".roar" / "models" / "whisper"))
    ap.add_argument("--speak", action="store_true", help="make the audio again with espeak-ng")
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in args.case or sorted(CASES):
        make_case(name, CASES[name], args.models, args.speak)


if __name__ == "__main__":
    main()
