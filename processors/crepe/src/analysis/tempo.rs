//! Tempo and beat estimation: a spectral-flux onset envelope, its
//! autocorrelation searched over 60-200 BPM with a log-normal preference for
//! tempi near 120 BPM, and a beat grid phased onto the onsets.
//!
//! Why these steps:
//! * Log-compressed spectral flux (positive level changes only) in
//!   log-spaced bands rises at every note or drum onset regardless of pitch;
//!   the log keeps soft onsets visible next to loud ones, and the bands keep
//!   the many high-frequency bins from outweighing the bass.
//! * Subtracting a running mean and smoothing a little leaves onset pulses
//!   whose autocorrelation peaks at the beat period and its multiples.
//! * A pulse train autocorrelates equally well at the beat, at half the
//!   tempo and (with off-beats) at double it. Weighting the autocorrelation
//!   by a log-normal prior centred on 120 BPM, one octave wide, picks the
//!   metrical level listeners usually tap; only 60-200 BPM is searched.
//! * The period is then refined from the peaks at its multiples (up to 4 s),
//!   which pins it to a fraction of a frame, well inside +-1 BPM.

use serde::{Deserialize, Serialize};

use super::spectrum::for_each_spectrum;
use super::stats::parabolic_offset;

const SR: f64 = 16_000.0;
const FFT: usize = 1024;
/// Onset envelope rate: 100 frames per second.
const HOP: usize = 160;
const MIN_BPM: f64 = 60.0;
const MAX_BPM: f64 = 200.0;
/// Centre and width (octaves) of the tempo prior.
const PRIOR_BPM: f64 = 120.0;
const PRIOR_OCTAVES: f64 = 1.0;
/// Longest lag examined when refining the period, seconds.
const MAX_REFINE_S: f64 = 4.0;
/// Half-lag to lag autocorrelation ratio above which the faster tempo wins.
const UNACCENTED_RATIO: f64 = 0.9;
/// Log-spaced bands of the onset envelope.
const BANDS: usize = 48;
/// Shorter audio gives no tempo.
const MIN_SECONDS: f64 = 3.0;

/// An estimated tempo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tempo {
    /// Beats per minute, within 60-200.
    pub bpm: f64,
    /// In [0, 1]: the onset envelope's autocorrelation at the beat period
    /// (near 0 for noise, high for a steady beat).
    pub confidence: f32,
    /// Beat times, seconds.
    pub beats: Vec<f64>,
}

/// Estimates the tempo of a 16 kHz signal; `None` for audio shorter than
/// 3 s or without any onset (silence, a perfectly steady tone).
pub fn estimate_tempo(samples_16k: &[f32]) -> Option<Tempo> {
    if (samples_16k.len() as f64) < MIN_SECONDS * SR {
        return None;
    }
    let env = onset_envelope(samples_16k);
    let acf = autocorrelation(&env, (MAX_REFINE_S * SR / HOP as f64) as usize);
    let fps = SR / HOP as f64;
    let lag_lo = (60.0 / MAX_BPM * fps).floor() as usize;
    let lag_hi = ((60.0 / MIN_BPM * fps).ceil() as usize).min(acf.len().saturating_sub(2));
    if acf.is_empty() || lag_lo < 1 || lag_hi <= lag_lo {
        return None;
    }
    let prior = |lag: f64| {
        let octaves = (60.0 * fps / lag / PRIOR_BPM).log2() / PRIOR_OCTAVES;
        (-0.5 * octaves * octaves).exp()
    };
    // Best local maximum of the weighted autocorrelation.
    let best = (lag_lo..=lag_hi)
        .filter(|&l| acf[l] > 0.0 && acf[l] >= acf[l - 1] && acf[l] >= acf[l + 1])
        .max_by(|&a, &b| (acf[a] * prior(a as f64)).total_cmp(&(acf[b] * prior(b as f64))))?;
    let best = prefer_unaccented_double(&acf, best, lag_lo);
    let period = refine_period(&acf, best);
    let bpm = 60.0 * fps / period;
    if !bpm.is_finite() {
        return None;
    }
    Some(Tempo {
        bpm: bpm.clamp(MIN_BPM, MAX_BPM),
        confidence: acf[best].clamp(0.0, 1.0) as f32,
        beats: beat_times(&env, period, fps),
    })
}

/// The prior leans towards 120 BPM, so a pulse train at 180 BPM, with
/// nothing accenting every other pulse, would be reported at 90. When the
/// autocorrelation at half the chosen lag is nearly as strong as at the lag
/// itself, the slower level has no evidence of its own and the faster one is
/// taken; a real accent (kick and snare on the beats under even hi-hats)
/// keeps the half-lag peak well below.
fn prefer_unaccented_double(acf: &[f64], best: usize, lag_lo: usize) -> usize {
    let half = best / 2;
    if half < lag_lo.max(1) {
        return best;
    }
    let Some(peak) = (half.saturating_sub(1).max(lag_lo)..=(half + 1).min(acf.len() - 2))
        .filter(|&l| acf[l] >= acf[l - 1] && acf[l] >= acf[l + 1])
        .max_by(|&a, &b| acf[a].total_cmp(&acf[b]))
    else {
        return best;
    };
    if acf[peak] >= UNACCENTED_RATIO * acf[best] {
        peak
    } else {
        best
    }
}

/// Onset strength per 10 ms frame, frame `t` centred at `t * 10 ms`.
fn onset_envelope(samples: &[f32]) -> Vec<f64> {
    let scale = 4.0 / FFT as f32; // a full-scale sine peaks near 1
    let bands = band_edges();
    let mut prev = vec![0.0f32; bands.len() - 1];
    let mut log = prev.clone();
    let mut flux = Vec::with_capacity(samples.len() / HOP + 1);
    // Half a window of zeros in front centres frame t on t * HOP.
    for_each_spectrum(samples, FFT, HOP, FFT / 2, |t, mag| {
        if t * HOP > samples.len() {
            return;
        }
        for (l, b) in log.iter_mut().zip(bands.windows(2)) {
            let power = mag[b[0]..b[1]].iter().map(|m| m * m).sum::<f32>();
            let rms = (power / (b[1] - b[0]) as f32).sqrt();
            *l = (1.0 + 100.0 * rms * scale).ln();
        }
        let f = if t == 0 {
            0.0
        } else {
            log.iter()
                .zip(&prev)
                .map(|(a, b)| (a - b).max(0.0) as f64)
                .sum::<f64>()
        };
        flux.push(f);
        std::mem::swap(&mut prev, &mut log);
    });
    // High-pass (minus a 0.5 s running mean), rectify, then a light smoothing
    // so that pulses a fraction of a frame apart still overlap.
    let half = 25;
    let mut prefix = vec![0.0; flux.len() + 1];
    for (i, f) in flux.iter().enumerate() {
        prefix[i + 1] = prefix[i] + f;
    }
    let hp: Vec<f64> = (0..flux.len())
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(flux.len()));
            let mean = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
            (flux[i] - mean).max(0.0)
        })
        .collect();
    const KERNEL: [f64; 5] = [1.0, 4.0, 6.0, 4.0, 1.0];
    (0..hp.len())
        .map(|i| {
            (0..5)
                .filter_map(|k| (i + k).checked_sub(2).and_then(|j| hp.get(j)))
                .zip(KERNEL)
                .map(|(x, w)| x * w / 16.0)
                .sum()
        })
        .collect()
}

/// Bin edges of about 40 log-spaced bands from 30 Hz to 8 kHz (each at
/// least one bin wide). Summing flux over linear bins would let the top
/// octave, half of all bins, outvote everything else; per band, a kick
/// counts as much as a hi-hat, as for a listener.
fn band_edges() -> Vec<usize> {
    let (lo, hi) = (2.0f64, (FFT / 2) as f64); // 31 Hz .. 8 kHz
    let mut edges: Vec<usize> = (0..=BANDS)
        .map(|i| (lo * (hi / lo).powf(i as f64 / BANDS as f64)).round() as usize)
        .collect();
    edges.dedup();
    edges
}

/// Autocorrelation coefficients (lag 0 = 1) of the mean-removed envelope up
/// to `max_lag`; empty when the envelope has no variance.
fn autocorrelation(env: &[f64], max_lag: usize) -> Vec<f64> {
    let n = env.len();
    if n < 2 {
        return Vec::new();
    }
    let mean = env.iter().sum::<f64>() / n as f64;
    let x: Vec<f64> = env.iter().map(|e| e - mean).collect();
    let energy: f64 = x.iter().map(|v| v * v).sum();
    if energy <= 1e-12 || !energy.is_finite() {
        return Vec::new();
    }
    (0..=max_lag.min(n - 1))
        .map(|lag| {
            x[..n - lag]
                .iter()
                .zip(&x[lag..])
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / energy
        })
        .collect()
}

/// Sub-frame beat period from the autocorrelation peaks at multiples of
/// `lag`: least-squares slope through (k, peak position of k * lag).
fn refine_period(acf: &[f64], lag: usize) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for k in 1.. {
        let guess = (k * lag) as f64;
        let guess = if num > 0.0 {
            k as f64 * num / den
        } else {
            guess
        };
        let centre = guess.round() as usize;
        let reach = k.max(2);
        if centre + reach + 1 >= acf.len() {
            break;
        }
        let lo = centre.saturating_sub(reach).max(1);
        let Some(peak) = (lo..=centre + reach).max_by(|&a, &b| acf[a].total_cmp(&acf[b])) else {
            break;
        };
        // Skip multiples without a clear peak (e.g. drifting tempo).
        if acf[peak] < 0.3 * acf[lag] || peak == lo || peak == centre + reach {
            if k == 1 {
                return lag as f64;
            }
            continue;
        }
        let pos = peak as f64 + parabolic_offset(acf[peak - 1], acf[peak], acf[peak + 1]);
        num += k as f64 * pos;
        den += (k * k) as f64;
    }
    if den > 0.0 {
        num / den
    } else {
        lag as f64
    }
}

/// Beat times: the grid of spacing `period` (frames) whose phase collects
/// the most onset strength, each beat nudged to the strongest onset within
/// 10 % of a period so that slight drift is followed.
fn beat_times(env: &[f64], period: f64, fps: f64) -> Vec<f64> {
    if env.is_empty() || period.is_nan() || period < 1.0 {
        return Vec::new();
    }
    let at = |pos: f64| env.get(pos.round() as usize).copied().unwrap_or(0.0);
    let phases = period.ceil() as usize;
    let phase = (0..phases)
        .max_by(|&a, &b| {
            let score = |p: usize| {
                let mut s = 0.0;
                let mut pos = p as f64;
                while pos < env.len() as f64 {
                    s += at(pos);
                    pos += period;
                }
                s
            };
            score(a).total_cmp(&score(b))
        })
        .unwrap_or(0) as f64;
    let reach = (0.1 * period).round().max(1.0) as isize;
    let mut beats = Vec::new();
    let mut pos = phase;
    while pos < env.len() as f64 {
        let c = pos.round() as isize;
        let snapped = (c - reach..=c + reach)
            .filter(|&i| i >= 0 && (i as usize) < env.len())
            .max_by(|&a, &b| env[a as usize].total_cmp(&env[b as usize]))
            .filter(|&i| env[i as usize] > 0.0)
            .map_or(pos, |i| i as f64);
        beats.push(snapped / fps);
        pos = snapped + period;
    }
    beats
}
