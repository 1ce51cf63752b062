//! Lyrics as data: a sheet of sections and lines (from a text model or the user), timed by
//! aligning its words to a speech recogniser's timed words (for given lyrics, words the
//! recogniser force-aligned in the spans `spans` plans), and written out as text, JSON,
//! enhanced LRC, SRT and WebVTT. Pure functions over plain types: the model that writes the
//! sheet and the recogniser that times the words are the caller's.

pub mod align;
pub mod clean;
pub mod format;
pub mod spans;

use serde::{Deserialize, Serialize};

/// One word as a speech recogniser heard it (Whisper's word timestamps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedWord {
    /// The word as recognised; surrounding spaces and punctuation are allowed.
    pub word: String,
    /// Seconds from the start of the audio.
    pub start: f32,
    pub end: f32,
    /// The recogniser's probability for the word, in [0, 1].
    pub probability: f32,
}

/// Lyric text before timing: sections of lines.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LyricSheet {
    pub sections: Vec<SheetSection>,
}

/// A verse, chorus...: lines sung together, with the label the text gave it, if any.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SheetSection {
    pub label: Option<String>,
    pub lines: Vec<String>,
}

/// Longest sheet accepted, in characters: far above any song, small enough that a user's
/// pasted text cannot make alignment (quadratic in words) run away.
pub const MAX_SHEET_CHARS: usize = 64 * 1024;

impl LyricSheet {
    /// Reads lyrics as people write them: one line per line, blank lines between sections,
    /// an optional `[Chorus]`-style label on a line of its own. Fails on text with no words
    /// or longer than [`MAX_SHEET_CHARS`].
    pub fn parse(text: &str) -> Result<Self, SheetError> {
        if text.chars().count() > MAX_SHEET_CHARS {
            return Err(SheetError::TooLong(MAX_SHEET_CHARS));
        }
        let mut sheet = LyricSheet::default();
        let mut current = SheetSection::default();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() {
                if !current.lines.is_empty() {
                    sheet.sections.push(std::mem::take(&mut current));
                }
                continue;
            }
            if let Some(label) = section_label(line) {
                if !current.lines.is_empty() {
                    sheet.sections.push(std::mem::take(&mut current));
                }
                current.label = Some(label);
                continue;
            }
            let line = collapse_spaces(line);
            if !words_of(&line).is_empty() {
                current.lines.push(line);
            }
        }
        if !current.lines.is_empty() {
            sheet.sections.push(current);
        }
        if sheet.sections.is_empty() {
            return Err(SheetError::NoWords);
        }
        Ok(sheet)
    }

    /// Every word of every line, in order.
    pub fn words(&self) -> Vec<String> {
        self.sections
            .iter()
            .flat_map(|s| s.lines.iter())
            .flat_map(|l| words_of(l))
            .collect()
    }
}

/// Why a lyric text cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SheetError {
    #[error("the lyrics contain no words")]
    NoWords,
    #[error("the lyrics are longer than {0} characters")]
    TooLong(usize),
}

/// `[Chorus]`, `(Verse 2)`, `Chorus:` alone on a line → the label. Short, so that a sung line
/// in parentheses (a backing vocal) stays a line.
fn section_label(line: &str) -> Option<String> {
    let inner = line
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .or_else(|| line.strip_prefix('(').and_then(|l| l.strip_suffix(')')))
        .or_else(|| line.strip_suffix(':'))?
        .trim();
    let lower = inner.to_lowercase();
    const NAMES: [&str; 10] = [
        "verse",
        "chorus",
        "pre-chorus",
        "prechorus",
        "bridge",
        "intro",
        "outro",
        "hook",
        "refrain",
        "interlude",
    ];
    let known = NAMES.iter().any(|n| lower.starts_with(n));
    (known && inner.split_whitespace().count() <= 3).then(|| inner.to_string())
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The words of a line as written (punctuation kept on the word it touches); tokens with no
/// letter or digit (a lone dash) are not words.
pub fn words_of(line: &str) -> Vec<String> {
    line.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(str::to_string)
        .collect()
}

/// A word reduced for comparison: lower case, letters and digits only (apostrophes dropped,
/// so "don't" meets "dont").
pub fn normalize_word(w: &str) -> String {
    w.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A timed lyric word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LyricWord {
    pub text: String,
    pub start: f32,
    pub end: f32,
    /// How sure the timing is, in [0, 1]: the recogniser's probability times how well the
    /// words matched; 0 for a word whose time was interpolated between its neighbours.
    pub confidence: f32,
}

/// A timed line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LyricLine {
    pub text: String,
    pub start: f32,
    pub end: f32,
    pub words: Vec<LyricWord>,
}

/// A timed section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LyricSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub lines: Vec<LyricLine>,
}

/// Timed lyrics: what the output formats are written from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lyrics {
    pub sections: Vec<LyricSection>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_labels_and_lines() {
        let s = LyricSheet::parse(
            "[Verse 1]\nHello  darkness, my old friend\nI've come to talk\n\n\n(Chorus)\n(ooh ooh)\nSound of silence\n",
        )
        .unwrap();
        assert_eq!(s.sections.len(), 2);
        assert_eq!(s.sections[0].label.as_deref(), Some("Verse 1"));
        assert_eq!(
            s.sections[0].lines,
            ["Hello darkness, my old friend", "I've come to talk"]
        );
        assert_eq!(s.sections[1].label.as_deref(), Some("Chorus"));
        // A parenthesised sung line is a line, not a label.
        assert_eq!(s.sections[1].lines, ["(ooh ooh)", "Sound of silence"]);
        assert_eq!(s.words().len(), 14);
    }

    #[test]
    fn label_between_lines_starts_a_section() {
        let s = LyricSheet::parse("one two\nChorus:\nthree").unwrap();
        assert_eq!(s.sections.len(), 2);
        assert_eq!(s.sections[1].label.as_deref(), Some("Chorus"));
    }

    #[test]
    fn rejects_empty_and_huge_text() {
        assert_eq!(
            LyricSheet::parse(" \n - \n[Chorus]\n"),
            Err(SheetError::NoWords)
        );
        let huge = "la ".repeat(MAX_SHEET_CHARS);
        assert!(matches!(
            LyricSheet::parse(&huge),
            Err(SheetError::TooLong(_))
        ));
    }

    #[test]
    fn normalizes_for_comparison() {
        assert_eq!(normalize_word(" Don't,"), "dont");
        assert_eq!(normalize_word("Ça!"), "ça");
        assert_eq!(words_of("a - b ...c"), ["a", "b", "...c"]);
    }
}
