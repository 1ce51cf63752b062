//! Gemma 3n against the reference (transformers' `Gemma3nForConditionalGeneration` and
//! `Gemma3nAudioFeatureExtractor`, float32) on a tiny random model with every feature of the
//! released layout: fixtures from scripts/gen_gemma3n_reference.py (see its docstring for the
//! config and what each tensor is).
//!
//! * log-mel features of a test clip;
//! * audio-encoder states (subsampling convolutions, conformer blocks, reduction) on a clip
//!   that ends in padding frames, and the audio soft tokens built from them;
//! * text logits at every position of a prompt holding audio soft tokens, hard audio tokens
//!   and ids past the per-layer table, and of a text-only sequence fed through the cache in
//!   chunks across the sliding window;
//! * 32 greedy tokens with that audio, decoded through the cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use roar_gemma::gemma3n::Gemma3n;
use roar_testkit::assert_close;

/// Float32 on both sides, the same operations up to summation order and the FFT's rounding.
const BOUND: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join("gemma3n_tiny_ref.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn model() -> Gemma3n {
    Gemma3n::load(&fixtures().join("gemma3n_tiny"), &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn ids(t: &Tensor) -> Vec<u32> {
    t.to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|i| i as u32)
        .collect()
}

fn flags(t: &Tensor) -> Vec<bool> {
    t.to_vec1::<u8>()
        .unwrap()
        .into_iter()
        .map(|p| p != 0)
        .collect()
}

/// The reference's padded clip as the encoder's input `([1, frames, mels], [1, frames])`.
fn padded_mel(r: &HashMap<String, Tensor>) -> (Tensor, Tensor) {
    (
        r["mel_padded"].unsqueeze(0).unwrap(),
        r["mel_padding"].unsqueeze(0).unwrap(),
    )
}

/// Encoder states and padding of the reference's padded clip, through the model's own path.
fn audio_states(m: &Gemma3n, r: &HashMap<String, Tensor>) -> (Tensor, Vec<bool>) {
    let (mel, pad) = padded_mel(r);
    let (x, pad) = m.audio.forward(&mel, &pad).unwrap();
    (x.squeeze(0).unwrap(), flags(&pad.squeeze(0).unwrap()))
}

#[test]
fn log_mel_features_match_reference() {
    let r = reference();
    let m = model();
    let f = m.features(&flat(&r["audio"])).unwrap();
    let want = &r["mel"];
    assert_eq!((f.frames, f.mels), want.dims2().unwrap());
    assert!(
        f.padding.iter().all(|p| !p),
        "the clip alone has no padding"
    );
    let d = assert_close("log-mel", &f.mel, &flat(want), BOUND);
    eprintln!("log-mel max abs diff {d:e}");
}

#[test]
fn audio_encoder_states_match_reference() {
    let r = reference();
    let m = model();
    let (states, pad) = audio_states(&m, &r);
    assert_eq!(states.dims(), r["audio_states"].dims());
    assert_eq!(pad, flags(&r["audio_padding"]));
    assert!(pad.iter().any(|&p| p) && pad.iter().any(|&p| !p));
    let d = assert_close(
        "audio encoder states",
        &flat(&states),
        &flat(&r["audio_states"]),
        BOUND,
    );
    eprintln!("audio states max abs diff {d:e}");

    let soft = m.audio_soft_tokens(&states, &pad).unwrap();
    let d = assert_close(
        "audio soft tokens",
        &flat(&soft),
        &flat(&r["soft_tokens"]),
        BOUND,
    );
    eprintln!("soft tokens max abs diff {d:e}");
}

#[test]
fn multimodal_prompt_logits_match_reference() {
    let r = reference();
    let m = model();
    let (states, pad) = audio_states(&m, &r);
    let soft = m.audio_soft_tokens(&states, &pad).unwrap();
    let prompt = ids(&r["prompt_ids"]);
    let mut cache = m.text.new_cache();
    let logits = m
        .forward(&prompt, Some(&soft), &mut cache, prompt.len())
        .unwrap();
    let d = assert_close("prompt logits", &flat(&logits), &flat(&r["logits"]), BOUND);
    eprintln!("prompt logits max abs diff {d:e}");
}

#[test]
fn text_logits_through_the_cache_match_reference() {
    let r = reference();
    let m = model();
    let text = ids(&r["text_ids"]);
    let want: Vec<Vec<f32>> = r["text_logits"].to_vec2().unwrap();
    // Chunks that start and end on either side of the 8-token window.
    let mut cache = m.text.new_cache();
    let mut from = 0;
    let mut worst = 0f32;
    for len in [5, 1, 9, 3, 1, 21] {
        let chunk = &text[from..from + len];
        let logits = m.forward(chunk, None, &mut cache, len).unwrap();
        for (i, row) in logits.to_vec2::<f32>().unwrap().iter().enumerate() {
            let p = from + i;
            worst = worst.max(assert_close(
                &format!("text logits, position {p}"),
                row,
                &want[p],
                BOUND,
            ));
        }
        from += len;
    }
    assert_eq!(from, text.len());
    assert_eq!(cache.len, text.len());
    eprintln!("text logits max abs diff {worst:e}");
}

#[test]
fn greedy_generation_with_audio_matches_reference() {
    let r = reference();
    let m = model();
    let (states, pad) = audio_states(&m, &r);
    let soft = m.audio_soft_tokens(&states, &pad).unwrap();
    let got = m
        .greedy(&ids(&r["prompt_ids"]), Some(&soft), 32, &[], &mut |_| true)
        .unwrap();
    assert_eq!(got, ids(&r["greedy_ids"]));
}

#[test]
fn bad_prompts_are_errors() {
    let r = reference();
    let m = model();
    let mut cache = m.text.new_cache();
    let (states, pad) = audio_states(&m, &r);
    let soft = m.audio_soft_tokens(&states, &pad).unwrap();
    // Out of the vocabulary; placeholders without audio; a count that does not match.
    assert!(m.forward(&[2, 512], None, &mut cache, 1).is_err());
    assert!(m.forward(&[2, 449, 449], None, &mut cache, 1).is_err());
    assert!(m
        .forward(&[2, 449, 449], Some(&soft), &mut cache, 1)
        .is_err());
    assert!(m.forward(&[], None, &mut cache, 1).is_err());
    assert_eq!(cache.len, 0, "a refused prompt leaves the cache as it was");
}
