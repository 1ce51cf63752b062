//! Where to cut a song for forced alignment. A recogniser that aligns known text by its
//! cross-attention (Whisper) sees one 30 s window at a time, and squeezes any word whose audio
//! lies outside the window to the window's edge; so lyrics go to it in spans of whole lines,
//! each at most a window long, cut in the pauses between lines. Where the lines are comes from
//! a first, rough timing (the lyrics aligned to the words the recogniser heard).

use super::Lyrics;

/// The longest span: Whisper's window.
pub const WINDOW_SECONDS: f32 = 30.0;
/// Audio kept before a span's first line and after the song's last, for rough times that
/// are late or early.
const MARGIN_SECONDS: f32 = 1.0;
/// The shortest span handed out, so that a span always holds some audio.
const MIN_SECONDS: f32 = 0.05;

/// A stretch of the audio and the lyric lines sung in it, joined by spaces.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSpan {
    pub start: f32,
    pub end: f32,
    pub text: String,
}

/// Spans covering every line of `rough` (lyrics timed roughly, in `[0, duration]` seconds),
/// in order: lines are kept whole and together while they fit a window; a span ends midway
/// between its last line and the next (the last span: a margin after its last line); the next
/// span starts there, or a margin before its first line after a long pause. A line longer
/// than a window gets a window of its own.
pub fn plan(rough: &Lyrics, duration: f32) -> Vec<TextSpan> {
    let lines: Vec<(f32, f32, &str)> = rough
        .sections
        .iter()
        .flat_map(|s| &s.lines)
        .filter(|l| !l.words.is_empty())
        .map(|l| (l.start, l.end.max(l.start), l.text.as_str()))
        .collect();
    let duration = if duration.is_finite() {
        duration.max(MIN_SECONDS)
    } else {
        MIN_SECONDS
    };
    let n = lines.len();
    // Where a span whose last line is `k` ends.
    let cut_after = |k: usize| -> f32 {
        match lines.get(k + 1) {
            Some(next) => (lines[k].1 + next.0.max(lines[k].1)) / 2.0,
            None => (lines[k].1 + MARGIN_SECONDS).min(duration),
        }
    };
    let mut spans: Vec<TextSpan> = Vec::new();
    let mut i = 0;
    while i < n {
        let lead = (lines[i].0 - MARGIN_SECONDS).max(0.0);
        let start = spans
            .last()
            .map_or(lead, |s| s.end.max(lead))
            .min(duration - MIN_SECONDS);
        let mut j = i;
        while j + 1 < n && cut_after(j + 1) - start <= WINDOW_SECONDS {
            j += 1;
        }
        let end = cut_after(j)
            .min(start + WINDOW_SECONDS)
            .min(duration)
            .max(start + MIN_SECONDS);
        let text = lines[i..=j]
            .iter()
            .map(|l| l.2)
            .collect::<Vec<_>>()
            .join(" ");
        spans.push(TextSpan { start, end, text });
        i = j + 1;
    }
    spans
}
