//! The lyric files: plain text, JSON, enhanced LRC (word times), SRT and WebVTT (word times as
//! cue timestamps, for karaoke-style highlighting).

use std::fmt::Write;

use serde_json::json;

use super::Lyrics;

/// `lyrics.txt`: one line per line, a blank line between sections.
pub fn to_text(l: &Lyrics) -> String {
    let mut out = String::new();
    for (i, s) in l.sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for line in &s.lines {
            out.push_str(&line.text);
            out.push('\n');
        }
    }
    out
}

/// `lyrics.json`: `{"sections": [{"label"?, "lines": [{"text", "start", "end", "words":
/// [{"text", "start", "end", "confidence"}]}]}]}`, seconds rounded to the millisecond.
pub fn to_json(l: &Lyrics) -> serde_json::Value {
    let ms = |t: f32| (f64::from(t) * 1000.0).round() / 1000.0;
    let sections: Vec<_> = l
        .sections
        .iter()
        .map(|s| {
            let lines: Vec<_> = s
                .lines
                .iter()
                .map(|line| {
                    let words: Vec<_> = line
                        .words
                        .iter()
                        .map(|w| {
                            json!({
                                "text": w.text,
                                "start": ms(w.start),
                                "end": ms(w.end),
                                "confidence": (f64::from(w.confidence) * 1000.0).round() / 1000.0,
                            })
                        })
                        .collect();
                    json!({"text": line.text, "start": ms(line.start), "end": ms(line.end), "words": words})
                })
                .collect();
            let mut v = json!({ "lines": lines });
            if let Some(label) = &s.label {
                v["label"] = json!(label);
            }
            v
        })
        .collect();
    json!({ "sections": sections })
}

/// `lyrics.lrc`, enhanced: `[mm:ss.xx]<mm:ss.xx>word <mm:ss.xx>word ... <mm:ss.xx>` per line,
/// the last stamp being where the line's last word ends; a blank line between sections.
pub fn to_lrc(l: &Lyrics) -> String {
    let mut out = String::new();
    for (i, s) in l.sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for line in &s.lines {
            let _ = write!(out, "[{}]", lrc_time(line.start));
            for (k, w) in line.words.iter().enumerate() {
                if k > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "<{}>{}", lrc_time(w.start), w.text);
            }
            let _ = writeln!(out, " <{}>", lrc_time(line.end));
        }
    }
    out
}

/// `lyrics.srt`: a numbered cue per line.
pub fn to_srt(l: &Lyrics) -> String {
    let mut out = String::new();
    for (n, line) in l.sections.iter().flat_map(|s| &s.lines).enumerate() {
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            n + 1,
            clock(line.start, ','),
            clock(line.end.max(line.start), ','),
            line.text
        );
    }
    out
}

/// `lyrics.vtt`: a cue per line; each word after the first is preceded by its start time as
/// a cue timestamp (`<00:00:01.500>`), which players use to highlight the sung word.
pub fn to_vtt(l: &Lyrics) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for line in l.sections.iter().flat_map(|s| &s.lines) {
        let end = line.end.max(line.start);
        let _ = writeln!(out, "{} --> {}", clock(line.start, '.'), clock(end, '.'));
        for (k, w) in line.words.iter().enumerate() {
            if k > 0 {
                // A cue timestamp must lie strictly inside the cue.
                let t = w.start.clamp(line.start, end);
                let _ = write!(out, " <{}>", clock(t, '.'));
            }
            out.push_str(&vtt_escape(&w.text));
        }
        out.push_str("\n\n");
    }
    out
}

fn vtt_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `mm:ss.xx` (minutes may pass 99 for very long audio).
fn lrc_time(t: f32) -> String {
    let cs = (f64::from(t.max(0.0)) * 100.0).round() as u64;
    format!("{:02}:{:02}.{:02}", cs / 6000, cs / 100 % 60, cs % 100)
}

/// `hh:mm:ss<sep>mmm`.
fn clock(t: f32, sep: char) -> String {
    let ms = (f64::from(t.max(0.0)) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::super::{LyricLine, LyricSection, LyricWord};
    use super::*;

    fn word(text: &str, start: f32, end: f32) -> LyricWord {
        LyricWord {
            text: text.into(),
            start,
            end,
            confidence: 0.5,
        }
    }

    fn sample() -> Lyrics {
        let line = |text: &str, words: Vec<LyricWord>| LyricLine {
            text: text.into(),
            start: words[0].start,
            end: words.last().unwrap().end,
            words,
        };
        Lyrics {
            sections: vec![
                LyricSection {
                    label: Some("Verse".into()),
                    lines: vec![
                        line(
                            "Hello world",
                            vec![word("Hello", 1.0, 1.5), word("world", 1.6, 2.25)],
                        ),
                        line(
                            "R&B <3",
                            vec![word("R&B", 62.5, 63.0), word("<3", 63.1, 63.2)],
                        ),
                    ],
                },
                LyricSection {
                    label: None,
                    lines: vec![line("Bye", vec![word("Bye", 3725.004, 3726.0)])],
                },
            ],
        }
    }

    #[test]
    fn text_has_a_blank_line_between_sections() {
        assert_eq!(to_text(&sample()), "Hello world\nR&B <3\n\nBye\n");
    }

    #[test]
    fn json_nests_sections_lines_words() {
        let v = to_json(&sample());
        assert_eq!(v["sections"][0]["label"], "Verse");
        assert!(v["sections"][1].get("label").is_none());
        let w = &v["sections"][0]["lines"][0]["words"][1];
        assert_eq!(w["text"], "world");
        assert_eq!(w["start"], 1.6);
        assert_eq!(w["end"], 2.25);
        assert_eq!(w["confidence"], 0.5);
        assert_eq!(v["sections"][1]["lines"][0]["start"], 3725.004);
    }

    #[test]
    fn lrc_stamps_every_word_and_the_line_end() {
        let lrc = to_lrc(&sample());
        let lines: Vec<&str> = lrc.lines().collect();
        assert_eq!(
            lines[0],
            "[00:01.00]<00:01.00>Hello <00:01.60>world <00:02.25>"
        );
        assert_eq!(lines[1], "[01:02.50]<01:02.50>R&B <01:03.10><3 <01:03.20>");
        assert_eq!(lines[2], "");
        assert_eq!(lines[3], "[62:05.00]<62:05.00>Bye <62:06.00>");
    }

    #[test]
    fn srt_numbers_cues_with_comma_millis() {
        let srt = to_srt(&sample());
        assert!(srt.starts_with("1\n00:00:01,000 --> 00:00:02,250\nHello world\n\n2\n"));
        assert!(srt.contains("3\n01:02:05,004 --> 01:02:06,000\nBye\n\n"));
    }

    #[test]
    fn vtt_has_word_timestamps_and_escapes_markup() {
        let vtt = to_vtt(&sample());
        assert!(vtt
            .starts_with("WEBVTT\n\n00:00:01.000 --> 00:00:02.250\nHello <00:00:01.600>world\n\n"));
        assert!(vtt.contains("R&amp;B <00:01:03.100>&lt;3\n"));
    }
}
