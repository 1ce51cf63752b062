//! Reading the fixtures of `scripts/gen_fixtures.py`: the committed FLAC audio, the JSON of
//! reference windows, segments and words, and the safetensors of reference tensors.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::Whisper;

/// One reference case (`en_tiny`, `de_base`).
#[derive(Debug, Deserialize)]
pub(super) struct Case {
    pub model: String,
    pub audio: String,
    pub samples: usize,
    pub sample_sum: i64,
    pub sample_weighted_sum: i64,
    pub content_frames: usize,
    /// The language given to the reference (`None`: it detected one).
    pub language: Option<String>,
    pub detected_language: String,
    /// The text espeak-ng spoke, sentence by sentence.
    pub sentences: Vec<String>,
    pub mel_stride: usize,
    pub encoder_stride: usize,
    pub checks: HashMap<String, serde_json::Value>,
    pub probes: Vec<Probe>,
    pub greedy: Run,
    pub beam5: Run,
    pub greedy_words: Run,
}

/// A window whose encoder output and first-step logits are in the safetensors.
#[derive(Debug, Deserialize)]
pub(super) struct Probe {
    pub seek: usize,
    pub frames: usize,
    /// The whole decoder prompt: `[<|startofprev|>, previous text...,] <|startoftranscript|>...`.
    pub prompt: Vec<u32>,
}

/// One long-form transcription by the reference.
#[derive(Debug, Deserialize)]
pub(super) struct Run {
    pub text: String,
    pub windows: Vec<Window>,
    pub segments: Vec<RefSegment>,
}

/// One decoded 30 s window.
#[derive(Debug, Deserialize)]
pub(super) struct Window {
    pub seek: usize,
    pub prompt: Vec<u32>,
    pub tokens: Vec<u32>,
    pub avg_logprob: f32,
    pub temperature: f32,
    pub no_speech_prob: f32,
}

#[derive(Debug, Deserialize)]
pub(super) struct RefSegment {
    pub seek: usize,
    pub start: f32,
    pub end: f32,
    pub tokens: Vec<u32>,
    pub words: Vec<RefWord>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RefWord {
    pub start: f32,
    pub end: f32,
    pub word: String,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whisper")
}

/// `$ROAR_MODELS_DIR/whisper`, or `<repo>/.roar/models/whisper` (where scripts/test.sh puts
/// the weights).
fn models_dir() -> PathBuf {
    match std::env::var_os("ROAR_MODELS_DIR") {
        Some(d) => PathBuf::from(d).join("whisper"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.roar/models/whisper"),
    }
}

pub(super) fn case(name: &str) -> Case {
    let path = fixtures().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

pub(super) fn tensors(name: &str) -> HashMap<String, Tensor> {
    let path = fixtures().join(format!("{name}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

pub(super) fn vec1(t: &HashMap<String, Tensor>, key: &str) -> Vec<f32> {
    t.get(key)
        .unwrap_or_else(|| panic!("fixture tensor {key} missing"))
        .flatten_all()
        .and_then(|x| x.to_vec1())
        .unwrap_or_else(|e| panic!("fixture tensor {key}: {e}"))
}

pub(super) fn model(case: &Case) -> Whisper {
    Whisper::load(&models_dir(), &case.model, &Device::Cpu).unwrap_or_else(|e| {
        panic!("{e} (run scripts/whisper/fetch-weights.sh .roar/models/whisper tiny.en base)")
    })
}

/// The case's audio: its 16-bit samples / 32768, checked against the sums the generator saw.
pub(super) fn audio(case: &Case) -> Vec<f32> {
    let path = fixtures().join(&case.audio);
    let samples = roar_testkit::audio::flac_i16(&path);
    assert_eq!(samples.len(), case.samples, "{path:?}: sample count");
    let sum: i64 = samples.iter().map(|&s| i64::from(s)).sum();
    let weighted: i64 = samples
        .iter()
        .enumerate()
        .map(|(i, &s)| i64::from(s) * (i % 1000) as i64)
        .sum();
    assert_eq!(
        (sum, weighted),
        (case.sample_sum, case.sample_weighted_sum),
        "{path:?}: samples differ from the generator's"
    );
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// Word error rate of `hypothesis` against `reference`, case and punctuation ignored.
pub(super) fn wer(reference: &str, hypothesis: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_lowercase)
                    .collect::<String>()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (r, h) = (words(reference), words(hypothesis));
    // Levenshtein distance over words, one row at a time.
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}
