//! Turning per-frame bin activations into a pitch and a confidence.
//!
//! Mirrors torchcrepe's `postprocess` and decoders: bins outside
//! `[fmin, fmax]` are masked first; `Argmax` takes the best bin,
//! `WeightedArgmax` averages the cents of the nine bins around it, and
//! `Viterbi` finds the smoothest likely bin path through the whole sequence
//! with torchcrepe's triangular transition matrix; `NormalizedViterbi` does
//! the same with sharper emissions (see [`Decoder`]). The confidence
//! ("periodicity") is the activation at the decoded bin.

use serde::{Deserialize, Serialize};

use crate::convert::{bin_to_cents, cents_to_hz};
use crate::model::PITCH_BINS;

/// How to pick a pitch from the activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// The bin with the highest activation, frame by frame.
    Argmax,
    /// Weighted average of the cents of the bins within 4 of the argmax.
    WeightedArgmax,
    /// Viterbi path over the whole track, exactly as torchcrepe does it
    /// (torchcrepe's default). Its emissions are a softmax over the
    /// activations, which are already in [0, 1], so they are nearly flat;
    /// the transition matrix then favours the edge bins, and short notes
    /// next to silence can be lost (decoded at ~2 kHz with low confidence).
    Viterbi,
    /// Viterbi with the same transitions but emissions proportional to the
    /// activations (the original CREPE's normalisation), which follows
    /// short notes. Not in torchcrepe.
    #[default]
    NormalizedViterbi,
}

/// How the Viterbi decoder turns a row of activations into emission
/// probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emission {
    Softmax,
    Normalized,
}

/// Decoded pitch of a sequence of frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Chosen bin per frame.
    pub bins: Vec<usize>,
    /// Pitch per frame, Hz.
    pub f0_hz: Vec<f32>,
    /// Activation at the chosen bin (0 when the bin is outside the range).
    pub periodicity: Vec<f32>,
}

/// Transitions reach at most this many bins away (torchcrepe: `12 - |i - j| > 0`).
const REACH: usize = 11;

/// Decodes `activations` (row-major, `frames x 360`), restricted to bins in
/// `[lo, hi)` (see [`crate::convert::bin_range`]).
pub fn decode(activations: &[f32], range: (usize, usize), decoder: Decoder) -> Decoded {
    assert_eq!(
        activations.len() % PITCH_BINS,
        0,
        "activations must be frames x 360"
    );
    let (lo, hi) = (range.0.min(PITCH_BINS), range.1.min(PITCH_BINS));
    let rows = activations.chunks_exact(PITCH_BINS);
    let bins: Vec<usize> = match decoder {
        Decoder::Argmax | Decoder::WeightedArgmax => rows.map(|r| argmax(r, lo, hi)).collect(),
        Decoder::Viterbi => viterbi(activations, lo, hi, Emission::Softmax),
        Decoder::NormalizedViterbi => viterbi(activations, lo, hi, Emission::Normalized),
    };
    let f0_hz = match decoder {
        Decoder::WeightedArgmax => activations
            .chunks_exact(PITCH_BINS)
            .zip(&bins)
            .map(|(r, &b)| cents_to_hz(local_average_cents(r, b, lo, hi)) as f32)
            .collect(),
        _ => bins
            .iter()
            .map(|&b| cents_to_hz(bin_to_cents(b as f64)) as f32)
            .collect(),
    };
    let periodicity = activations
        .chunks_exact(PITCH_BINS)
        .zip(&bins)
        .map(|(r, &b)| if (lo..hi).contains(&b) { r[b] } else { 0.0 })
        .collect();
    Decoded {
        bins,
        f0_hz,
        periodicity,
    }
}

/// First index of the largest activation within `[lo, hi)`; `lo` if empty.
fn argmax(row: &[f32], lo: usize, hi: usize) -> usize {
    let mut best = lo;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate().take(hi).skip(lo) {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best
}

/// torchcrepe's weighted argmax: bins `[b-4, b+5)` weighted by
/// `sigmoid(activation)` (torchcrepe applies a sigmoid to the already
/// sigmoid-ed output), masked bins weighing nothing.
fn local_average_cents(row: &[f32], b: usize, lo: usize, hi: usize) -> f64 {
    let start = b.saturating_sub(4).max(lo);
    let end = (b + 5).min(hi);
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (i, &a) in row.iter().enumerate().take(end).skip(start) {
        let w = 1.0 / (1.0 + (-(a as f64)).exp());
        num += w * bin_to_cents(i as f64);
        den += w;
    }
    if den > 0.0 {
        num / den
    } else {
        bin_to_cents(b as f64)
    }
}

/// log of the transition probability from bin `i` to bin `j`, `None` when
/// they are more than [`REACH`] bins apart (probability zero).
fn transition_logs() -> Vec<[f64; 2 * REACH + 1]> {
    (0..PITCH_BINS)
        .map(|i| {
            let weight = |j: isize| -> f64 {
                let d = (i as isize - j).unsigned_abs();
                if j < 0 || j >= PITCH_BINS as isize || d > REACH {
                    0.0
                } else {
                    (12 - d) as f64
                }
            };
            let total: f64 = (0..PITCH_BINS as isize).map(weight).sum();
            let mut row = [f64::NEG_INFINITY; 2 * REACH + 1];
            for (k, slot) in row.iter_mut().enumerate() {
                let j = i as isize + k as isize - REACH as isize;
                let w = weight(j);
                if w > 0.0 {
                    *slot = (w / total + TINY as f64).ln();
                }
            }
            row
        })
        .collect()
}

/// Smallest normal f32; librosa adds it before taking logs.
const TINY: f32 = f32::MIN_POSITIVE;

/// torchcrepe's Viterbi: softmax over the (masked) activations of each
/// frame, then librosa's Viterbi with a uniform prior and a triangular
/// transition matrix. Zero transitions and masked bins are not impossible
/// there but cost `ln(f32::MIN_POSITIVE)`, and so they do here.
/// With [`Emission::Normalized`] the softmax is replaced by `a / sum(a)`.
fn viterbi(activations: &[f32], lo: usize, hi: usize, emission: Emission) -> Vec<usize> {
    let n = activations.len() / PITCH_BINS;
    if n == 0 {
        return Vec::new();
    }
    let log_eps = (TINY as f64).ln();
    let trans = transition_logs();
    let log_prob = |row: &[f32], out: &mut [f64]| {
        let allowed = &row[lo..hi];
        let (shift, sum) = match emission {
            Emission::Softmax => {
                let max = allowed.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (max, allowed.iter().map(|&a| (a - max).exp()).sum::<f32>())
            }
            Emission::Normalized => (0.0, allowed.iter().map(|&a| a.max(0.0)).sum::<f32>()),
        };
        for (j, o) in out.iter_mut().enumerate() {
            let p = if !(lo..hi).contains(&j) || sum <= 0.0 {
                0.0
            } else if emission == Emission::Softmax {
                (row[j] - shift).exp() / sum
            } else {
                row[j].max(0.0) / sum
            };
            *o = (p + TINY).ln() as f64;
        }
    };
    let mut value = vec![0.0f64; PITCH_BINS];
    let mut next = vec![0.0f64; PITCH_BINS];
    let mut lp = vec![0.0f64; PITCH_BINS];
    let mut ptr = vec![0u16; n * PITCH_BINS];
    log_prob(&activations[..PITCH_BINS], &mut value);
    for t in 1..n {
        log_prob(&activations[t * PITCH_BINS..(t + 1) * PITCH_BINS], &mut lp);
        // Best predecessor reached through a zero-probability transition.
        let (far_i, far_v) =
            value.iter().enumerate().fold(
                (0, f64::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            );
        for j in 0..PITCH_BINS {
            let mut best_i = far_i;
            let mut best_v = far_v + log_eps;
            let first = j.saturating_sub(REACH);
            let last = (j + REACH).min(PITCH_BINS - 1);
            for i in first..=last {
                let v = value[i] + trans[i][j + REACH - i];
                if v > best_v || (v == best_v && i < best_i) {
                    best_v = v;
                    best_i = i;
                }
            }
            ptr[t * PITCH_BINS + j] = best_i as u16;
            next[j] = lp[j] + best_v;
        }
        std::mem::swap(&mut value, &mut next);
    }
    let mut state = argmax_f64(&value);
    let mut path = vec![0usize; n];
    for t in (0..n).rev() {
        path[t] = state;
        if t > 0 {
            state = ptr[t * PITCH_BINS + state] as usize;
        }
    }
    path
}

fn argmax_f64(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peaked(bins: &[usize]) -> Vec<f32> {
        let mut a = vec![0.01f32; bins.len() * PITCH_BINS];
        for (t, &b) in bins.iter().enumerate() {
            a[t * PITCH_BINS + b] = 0.9;
            a[t * PITCH_BINS + b + 1] = 0.5;
        }
        a
    }

    #[test]
    fn argmax_and_periodicity() {
        let d = decode(&peaked(&[100, 120]), (0, 360), Decoder::Argmax);
        assert_eq!(d.bins, vec![100, 120]);
        assert_eq!(d.periodicity, vec![0.9, 0.9]);
        assert!((d.f0_hz[0] as f64 - crate::convert::bin_to_hz(100)).abs() < 1e-3);
    }

    #[test]
    fn weighted_argmax_leans_to_neighbour() {
        let d = decode(&peaked(&[100]), (0, 360), Decoder::WeightedArgmax);
        let hz100 = crate::convert::bin_to_hz(100) as f32;
        let hz101 = crate::convert::bin_to_hz(101) as f32;
        assert!(d.f0_hz[0] > hz100 && d.f0_hz[0] < hz101);
    }

    #[test]
    fn viterbi_follows_a_steady_peak_and_respects_range() {
        let d = decode(&peaked(&[150; 5]), (0, 360), Decoder::Viterbi);
        assert_eq!(d.bins, vec![150; 5]);
        let d = decode(&peaked(&[10; 3]), (39, 360), Decoder::Viterbi);
        assert!(d.bins.iter().all(|&b| b >= 39));
        let d = decode(
            &peaked(&[150, 150, 151, 152]),
            (0, 360),
            Decoder::NormalizedViterbi,
        );
        assert_eq!(d.bins, vec![150, 150, 151, 152]);
    }
}
