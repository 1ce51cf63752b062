//! One 30 s window of a long transcription: decoding with temperature fallback, and cutting
//! the tokens into segments at timestamp pairs, as faster-whisper does.

use std::io::Write;

use candle_core::Tensor;

use crate::decode::{decode_window, WindowParams, WindowResult};
use crate::error::Result;
use crate::mel::{HOP, SAMPLE_RATE};
use crate::{TranscribeOptions, Whisper};

/// Seconds per timestamp token.
const TS_STEP: f64 = 0.02;

/// zlib compression ratio of the text: high for repetition loops.
fn compression_ratio(text: &str) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(text.as_bytes());
    let z = enc.finish().map(|v| v.len()).unwrap_or(text.len());
    text.len() as f32 / z.max(1) as f32
}

/// Decodes a window at each temperature in turn until the result is neither repetitive nor
/// unlikely, or is unlikely but probably silence. When every temperature fails, the most
/// likely result that is not repetitive wins (any, if all are), reported at the last
/// temperature so that the prompt is reset after it.
pub(crate) fn decode_with_fallback(
    w: &Whisper,
    audio: &Tensor,
    opts: &TranscribeOptions,
    prompt: &[u32],
    sot_seq: &[u32],
    seed: u64,
) -> Result<(WindowResult, f32)> {
    let mut tried: Vec<(WindowResult, f32, bool)> = Vec::new();
    for &t in &opts.temperatures {
        let p = WindowParams {
            temperature: t,
            beam_size: opts.beam_size,
            patience: opts.patience,
            timestamps: true,
            prompt,
            sot_seq,
            max_initial_timestamp: 1.0,
            seed: opts.seed ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ t.to_bits() as u64,
        };
        let res = decode_window(&w.model, audio, &w.tokenizer.specials, &w.hints, &p)?;
        let ratio = compression_ratio(w.tokenizer.decode(&res.tokens)?.trim());
        let (keep, repetitive) = judge(&res, ratio, opts);
        if keep {
            return Ok((res, ratio));
        }
        tried.push((res, ratio, repetitive));
    }
    let last_t = opts.temperatures.last().copied().unwrap_or(0.0);
    Ok(fallback_choice(tried, last_t).expect("temperatures is not empty"))
}

/// Whether a window's result is kept (neither repetitive nor unlikely, or unlikely but
/// probably silence), and whether it is repetitive.
fn judge(res: &WindowResult, ratio: f32, opts: &TranscribeOptions) -> (bool, bool) {
    let repetitive = opts
        .compression_ratio_threshold
        .is_some_and(|th| ratio > th);
    let unlikely = opts
        .logprob_threshold
        .is_some_and(|th| res.avg_logprob < th);
    let silence = unlikely
        && opts
            .no_speech_threshold
            .is_some_and(|th| res.no_speech_prob > th);
    (silence || (!repetitive && !unlikely), repetitive)
}

/// After every temperature failed: the most likely result that is not repetitive (any, if
/// all are; the first of equals), at the last temperature.
fn fallback_choice(
    tried: Vec<(WindowResult, f32, bool)>,
    last_t: f32,
) -> Option<(WindowResult, f32)> {
    let any_fluent = tried.iter().any(|r| !r.2);
    let (mut res, ratio, _) =
        tried
            .into_iter()
            .filter(|r| !any_fluent || !r.2)
            .reduce(|best, r| {
                if r.0.avg_logprob > best.0.avg_logprob {
                    r
                } else {
                    best
                }
            })?;
    res.temperature = last_t;
    Some((res, ratio))
}

/// One segment of a window before it is kept: bounds in seconds and its tokens.
pub(crate) struct Piece<'a> {
    pub start: f64,
    pub end: f64,
    pub tokens: &'a [u32],
}

/// Seconds at mel frame `seek` (the reference's arithmetic, in f64).
pub(crate) fn window_start(seek: usize) -> f64 {
    seek as f64 * (HOP as f64 / SAMPLE_RATE as f64)
}

/// Cuts a window's tokens into segments at each pair of timestamps; returns them, the mel
/// frame where the next window starts, and whether the window ended on a single timestamp
/// (the speech ended before the window did).
pub(crate) fn split_window(
    toks: &[u32],
    tb: u32,
    seek: usize,
    len: usize,
) -> (Vec<Piece<'_>>, usize, bool) {
    let is_ts = |t: u32| t >= tb;
    let time = |t: u32| window_start(seek) + f64::from(t - tb) * TS_STEP;
    let n = toks.len();
    let single_ending = n >= 2 && !is_ts(toks[n - 2]) && is_ts(toks[n - 1]);
    let mut cuts: Vec<usize> = (1..n)
        .filter(|&i| is_ts(toks[i - 1]) && is_ts(toks[i]))
        .collect();
    if cuts.is_empty() {
        let mut end = window_start(seek) + len as f64 * (HOP as f64 / SAMPLE_RATE as f64);
        if let Some(&t) = toks.iter().rev().find(|&&t| is_ts(t)) {
            if t != tb {
                end = time(t);
            }
        }
        let piece = Piece {
            start: window_start(seek),
            end,
            tokens: toks,
        };
        return (vec![piece], seek + len, single_ending);
    }
    if single_ending {
        cuts.push(n);
    }
    let mut pieces = Vec::with_capacity(cuts.len());
    let mut last = 0;
    for &cut in &cuts {
        let s = &toks[last..cut];
        pieces.push(Piece {
            start: time(s[0]),
            end: time(s[s.len() - 1]),
            tokens: s,
        });
        last = cut;
    }
    let next = if single_ending {
        seek + len
    } else {
        // Resume where the last complete segment ended (2 mel frames per timestamp step);
        // a window always moves forward, whatever the model said.
        let step = (toks[last - 1] - tb) as usize * 2;
        seek + if step == 0 { len } else { step.min(len) }
    };
    (pieces, next, single_ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TB: u32 = 50_364;

    #[test]
    fn windows_are_cut_at_timestamp_pairs() {
        // <0.00> a <1.00><1.00> b <2.00><2.00> c: the unfinished "c" is dropped and the
        // next window starts at 2 s (100 timestamp steps = 200 mel frames).
        let toks = [TB, 1, TB + 50, TB + 50, 2, TB + 100, TB + 100, 3];
        let (pieces, next, single) = split_window(&toks, TB, 1000, 3000);
        let got: Vec<(f64, f64, usize)> = pieces
            .iter()
            .map(|p| (p.start, p.end, p.tokens.len()))
            .collect();
        assert_eq!(got, vec![(10.0, 11.0, 3), (11.0, 12.0, 3)]);
        assert_eq!((next, single), (1200, false));
    }

    #[test]
    fn a_single_closing_timestamp_ends_the_window() {
        // With a pair before it, and without: the speech ended, so the whole window is done
        // (and, with word timestamps, the seek must not move back to the last word).
        let toks = [TB, 1, TB + 50, TB + 50, 2, TB + 80];
        let (pieces, next, single) = split_window(&toks, TB, 0, 3000);
        assert_eq!((pieces.len(), next, single), (2, 3000, true));
        let toks = [TB, 1, 2, TB + 125];
        let (pieces, next, single) = split_window(&toks, TB, 0, 282);
        assert_eq!((pieces.len(), next, single), (1, 282, true));
        assert!((pieces[0].end - 2.5).abs() < 1e-9);
        // No timestamps at all: one segment over the window's audio.
        let (pieces, next, single) = split_window(&[1, 2], TB, 0, 282);
        assert_eq!((pieces.len(), next, single), (1, 282, false));
        assert!((pieces[0].end - 2.82).abs() < 1e-9);
    }

    fn result(avg_logprob: f32, no_speech_prob: f32, temperature: f32) -> WindowResult {
        WindowResult {
            tokens: vec![1],
            avg_logprob,
            no_speech_prob,
            temperature,
        }
    }

    #[test]
    fn fallback_keeps_fluent_likely_or_silent_results() {
        let opts = TranscribeOptions::default();
        assert_eq!(judge(&result(-0.5, 0.1, 0.0), 1.5, &opts), (true, false));
        assert_eq!(judge(&result(-0.5, 0.1, 0.0), 3.0, &opts), (false, true));
        assert_eq!(judge(&result(-1.5, 0.1, 0.0), 1.5, &opts), (false, false));
        // Unlikely and probably silence: kept (the caller skips it as silence).
        assert_eq!(judge(&result(-1.5, 0.9, 0.0), 1.5, &opts), (true, false));
        // Likely but repetitive is retried even when it may be silence.
        assert_eq!(judge(&result(-0.5, 0.9, 0.0), 3.0, &opts), (false, true));
    }

    #[test]
    fn when_every_temperature_fails_the_likeliest_fluent_result_wins() {
        let tried = vec![
            (result(-0.2, 0.1, 0.0), 3.0, true),
            (result(-1.4, 0.1, 0.2), 1.5, false),
            (result(-1.2, 0.1, 0.4), 1.6, false),
            (result(-1.2, 0.1, 0.6), 1.7, false),
        ];
        let (res, ratio) = fallback_choice(tried, 1.0).unwrap();
        // The repetitive one is likelier but excluded; of the equals the first wins; it is
        // reported at the last temperature.
        assert_eq!((res.avg_logprob, ratio, res.temperature), (-1.2, 1.6, 1.0));
        let all_repetitive = vec![
            (result(-0.9, 0.1, 0.0), 3.0, true),
            (result(-0.3, 0.1, 0.2), 2.9, true),
        ];
        let (res, _) = fallback_choice(all_repetitive, 0.2).unwrap();
        assert_eq!(res.avg_logprob, -0.3);
        assert!(fallback_choice(Vec::new(), 0.0).is_none());
    }
}
