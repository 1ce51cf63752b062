//! roar-whisper against the reference implementations on the same weights, on committed
//! fixtures made by `scripts/gen_fixtures.py` (audio longer than 60 s, so that long-form decoding
//! runs over several 30 s windows): faster-whisper (CTranslate2, float32) for the features and
//! the decoding, openai-whisper's PyTorch model (float32, loaded from the same `model.bin`) for
//! encoder output and logits, which CTranslate2 does not hand out unmasked.
//!
//! `en_tiny` (English, tiny.en) runs every check. `de_base` (German, base, language detected)
//! runs the network checks and the greedy long form with word timings, which compares every
//! window's tokens (as segments), seeks and words; per-window decoding on its own and beam
//! search are left to tiny.en, where they cost a third as much.

mod fixture;

use std::collections::HashMap;

use candle_core::{Device, IndexOp, Tensor};
use roar_testkit::{assert_close, max_abs_diff};

use crate::decode::{decode_window, WindowParams};
use crate::mel::{HOP, N_FRAMES};
use crate::transcribe::compute_mel;
use crate::{TranscribeOptions, Whisper};
use fixture::{Case, Run};

/// Log-mel against faster-whisper's features.
const MEL_BOUND: f32 = 1e-4;
/// Encoder output and first-step logits against the float32 PyTorch model, where float32
/// is that accurate: where the reference itself is more than half of this from the same
/// model in float64 on the compared values (base's encoder: 2e-4), the bound is twice the
/// reference's own float32 error over the whole window (two float32 implementations err
/// independently; base's encoder: 4e-4 and 8e-4, so no float32 code can meet 1e-4 there).
const MODEL_BOUND: f32 = 1e-4;
/// Mean token log-probability and no-speech probability of a window.
const SCORE_BOUND: f32 = 1e-3;
/// Segment bounds from timestamp tokens (20 ms steps: only rounding can differ).
const TIME_BOUND: f32 = 1e-3;
/// Word start and end.
const WORD_BOUND: f32 = 0.05;

/// Splits a reference prompt into the previous text and the start-of-transcript sequence.
fn split_prompt<'a>(w: &Whisper, prompt: &'a [u32]) -> (&'a [u32], &'a [u32]) {
    let sp = &w.tokenizer.specials;
    let sot = prompt
        .iter()
        .position(|&t| t == sp.sot)
        .expect("a start-of-transcript token in the reference prompt");
    let previous = match prompt.first() {
        Some(&t) if t == sp.sot_prev => &prompt[1..sot],
        _ => &prompt[..0],
    };
    (previous, &prompt[sot..])
}

fn encode(w: &Whisper, audio: &[f32], seek: usize, frames: usize) -> Tensor {
    let mel = compute_mel(w, audio);
    let window = mel.window(seek, frames, &Device::Cpu).expect("mel window");
    w.model.encoder.forward(&window).expect("encoder")
}

fn check_mel(name: &str) {
    let case = fixture::case(name);
    let audio = fixture::audio(&case);
    let w = fixture::model(&case);
    let (mel, frames) = w.mel.log_mel(&audio, N_FRAMES * HOP);
    assert_eq!(audio.len() / HOP, case.content_frames);
    let picked: Vec<usize> = (0..case.content_frames).step_by(case.mel_stride).collect();
    let got: Vec<f32> = (0..w.mel.n_mels())
        .flat_map(|m| picked.iter().map(move |&f| (m, f)))
        .map(|(m, f)| mel[m * frames + f])
        .collect();
    let want = fixture::vec1(&fixture::tensors(name), "mel");
    let d = assert_close(&format!("{name}: log-mel"), &got, &want, MEL_BOUND);
    eprintln!(
        "{name}: log-mel max abs diff {d:e} over {} values",
        got.len()
    );
}

/// Encoder output (every `encoder_stride`-th frame) and the logits after the whole prompt,
/// for each probed window.
fn check_model(name: &str) {
    let case = fixture::case(name);
    let audio = fixture::audio(&case);
    let w = fixture::model(&case);
    let t = fixture::tensors(name);
    assert!(!case.probes.is_empty());
    for (j, probe) in case.probes.iter().enumerate() {
        let enc = encode(&w, &audio, probe.seek, probe.frames);
        let rows: Vec<u32> = (0..enc.dim(1).unwrap() as u32)
            .step_by(case.encoder_stride)
            .collect();
        let picked = enc
            .i(0)
            .and_then(|e| e.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0))
            .and_then(|e| e.flatten_all()?.to_vec1::<f32>())
            .expect("encoder rows");
        let what = format!("{name}: encoder output, window {j} (seek {})", probe.seek);
        compare(&case, &what, &picked, &t, &format!("encoder_w{j}"));

        let mut state = w.model.decoder.start(&enc).expect("decoder state");
        let tokens = Tensor::new(probe.prompt.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .expect("prompt");
        let (logits, _) = w.model.decoder.forward(&tokens, &mut state, &[]).unwrap();
        let last: Vec<f32> = logits
            .i((0, probe.prompt.len() - 1))
            .and_then(|l| l.to_vec1())
            .unwrap();
        let what = format!(
            "{name}: first-step logits, window {j} (prompt of {} tokens)",
            probe.prompt.len()
        );
        compare(&case, &what, &last, &t, &format!("logits_w{j}"));
        // The generator decoded this window with the PyTorch model too and got CTranslate2's
        // tokens: the float32 reference is the model faster-whisper runs.
        let agree = &case.checks[&format!("greedy_w{j}_torch_equals_ct2")];
        assert_eq!(agree, &serde_json::Value::Bool(true), "{name}: window {j}");
    }
}

/// `got` against the float32 reference `key` (its float64 twin is `key` with `64`, and the
/// generator's check `<key>_torch_f32_vs_f64` is float32's error over the whole window).
fn compare(case: &Case, what: &str, got: &[f32], t: &HashMap<String, Tensor>, key: &str) {
    let want = fixture::vec1(t, key);
    let exact = fixture::vec1(t, &key.replacen("_w", "64_w", 1));
    let (here, _) = max_abs_diff(&want, &exact).expect("finite references");
    let check = format!("{key}_torch_f32_vs_f64");
    let window = case.checks[&check]
        .as_f64()
        .unwrap_or_else(|| panic!("fixture check {check}")) as f32;
    let bound = if here <= MODEL_BOUND / 2.0 {
        MODEL_BOUND
    } else {
        2.0 * window.max(here)
    };
    let d = assert_close(what, got, &want, bound);
    let (to_exact, _) = max_abs_diff(got, &exact).expect("finite");
    eprintln!(
        "{what}: max abs diff {d:e} (bound {bound:e}); from float64 {to_exact:e}, the \
         reference {here:e} (over the window {window:e})"
    );
}

/// Decodes each window the reference decoded, from the reference's seek and prompt, and
/// compares tokens and scores: every window on its own, so a defect shows where it is.
fn check_windows(name: &str, pick: fn(&Case) -> &Run, beam: Option<usize>) {
    let case = fixture::case(name);
    let audio = fixture::audio(&case);
    let w = fixture::model(&case);
    let mel = compute_mel(&w, &audio);
    let run = pick(&case);
    assert!(run.windows.len() >= 3, "the fixture covers several windows");
    let mut failures = Vec::new();
    for (i, win) in run.windows.iter().enumerate() {
        // Sampling at a higher temperature cannot be compared token by token.
        assert_eq!(
            win.temperature, 0.0,
            "{name}: reference window {i} fell back"
        );
        let frames = (case.content_frames - win.seek).min(N_FRAMES);
        let window = mel.window(win.seek, frames, &Device::Cpu).unwrap();
        let enc = w.model.encoder.forward(&window).unwrap();
        let (previous, sot_seq) = split_prompt(&w, &win.prompt);
        let p = WindowParams {
            temperature: 0.0,
            beam_size: beam,
            patience: 1.0,
            timestamps: true,
            prompt: previous,
            sot_seq,
            max_initial_timestamp: 1.0,
            seed: 0,
        };
        let got = decode_window(&w.model, &enc, &w.tokenizer.specials, &w.hints, &p).unwrap();
        let sum = |avg: f32, n: usize| avg * (n + 1) as f32;
        let (got_sum, want_sum) = (
            sum(got.avg_logprob, got.tokens.len()),
            sum(win.avg_logprob, win.tokens.len()),
        );
        let at = format!("window {i} (seek {})", win.seek);
        if got.tokens != win.tokens {
            let first = got
                .tokens
                .iter()
                .zip(&win.tokens)
                .position(|(a, b)| a != b)
                .unwrap_or(got.tokens.len().min(win.tokens.len()));
            let text = |t: &[u32]| w.tokenizer.decode(t).unwrap_or_default();
            // A tie between hypotheses may go either way; anything else is a defect.
            if (got_sum - want_sum).abs() > SCORE_BOUND {
                failures.push(format!(
                    "{at}: tokens differ from index {first} ({} vs {} tokens), sequence \
                     log-probability {got_sum:.4} vs {want_sum:.4}\n  got:  {:?}\n  want: {:?}",
                    got.tokens.len(),
                    win.tokens.len(),
                    text(&got.tokens),
                    text(&win.tokens),
                ));
                continue;
            }
            eprintln!("{name} {at}: a tie ({got_sum} vs {want_sum}) decided otherwise");
        }
        if (got.avg_logprob - win.avg_logprob).abs() > SCORE_BOUND || !got.avg_logprob.is_finite() {
            failures.push(format!(
                "{at}: mean log-probability {} vs {}",
                got.avg_logprob, win.avg_logprob
            ));
        }
        if (got.no_speech_prob - win.no_speech_prob).abs() > SCORE_BOUND
            || !got.no_speech_prob.is_finite()
        {
            failures.push(format!(
                "{at}: no-speech probability {} vs {}",
                got.no_speech_prob, win.no_speech_prob
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}, beam {beam:?}: {} of {} windows differ from the reference:\n{}",
        failures.len(),
        run.windows.len(),
        failures.join("\n")
    );
}

/// The whole long-form transcription: seeks, segments (tokens and times) and, with word
/// timestamps, every word's start and end.
fn check_long_form(name: &str, pick: fn(&Case) -> &Run, beam: Option<usize>, words: bool) {
    let case = fixture::case(name);
    let audio = fixture::audio(&case);
    let w = fixture::model(&case);
    let run = pick(&case);
    let opts = TranscribeOptions {
        language: case.language.clone(),
        beam_size: beam,
        word_timestamps: words,
        ..TranscribeOptions::default()
    };
    let t = w.transcribe(&audio, &opts, &mut |_| true).unwrap();
    assert_eq!(t.language, case.detected_language);
    // Word error rates against the spoken text: what a defect costs a user (the assertions
    // below are stricter: the reference's tokens exactly).
    let spoken = case.sentences.join(" ");
    let wers = format!(
        "WER against the spoken text: roar {:.3}, the reference {:.3}",
        fixture::wer(&spoken, &t.text),
        fixture::wer(&spoken, &run.text)
    );
    eprintln!("{name}, beam {beam:?}, words {words}: {wers}");
    let got: Vec<(usize, &[u32])> = t
        .segments
        .iter()
        .map(|s| (s.seek, s.tokens.as_slice()))
        .collect();
    let want: Vec<(usize, &[u32])> = run
        .segments
        .iter()
        .map(|s| (s.seek, s.tokens.as_slice()))
        .collect();
    if got != want {
        let show = |segs: &[(usize, &[u32])]| {
            segs.iter()
                .map(|(seek, toks)| format!("  {seek}: {:?}", w.tokenizer.decode(toks).unwrap()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{name}, beam {beam:?}, words {words}: segments differ from the reference ({wers})\n\
             got ({} segments, windows at {:?}):\n{}\nwant ({} segments, windows at {:?}):\n{}",
            got.len(),
            windows_of(&got),
            show(&got),
            want.len(),
            windows_of(&want),
            show(&want),
        );
    }
    let bound = if words { WORD_BOUND } else { TIME_BOUND };
    let got_times: Vec<f32> = t.segments.iter().flat_map(|s| [s.start, s.end]).collect();
    let want_times: Vec<f32> = run.segments.iter().flat_map(|s| [s.start, s.end]).collect();
    let d = assert_close(
        &format!("{name}: segment times"),
        &got_times,
        &want_times,
        bound,
    );
    eprintln!("{name}, beam {beam:?}: segment times max abs diff {d}");
    if !words {
        return;
    }
    let (mut n, mut worst) = (0, 0f32);
    for (s, r) in t.segments.iter().zip(&run.segments) {
        let texts: Vec<&str> = s.words.iter().map(|x| x.word.as_str()).collect();
        let want: Vec<&str> = r.words.iter().map(|x| x.word.as_str()).collect();
        assert_eq!(texts, want, "{name}: words of the segment at {}", r.start);
        let got: Vec<f32> = s.words.iter().flat_map(|x| [x.start, x.end]).collect();
        let want: Vec<f32> = r.words.iter().flat_map(|x| [x.start, x.end]).collect();
        match max_abs_diff(&got, &want) {
            Ok((d, _)) if d <= WORD_BOUND => {
                n += s.words.len();
                worst = worst.max(d);
            }
            other => panic!(
                "{name}: word times of the segment at {} s: {other:?}\n got: {:?}\nwant: {:?}",
                r.start,
                s.words
                    .iter()
                    .map(|x| (x.word.as_str(), x.start, x.end))
                    .collect::<Vec<_>>(),
                r.words
                    .iter()
                    .map(|x| (x.word.as_str(), x.start, x.end))
                    .collect::<Vec<_>>(),
            ),
        }
    }
    assert!(n > 0, "{name}: no words compared");
    eprintln!("{name}: {n} words, start and end at most {worst} s from the reference");
}

fn windows_of(segs: &[(usize, &[u32])]) -> Vec<usize> {
    let mut v: Vec<usize> = segs.iter().map(|s| s.0).collect();
    v.dedup();
    v
}

#[test]
fn wer_counts_word_edits() {
    assert_eq!(fixture::wer("a b c d", "a b c d"), 0.0);
    assert_eq!(fixture::wer("a b c d", "a x c"), 0.5);
    assert_eq!(fixture::wer("Hello, world!", "hello world"), 0.0);
}

#[test]
fn en_tiny_log_mel() {
    check_mel("en_tiny");
}

#[test]
fn en_tiny_encoder_and_first_step_logits() {
    check_model("en_tiny");
}

#[test]
fn en_tiny_greedy_windows() {
    check_windows("en_tiny", |c| &c.greedy, None);
}

#[test]
fn en_tiny_beam5_windows() {
    check_windows("en_tiny", |c| &c.beam5, Some(5));
}

#[test]
fn en_tiny_beam5_long_form() {
    check_long_form("en_tiny", |c| &c.beam5, Some(5), false);
}

#[test]
fn en_tiny_greedy_long_form_with_word_timings() {
    check_long_form("en_tiny", |c| &c.greedy_words, None, true);
}

#[test]
fn de_base_encoder_and_first_step_logits() {
    check_model("de_base");
}

#[test]
fn de_base_greedy_long_form_with_word_timings() {
    check_long_form("de_base", |c| &c.greedy_words, None, true);
}
