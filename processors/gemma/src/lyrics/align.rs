//! Times lyric words by aligning them with the recogniser's timed words.
//!
//! The two word lists differ: the lyric text has words the recogniser missed or misheard, the
//! recogniser has ad-libs and mishearings the lyrics leave out. A global alignment
//! (Needleman–Wunsch over normalised words, fuzzy matches scored by edit distance) pairs them;
//! a lyric word paired with a heard word takes its times, and runs of unpaired lyric words share
//! the time between their paired neighbours (or the unpaired heard words there) in proportion
//! to their length.

use super::{
    normalize_word, words_of, LyricLine, LyricSection, LyricSheet, LyricWord, Lyrics, TimedWord,
};

/// Alignment matrix cells allowed (lyric words × heard words): one byte each for the
/// traceback, so 64 MiB at most; a song has a few hundred words.
pub const MAX_CELLS: usize = 64 << 20;

/// Length of a word placed where nothing was heard (seconds), at the start or the end.
const DEFAULT_WORD_SECONDS: f32 = 0.3;

const EXACT: f32 = 2.0;
const MISMATCH: f32 = -1.0;
const GAP: f32 = -0.6;
/// Below this similarity two words are different words.
const FUZZY_FLOOR: f32 = 0.5;

/// Why lyrics could not be aligned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlignError {
    #[error("too many words to align ({lyric} lyric × {heard} heard words)")]
    TooLong { lyric: usize, heard: usize },
    #[error("invalid audio duration {0}")]
    BadDuration(f32),
}

/// Times every word of `sheet` from `heard` (in time order) within `[0, duration]` seconds.
pub fn align(sheet: &LyricSheet, heard: &[TimedWord], duration: f32) -> Result<Lyrics, AlignError> {
    if !duration.is_finite() || duration < 0.0 {
        return Err(AlignError::BadDuration(duration));
    }
    let lyric: Vec<String> = sheet.words();
    // Heard words with no letters (a lone "-") cannot match anything; non-finite times are
    // the recogniser's bug, not a reason to fail.
    let heard: Vec<&TimedWord> = heard
        .iter()
        .filter(|w| !normalize_word(&w.word).is_empty() && w.start.is_finite() && w.end.is_finite())
        .collect();
    if lyric.len().saturating_mul(heard.len()) > MAX_CELLS {
        return Err(AlignError::TooLong {
            lyric: lyric.len(),
            heard: heard.len(),
        });
    }
    let a: Vec<String> = lyric.iter().map(|w| normalize_word(w)).collect();
    let b: Vec<String> = heard.iter().map(|w| normalize_word(&w.word)).collect();
    let pairs = pair_words(&a, &b);
    let times = place(&lyric, &heard, &pairs, duration);
    Ok(assemble(sheet, times))
}

/// `pairs[i]` = the heard word paired with lyric word `i` and their similarity.
fn pair_words(a: &[String], b: &[String]) -> Vec<Option<(usize, f32)>> {
    let (n, m) = (a.len(), b.len());
    // Traceback: 0 diagonal, 1 up (lyric word unpaired), 2 left (heard word unpaired).
    let mut trace = vec![0u8; (n + 1) * (m + 1)];
    let mut prev: Vec<f32> = (0..=m).map(|j| j as f32 * GAP).collect();
    let mut cur = vec![0f32; m + 1];
    for i in 1..=n {
        cur[0] = i as f32 * GAP;
        trace[i * (m + 1)] = 1;
        for j in 1..=m {
            let diag = prev[j - 1] + score(similarity(&a[i - 1], &b[j - 1]));
            let up = prev[j] + GAP;
            let left = cur[j - 1] + GAP;
            let (best, step) = if diag >= up && diag >= left {
                (diag, 0)
            } else if up >= left {
                (up, 1)
            } else {
                (left, 2)
            };
            cur[j] = best;
            trace[i * (m + 1) + j] = step;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    trace[1..=m].fill(2);
    let mut pairs = vec![None; n];
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        match trace[i * (m + 1) + j] {
            0 => {
                pairs[i - 1] = Some((j - 1, similarity(&a[i - 1], &b[j - 1])));
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    pairs
}

fn score(sim: f32) -> f32 {
    if sim >= 1.0 {
        EXACT
    } else if sim >= FUZZY_FLOOR {
        EXACT * sim - 0.2
    } else {
        MISMATCH
    }
}

/// 1 − edit distance / longer length, over characters.
fn similarity(a: &str, b: &str) -> f32 {
    if a == b {
        return 1.0;
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = diag + usize::from(ca != cb);
            diag = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    1.0 - row[b.len()] as f32 / longest as f32
}

/// `(start, end, confidence)` for each lyric word.
fn place(
    lyric: &[String],
    heard: &[&TimedWord],
    pairs: &[Option<(usize, f32)>],
    duration: f32,
) -> Vec<(f32, f32, f32)> {
    let clamp = |t: f32| t.clamp(0.0, duration);
    let mut out = vec![(0.0, 0.0, 0.0); lyric.len()];
    // A diagonal step below the fuzzy floor is a mishearing in the same slot: its time is
    // still the best guess, its confidence low (the similarity is small).
    for (i, p) in pairs.iter().enumerate() {
        if let Some((j, sim)) = *p {
            let w = heard[j];
            let start = clamp(w.start);
            out[i] = (
                start,
                clamp(w.end).max(start),
                (w.probability.clamp(0.0, 1.0) * sim).max(0.0),
            );
        }
    }
    let mut i = 0;
    while i < lyric.len() {
        if pairs[i].is_some() {
            i += 1;
            continue;
        }
        let first = i;
        while i < lyric.len() && pairs[i].is_none() {
            i += 1;
        }
        let run = first..i;
        let before = first
            .checked_sub(1)
            .map(|k| (out[k].1, pairs[k].unwrap().0));
        let after = (i < lyric.len()).then(|| (out[i].0, pairs[i].unwrap().0));
        // Unpaired heard words between the neighbours: where the run was most likely sung.
        let lo_j = before.map_or(0, |(_, j)| j + 1);
        let hi_j = after.map_or(heard.len(), |(_, j)| j);
        let between = &heard[lo_j..hi_j.max(lo_j)];
        let k = run.len() as f32;
        let (lo, hi) = if let (Some(f), Some(l)) = (between.first(), between.last()) {
            (clamp(f.start), clamp(l.end))
        } else {
            match (before, after) {
                (Some((e, _)), Some((s, _))) => (e, s),
                (None, Some((s, _))) => (clamp(s - DEFAULT_WORD_SECONDS * k), s),
                (Some((e, _)), None) => (e, clamp(e + DEFAULT_WORD_SECONDS * k)),
                (None, None) => (0.0, duration),
            }
        };
        // Never before the previous word's end nor after the next word's start.
        let lo = lo.max(before.map_or(0.0, |b| b.0));
        let hi = hi.min(after.map_or(duration, |a| a.0)).max(lo);
        let weights: Vec<f32> = run
            .clone()
            .map(|w| normalize_word(&lyric[w]).chars().count().max(1) as f32)
            .collect();
        let total: f32 = weights.iter().sum();
        let mut t = lo;
        for (w, weight) in run.zip(weights) {
            let end = (t + (hi - lo) * weight / total).min(hi);
            out[w] = (t, end, 0.0);
            t = end;
        }
    }
    out
}

fn assemble(sheet: &LyricSheet, times: Vec<(f32, f32, f32)>) -> Lyrics {
    let mut times = times.into_iter();
    let sections = sheet
        .sections
        .iter()
        .map(|s| LyricSection {
            label: s.label.clone(),
            lines: s
                .lines
                .iter()
                .map(|line| {
                    let words: Vec<LyricWord> = words_of(line)
                        .into_iter()
                        .map(|text| {
                            let (start, end, confidence) = times.next().expect("one time per word");
                            LyricWord {
                                text,
                                start,
                                end,
                                confidence,
                            }
                        })
                        .collect();
                    LyricLine {
                        text: line.clone(),
                        start: words.first().map_or(0.0, |w| w.start),
                        end: words.last().map_or(0.0, |w| w.end),
                        words,
                    }
                })
                .collect(),
        })
        .collect();
    Lyrics { sections }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(words: &[(&str, f32, f32)]) -> Vec<TimedWord> {
        words
            .iter()
            .map(|&(w, s, e)| TimedWord {
                word: format!(" {w}"),
                start: s,
                end: e,
                probability: 0.9,
            })
            .collect()
    }

    fn flat(l: &Lyrics) -> Vec<&LyricWord> {
        l.sections
            .iter()
            .flat_map(|s| &s.lines)
            .flat_map(|l| &l.words)
            .collect()
    }

    #[test]
    fn exact_words_take_the_heard_times() {
        let sheet = LyricSheet::parse("Hello world\n\nGoodbye, moon!").unwrap();
        let h = heard(&[
            ("hello", 1.0, 1.4),
            ("world", 1.5, 2.0),
            ("goodbye", 3.0, 3.5),
            ("moon", 3.6, 4.0),
        ]);
        let l = align(&sheet, &h, 10.0).unwrap();
        let w = flat(&l);
        assert_eq!(w.len(), 4);
        assert_eq!(
            (w[2].text.as_str(), w[2].start, w[2].end),
            ("Goodbye,", 3.0, 3.5)
        );
        assert!((w[3].confidence - 0.9).abs() < 1e-6);
        assert_eq!(l.sections[1].lines[0].start, 3.0);
        assert_eq!(l.sections[1].lines[0].end, 4.0);
    }

    #[test]
    fn missed_words_share_the_gap_by_length() {
        // The recogniser missed "little" and "bright".
        let sheet = LyricSheet::parse("twinkle twinkle little bright star").unwrap();
        let h = heard(&[
            ("twinkle", 0.0, 0.5),
            ("twinkle", 0.6, 1.0),
            ("star", 2.2, 2.6),
        ]);
        let w = align(&sheet, &h, 5.0).unwrap();
        let w = flat(&w);
        // "little" (6 letters) and "bright" (6) split [1.0, 2.2] evenly.
        assert!((w[2].start - 1.0).abs() < 1e-5 && (w[2].end - 1.6).abs() < 1e-5);
        assert!((w[3].start - 1.6).abs() < 1e-5 && (w[3].end - 2.2).abs() < 1e-5);
        assert_eq!(w[2].confidence, 0.0);
        assert_eq!(w[4].start, 2.2);
    }

    #[test]
    fn extra_heard_words_are_skipped_and_fuzzy_words_match() {
        let sheet = LyricSheet::parse("I'm gonna love you").unwrap();
        let h = heard(&[
            ("yeah", 0.0, 0.3),
            ("im", 0.5, 0.7),
            ("gona", 0.8, 1.0),
            ("love", 1.1, 1.5),
            ("you", 1.6, 2.0),
            ("baby", 2.1, 2.5),
        ]);
        let w = align(&sheet, &h, 3.0).unwrap();
        let w = flat(&w);
        assert_eq!(w[0].start, 0.5);
        assert_eq!(w[1].start, 0.8);
        // "gonna" vs "gona": similar, not equal → lower confidence than an exact word.
        assert!(w[1].confidence > 0.0 && w[1].confidence < w[2].confidence);
        assert_eq!(w[3].end, 2.0);
    }

    #[test]
    fn misheard_words_keep_their_slot_with_low_confidence() {
        // "ooh" heard as "uh huh": no match, but sung in that slot.
        let sheet = LyricSheet::parse("one ooh two").unwrap();
        let h = heard(&[
            ("one", 0.0, 0.4),
            ("uh", 1.0, 1.2),
            ("huh", 1.3, 1.5),
            ("two", 2.0, 2.4),
        ]);
        let w = align(&sheet, &h, 3.0).unwrap();
        let w = flat(&w);
        assert!(w[1].start >= 1.0 && w[1].end <= 1.5, "{:?}", w[1]);
        assert!(w[1].confidence < 0.5 * w[0].confidence);
        assert_eq!((w[2].start, w[2].end), (2.0, 2.4));
    }

    #[test]
    fn nothing_heard_spreads_words_over_the_audio() {
        let sheet = LyricSheet::parse("a bb").unwrap();
        let w = align(&sheet, &[], 3.0).unwrap();
        let w = flat(&w);
        assert_eq!((w[0].start, w[0].end), (0.0, 1.0));
        assert_eq!((w[1].start, w[1].end), (1.0, 3.0));
        assert!(w.iter().all(|w| w.confidence == 0.0));
    }

    #[test]
    fn leading_and_trailing_unpaired_words_stay_inside_the_audio() {
        let sheet = LyricSheet::parse("first middle last").unwrap();
        let h = heard(&[("middle", 0.1, 0.5)]);
        let w = align(&sheet, &h, 0.7).unwrap();
        let w = flat(&w);
        assert_eq!(w[0].start, 0.0);
        assert!(w[0].end <= 0.1 + 1e-6);
        assert!(w[2].start >= 0.5 && w[2].end <= 0.7);
    }

    #[test]
    fn times_are_monotonic_and_inside_the_audio_for_any_input() {
        // A deterministic pseudo-random mix of matches, misses and extras.
        let vocab = ["la", "love", "you", "me", "night", "light", "oh", "baby"];
        let mut seed = 12345u64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..50 {
            let lyric: Vec<&str> = (0..1 + next(30))
                .map(|_| vocab[next(vocab.len())])
                .collect();
            let mut t = next(3) as f32 * 0.5;
            let h: Vec<TimedWord> = (0..next(30))
                .map(|_| {
                    let s = t + next(5) as f32 * 0.1;
                    t = s + 0.1 + next(4) as f32 * 0.1;
                    TimedWord {
                        word: vocab[next(vocab.len())].into(),
                        start: s,
                        end: t,
                        probability: 0.5,
                    }
                })
                .collect();
            let duration = t + 1.0;
            let sheet = LyricSheet::parse(&lyric.join(" ")).unwrap();
            let l = align(&sheet, &h, duration).unwrap();
            let w = flat(&l);
            assert_eq!(w.len(), lyric.len());
            let mut last_end = 0.0;
            for x in w {
                assert!(
                    x.start >= last_end - 1e-5 && x.end >= x.start,
                    "{x:?} after {last_end}"
                );
                assert!(x.end <= duration + 1e-5);
                assert!((0.0..=1.0).contains(&x.confidence));
                last_end = x.end;
            }
        }
    }

    #[test]
    fn bad_duration_and_huge_inputs_are_errors() {
        let sheet = LyricSheet::parse("a").unwrap();
        assert!(matches!(
            align(&sheet, &[], f32::NAN),
            Err(AlignError::BadDuration(_))
        ));
        let long = LyricSheet::parse(&"la ".repeat(9000)).unwrap();
        let many = vec![
            TimedWord {
                word: "x".into(),
                start: 0.0,
                end: 0.1,
                probability: 1.0
            };
            MAX_CELLS / 9000 + 1
        ];
        assert!(matches!(
            align(&long, &many, 1.0),
            Err(AlignError::TooLong { .. })
        ));
    }

    #[test]
    fn similarity_is_edit_distance_based() {
        assert_eq!(similarity("love", "love"), 1.0);
        assert!((similarity("gonna", "gona") - 0.8).abs() < 1e-6);
        assert_eq!(similarity("abc", "xyz"), 0.0);
    }
}
