//! Key estimation: a chroma vector from spectral peaks, correlated with the
//! Krumhansl-Kessler key profiles of all 24 major and minor keys.
//!
//! Only spectral peaks count towards the chroma (not every bin), so a noise
//! floor spreads thinly and evenly instead of drowning the tonal content;
//! each peak's frequency is refined by parabolic interpolation so that low
//! notes, whose semitones are narrower than an FFT bin, still land in the
//! right pitch class. The tuning (offset from A440) is estimated from the
//! same peaks and removed before folding them into pitch classes. The
//! best-correlated profile gives the key (Pearson r is insensitive to
//! overall level and to the profiles' own offset).

use serde::{Deserialize, Serialize};

use super::spectrum::{for_each_spectrum, rms_db};
use super::stats::{parabolic_offset, pearson};

/// Pitch-class names, index 0 = C, sharps for black keys.
pub const KEY_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

/// Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
const MAJOR: [f64; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
const MINOR: [f64; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];

const SR: f64 = 16_000.0;
const FFT: usize = 4096;
const HOP: usize = 2048;
/// Band of fundamentals and low partials that carry the harmony.
const F_LO: f64 = 55.0;
const F_HI: f64 = 2_100.0;
/// Peaks this far below the frame's strongest are ignored.
const PEAK_RANGE_DB: f32 = 50.0;
/// Frames (and signals) quieter than this are silence.
const SILENCE_DB: f32 = -60.0;
/// Chroma coefficient of variation at which a chroma counts as fully tonal.
const TONAL_CV: f64 = 0.5;

/// An estimated key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// Tonic pitch class, e.g. `"C#"`.
    pub tonic: String,
    /// `"major"` or `"minor"`.
    pub mode: String,
    /// e.g. `"C# minor"`.
    pub name: String,
    /// In [0, 1]: the winning profile's correlation, scaled down when the
    /// chroma is nearly flat (noise, unpitched sound).
    pub confidence: f32,
    /// Energy per pitch class (C first), normalised to a maximum of 1.
    pub chroma: [f32; 12],
    /// Name of the second-best key (often the relative major/minor).
    pub runner_up: String,
    /// Estimated tuning relative to A440 equal temperament, cents (-50..50).
    pub tuning_cents: f32,
}

/// Estimates the key of a 16 kHz signal; `None` for silence or audio shorter
/// than one analysis frame (0.256 s).
pub fn estimate_key(samples_16k: &[f32]) -> Option<Key> {
    let (chroma, tuning_cents) = chroma(samples_16k)?;
    let total: f64 = chroma.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut scores: Vec<(f64, usize, bool)> = Vec::with_capacity(24);
    for tonic in 0..12 {
        for (minor, base) in [(false, &MAJOR), (true, &MINOR)] {
            let profile: Vec<f64> = (0..12).map(|pc| base[(pc + 12 - tonic) % 12]).collect();
            let r = pearson(&chroma, &profile).unwrap_or(0.0);
            scores.push((r, tonic, minor));
        }
    }
    scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (r, tonic, minor) = scores[0];
    let mean = total / 12.0;
    let sd = (chroma.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / 12.0).sqrt();
    let tonal = (sd / mean / TONAL_CV).min(1.0);
    let max = chroma.iter().copied().fold(0.0, f64::max);
    let name = |tonic: usize, minor: bool| {
        format!(
            "{} {}",
            KEY_NAMES[tonic],
            if minor { "minor" } else { "major" }
        )
    };
    Some(Key {
        tonic: KEY_NAMES[tonic].to_string(),
        mode: if minor { "minor" } else { "major" }.to_string(),
        name: name(tonic, minor),
        confidence: (r.max(0.0) * tonal).clamp(0.0, 1.0) as f32,
        chroma: std::array::from_fn(|i| (chroma[i] / max) as f32),
        runner_up: name(scores[1].1, scores[1].2),
        tuning_cents: tuning_cents as f32,
    })
}

/// Summed peak magnitudes per pitch class and the tuning offset (cents,
/// -50..50) they were folded with, or `None` for silence / too little audio.
fn chroma(samples: &[f32]) -> Option<(Vec<f64>, f64)> {
    let peaks = peaks(samples)?;
    // Tuning: the magnitude-weighted circular mean of each peak's distance to
    // the nearest equal-tempered semitone, so that a recording tuned away from
    // A440 (up to a quarter tone) still folds onto the right pitch classes.
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for &(midi, m) in &peaks {
        let angle = std::f64::consts::TAU * (midi - midi.round());
        re += m * angle.cos();
        im += m * angle.sin();
    }
    let tuning = if re.hypot(im) > 1e-12 {
        im.atan2(re) / std::f64::consts::TAU
    } else {
        0.0
    };
    let mut chroma = vec![0.0f64; 12];
    for (midi, m) in peaks {
        chroma[((midi - tuning).round() as i64).rem_euclid(12) as usize] += m;
    }
    Some((chroma, 100.0 * tuning))
}

/// Spectral peaks (fractional MIDI pitch, magnitude) of every frame that is
/// not silent.
fn peaks(samples: &[f32]) -> Option<Vec<(f64, f64)>> {
    if samples.len() < FFT || rms_db(samples, -200.0) < SILENCE_DB {
        return None;
    }
    let bin_hz = SR / FFT as f64;
    let lo = (F_LO / bin_hz).floor().max(1.0) as usize;
    let hi = ((F_HI / bin_hz).ceil() as usize).min(FFT / 2 - 1);
    let frame_floor = 10f32.powf(SILENCE_DB / 20.0) * FFT as f32 / 4.0;
    let db = |x: f32| 20.0 * (x.max(1e-12) as f64).log10();
    let mut out = Vec::new();
    for_each_spectrum(samples, FFT, HOP, 0, |_, mag| {
        let strongest = mag[lo..=hi].iter().copied().fold(0.0, f32::max);
        if strongest < frame_floor {
            return;
        }
        let min_peak = strongest * 10f32.powf(-PEAK_RANGE_DB / 20.0);
        for k in lo..=hi {
            let m = mag[k];
            if m < min_peak || m <= mag[k - 1] || m < mag[k + 1] {
                continue;
            }
            let off = parabolic_offset(db(mag[k - 1]), db(m), db(mag[k + 1]));
            let hz = (k as f64 + off) * bin_hz;
            let midi = 69.0 + 12.0 * (hz / 440.0).log2();
            if midi.is_finite() {
                out.push((midi, m as f64));
            }
        }
    });
    Some(out)
}
