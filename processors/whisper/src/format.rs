//! Output formats: plain text, SubRip, WebVTT and OpenAI-style verbose JSON.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::Transcript;

/// `HH:MM:SS{sep}mmm`.
fn stamp(t: f32, sep: char) -> String {
    let ms = (t.max(0.0) as f64 * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Cue text: trimmed, and never a blank line (which would end the cue early).
fn cue_text(s: &str) -> String {
    s.trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text, one segment per line.
pub fn to_text(t: &Transcript) -> String {
    let mut out = String::new();
    for s in &t.segments {
        out.push_str(&cue_text(&s.text));
        out.push('\n');
    }
    out
}

/// SubRip subtitles: numbered cues, `00:00:01,000 --> 00:00:02,500`.
pub fn to_srt(t: &Transcript) -> String {
    let mut out = String::new();
    for (i, s) in t.segments.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            stamp(s.start, ','),
            stamp(s.end, ','),
            cue_text(&s.text)
        );
    }
    out
}

/// WebVTT subtitles.
pub fn to_vtt(t: &Transcript) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in &t.segments {
        // "-->" inside a cue would be read as a timing line.
        let text = cue_text(&s.text).replace("-->", "->");
        let _ = write!(
            out,
            "{} --> {}\n{}\n\n",
            stamp(s.start, '.'),
            stamp(s.end, '.'),
            text
        );
    }
    out
}

/// The shape of OpenAI's `verbose_json` transcription response.
pub fn to_verbose_json(t: &Transcript) -> Value {
    let segments: Vec<Value> = t
        .segments
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text,
                "tokens": s.tokens, "temperature": s.temperature, "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob,
            })
        })
        .collect();
    let words: Vec<Value> = t
        .segments
        .iter()
        .flat_map(|s| &s.words)
        .map(|w| json!({"word": w.word.trim(), "start": w.start, "end": w.end, "probability": w.probability}))
        .collect();
    let task = match t.task {
        crate::Task::Transcribe => "transcribe",
        crate::Task::Translate => "translate",
    };
    json!({
        "task": task, "language": t.language, "duration": t.duration, "text": t.text.trim(),
        "segments": segments, "words": words,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Segment, Task, Word};

    fn sample() -> Transcript {
        let seg = |id, start, end, text: &str| Segment {
            id,
            seek: 0,
            start,
            end,
            text: text.into(),
            tokens: vec![1, 2],
            temperature: 0.0,
            avg_logprob: -0.2,
            compression_ratio: 1.1,
            no_speech_prob: 0.01,
            words: vec![Word {
                start,
                end,
                word: " hi".into(),
                probability: 0.9,
            }],
        };
        Transcript {
            language: "en".into(),
            task: Task::Transcribe,
            duration: 3725.5,
            text: " Hello there. Second\n\nline -->".into(),
            segments: vec![
                seg(0, 0.0, 1.5, " Hello there."),
                seg(1, 3661.25, 3662.0, " Second\n\nline -->"),
            ],
        }
    }

    #[test]
    fn srt_and_vtt_cues() {
        let t = sample();
        let srt = to_srt(&t);
        assert!(srt.starts_with(
            "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n01:01:01,250 --> 01:01:02,000\n"
        ));
        assert!(srt.contains("Second line -->\n\n"));
        let vtt = to_vtt(&t);
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n"));
        assert!(vtt.contains("01:01:01.250 --> 01:01:02.000\nSecond line ->\n"));
    }

    #[test]
    fn verbose_json_shape() {
        let v = to_verbose_json(&sample());
        assert_eq!(v["task"], "transcribe");
        assert_eq!(v["segments"].as_array().unwrap().len(), 2);
        assert_eq!(v["segments"][1]["id"], 1);
        assert_eq!(v["words"][0]["word"], "hi");
        assert_eq!(to_text(&sample()), "Hello there.\nSecond line -->\n");
    }
}
