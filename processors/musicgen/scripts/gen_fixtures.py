#!/usr/bin/env python3
"""Generate roar-musicgen's fidelity fixtures and tiny models from the reference (run once; committed).

Reference: transformers 5.25 + torch 2.11 + torchaudio 2.11 + tokenizers (CPU).
Writes into ../tests/fixtures/:
  tiny/            a random-init MusicgenForConditionalGeneration in the Hugging Face layout
                   (config.json, generation_config.json, model.safetensors, tokenizer.json),
                   weight-normed convolutions stored as weight_g/weight_v as the released
                   checkpoints store them. The end-to-end tests generate with it.
  tiny-melody/     the same for MusicgenMelodyForConditionalGeneration (+ preprocessor_config.json)
  reference.safetensors   inputs, intermediates and outputs of both, from the reference

Random init with a fixed seed, then every parameter is redrawn at a scale that keeps
activations O(1): with the reference's 0.02 init the logits of a 32-wide model are nearly flat,
greedy decoding would turn on float noise, and a wrong layer norm or sign would hide.
"""
import json
import math
import os
import shutil

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (EncodecConfig, LogitsProcessor, LogitsProcessorList, MusicgenConfig,
                          MusicgenDecoderConfig, MusicgenForConditionalGeneration,
                          MusicgenMelodyConfig, MusicgenMelodyDecoderConfig,
                          MusicgenMelodyFeatureExtractor, MusicgenMelodyForConditionalGeneration,
                          T5Config)
from transformers.audio_utils import chroma_filter_bank
from transformers.models.t5.modeling_t5 import T5Attention

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")
PROMPT = "lofi hip hop beat with mellow piano chords and vinyl crackle"
CODEBOOK = 64  # codebook size = decoder vocabulary; pad/BOS id is CODEBOOK
GUIDANCE = 3.0

CORPUS = [
    "lofi hip hop beat with mellow piano chords and vinyl crackle",
    "80s pop track with bassy drums and synth",
    "90s rock song with loud guitars and heavy drums",
    "a calm ambient pad with soft strings",
    "upbeat electronic dance music with a driving bass line",
    "acoustic folk song with fingerpicked guitar and harmonica",
    "jazz trio with walking bass, brushed drums and piano",
    "epic orchestral soundtrack with brass and choir",
    "reggae groove with offbeat guitar and deep bass",
    "happy rock with electric guitar and drums",
    "sad piano ballad in a minor key",
    "funky disco with slap bass and strings",
    "techno with a four on the floor kick and hi hats",
    "classical string quartet playing a slow waltz",
    "chiptune melody with square waves and arpeggios",
]


def build_tokenizer():
    """A small Unigram tokenizer laid out like T5's tokenizer.json (Metaspace, </s> appended;
    pad 0, eos 1, unk 2), so the Rust side reads it through the same code path."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=160, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", shrinking_factor=0.75)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    eos = tok.token_to_id("</s>")
    assert (tok.token_to_id("<pad>"), eos, tok.token_to_id("<unk>")) == (0, 1, 2)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", eos)])
    return tok


def t5_config(vocab):
    return T5Config(vocab_size=vocab, d_model=24, d_kv=8, d_ff=40, num_layers=2, num_heads=3,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    feed_forward_proj="relu", layer_norm_epsilon=1e-6, dropout_rate=0.0)


def encodec_config():
    # The 32 kHz model's structure (hop 640, 50 frames/s, reflect padding, non-causal, LSTM)
    # at a tiny width; 64 codes = 6 bits, 1.2 kbps / (50 * 6) = 4 quantizers.
    return EncodecConfig(target_bandwidths=[1.2], sampling_rate=32000, audio_channels=1,
                         normalize=False, chunk_length_s=None, overlap=None, hidden_size=16,
                         num_filters=4, num_residual_layers=1, upsampling_ratios=[8, 5, 4, 4],
                         norm_type="weight_norm", kernel_size=7, last_kernel_size=7,
                         residual_kernel_size=3, dilation_growth_rate=2, use_causal_conv=False,
                         pad_mode="reflect", compress=2, num_lstm_layers=2, trim_right_ratio=1.0,
                         codebook_size=CODEBOOK, codebook_dim=16, use_conv_shortcut=False)


def decoder_kwargs():
    return dict(vocab_size=CODEBOOK, max_position_embeddings=64, num_hidden_layers=2, ffn_dim=48,
                num_attention_heads=4, hidden_size=32, num_codebooks=4, pad_token_id=CODEBOOK,
                bos_token_id=CODEBOOK, dropout=0.0, activation_function="gelu")


def randomize(model):
    """Redraws every parameter and codebook so that activations stay O(1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original0") or name.endswith("weight_g"):
                p.copy_(0.5 + torch.rand_like(p))  # weight-norm gains
            elif "layer_norm" in name or "LayerNorm" in name or name.endswith("final_layer_norm.weight"):
                p.copy_((1.0 + 0.2 * torch.randn_like(p)) if name.endswith("weight") else 0.1 * torch.randn_like(p))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn_like(p))
            elif "embed_tokens" in name or name.endswith("shared.weight"):
                p.copy_(torch.randn_like(p))
            elif "lstm" in name:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1] if p.dim() > 1 else 64))
            elif "lm_heads" in name:
                # Wide logit gaps: greedy decoding must not turn on float noise.
                p.copy_(4.0 * torch.randn_like(p) / math.sqrt(p.shape[-1]))
            elif p.dim() >= 2:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
            else:
                p.copy_(0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("codebook.embed"):
                b.copy_(0.5 * torch.randn_like(b))
            elif name.endswith("codebook.embed_avg"):
                b.copy_(torch.randn_like(b))
            elif name.endswith("cluster_size"):
                b.copy_(torch.rand_like(b))
    model.eval()


def save_hub_layout(model, tok, out, extra_files=()):
    """save_pretrained, then rename weight-norm parametrizations to the released checkpoints'
    weight_g / weight_v names; tokenizer.json beside it."""
    if os.path.exists(out):
        shutil.rmtree(out)
    model.save_pretrained(out)
    path = os.path.join(out, "model.safetensors")
    sd = load_file(path)
    renamed = {}
    for k, v in sd.items():
        k = k.replace(".parametrizations.weight.original0", ".weight_g")
        k = k.replace(".parametrizations.weight.original1", ".weight_v")
        renamed[k] = v.contiguous()
    save_file(renamed, path, metadata={"format": "pt"})
    tok.save(os.path.join(out, "tokenizer.json"))
    for name, content in extra_files:
        with open(os.path.join(out, name), "w") as f:
            json.dump(content, f, indent=2)
    # Released models sample by default: top-k 250, guidance 3.
    gen = {"bos_token_id": CODEBOOK, "decoder_start_token_id": CODEBOOK, "pad_token_id": CODEBOOK,
           "do_sample": True, "guidance_scale": GUIDANCE, "max_length": 1500, "top_k": 250}
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)


class CodesRecorder:
    """Wraps audio_encoder.decode to keep the codes generate() decodes."""

    def __init__(self, model):
        self.codes = None
        inner = model.audio_encoder.decode

        def decode(audio_codes, *args, **kwargs):
            self.codes = audio_codes.clone()
            return inner(audio_codes, *args, **kwargs)

        model.audio_encoder.decode = decode


class Margins(LogitsProcessor):
    """Smallest gap between the best and second-best guided logit over all greedy steps: the
    codes comparison is only meaningful when no step is a near tie."""

    def __init__(self, codebooks):
        self.k = codebooks
        self.min_gap = float("inf")

    def __call__(self, input_ids, scores):
        half = scores.shape[0] // 2
        guided = scores[half:] + (scores[:half] - scores[half:]) * GUIDANCE
        top = guided.topk(2, dim=-1).values
        self.min_gap = min(self.min_gap, float((top[:, 0] - top[:, 1]).min()))
        return scores


def delay_inputs(gen, frames, codebooks=4):
    """Decoder inputs shaped like the delay pattern: BOS where t <= k, random codes elsewhere."""
    ids = torch.randint(0, CODEBOOK, (codebooks, frames), generator=gen)
    for k in range(codebooks):
        ids[k, : k + 1] = CODEBOOK
    return ids


def tone(seconds, notes, rate=32000, noise=0.02, gen=None):
    n = int(seconds * rate)
    t = torch.arange(n) / rate
    per = n // len(notes)
    wav = torch.zeros(n)
    for i, f in enumerate(notes):
        seg = slice(i * per, n if i == len(notes) - 1 else (i + 1) * per)
        wav[seg] = 0.4 * torch.sin(2 * math.pi * f * t[seg]) + 0.15 * torch.sin(2 * math.pi * 2 * f * t[seg])
    return wav + noise * torch.randn(n, generator=gen)


def musicgen_fixtures(tok, io, gen):
    ids = torch.tensor([tok.encode(PROMPT).ids])
    io["prompt_ids"] = ids.to(torch.int64)
    cfg = MusicgenConfig(text_encoder=t5_config(tok.get_vocab_size()).to_dict(),
                         audio_encoder=encodec_config().to_dict(),
                         decoder=MusicgenDecoderConfig(**decoder_kwargs()).to_dict())
    model = MusicgenForConditionalGeneration(cfg)
    randomize(model)
    save_hub_layout(model, tok, os.path.join(OUT, "tiny"))
    mask = torch.ones_like(ids)

    with torch.no_grad():
        # T5 encoder and the projection into the decoder's width.
        t5 = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        io["t5.hidden"] = t5.contiguous()
        cond = model.enc_to_dec_proj(t5) * mask[..., None]
        io["enc.projected"] = cond.contiguous()
        # Teacher-forced decoder logits, conditional and null (CFG) halves as generate() builds them.
        dec_ids = delay_inputs(gen, 16)
        io["dec.input_ids"] = dec_ids.to(torch.int64)
        enc = torch.cat([cond, torch.zeros_like(cond)])
        enc_mask = torch.cat([mask, torch.zeros_like(mask)])
        logits = model.decoder(input_ids=dec_ids.repeat(2, 1), encoder_hidden_states=enc,
                               encoder_attention_mask=enc_mask).logits
        io["dec.logits"] = logits.reshape(2, 4, 16, CODEBOOK).contiguous()

        # EnCodec: decode random codes; encode a tone (length not a multiple of the hop).
        codes = torch.randint(0, CODEBOOK, (1, 1, 4, 10), generator=gen)
        io["encodec.codes"] = codes[0, 0].to(torch.int64)
        io["encodec.decoded"] = model.audio_encoder.decode(codes, [None]).audio_values[0].contiguous()
        wav = tone(0.25, [220.0, 330.0], gen=gen)[: 6400 + 123]
        io["encodec.wav"] = wav.contiguous()
        emb = model.audio_encoder.encoder(wav[None, None])
        io["encodec.embeddings"] = emb[0].contiguous()
        io["encodec.encoded"] = model.audio_encoder.encode(wav[None, None]).audio_codes[0, 0].to(torch.int64)

        # Greedy generation with guidance, 50 steps; codes as generate() decodes them.
        rec = CodesRecorder(model)
        margins = Margins(4)
        audio = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                               guidance_scale=GUIDANCE, max_new_tokens=50,
                               logits_processor=LogitsProcessorList([margins]))
        io["gen.codes"] = rec.codes[0, 0].to(torch.int64)
        io["gen.audio"] = audio[0].contiguous()
        print("greedy min top-2 gap", margins.min_gap)
        assert margins.min_gap > 1e-3, "a near tie would make the codes comparison flaky; change the seed"

        # Continuation of an audio prompt (0.3 s), greedy with guidance, 30 steps.
        prompt = tone(0.3, [261.6, 392.0], gen=gen)
        io["cont.wav"] = prompt.contiguous()
        rec = CodesRecorder(model)
        margins = Margins(4)
        model.generate(input_ids=ids, attention_mask=mask, input_values=prompt[None, None],
                       do_sample=False, guidance_scale=GUIDANCE, max_new_tokens=30,
                       logits_processor=LogitsProcessorList([margins]))
        io["cont.codes"] = rec.codes[0, 0].to(torch.int64)
        print("continuation min top-2 gap", margins.min_gap)
        assert margins.min_gap > 1e-3

    # T5 relative-position buckets at t5-base's settings, for relative positions -300..300.
    rel = torch.arange(-300, 301)
    io["t5.buckets_32_128"] = T5Attention._relative_position_bucket(rel, True, 32, 128).to(torch.int64)


def melody_fixtures(tok, io, gen):
    ids = torch.tensor([tok.encode(PROMPT).ids])
    mask = torch.ones_like(ids)
    cfg = MusicgenMelodyConfig(text_encoder=t5_config(tok.get_vocab_size()).to_dict(),
                               audio_encoder=encodec_config().to_dict(),
                               decoder=MusicgenMelodyDecoderConfig(**decoder_kwargs()).to_dict(),
                               num_chroma=12, chroma_length=20)
    model = MusicgenMelodyForConditionalGeneration(cfg)
    randomize(model)
    fe = MusicgenMelodyFeatureExtractor()
    save_hub_layout(model, tok, os.path.join(OUT, "tiny-melody"),
                    extra_files=[("preprocessor_config.json", fe.to_dict())])

    # Chroma: a short melody (16 frames, repeated up to chroma_length) and a longer one (truncated).
    for name, secs, notes in [("short", 2.0, [261.6, 329.6, 392.0, 523.3]),
                              ("long", 3.0, [220.0, 246.9, 277.2, 293.7, 329.6, 370.0])]:
        wav = tone(secs, notes, gen=gen)
        io[f"melody.{name}.wav"] = wav.contiguous()
        feats = fe(wav.numpy(), sampling_rate=32000, return_tensors="pt").input_features
        io[f"melody.{name}.chroma"] = feats[0].contiguous()
        # The same steps up to the one-hot, to compare the floats before the argmax.
        with torch.no_grad():
            spec = fe.spectrogram(wav[None]).squeeze(1)
            raw = torch.einsum("cf,...ft->...ct", fe.chroma_filters, spec)
            norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6)
        io[f"melody.{name}.chroma_norm"] = norm[0].transpose(0, 1).contiguous()
    io["melody.filters_2048"] = torch.from_numpy(
        chroma_filter_bank(sampling_rate=32000, num_frequency_bins=2048, tuning=0, num_chroma=12)).float()

    with torch.no_grad():
        chroma = io["melody.short.chroma"][None]
        # Teacher-forced logits over [chroma prefix, text prefix, decoder tokens], both CFG halves.
        t5 = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        text = model.enc_to_dec_proj(t5)
        null_chroma = torch.zeros_like(chroma)
        null_chroma[:, :, 0] = 1
        audio = model.audio_enc_to_dec_proj(torch.cat([chroma, null_chroma]))
        reps = math.ceil(cfg.chroma_length / audio.shape[1])
        audio = audio.repeat(1, reps, 1)[:, : cfg.chroma_length]
        prefix = torch.cat([audio, torch.cat([text, torch.zeros_like(text)])], dim=1)
        dec_ids = delay_inputs(gen, 12)
        io["melody.dec.input_ids"] = dec_ids.to(torch.int64)
        logits = model.decoder(input_ids=dec_ids.repeat(2, 1), encoder_hidden_states=prefix).logits
        io["melody.dec.logits"] = logits.reshape(2, 4, -1, CODEBOOK).contiguous()

        rec = CodesRecorder(model)
        margins = Margins(4)
        model.generate(input_ids=ids, attention_mask=mask, input_features=chroma, do_sample=False,
                       guidance_scale=GUIDANCE, max_new_tokens=40,
                       logits_processor=LogitsProcessorList([margins]))
        io["melody.gen.codes"] = rec.codes[0, 0].to(torch.int64)
        print("melody greedy min top-2 gap", margins.min_gap)
        assert margins.min_gap > 1e-3


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    tok = build_tokenizer()
    io = {}
    musicgen_fixtures(tok, io, gen)
    melody_fixtures(tok, io, gen)
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(OUT, "reference.safetensors"))
    for k, v in io.items():
        print(k, tuple(v.shape), v.dtype, float(v.float().abs().max()))


if __name__ == "__main__":
    main()
