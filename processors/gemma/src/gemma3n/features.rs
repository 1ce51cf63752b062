//! Gemma 3n's audio features (the reference's `Gemma3nAudioFeatureExtractor`): 16 kHz audio
//! in frames of 32 ms every 10 ms, HTK pre-emphasis inside each frame, a periodic Hann window,
//! a 1024-point FFT magnitude, 128 HTK mel bands from 125 to 7600 Hz, natural log floored at
//! 1e-5.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::error::{GemmaError, Result};

pub const SAMPLE_RATE: usize = 16_000;
const FRAME: usize = 512;
const HOP: usize = 160;
const FFT: usize = 1024;
const PREEMPHASIS: f32 = 0.97;
const MEL_FLOOR: f64 = 1e-5;
/// The reference pads the audio to a multiple of this many samples.
const PAD_MULTIPLE: usize = 128;
/// The reference truncates audio to 30 s.
pub const MAX_SAMPLES: usize = 30 * SAMPLE_RATE;

/// Log-mel frames of one clip and which frames are padding.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// `frames × mels`, row major.
    pub mel: Vec<f32>,
    pub frames: usize,
    pub mels: usize,
    /// `true` for frames that start in the padding after the audio.
    pub padding: Vec<bool>,
}

pub struct FeatureExtractor {
    mels: usize,
    window: Vec<f32>,
    /// `(FFT / 2 + 1) × mels`, row major.
    filters: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl FeatureExtractor {
    pub fn new(mels: usize) -> Self {
        let window = (0..FRAME)
            .map(|n| {
                (0.5 * (1.0 - (2.0 * std::f64::consts::PI * n as f64 / FRAME as f64).cos())) as f32
            })
            .collect();
        Self {
            mels,
            window,
            filters: htk_filters(FFT / 2 + 1, 125.0, 7600.0, mels),
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(FFT),
        }
    }

    /// Features of `samples` (16 kHz mono). At most 30 s are used, as by the reference.
    pub fn extract(&self, samples: &[f32]) -> Result<Features> {
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(GemmaError::InvalidInput(
                "audio contains NaN or infinity".into(),
            ));
        }
        let len = samples.len().min(MAX_SAMPLES);
        let padded = len.div_ceil(PAD_MULTIPLE) * PAD_MULTIPLE;
        if padded < FRAME + 1 {
            return Err(GemmaError::InvalidInput(format!(
                "audio of {len} samples is shorter than one {FRAME}-sample frame"
            )));
        }
        let mut audio = samples[..len].to_vec();
        audio.resize(padded, 0.0);
        let frames = (padded - FRAME - 1) / HOP + 1;
        let bins = FFT / 2 + 1;
        let mut mel = Vec::with_capacity(frames * self.mels);
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut mag = vec![0f64; bins];
        for f in 0..frames {
            let x = &audio[f * HOP..f * HOP + FRAME + 1];
            input.iter_mut().for_each(|v| *v = 0.0);
            // HTK pre-emphasis: the first sample scaled by 1 − k, then x[n] − k·x[n−1].
            input[0] = f64::from(x[0] * (1.0 - PREEMPHASIS) * self.window[0]);
            for n in 1..FRAME {
                input[n] = f64::from((x[n] - PREEMPHASIS * x[n - 1]) * self.window[n]);
            }
            self.fft
                .process(&mut input, &mut spectrum)
                .map_err(|e| GemmaError::InvalidInput(format!("fft: {e}")))?;
            for (m, c) in mag.iter_mut().zip(&spectrum) {
                *m = c.norm();
            }
            for b in 0..self.mels {
                let e: f64 = (0..bins)
                    .map(|k| mag[k] * self.filters[k * self.mels + b])
                    .sum();
                mel.push(e.max(MEL_FLOOR).ln() as f32);
            }
        }
        let padding = (0..frames).map(|f| f * HOP >= len).collect();
        Ok(Features {
            mel,
            frames,
            mels: self.mels,
            padding,
        })
    }
}

/// Triangular HTK-mel filters without area normalisation, `n_freqs × mels`.
fn htk_filters(n_freqs: usize, f_min: f64, f_max: f64, mels: usize) -> Vec<f64> {
    let mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let (m_min, m_max) = (mel(f_min), mel(f_max));
    let pts: Vec<f64> = (0..mels + 2)
        .map(|i| {
            let m = m_min + (m_max - m_min) * i as f64 / (mels + 1) as f64;
            700.0 * (10f64.powf(m / 2595.0) - 1.0)
        })
        .collect();
    let mut fb = vec![0f64; n_freqs * mels];
    for k in 0..n_freqs {
        // The reference builds the bin frequencies in float32.
        let f = f64::from(k as f32 * (SAMPLE_RATE as f32 / FFT as f32));
        for b in 0..mels {
            let down = (f - pts[b]) / (pts[b + 1] - pts[b]);
            let up = (pts[b + 2] - f) / (pts[b + 2] - pts[b + 1]);
            fb[k * mels + b] = down.min(up).max(0.0);
        }
    }
    fb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_and_padding_follow_the_reference() {
        let fx = FeatureExtractor::new(128);
        let f = fx.extract(&vec![0.1; 16_000]).unwrap();
        // 16000 → padded to 16000 (a multiple of 128): (16000 − 513) / 160 + 1.
        assert_eq!(f.frames, 97);
        assert_eq!(f.mel.len(), 97 * 128);
        assert!(f.padding.iter().all(|p| !p));
        let short = fx.extract(&vec![0.1; 1000]).unwrap();
        assert_eq!(short.frames, (1024 - 513) / 160 + 1);
        assert_eq!(short.padding, [false, false, false, false]);
        assert!(fx.extract(&[0.0; 100]).is_err());
        assert!(fx.extract(&[f32::NAN; 2000]).is_err());
    }

    #[test]
    fn a_tone_lights_its_mel_band() {
        let fx = FeatureExtractor::new(128);
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let f = fx.extract(&tone).unwrap();
        let row = &f.mel[50 * 128..51 * 128];
        let peak = (0..128).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        // 1 kHz on the HTK scale between 125 and 7600 Hz sits near band 39 of 128.
        assert!((34..46).contains(&peak), "peak band {peak}");
    }
}
