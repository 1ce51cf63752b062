//! Transcribing speech made by espeak-ng with the real tiny.en (and base) weights.

mod common;

use common::{load, speak, wer};
use roar_whisper::{to_srt, to_verbose_json, to_vtt, TranscribeOptions, WhisperError};

const SENTENCES: [&str; 4] = [
    "The weather today is sunny and warm.",
    "I would like a cup of coffee, please.",
    "We are going to the park on Saturday morning.",
    "My brother plays the guitar every evening.",
];

fn greedy() -> TranscribeOptions {
    TranscribeOptions {
        beam_size: None,
        ..TranscribeOptions::default()
    }
}

#[test]
fn wer_helper_counts_edits() {
    assert_eq!(wer("a b c d", "a b c d"), 0.0);
    assert_eq!(wer("a b c d", "a x c"), 0.5);
    assert_eq!(wer("Hello, world!", "hello world"), 0.0);
}

#[test]
fn tiny_en_transcribes_espeak_sentences() {
    let w = load("tiny.en");
    let audio: Vec<f32> = SENTENCES
        .iter()
        .flat_map(|s| {
            let mut a = speak(s);
            a.extend(std::iter::repeat_n(0.0, 8000));
            a
        })
        .collect();
    let duration = audio.len() as f32 / 16_000.0;
    let mut calls = Vec::new();
    let t = w
        .transcribe(&audio, &greedy(), &mut |p| {
            calls.push(p);
            true
        })
        .unwrap();
    let reference = SENTENCES.join(" ");
    let e = wer(&reference, &t.text);
    eprintln!("transcript: {:?} (WER {e:.2})", t.text);
    assert!(e <= 0.25, "WER {e} for {:?}", t.text);
    assert_eq!(t.language, "en");
    assert_eq!(calls.first(), Some(&0.0));
    assert_eq!(calls.last(), Some(&1.0));
    assert!(calls.windows(2).all(|p| p[0] <= p[1]));

    let mut last = 0.0;
    assert!(!t.segments.is_empty());
    for s in &t.segments {
        assert!(
            s.start >= last - 1e-3 && s.end >= s.start && s.end <= duration + 1e-3,
            "{s:?}"
        );
        last = s.start;
        assert!(!s.words.is_empty(), "words of {s:?}");
        let mut wl = s.start;
        for word in &s.words {
            assert!(
                word.start >= wl - 1e-3 && word.end >= word.start,
                "{word:?} in {s:?}"
            );
            assert!(
                word.start >= s.start - 1e-3 && word.end <= s.end + 1e-3,
                "{word:?} in {s:?}"
            );
            assert!((0.0..=1.0).contains(&word.probability));
            wl = word.start;
        }
    }
    // "weather" is said in the first sentence, "evening" at the end of the last.
    let words: Vec<_> = t.segments.iter().flat_map(|s| &s.words).collect();
    let find = |w: &str| {
        words
            .iter()
            .find(|x| x.word.to_lowercase().contains(w))
            .map(|x| x.start)
    };
    if let (Some(a), Some(b)) = (find("weather"), find("evening")) {
        assert!(
            a < 1.5 && b > duration - 4.0 && a < b,
            "weather at {a}, evening at {b}"
        );
    }

    let srt = to_srt(&t);
    let blocks: Vec<&str> = srt.trim_end().split("\n\n").collect();
    assert_eq!(blocks.len(), t.segments.len());
    for (i, b) in blocks.iter().enumerate() {
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines[0], (i + 1).to_string());
        assert!(
            lines[1].len() == 29 && lines[1].contains(" --> ") && lines[1].contains(','),
            "{b}"
        );
        assert!(!lines[2].trim().is_empty());
    }
    let vtt = to_vtt(&t);
    assert!(vtt.starts_with("WEBVTT\n\n"));
    assert_eq!(vtt.matches(" --> ").count(), t.segments.len());
    let v = to_verbose_json(&t);
    assert_eq!(v["language"], "en");
    assert_eq!(v["segments"].as_array().unwrap().len(), t.segments.len());
}

#[test]
fn cancel_and_bad_input() {
    let w = load("tiny.en");
    let err = w
        .transcribe(&[0.1; 1600], &greedy(), &mut |_| false)
        .unwrap_err();
    assert!(matches!(err, WhisperError::Canceled) && err.is_retryable());
    let err = w.transcribe(&[], &greedy(), &mut |_| true).unwrap_err();
    assert!(matches!(err, WhisperError::InvalidInput(_)) && !err.is_retryable());
    let err = w
        .transcribe(&[f32::NAN; 10], &greedy(), &mut |_| true)
        .unwrap_err();
    assert!(matches!(err, WhisperError::InvalidInput(_)));
    let opts = TranscribeOptions {
        language: Some("de".into()),
        ..greedy()
    };
    assert!(matches!(
        w.transcribe(&[0.0; 1600], &opts, &mut |_| true),
        Err(WhisperError::InvalidInput(_))
    ));
    let missing =
        roar_whisper::Whisper::load(&common::models_dir(), "no-such", &candle_core::Device::Cpu);
    assert!(matches!(missing, Err(WhisperError::WeightsMissing { .. })));
}

#[test]
fn base_detects_english() {
    let w = load("base");
    assert!(w.is_multilingual());
    let audio = speak(SENTENCES[1]);
    let (lang, p) = w.detect_language(&audio).unwrap();
    assert_eq!(lang, "en", "p = {p}");
    assert!(p > 0.5, "p = {p}");
    let t = w.transcribe(&audio, &greedy(), &mut |_| true).unwrap();
    assert_eq!(t.language, "en");
    let e = wer(SENTENCES[1], &t.text);
    assert!(e <= 0.25, "WER {e} for {:?}", t.text);
}

#[test]
fn safetensors_layout_gives_the_same_transcript() {
    let dir = tempfile::tempdir().unwrap();
    roar_whisper::convert_ct2_to_safetensors(
        &common::models_dir().join("tiny.en"),
        &dir.path().join("tiny.en-hf"),
    )
    .unwrap();
    assert!(dir.path().join("tiny.en-hf/model.safetensors").is_file());
    let hf =
        roar_whisper::Whisper::load(dir.path(), "tiny.en-hf", &candle_core::Device::Cpu).unwrap();
    let ct2 = load("tiny.en");
    assert_eq!(hf.dims(), ct2.dims());
    let audio = speak(SENTENCES[2]);
    let opts = TranscribeOptions {
        word_timestamps: false,
        ..greedy()
    };
    let a = ct2.transcribe(&audio, &opts, &mut |_| true).unwrap();
    let b = hf.transcribe(&audio, &opts, &mut |_| true).unwrap();
    assert_eq!(a.text, b.text);
    assert!(wer(SENTENCES[2], &b.text) <= 0.25, "{:?}", b.text);
}

#[test]
fn beam_search_with_initial_prompt() {
    let w = load("tiny.en");
    let audio = speak(SENTENCES[3]);
    let opts = TranscribeOptions {
        beam_size: Some(4),
        initial_prompt: Some("Notes from the family diary.".into()),
        word_timestamps: false,
        ..TranscribeOptions::default()
    };
    let t = w.transcribe(&audio, &opts, &mut |_| true).unwrap();
    let e = wer(SENTENCES[3], &t.text);
    assert!(e <= 0.25, "WER {e} for {:?}", t.text);
    // The prompt conditions the decoder but is never part of the output.
    assert!(!t.text.contains("diary"), "{:?}", t.text);
    assert!(t
        .segments
        .iter()
        .all(|s| s.temperature == 0.0 && s.avg_logprob < 0.0));
}
