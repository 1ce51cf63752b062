//! Whisper's log-mel front end: 25 ms Hann windows every 10 ms (n_fft 400, hop 160 at
//! 16 kHz), power spectrum, Slaney mel filter bank, log10, clamped to 8 below the
//! maximum and scaled to about [-1, 1].

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Sample rate the model expects.
pub const SAMPLE_RATE: usize = 16_000;
/// Samples between two mel frames.
pub const HOP: usize = 160;
/// FFT size (and window length).
pub const N_FFT: usize = 400;
/// Mel frames in one 30 s window.
pub const N_FRAMES: usize = 3000;

/// A reusable log-mel extractor for one mel count (80, or 128 for large-v3).
pub struct MelExtractor {
    n_mels: usize,
    filters: Vec<f32>,
    window: Vec<f32>,
    fft: Arc<dyn Fft<f32>>,
}

impl MelExtractor {
    /// Builds the filter bank and FFT plan for `n_mels` bands.
    pub fn new(n_mels: usize) -> Self {
        // Periodic Hann window, as torch.hann_window builds it.
        let window = (0..N_FFT)
            .map(|i| {
                let x = (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos();
                (0.5 - 0.5 * x) as f32
            })
            .collect();
        Self {
            n_mels,
            filters: mel_filters(n_mels),
            window,
            fft: FftPlanner::new().plan_fft_forward(N_FFT),
        }
    }

    /// Number of mel bands.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Log-mel of `samples` (16 kHz mono) followed by `pad` zero samples, as a row-major
    /// `[n_mels, frames]` buffer with `frames = (len + pad) / HOP`.
    pub fn log_mel(&self, samples: &[f32], pad: usize) -> (Vec<f32>, usize) {
        let total = samples.len() + pad;
        let frames = total / HOP;
        let bins = N_FFT / 2 + 1;
        let half = N_FFT / 2;
        // Centered frames with reflect padding on both ends of the padded signal.
        let at = |i: isize| -> f32 {
            let n = total as isize;
            let j = if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            };
            let j = j.clamp(0, n - 1) as usize;
            samples.get(j).copied().unwrap_or(0.0)
        };
        let mut mel = vec![0f32; self.n_mels * frames];
        let mut buf = vec![Complex::new(0f32, 0f32); N_FFT];
        let mut power = vec![0f32; bins];
        for f in 0..frames {
            let start = (f * HOP) as isize - half as isize;
            for (k, b) in buf.iter_mut().enumerate() {
                *b = Complex::new(at(start + k as isize) * self.window[k], 0.0);
            }
            self.fft.process(&mut buf);
            for (p, c) in power.iter_mut().zip(&buf) {
                *p = c.norm_sqr();
            }
            for m in 0..self.n_mels {
                let row = &self.filters[m * bins..(m + 1) * bins];
                let e: f32 = row.iter().zip(&power).map(|(a, b)| a * b).sum();
                mel[m * frames + f] = e.max(1e-10).log10();
            }
        }
        let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut mel {
            *v = ((*v).max(max - 8.0) + 4.0) / 4.0;
        }
        (mel, frames)
    }
}

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    if f < 1000.0 {
        f / f_sp
    } else {
        1000.0 / f_sp + (f / 1000.0).ln() / (6.4f64.ln() / 27.0)
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_mel = 1000.0 / f_sp;
    if m < min_log_mel {
        f_sp * m
    } else {
        1000.0 * ((6.4f64.ln() / 27.0) * (m - min_log_mel)).exp()
    }
}

/// Slaney-style, area-normalised triangular filters from 0 to 8 kHz (what librosa's
/// `filters.mel(sr=16000, n_fft=400)` gives and Whisper ships as `mel_filters.npz`),
/// row-major `[n_mels, n_fft/2 + 1]`.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let bins = N_FFT / 2 + 1;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let norm = 2.0 / (pts[m + 2] - pts[m]);
        for k in 0..bins {
            let f = k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
            let lower = (f - pts[m]) / (pts[m + 1] - pts[m]);
            let upper = (pts[m + 2] - f) / (pts[m + 2] - pts[m + 1]);
            out[m * bins + k] = (lower.min(upper).max(0.0) * norm) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_librosa_reference_values() {
        let f = mel_filters(80);
        // librosa.filters.mel(sr=16000, n_fft=400, n_mels=80): row 0 peaks at bin 1,
        // and the rows are area-normalised so the high bands are small.
        assert!((f[1] - 0.024_86).abs() < 1e-4, "{}", f[1]);
        assert_eq!(f[0], 0.0);
        let last = &f[79 * 201..80 * 201];
        assert!(last.iter().all(|&v| (0.0..0.01).contains(&v)));
    }

    #[test]
    fn a_tone_lights_its_band() {
        let ex = MelExtractor::new(80);
        let tone: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let (mel, frames) = ex.log_mel(&tone, 0);
        assert_eq!(frames, 100);
        let col = 50;
        let best = (0..80)
            .max_by(|&a, &b| mel[a * frames + col].total_cmp(&mel[b * frames + col]))
            .unwrap();
        // 1 kHz sits at mel 15, i.e. filter 15*80/hz_to_mel(8000)-1.
        let expect = (hz_to_mel(1000.0) / hz_to_mel(8000.0) * 81.0) as usize - 1;
        assert!(
            best.abs_diff(expect) <= 1,
            "band {best}, expected ~{expect}"
        );
    }
}
