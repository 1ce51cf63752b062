//! Forced alignment (`Whisper::force_align`) against openai-whisper on the same weights and
//! audio: the committed speech of the fidelity fixtures, known sentences timed as given (not
//! as heard), by the fixture of `scripts/gen_force_align.py`.

mod common;

use roar_testkit::max_abs_diff;
use roar_whisper::{AlignSpan, WhisperError};
use serde::Deserialize;

use common::{fixtures, flac, load};

/// Word start and end against the reference: the fidelity fixtures' bound for word times
/// (two float32 implementations; DTW moves a boundary by whole 20 ms audio tokens).
const WORD_BOUND: f32 = 0.05;
/// Mean token probability of a word.
const PROB_BOUND: f32 = 1e-3;

#[derive(Deserialize)]
struct Fixture {
    cases: std::collections::HashMap<String, Case>,
}

#[derive(Deserialize)]
struct Case {
    model: String,
    audio: String,
    language: String,
    spans: Vec<Span>,
}

#[derive(Deserialize)]
struct Span {
    start: f32,
    end: f32,
    text: String,
    tokens: Vec<u32>,
    words: Vec<RefWord>,
}

#[derive(Deserialize, Debug)]
struct RefWord {
    word: String,
    start: f32,
    end: f32,
    probability: f32,
}

fn case(name: &str) -> Case {
    let text = std::fs::read_to_string(fixtures().join("force_align.json")).unwrap();
    let mut f: Fixture = serde_json::from_str(&text).unwrap();
    f.cases.remove(name).expect("case in the fixture")
}

fn check(name: &str) {
    let case = case(name);
    let w = load(&case.model);
    let audio = flac(&case.audio);
    let spans: Vec<AlignSpan> = case
        .spans
        .iter()
        .map(|s| AlignSpan {
            start: s.start,
            end: s.end,
            text: s.text.clone(),
        })
        .collect();
    for s in &case.spans {
        let tokens = w.tokenizer().encode(&format!(" {}", s.text)).unwrap();
        assert_eq!(tokens, s.tokens, "{name}: text tokens of {:?}", s.text);
    }
    let mut calls = 0;
    let got = w
        .force_align(&audio, &spans, Some(&case.language), &mut |_| {
            calls += 1;
            true
        })
        .unwrap();
    assert_eq!(
        calls,
        spans.len() + 1,
        "progress before and after each span"
    );
    let want: Vec<&RefWord> = case.spans.iter().flat_map(|s| &s.words).collect();
    let texts: Vec<&str> = got.iter().map(|x| x.word.as_str()).collect();
    let want_texts: Vec<&str> = want.iter().map(|x| x.word.as_str()).collect();
    assert_eq!(texts, want_texts, "{name}: words");
    let times = |v: Vec<(f32, f32)>| v.into_iter().flat_map(|(a, b)| [a, b]).collect::<Vec<_>>();
    let g = times(got.iter().map(|x| (x.start, x.end)).collect());
    let r = times(want.iter().map(|x| (x.start, x.end)).collect());
    let (d, at) = max_abs_diff(&g, &r).expect("finite times");
    assert!(
        d <= WORD_BOUND,
        "{name}: word time {at} is {d} s from the reference ({:?} vs {:?})",
        got[at / 2],
        want[at / 2]
    );
    let gp: Vec<f32> = got.iter().map(|x| x.probability).collect();
    let rp: Vec<f32> = want.iter().map(|x| x.probability).collect();
    let (dp, _) = max_abs_diff(&gp, &rp).expect("finite probabilities");
    assert!(
        dp <= PROB_BOUND,
        "{name}: word probability {dp} from the reference"
    );
    eprintln!(
        "{name}: {} words, times at most {d} s and probabilities {dp} from the reference",
        got.len()
    );
}

#[test]
fn tiny_en_aligns_given_text_like_the_reference() {
    check("en_tiny");
}

#[test]
fn base_aligns_given_german_text_like_the_reference() {
    check("de_base");
}

#[test]
fn bad_spans_and_languages_are_invalid_input() {
    let w = load("tiny.en");
    let audio = vec![0.01f32; 16_000 * 5];
    let span = |start: f32, end: f32, text: &str| AlignSpan {
        start,
        end,
        text: text.into(),
    };
    let bad = [
        (span(-1.0, 2.0, "a"), "en"),
        (span(2.0, 2.0, "a"), "en"),
        (span(3.0, 2.0, "a"), "en"),
        (span(0.0, 31.0, "a"), "en"),
        (span(f32::NAN, 1.0, "a"), "en"),
        (span(6.0, 7.0, "a"), "en"),
        (span(0.0, 1.0, &"la ".repeat(500)), "en"),
        (span(0.0, 1.0, "a"), "de"),
    ];
    for (s, lang) in bad {
        let r = w.force_align(&audio, std::slice::from_ref(&s), Some(lang), &mut |_| true);
        assert!(
            matches!(r, Err(WhisperError::InvalidInput(_))),
            "{s:?} {lang}: {r:?}"
        );
    }
    let nan = vec![f32::NAN; 16_000];
    let r = w.force_align(&nan, &[span(0.0, 1.0, "a")], None, &mut |_| true);
    assert!(matches!(r, Err(WhisperError::InvalidInput(_))));
    // Spans without words give no words; cancelling stops.
    let none = w
        .force_align(&audio, &[span(0.0, 1.0, " \n ")], None, &mut |_| true)
        .unwrap();
    assert!(none.is_empty());
    let r = w.force_align(&audio, &[span(0.0, 1.0, "a b")], None, &mut |_| false);
    assert!(matches!(r, Err(WhisperError::Canceled)));
}
