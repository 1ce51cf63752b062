//! MusicGen-Melody's conditioning: the chromagram of a melody, as the reference's
//! `MusicgenMelodyFeatureExtractor` computes it. A centred STFT (periodic Hann window of
//! `n_fft`, reflect padding, power spectrum divided by the window's energy), projected onto
//! pitch classes by librosa's chroma filter bank, normalised per frame by its maximum, and
//! reduced to a one-hot of the strongest pitch class.

use std::path::Path;
use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use serde::Deserialize;

use crate::{MusicgenError, Result};

fn d_rate() -> usize {
    32000
}
fn d_fft() -> usize {
    16384
}
fn d_hop() -> usize {
    4096
}
fn d_chroma() -> usize {
    12
}
fn d_chunk() -> usize {
    30
}

/// The chroma settings of `preprocessor_config.json` (the extractor's defaults when absent).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChromaConfig {
    #[serde(default = "d_rate")]
    pub sampling_rate: usize,
    #[serde(default = "d_fft")]
    pub n_fft: usize,
    #[serde(default = "d_hop")]
    pub hop_length: usize,
    /// Pitch classes (`feature_size` in the file; `num_chroma` in the extractor).
    #[serde(default = "d_chroma", alias = "num_chroma")]
    pub feature_size: usize,
    /// Longest melody used, in seconds; longer input is cut.
    #[serde(default = "d_chunk")]
    pub chunk_length: usize,
}

impl Default for ChromaConfig {
    fn default() -> Self {
        Self {
            sampling_rate: d_rate(),
            n_fft: d_fft(),
            hop_length: d_hop(),
            feature_size: d_chroma(),
            chunk_length: d_chunk(),
        }
    }
}

impl ChromaConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| MusicgenError::invalid(path, e.to_string()))?;
        if cfg.n_fft < 4 || cfg.hop_length == 0 || cfg.feature_size == 0 {
            return Err(MusicgenError::invalid(
                path,
                "n_fft, hop_length, feature_size must be positive",
            ));
        }
        Ok(cfg)
    }
}

pub struct ChromaExtractor {
    cfg: ChromaConfig,
    /// `feature_size × (n_fft/2 + 1)`.
    filters: Vec<f64>,
    window: Vec<f64>,
    window_energy: f64,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl ChromaExtractor {
    pub fn new(cfg: &ChromaConfig) -> Self {
        let n = cfg.n_fft;
        // torch.hann_window is periodic: 0.5 − 0.5·cos(2πi/n).
        let window: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let window_energy = window.iter().map(|w| w * w).sum();
        Self {
            filters: filter_bank(cfg.sampling_rate as f64, n, cfg.feature_size),
            window,
            window_energy,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(n),
            cfg: cfg.clone(),
        }
    }

    pub fn config(&self) -> &ChromaConfig {
        &self.cfg
    }

    /// Chroma frames per second of audio.
    pub fn frame_rate(&self) -> f64 {
        self.cfg.sampling_rate as f64 / self.cfg.hop_length as f64
    }

    /// The normalised chromagram before the one-hot, `frames × feature_size`.
    pub fn normalized(&self, wav: &[f32]) -> Result<Vec<f32>> {
        if wav.is_empty() {
            return Err(MusicgenError::params("the melody is empty"));
        }
        let n = self.cfg.n_fft;
        let max = self.cfg.chunk_length * self.cfg.sampling_rate;
        let mut x: Vec<f64> = wav[..wav.len().min(max)]
            .iter()
            .map(|v| f64::from(*v))
            .collect();
        if x.len() < n {
            let pad = n - x.len();
            let mut p = vec![0.0; pad / 2];
            p.extend(&x);
            p.resize(n, 0.0);
            x = p;
        }
        // Centred frames: reflect-pad n/2 on both sides.
        let half = n / 2;
        let len = x.len();
        let mut padded = Vec::with_capacity(len + 2 * half);
        padded.extend((0..half).map(|i| x[half - i]));
        padded.extend_from_slice(&x);
        padded.extend((0..half).map(|i| x[len - 2 - i]));
        let frames = 1 + len / self.cfg.hop_length;
        let bins = n / 2 + 1;
        let c = self.cfg.feature_size;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut power = vec![0f64; bins];
        let mut out = vec![0f32; frames * c];
        for t in 0..frames {
            let start = t * self.cfg.hop_length;
            for (i, v) in input.iter_mut().enumerate() {
                *v = padded[start + i] * self.window[i];
            }
            self.fft
                .process(&mut input, &mut spectrum)
                .map_err(|e| MusicgenError::params(format!("fft: {e}")))?;
            for (p, s) in power.iter_mut().zip(&spectrum) {
                *p = s.norm_sqr() / self.window_energy;
            }
            let raw: Vec<f64> = (0..c)
                .map(|k| {
                    self.filters[k * bins..(k + 1) * bins]
                        .iter()
                        .zip(&power)
                        .map(|(f, p)| f * p)
                        .sum()
                })
                .collect();
            let norm = raw.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
            for k in 0..c {
                out[t * c + k] = (raw[k] / norm) as f32;
            }
        }
        Ok(out)
    }

    /// The one-hot chromagram the model is conditioned on, `frames × feature_size`.
    pub fn chroma(&self, wav: &[f32]) -> Result<Vec<f32>> {
        let c = self.cfg.feature_size;
        let mut x = self.normalized(wav)?;
        for row in x.chunks_exact_mut(c) {
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
            row.fill(0.0);
            row[best] = 1.0;
        }
        Ok(x)
    }
}

/// librosa's chroma filter bank (`transformers.audio_utils.chroma_filter_bank` with tuning
/// 0, power 2, weighting (5, 2), starting at C): Gaussian bumps around each FFT bin's pitch
/// class, columns L2-normalised, weighted towards octave 5, `num_chroma × (n_fft/2 + 1)`.
pub fn filter_bank(rate: f64, n_fft: usize, num_chroma: usize) -> Vec<f64> {
    let nc = num_chroma as f64;
    // Fractional pitch-class position of every FFT bin but DC: nc · log2(f / (440/16)).
    let mut freq_bins: Vec<f64> = (1..n_fft)
        .map(|i| nc * (i as f64 * rate / n_fft as f64 / (440.0 / 16.0)).log2())
        .collect();
    // DC is made up: 1.5 octaves below bin 1.
    freq_bins.insert(0, freq_bins[0] - 1.5 * nc);
    let mut widths: Vec<f64> = freq_bins
        .windows(2)
        .map(|w| (w[1] - w[0]).max(1.0))
        .collect();
    widths.push(1.0);
    let half = (nc / 2.0).round_ties_even();
    let mut f = vec![0f64; num_chroma * n_fft];
    for c in 0..num_chroma {
        for i in 0..n_fft {
            let d = (freq_bins[i] - c as f64 + half + 10.0 * nc).rem_euclid(nc) - half;
            f[c * n_fft + i] = (-0.5 * (2.0 * d / widths[i]).powi(2)).exp();
        }
    }
    for i in 0..n_fft {
        let norm = (0..num_chroma)
            .map(|c| f[c * n_fft + i].powi(2))
            .sum::<f64>()
            .sqrt();
        let weight = (-0.5 * ((freq_bins[i] / nc - 5.0) / 2.0).powi(2)).exp();
        for c in 0..num_chroma {
            f[c * n_fft + i] = f[c * n_fft + i] / norm * weight;
        }
    }
    // Start at C (rows rolled by 3 per 12 classes), drop the mirrored half.
    let shift = 3 * (num_chroma / 12);
    let bins = (1.0 + n_fft as f64 / 2.0) as usize;
    let mut out = vec![0f64; num_chroma * bins];
    for c in 0..num_chroma {
        let src = (c + shift) % num_chroma;
        out[c * bins..(c + 1) * bins].copy_from_slice(&f[src * n_fft..src * n_fft + bins]);
    }
    out
}
