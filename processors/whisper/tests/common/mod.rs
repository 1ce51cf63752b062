//! Shared helpers: the model directory, speech made by espeak-ng, word error rate.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use candle_core::Device;
use roar_whisper::Whisper;

/// `$ROAR_MODELS_DIR/whisper`, or `<repo>/.roar/models/whisper` (where scripts/test.sh
/// puts the weights).
pub fn models_dir() -> PathBuf {
    match std::env::var_os("ROAR_MODELS_DIR") {
        Some(d) => PathBuf::from(d).join("whisper"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.roar/models/whisper"),
    }
}

pub fn load(variation: &str) -> Whisper {
    Whisper::load(&models_dir(), variation, &Device::Cpu).unwrap_or_else(|e| {
        panic!("{e} (run scripts/whisper/fetch-weights.sh .roar/models/whisper tiny.en base)")
    })
}

/// `text` spoken by espeak-ng (American English voice), as 16 kHz mono samples.
pub fn speak(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("speech.wav");
    let out = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .output()
        .expect("espeak-ng is installed (apt-get install espeak-ng)");
    assert!(
        out.status.success(),
        "espeak-ng failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (samples, rate) = read_wav(&std::fs::read(&wav).expect("wav written"));
    roar_crepe::resample::resample(&samples, rate, 16_000).expect("resample")
}

/// Mono 16-bit PCM WAV → samples in [-1, 1] and the sample rate.
fn read_wav(b: &[u8]) -> (Vec<f32>, u32) {
    assert_eq!(&b[0..4], b"RIFF");
    let mut pos = 12;
    let mut rate = 0;
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let size = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([b[body + 2], b[body + 3]]), 1, "mono");
            rate = u32::from_le_bytes(b[body + 4..body + 8].try_into().unwrap());
            assert_eq!(
                u16::from_le_bytes([b[body + 14], b[body + 15]]),
                16,
                "16-bit"
            );
        } else if id == b"data" {
            // espeak-ng may leave the size unset when streaming: read to the end.
            let end = body.saturating_add(size).min(b.len());
            let s = b[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
                .collect();
            return (s, rate);
        }
        pos = body + size + (size & 1);
    }
    panic!("no data chunk");
}

fn normalise(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Word error rate: word-level edit distance over the reference length.
pub fn wer(reference: &str, hypothesis: &str) -> f32 {
    let (r, h) = (normalise(reference), normalise(hypothesis));
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
    prev[h.len()] as f32 / r.len().max(1) as f32
}

/// The committed fixtures (audio, reference results).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whisper")
}

/// The FLAC's 16-bit samples / 32768, as the generator read them.
pub fn flac(name: &str) -> Vec<f32> {
    roar_testkit::audio::flac_i16(&fixtures().join(name))
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect()
}
