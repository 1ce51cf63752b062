//! Word timestamps: the cross-attention of the alignment heads over the audio frames,
//! normalised and median-filtered, aligned to the tokens by dynamic time warping.

use candle_core::{IndexOp, Tensor};

use crate::decode::log_softmax;
use crate::error::Result;
use crate::model::Model;
use crate::tokenizer::WhisperTokenizer;
use crate::Word;

/// Audio tokens per second (the encoder halves the 100 mel frames per second).
const TOKENS_PER_SECOND: f32 = 50.0;

/// One encoded window: `[1, 1500, d]`, `frames` real mel frames, starting at `offset` s.
pub(crate) struct EncodedWindow<'a> {
    pub audio: &'a Tensor,
    pub frames: usize,
    pub offset: f32,
}

/// Times the words of `text_tokens` (text only, no timestamps) spoken in `win`; each word
/// comes with its token count so callers can hand words back to their segments.
pub(crate) fn align_words(
    model: &Model,
    tok: &WhisperTokenizer,
    heads: &[(usize, usize)],
    win: &EncodedWindow,
    sot_seq: &[u32],
    text_tokens: &[u32],
) -> Result<Vec<(Word, usize)>> {
    let EncodedWindow {
        audio,
        frames,
        offset,
    } = *win;
    if text_tokens.is_empty() {
        return Ok(Vec::new());
    }
    let sp = &tok.specials;
    let mut tokens = sot_seq.to_vec();
    tokens.push(sp.no_timestamps);
    tokens.extend_from_slice(text_tokens);
    tokens.push(sp.eot);
    let mut state = model.decoder.start(audio, 1)?;
    let t = Tensor::new(tokens.as_slice(), audio.device())?.unsqueeze(0)?;
    let (logits, weights) = model.decoder.forward(&t, &mut state, heads)?;
    let Some(weights) = weights else {
        return Ok(Vec::new());
    };
    let n_audio = (frames / 2).max(1).min(weights.dim(2)?);
    let w: Vec<Vec<Vec<f32>>> = weights.narrow(2, 0, n_audio)?.to_vec3()?;

    // Probability of each text token where it was predicted.
    let base = sot_seq.len();
    let mut probs = Vec::with_capacity(text_tokens.len());
    for (i, &tt) in text_tokens.iter().enumerate() {
        let row: Vec<f32> = logits.i((0, base + i))?.to_vec1()?;
        let lp = log_softmax(&row[..sp.eot as usize]);
        probs.push(lp[tt as usize].exp());
    }

    // Per head: standardise each token row, then median-filter along time; average heads.
    let rows = tokens.len();
    let mut matrix = vec![vec![0f32; n_audio]; rows];
    for head in &w {
        for (r, row) in head.iter().enumerate() {
            let mean = row.iter().sum::<f32>() / n_audio as f32;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n_audio as f32;
            let sd = var.sqrt().max(1e-8);
            let z: Vec<f32> = row.iter().map(|v| (v - mean) / sd).collect();
            for (m, v) in matrix[r].iter_mut().zip(median_filter(&z, 7)) {
                *m += v / w.len() as f32;
            }
        }
    }
    // Rows from <|notimestamps|> up to the last text token.
    let m: Vec<Vec<f32>> = matrix[base..rows - 1]
        .iter()
        .map(|r| r.iter().map(|v| -v).collect())
        .collect();
    let (text_idx, time_idx) = dtw(&m);

    let mut jumps = Vec::new();
    for i in 0..text_idx.len() {
        if i == 0 || text_idx[i] != text_idx[i - 1] {
            jumps.push(time_idx[i] as f32 / TOKENS_PER_SECOND);
        }
    }
    let words = tok.split_words(text_tokens)?;
    let mut out = Vec::with_capacity(words.len());
    let mut k = 0;
    for (word, wt) in words {
        let start = jumps.get(k).copied().unwrap_or(0.0);
        let end = jumps
            .get(k + wt.len())
            .copied()
            .unwrap_or_else(|| jumps.last().copied().unwrap_or(0.0));
        let p = probs[k..k + wt.len()].iter().sum::<f32>() / wt.len() as f32;
        k += wt.len();
        let n = wt.len();
        out.push((
            Word {
                start: offset + start,
                end: offset + end.max(start),
                word,
                probability: p,
            },
            n,
        ));
    }
    limit_sentence_ends(&mut out);
    Ok(out)
}

/// DTW lets a sentence's closing mark (and the word after it) soak up the pause that
/// follows; cap such words at twice the median word length (at most 1.4 s).
fn limit_sentence_ends(words: &mut [(Word, usize)]) {
    let mut durs: Vec<f32> = words
        .iter()
        .map(|(w, _)| w.end - w.start)
        .filter(|&d| d > 0.0)
        .collect();
    if durs.is_empty() {
        return;
    }
    durs.sort_by(f32::total_cmp);
    let max = durs[durs.len() / 2].min(0.7) * 2.0;
    let is_end = |w: &Word| matches!(w.word.trim(), "." | "!" | "?" | "。" | "！" | "？");
    for i in 1..words.len() {
        if words[i].0.end - words[i].0.start > max {
            if is_end(&words[i].0) {
                words[i].0.end = words[i].0.start + max;
            } else if is_end(&words[i - 1].0) {
                words[i].0.start = words[i].0.end - max;
            }
        }
    }
}

/// Glues lone punctuation onto the word before it (or after it, for opening marks).
pub(crate) fn merge_punctuation(words: &mut Vec<Word>) {
    let mut i = 0;
    while i < words.len() {
        let t = words[i].word.trim();
        let is_punct = !t.is_empty() && t.chars().all(|c| c.is_ascii_punctuation());
        let opening = matches!(t, "\"" | "'" | "(" | "[" | "{" | "¿" | "¡");
        if is_punct && !opening && i > 0 {
            let w = words.remove(i);
            words[i - 1].word.push_str(w.word.trim_start());
            words[i - 1].end = words[i - 1].end.max(w.end);
            continue;
        }
        if is_punct && opening && i + 1 < words.len() {
            let w = words.remove(i);
            let next = &mut words[i];
            next.word = format!("{}{}", w.word, next.word.trim_start());
            next.start = w.start.min(next.start);
            continue;
        }
        i += 1;
    }
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
