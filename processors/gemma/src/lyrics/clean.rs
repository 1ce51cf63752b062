//! Turns a recogniser's transcript into lyric lines and sections with a text model.
//!
//! The transcript is cut at the singer's pauses into chunks of a few dozen words; the model
//! sees each chunk in a few-shot prompt (a base model completes a pattern better than it
//! follows instructions) and writes it back as lines. Its answer is parsed leniently (stop
//! markers, bullets, quotes, labels, chatter) and checked against the chunk: a small model
//! drops, invents or repeats words, and lyrics must be the words that were sung, so an answer
//! whose words stray from the chunk's is replaced by lines cut at the pauses. Sections break at
//! long pauses.

use super::{normalize_word, LyricSheet, SheetSection, TimedWord};

/// How the transcript is cut and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanOptions {
    /// Most words sent to the model at once.
    pub max_chunk_words: usize,
    /// A pause this long (seconds) ends a chunk.
    pub chunk_pause: f32,
    /// A pause this long starts a new section.
    pub section_pause: f32,
    /// Without the model: a pause this long ends a line...
    pub line_pause: f32,
    /// ...and so does this many words.
    pub max_line_words: usize,
    /// Share of the chunk's words the answer must keep, and share of the answer's words that
    /// must come from the chunk, or the answer is not used.
    pub min_agreement: f32,
}

impl Default for CleanOptions {
    fn default() -> Self {
        Self {
            max_chunk_words: 48,
            chunk_pause: 1.5,
            section_pause: 4.0,
            line_pause: 0.6,
            max_line_words: 10,
            min_agreement: 0.8,
        }
    }
}

/// What ends the model's answer (the next example's separator, or a new example).
pub const STOP_MARKERS: [&str; 3] = ["###", "Transcript:", "\n\n\n"];

const INSTRUCTION: &str =
    "Speech-recognised song transcripts rewritten as lyrics: one sung line per line, \
the same words in the same order, capitalised, a blank line between verses.";

const EXAMPLES: [(&str, &str); 2] = [
    (
        "i walked along the river the water running cold and i was thinking of you",
        "I walked along the river\nThe water running cold\nAnd I was thinking of you",
    ),
    (
        "oh oh don't you know the night is young so come on let's go dancing till the morning sun",
        "Oh, oh, don't you know\nThe night is young\nSo come on, let's go\nDancing till the morning sun",
    ),
];

/// The few-shot prompt for one chunk of transcript text.
pub fn prompt(chunk: &str) -> String {
    let mut p = String::from(INSTRUCTION);
    p.push_str("\n\n");
    for (t, l) in EXAMPLES {
        p.push_str(&format!("Transcript: {t}\nLyrics:\n{l}\n###\n"));
    }
    p.push_str(&format!("Transcript: {}\nLyrics:\n", chunk.trim()));
    p
}

/// Tokens to allow for a chunk's answer: a word is one to three tokens, a line break one.
pub fn max_new_tokens(chunk_words: usize) -> usize {
    chunk_words * 3 + 16
}

/// The model's answer as lines, `None` standing for a section break (a blank line).
pub fn parse_answer(answer: &str) -> Vec<Option<String>> {
    let end = STOP_MARKERS
        .iter()
        .filter_map(|m| answer.find(m))
        .min()
        .unwrap_or(answer.len());
    let mut out: Vec<Option<String>> = Vec::new();
    for raw in answer[..end].lines() {
        let line = clean_line(raw);
        match line {
            None => {
                if matches!(out.last(), Some(Some(_))) {
                    out.push(None);
                }
            }
            Some(l) => out.push(Some(l)),
        }
    }
    while matches!(out.last(), Some(None)) {
        out.pop();
    }
    out
}

/// A line with list markers, quotes, labels and chat wrappers taken off; `None` when nothing
/// sung is left.
fn clean_line(raw: &str) -> Option<String> {
    let mut l = raw.trim();
    for prefix in ["Lyrics:", "lyrics:", "```", "- ", "* ", "• ", "> "] {
        l = l.strip_prefix(prefix).unwrap_or(l).trim();
    }
    // "1. " / "2) " numbering.
    let digits = l.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits < 3 {
        let rest = &l[digits..];
        if let Some(r) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            l = r.trim();
        }
    }
    let l = l
        .trim_matches(|c| c == '"' || c == '“' || c == '”' || c == '`')
        .trim();
    let is_label = (l.starts_with('[') && l.ends_with(']')) || l.starts_with("<start_of_turn>");
    if l.is_empty() || is_label || !l.chars().any(char::is_alphanumeric) {
        return None;
    }
    Some(l.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Cleans `heard` (the recogniser's words in time order) into a sheet, asking `generate`
/// (prompt, token budget → the model's continuation) for each chunk. `generate`'s error stops
/// the work and is returned as is. An empty transcript is an empty sheet.
pub fn clean_transcript<E>(
    heard: &[TimedWord],
    opts: &CleanOptions,
    generate: &mut dyn FnMut(&str, usize) -> Result<String, E>,
) -> Result<LyricSheet, E> {
    let words: Vec<&TimedWord> = heard
        .iter()
        .filter(|w| !normalize_word(&w.word).is_empty())
        .collect();
    let mut sheet = LyricSheet::default();
    let mut section = SheetSection::default();
    let mut start = 0;
    while start < words.len() {
        let end = chunk_end(&words, start, opts);
        let chunk = &words[start..end];
        let text: Vec<&str> = chunk.iter().map(|w| w.word.trim()).collect();
        let answer = generate(&prompt(&text.join(" ")), max_new_tokens(chunk.len()))?;
        let parsed = parse_answer(&answer);
        let lines = if agrees(&parsed, chunk, opts.min_agreement) {
            parsed
        } else {
            lines_by_pauses(chunk, opts)
        };
        for line in lines {
            match line {
                Some(l) => section.lines.push(l),
                None if !section.lines.is_empty() => {
                    sheet.sections.push(std::mem::take(&mut section))
                }
                None => {}
            }
        }
        let pause = words
            .get(end)
            .map_or(0.0, |next| next.start - words[end - 1].end);
        if pause >= opts.section_pause && !section.lines.is_empty() {
            sheet.sections.push(std::mem::take(&mut section));
        }
        start = end;
    }
    if !section.lines.is_empty() {
        sheet.sections.push(section);
    }
    Ok(sheet)
}

/// Where the chunk starting at `start` ends: at a long pause, or at the word limit.
fn chunk_end(words: &[&TimedWord], start: usize, opts: &CleanOptions) -> usize {
    let limit = (start + opts.max_chunk_words.max(1)).min(words.len());
    (start + 1..limit)
        .find(|&i| words[i].start - words[i - 1].end >= opts.chunk_pause)
        .unwrap_or(limit)
}

/// Whether the answer kept the chunk's words: both the share of chunk words found in the
/// answer and the share of answer words found in the chunk (counted as multisets, so a
/// repeated line counts against it) reach `min`.
fn agrees(answer: &[Option<String>], chunk: &[&TimedWord], min: f32) -> bool {
    let said: Vec<String> = answer
        .iter()
        .flatten()
        .flat_map(|l| l.split_whitespace())
        .map(normalize_word)
        .filter(|w| !w.is_empty())
        .collect();
    if said.is_empty() {
        return false;
    }
    let mut pool: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for w in chunk {
        *pool.entry(normalize_word(&w.word)).or_default() += 1;
    }
    let common = said
        .iter()
        .filter(|w| match pool.get_mut(*w) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count() as f32;
    common / chunk.len() as f32 >= min && common / said.len() as f32 >= min
}

/// Lines cut where the singer pauses or at the word limit, with the first letter capitalised.
pub fn lines_by_pauses(chunk: &[&TimedWord], opts: &CleanOptions) -> Vec<Option<String>> {
    let mut lines = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for (i, w) in chunk.iter().enumerate() {
        if i > 0
            && (w.start - chunk[i - 1].end >= opts.line_pause || cur.len() >= opts.max_line_words)
        {
            lines.push(Some(capitalise(&cur.join(" "))));
            cur.clear();
        }
        cur.push(w.word.trim());
    }
    if !cur.is_empty() {
        lines.push(Some(capitalise(&cur.join(" "))));
    }
    lines
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(text: &str, pauses_after: &[(usize, f32)]) -> Vec<TimedWord> {
        let mut t = 0.0;
        text.split_whitespace()
            .enumerate()
            .map(|(i, w)| {
                let s = t;
                t += 0.3;
                let e = t;
                t += pauses_after.iter().find(|p| p.0 == i).map_or(0.05, |p| p.1);
                TimedWord {
                    word: format!(" {w}"),
                    start: s,
                    end: e,
                    probability: 0.9,
                }
            })
            .collect()
    }

    #[test]
    fn prompt_ends_with_the_chunk_and_shows_the_pattern() {
        let p = prompt("  la la land ");
        assert!(p.ends_with("Transcript: la la land\nLyrics:\n"));
        assert_eq!(p.matches("###").count(), EXAMPLES.len());
    }

    #[test]
    fn parses_chatter_bullets_numbers_quotes_and_stops() {
        let a = "- \"Hello darkness\"\n2. My old friend\n\n[Chorus]\n\n* Sound of silence\n###\nTranscript: x\n";
        assert_eq!(
            parse_answer(a),
            vec![
                Some("Hello darkness".into()),
                Some("My old friend".into()),
                None,
                Some("Sound of silence".into())
            ]
        );
        assert_eq!(parse_answer("\n\n###"), Vec::<Option<String>>::new());
        assert_eq!(
            parse_answer("one\n\n\n\nTranscript: two"),
            vec![Some("one".into())]
        );
    }

    #[test]
    fn uses_a_faithful_answer() {
        let h = heard("i walked along the river the water running cold", &[]);
        let mut calls = Vec::new();
        let sheet = clean_transcript(&h, &CleanOptions::default(), &mut |p, n| {
            calls.push((p.to_string(), n));
            Ok::<_, ()>("I walked along the river\nThe water running cold\n###".into())
        })
        .unwrap();
        assert_eq!(calls.len(), 1);
        assert!(calls[0].0.ends_with("the water running cold\nLyrics:\n"));
        assert_eq!(calls[0].1, max_new_tokens(9));
        assert_eq!(
            sheet.sections[0].lines,
            ["I walked along the river", "The water running cold"]
        );
    }

    #[test]
    fn replaces_an_answer_that_invents_or_drops_words() {
        let h = heard("one two three four five six", &[(2, 0.8)]);
        for bad in [
            "One two three four five six seven eight nine ten",
            "One two",
            "One two three\nOne two three\nFour five six",
            "",
        ] {
            let sheet = clean_transcript(&h, &CleanOptions::default(), &mut |_, _| {
                Ok::<_, ()>(bad.to_string())
            })
            .unwrap();
            // Cut at the 0.8 s pause instead.
            assert_eq!(
                sheet.sections[0].lines,
                ["One two three", "Four five six"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn chunks_at_pauses_and_sections_at_long_pauses() {
        let h = heard("a b c d e f", &[(1, 2.0), (3, 5.0)]);
        let mut chunks = Vec::new();
        let sheet = clean_transcript(&h, &CleanOptions::default(), &mut |p, _| {
            let chunk = p
                .rsplit("Transcript: ")
                .next()
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string();
            chunks.push(chunk.clone());
            Ok::<_, ()>(chunk.to_uppercase())
        })
        .unwrap();
        assert_eq!(chunks, ["a b", "c d", "e f"]);
        assert_eq!(sheet.sections.len(), 2);
        assert_eq!(sheet.sections[0].lines, ["A B", "C D"]);
        assert_eq!(sheet.sections[1].lines, ["E F"]);
    }

    #[test]
    fn model_errors_stop_the_work() {
        let h = heard("a b", &[]);
        let r = clean_transcript(&h, &CleanOptions::default(), &mut |_, _| Err("boom"));
        assert_eq!(r, Err("boom"));
        let empty = clean_transcript(&[], &CleanOptions::default(), &mut |_, _| Err("unused"));
        assert_eq!(empty, Ok(LyricSheet::default()));
    }

    #[test]
    fn long_chunks_are_cut_at_the_word_limit() {
        let text = (0..100)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let h = heard(&text, &[]);
        let mut n = 0;
        clean_transcript(&h, &CleanOptions::default(), &mut |_, _| {
            n += 1;
            Ok::<_, ()>(String::new())
        })
        .unwrap();
        assert_eq!(n, 3); // 48 + 48 + 4
    }
}
