//! What the reference does with a window's aligned words: closing marks cut at sentence
//! ends, punctuation merged into words, words handed to segments by token count, and the
//! fixes for words that DTW stretches over pauses. Times are seconds in f64, rounded to
//! 10 ms as the reference rounds them, so that the seek derived from them is the same.

/// A word timed within its window. A punctuation mark merged into a neighbour stays in the
/// list with no text and no tokens, so that words can be handed to segments by token count.
#[derive(Debug, Clone)]
pub(crate) struct AlignedWord {
    pub word: String,
    pub tokens: usize,
    /// Seconds from the window's start.
    pub start: f64,
    pub end: f64,
    pub probability: f32,
}

/// The words of a window, and the median word duration (at most 0.7 s) the fixes use.
pub(crate) struct Alignment {
    pub words: Vec<AlignedWord>,
    pub median: f64,
}

/// Marks that open a word (merged into the word after them).
const PREPENDED: &str = "\"'“¿([{-";
/// Marks that close a word (merged into the word before them).
const APPENDED: &str = "\"'.。,，!！?？:：”)]}、";
const SENTENCE_ENDS: &str = ".。!！?？";

/// numpy's median: the mean of the two middle values of an even count; 0 for none.
pub(crate) fn median(x: &mut [f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.sort_by(f64::total_cmp);
    let n = x.len();
    if n % 2 == 1 {
        x[n / 2]
    } else {
        (x[n / 2 - 1] + x[n / 2]) / 2.0
    }
}

/// DTW lets a sentence's closing mark (and the word after it) soak up the pause that
/// follows; such words are cut to `max` (twice the median word duration).
pub(crate) fn limit_sentence_ends(words: &mut [AlignedWord], max: f64) {
    // The reference asks whether the word occurs in the list of marks, a substring test.
    let is_end = |w: &AlignedWord| SENTENCE_ENDS.contains(w.word.as_str());
    for i in 1..words.len() {
        if words[i].end - words[i].start > max {
            if is_end(&words[i]) {
                words[i].end = words[i].start + max;
            } else if is_end(&words[i - 1]) {
                words[i].start = words[i].end - max;
            }
        }
    }
}

/// Merges opening marks into the word after them and closing marks into the word before;
/// the merged word keeps its own times and the mark is left empty.
pub(crate) fn merge_punctuation(words: &mut [AlignedWord]) {
    let n = words.len();
    if n < 2 {
        return;
    }
    let mut j = n - 1;
    for i in (0..n - 1).rev() {
        let w = &words[i].word;
        if w.starts_with(' ') && PREPENDED.contains(w.trim()) {
            let prev = std::mem::take(&mut words[i].word);
            words[j].word = prev + &words[j].word;
            words[j].tokens += std::mem::take(&mut words[i].tokens);
        } else {
            j = i;
        }
    }
    let mut i = 0;
    for j in 1..n {
        if !words[i].word.ends_with(' ') && APPENDED.contains(words[j].word.as_str()) {
            let next = std::mem::take(&mut words[j].word);
            words[i].word.push_str(&next);
            words[i].tokens += std::mem::take(&mut words[j].tokens);
        } else {
            i = j;
        }
    }
}

/// One segment of a window being timed: its bounds (seconds) and text token count.
pub(crate) struct TimedSegment {
    pub start: f64,
    pub end: f64,
    pub text_tokens: usize,
    pub words: Vec<TimedWord>,
}

/// A word in absolute seconds.
pub(crate) struct TimedWord {
    pub start: f64,
    pub end: f64,
    pub word: String,
    pub probability: f32,
}

/// Hands a window's words to its segments (by token count), in absolute seconds rounded to
/// 10 ms, and applies the reference's fixes at pauses: the first word after a long pause is
/// cut to twice the median, and a segment's first (last) word gives way to the decoder's
/// timestamp when it runs more than 0.5 s past it, otherwise the segment takes the word's
/// time. `last_speech` is the end of the speech before this window.
pub(crate) fn assign_words(
    al: &Alignment,
    offset: f64,
    segments: &mut [TimedSegment],
    mut last_speech: f64,
) {
    let round = |t: f64| (t * 100.0).round_ties_even() / 100.0;
    let median = al.median;
    let max = median * 2.0;
    let mut next = al.words.iter();
    for seg in segments.iter_mut() {
        let mut taken = 0;
        let mut words: Vec<(f64, f64, &AlignedWord)> = Vec::new();
        while taken < seg.text_tokens {
            let Some(w) = next.next() else { break };
            if !w.word.is_empty() {
                words.push((round(offset + w.start), round(offset + w.end), w));
            }
            taken += w.tokens;
        }
        if !words.is_empty() {
            let n = words.len();
            let first_long =
                words[0].1 - words[0].0 > max || (n > 1 && words[1].1 - words[0].0 > max * 2.0);
            if words[0].1 - last_speech > median * 4.0 && first_long {
                if n > 1 && words[1].1 - words[1].0 > max {
                    let boundary = (words[1].1 / 2.0).max(words[1].1 - max);
                    words[0].1 = boundary;
                    words[1].0 = boundary;
                }
                words[0].0 = (words[0].1 - max).max(0.0);
            }
            if seg.start < words[0].1 && seg.start - 0.5 > words[0].0 {
                words[0].0 = (words[0].1 - median).min(seg.start).max(0.0);
            } else {
                seg.start = words[0].0;
            }
            let last = &mut words[n - 1];
            if seg.end > last.0 && seg.end + 0.5 < last.1 {
                last.1 = (last.0 + median).max(seg.end);
            } else {
                seg.end = last.1;
            }
            last_speech = seg.end;
        }
        seg.words = words
            .into_iter()
            .map(|(start, end, w)| TimedWord {
                start,
                end,
                word: w.word.clone(),
                probability: w.probability,
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str, start: f64, end: f64) -> AlignedWord {
        AlignedWord {
            word: w.into(),
            tokens: 1,
            start,
            end,
            probability: 1.0,
        }
    }

    #[test]
    fn punctuation_joins_its_word_and_keeps_the_word_times() {
        let mut w = vec![
            word(" (", 0.0, 0.1),
            word(" hello", 0.1, 0.5),
            word(",", 0.5, 0.9),
            word(" world", 0.9, 1.2),
        ];
        merge_punctuation(&mut w);
        let texts: Vec<(&str, usize)> = w.iter().map(|w| (w.word.as_str(), w.tokens)).collect();
        assert_eq!(
            texts,
            vec![("", 0), (" ( hello,", 3), ("", 0), (" world", 1)]
        );
        assert_eq!((w[1].start, w[1].end), (0.1, 0.5));
    }

    #[test]
    fn median_is_numpys() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut []), 0.0);
    }
}
