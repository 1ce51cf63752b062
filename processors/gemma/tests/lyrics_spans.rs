//! Where given lyrics are cut for forced alignment (`lyrics::spans::plan`): whole lines, at
//! most a Whisper window per span, cut in the pauses, every line once and in order.

use roar_gemma::lyrics::spans::{plan, TextSpan, WINDOW_SECONDS};
use roar_gemma::lyrics::{LyricLine, LyricSection, LyricWord, Lyrics};

/// Lyrics with one section of lines `(start, end, text)`.
fn rough(lines: &[(f32, f32, &str)]) -> Lyrics {
    Lyrics {
        sections: vec![LyricSection {
            label: None,
            lines: lines
                .iter()
                .map(|&(start, end, text)| LyricLine {
                    text: text.into(),
                    start,
                    end,
                    words: vec![LyricWord {
                        text: text.into(),
                        start,
                        end,
                        confidence: 1.0,
                    }],
                })
                .collect(),
        }],
    }
}

#[test]
fn a_short_song_is_one_span() {
    let s = plan(&rough(&[(1.5, 4.0, "a b"), (5.0, 8.0, "c d")]), 10.0);
    assert_eq!(
        s,
        [TextSpan {
            start: 0.5,
            end: 9.0,
            text: "a b c d".into()
        }]
    );
}

#[test]
fn long_songs_are_cut_between_lines_within_the_window() {
    // Lines of 4 s every 5 s over 100 s.
    let lines: Vec<(f32, f32, String)> = (0..20)
        .map(|k| (k as f32 * 5.0, k as f32 * 5.0 + 4.0, format!("l{k}")))
        .collect();
    let refs: Vec<(f32, f32, &str)> = lines.iter().map(|l| (l.0, l.1, l.2.as_str())).collect();
    let s = plan(&rough(&refs), 100.0);
    let words: Vec<String> = s
        .iter()
        .flat_map(|s| s.text.split(' ').map(str::to_string))
        .collect();
    let want: Vec<String> = lines.iter().map(|l| l.2.clone()).collect();
    assert_eq!(words, want, "every line once, in order");
    for (k, span) in s.iter().enumerate() {
        assert!(span.end - span.start <= WINDOW_SECONDS, "{span:?}");
        assert!(span.end > span.start);
        if k > 0 {
            assert_eq!(span.start, s[k - 1].end, "spans meet in the pauses");
            // Cut midway in a pause: 4.5 s past a line start.
            assert_eq!((span.start - 4.5) % 5.0, 0.0, "{span:?}");
        }
    }
    assert_eq!(s[0].start, 0.0);
    assert_eq!(s.last().unwrap().end, 100.0);
    assert_eq!(s.len(), 4);
}

#[test]
fn long_pauses_and_long_lines() {
    let s = plan(
        &rough(&[(2.0, 3.0, "a"), (60.0, 100.0, "long"), (101.0, 102.0, "b")]),
        110.0,
    );
    let got: Vec<(f32, f32, &str)> = s
        .iter()
        .map(|s| (s.start, s.end, s.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1.0, 31.0, "a"),
            // After the pause, a margin before the line; a window for the long line.
            (59.0, 89.0, "long"),
            (100.0, 103.0, "b")
        ]
    );
}

#[test]
fn degenerate_times_still_give_valid_spans() {
    assert!(plan(&Lyrics { sections: vec![] }, 10.0).is_empty());
    for (lines, duration) in [
        (vec![(5.0, 5.0, "a"), (5.0, 5.0, "b")], 5.0),
        (vec![(0.0, 0.0, "a")], 0.0),
        (vec![(3.0, 2.0, "a")], f32::NAN),
    ] {
        let s = plan(&rough(&lines), duration);
        assert!(!s.is_empty());
        for span in s {
            assert!(span.start >= 0.0 && span.end > span.start, "{span:?}");
            assert!(span.end - span.start <= WINDOW_SECONDS);
        }
    }
}
