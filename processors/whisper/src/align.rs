//! Word timestamps, as faster-whisper (and openai-whisper) compute them: the cross-attention
//! of the alignment heads over the window's real frames, standardised across tokens and
//! median-filtered along time, aligned to the tokens by dynamic time warping. The fixes
//! for pauses and punctuation are in `words.rs`.

use candle_core::{IndexOp, Tensor};

use crate::decode::log_softmax;
use crate::error::Result;
use crate::model::Model;
use crate::tokenizer::WhisperTokenizer;
use crate::words::{limit_sentence_ends, median, merge_punctuation, AlignedWord, Alignment};

/// Audio tokens per second (the encoder halves the 100 mel frames per second).
const TOKENS_PER_SECOND: f64 = 50.0;

/// One encoded window: `[1, 1500, d]` with `frames` real mel frames.
pub(crate) struct EncodedWindow<'a> {
    pub audio: &'a Tensor,
    pub frames: usize,
}

/// Times the words of `text_tokens` (text only, no timestamps) spoken in `win`.
pub(crate) fn align_words(
    model: &Model,
    tok: &WhisperTokenizer,
    heads: &[(usize, usize)],
    win: &EncodedWindow,
    sot_seq: &[u32],
    text_tokens: &[u32],
    language: &str,
) -> Result<Alignment> {
    let none = Alignment {
        words: Vec::new(),
        median: 0.0,
    };
    if text_tokens.is_empty() {
        return Ok(none);
    }
    let sp = &tok.specials;
    let mut tokens = sot_seq.to_vec();
    tokens.push(sp.no_timestamps);
    tokens.extend_from_slice(text_tokens);
    tokens.push(sp.eot);
    let mut state = model.decoder.start(win.audio)?;
    let t = Tensor::new(tokens.as_slice(), win.audio.device())?.unsqueeze(0)?;
    let (logits, weights) = model.decoder.forward(&t, &mut state, heads)?;
    let Some(weights) = weights else {
        return Ok(none);
    };
    let n_audio = (win.frames / 2).max(1).min(weights.dim(2)?);
    let w: Vec<Vec<Vec<f32>>> = weights.narrow(2, 0, n_audio)?.to_vec3()?;

    // Probability of each text token where it was predicted, among text tokens only.
    let base = sot_seq.len();
    let mut probs = Vec::with_capacity(text_tokens.len());
    for (i, &tt) in text_tokens.iter().enumerate() {
        let row: Vec<f32> = logits.i((0, base + i))?.to_vec1()?;
        let lp = log_softmax(&row[..sp.eot as usize]);
        probs.push(lp[tt as usize].exp());
    }

    let matrix = attention_matrix(&w);
    // Rows from <|notimestamps|> (predicting the first text token) to the last text token
    // (predicting the end).
    let cost: Vec<Vec<f32>> = matrix[base..tokens.len() - 1]
        .iter()
        .map(|r| r.iter().map(|v| -v).collect())
        .collect();
    let (text_idx, time_idx) = dtw(&cost);
    let jumps: Vec<f64> = (0..text_idx.len())
        .filter(|&i| i == 0 || text_idx[i] != text_idx[i - 1])
        .map(|i| time_idx[i] as f64 / TOKENS_PER_SECOND)
        .collect();

    let mut words = Vec::new();
    let mut k = 0;
    for (word, wt) in tok.split_words(text_tokens, language)? {
        let at = |i: usize| jumps.get(i).or(jumps.last()).copied().unwrap_or(0.0);
        let n = wt.len();
        words.push(AlignedWord {
            word,
            tokens: n,
            start: at(k),
            end: at(k + n),
            probability: probs[k..k + n].iter().sum::<f32>() / n as f32,
        });
        k += n;
    }
    let mut durations: Vec<f64> = words
        .iter()
        .map(|w| w.end - w.start)
        .filter(|&d| d != 0.0)
        .collect();
    let median = median(&mut durations).min(0.7);
    if !durations.is_empty() {
        limit_sentence_ends(&mut words, median * 2.0);
    }
    merge_punctuation(&mut words);
    Ok(Alignment { words, median })
}

/// Per alignment head: each token's attention renormalised over the real frames (the
/// reference's softmax over them alone), standardised across tokens frame by frame, then
/// median-filtered along time; the heads averaged. `[rows][frames]`.
fn attention_matrix(w: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let rows = w.first().map_or(0, Vec::len);
    let frames = w.first().and_then(|h| h.first()).map_or(0, Vec::len);
    let mut matrix = vec![vec![0f32; frames]; rows];
    for head in w {
        let mut h: Vec<Vec<f32>> = head
            .iter()
            .map(|row| {
                let s: f32 = row.iter().sum();
                row.iter().map(|v| v / s.max(f32::MIN_POSITIVE)).collect()
            })
            .collect();
        for f in 0..frames {
            let mean = h.iter().map(|r| r[f]).sum::<f32>() / rows as f32;
            let var = h.iter().map(|r| (r[f] - mean).powi(2)).sum::<f32>() / rows as f32;
            let sd = var.sqrt().max(f32::MIN_POSITIVE);
            for r in &mut h {
                r[f] = (r[f] - mean) / sd;
            }
        }
        for (m, r) in matrix.iter_mut().zip(&h) {
            for (m, v) in m.iter_mut().zip(median_filter(r, 7)) {
                *m += v / w.len() as f32;
            }
        }
    }
    matrix
}

fn median_filter(x: &[f32], width: usize) -> Vec<f32> {
    let half = width / 2;
    let n = x.len() as isize;
    if x.len() <= half {
        return x.to_vec();
    }
    let reflect = |i: isize| -> f32 {
        let j = if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        };
        x[j.clamp(0, n - 1) as usize]
    };
    let mut win = vec![0f32; width];
    (0..n)
        .map(|i| {
            for (k, w) in win.iter_mut().enumerate() {
                *w = reflect(i - half as isize + k as isize);
            }
            win.sort_by(f32::total_cmp);
            win[half]
        })
        .collect()
}

/// Monotonic alignment of rows to columns minimising the summed cost; returns the path
/// as parallel (row, column) index lists.
pub(crate) fn dtw(cost: &[Vec<f32>]) -> (Vec<usize>, Vec<usize>) {
    let n = cost.len();
    let m = cost.first().map_or(0, Vec::len);
    if n == 0 || m == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut acc = vec![vec![f32::INFINITY; m + 1]; n + 1];
    let mut trace = vec![vec![0u8; m + 1]; n + 1];
    acc[0][0] = 0.0;
    for i in 1..=n {
        for j in 1..=m {
            let (c0, c1, c2) = (acc[i - 1][j - 1], acc[i - 1][j], acc[i][j - 1]);
            let (best, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            acc[i][j] = cost[i - 1][j - 1] + best;
            trace[i][j] = t;
        }
    }
    let (mut i, mut j) = (n, m);
    let (mut rows, mut cols) = (Vec::new(), Vec::new());
    while i > 0 && j > 0 {
        rows.push(i - 1);
        cols.push(j - 1);
        match trace[i][j] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    while i > 0 {
        rows.push(i - 1);
        cols.push(0);
        i -= 1;
    }
    rows.reverse();
    cols.reverse();
    (rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtw_follows_the_cheap_diagonal() {
        // Row r is cheap at columns 2r and 2r+1.
        let cost: Vec<Vec<f32>> = (0..3)
            .map(|r| (0..6).map(|c| if c / 2 == r { 0.0 } else { 1.0 }).collect())
            .collect();
        let (rows, cols) = dtw(&cost);
        assert_eq!(rows, vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(cols, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn median_filter_removes_spikes() {
        let x = [0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0];
        assert!(median_filter(&x, 7).iter().all(|&v| v == 0.0));
    }
}
