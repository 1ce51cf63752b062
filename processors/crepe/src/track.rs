//! The public entry point: load a model, get activations, track pitch.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::convert::{bin_range, MAX_FMAX};
use crate::decode::{decode, Decoder};
use crate::error::{CrepeError, Result};
use crate::frames::{frame_count, frame_range};
use crate::model::{CrepeModel, PITCH_BINS, WINDOW_SIZE};
use crate::resample::SAMPLE_RATE;
use crate::weights::{weights_dir_from_env, weights_file, Capacity, MODELS_DIR_ENV};

/// Settings for [`Crepe::track`]. `Default` matches torchcrepe's
/// `predict` defaults (10 ms hop, 50-2006 Hz, padding) plus the usual 0.21
/// voicing threshold, except for the decoder: [`Decoder::NormalizedViterbi`]
/// rather than torchcrepe's [`Decoder::Viterbi`], which loses short notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackOptions {
    /// Samples (at 16 kHz) between frame centres.
    pub hop_length: usize,
    /// Lowest pitch the decoder may report, Hz.
    pub fmin: f32,
    /// Highest pitch the decoder may report, Hz (at most 2006).
    pub fmax: f32,
    /// How to pick the pitch from the activations.
    pub decoder: Decoder,
    /// Frames whose confidence is below this are unvoiced.
    pub voicing_threshold: f32,
    /// Frames per forward pass; `None` picks one for the capacity.
    pub batch_size: Option<usize>,
    /// Centre frames on their time stamps by zero-padding the signal.
    pub pad: bool,
}

impl Default for TrackOptions {
    fn default() -> Self {
        Self {
            hop_length: 160,
            fmin: 50.0,
            fmax: MAX_FMAX,
            decoder: Decoder::NormalizedViterbi,
            voicing_threshold: 0.21,
            batch_size: None,
            pad: true,
        }
    }
}

/// A pitch track: one entry per frame in every vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitchTrack {
    /// Sample rate the hop is counted in (always 16000).
    pub sample_rate: u32,
    /// Samples between frames.
    pub hop_length: usize,
    /// Time of each frame's centre, seconds from the start of the signal.
    pub times: Vec<f64>,
    /// Decoded pitch, Hz; meaningful only where `voiced`.
    pub f0_hz: Vec<f32>,
    /// Confidence in [0, 1] (torchcrepe's periodicity).
    pub confidence: Vec<f32>,
    /// Whether `confidence >= voicing_threshold`.
    pub voiced: Vec<bool>,
}

impl PitchTrack {
    /// Decodes activations (row-major `frames x 360`, as from
    /// [`Crepe::track_activations`]) with the decoder, range, hop and voicing
    /// threshold of `opts`.
    pub fn from_activations(activations: &[f32], opts: &TrackOptions) -> Result<Self> {
        check_range(opts)?;
        if !activations.len().is_multiple_of(PITCH_BINS) {
            return Err(CrepeError::InvalidInput(format!(
                "activation buffer length {} is not a multiple of {PITCH_BINS}",
                activations.len()
            )));
        }
        let range = bin_range(opts.fmin, opts.fmax.min(MAX_FMAX), PITCH_BINS);
        let d = decode(activations, range, opts.decoder);
        let hop_s = opts.hop_length as f64 / SAMPLE_RATE as f64;
        // Without padding, frame i starts at i * hop; its centre is half a window later.
        let start_s = if opts.pad {
            0.0
        } else {
            WINDOW_SIZE as f64 / 2.0 / SAMPLE_RATE as f64
        };
        Ok(PitchTrack {
            sample_rate: SAMPLE_RATE,
            hop_length: opts.hop_length,
            times: (0..d.bins.len())
                .map(|i| start_s + i as f64 * hop_s)
                .collect(),
            voiced: d
                .periodicity
                .iter()
                .map(|&p| p >= opts.voicing_threshold)
                .collect(),
            f0_hz: d.f0_hz,
            confidence: d.periodicity,
        })
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether the track holds no frame.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Pitch per frame, `None` where unvoiced.
    pub fn voiced_f0(&self) -> impl Iterator<Item = Option<f32>> + '_ {
        self.f0_hz
            .iter()
            .zip(&self.voiced)
            .map(|(&f, &v)| v.then_some(f))
    }
}

fn check_range(opts: &TrackOptions) -> Result<()> {
    if opts.fmin > 0.0 && opts.fmin < opts.fmax {
        Ok(())
    } else {
        Err(CrepeError::InvalidInput(format!(
            "need 0 < fmin < fmax (got {} and {})",
            opts.fmin, opts.fmax
        )))
    }
}

/// A loaded CREPE model, ready to track pitch. Cheap to share across threads
/// by reference; every call is independent.
#[derive(Debug, Clone)]
pub struct Crepe {
    model: CrepeModel,
}

impl Crepe {
    /// Loads weights from `path`: either the `.pth` file itself or a
    /// directory holding `tiny.pth` / `full.pth`.
    pub fn load(path: impl AsRef<Path>, capacity: Capacity, device: &Device) -> Result<Self> {
        let file = weights_file(path.as_ref(), capacity);
        Ok(Self {
            model: CrepeModel::load(&file, capacity, device)?,
        })
    }

    /// Loads weights from `$ROAR_MODELS_DIR/crepe`.
    pub fn load_from_env(capacity: Capacity, device: &Device) -> Result<Self> {
        let dir = weights_dir_from_env().ok_or_else(|| {
            CrepeError::InvalidInput(format!(
                "{MODELS_DIR_ENV} is not set; point it at the models directory \
                 (CREPE weights go in $ROAR_MODELS_DIR/crepe, see scripts/crepe/fetch-weights.sh)"
            ))
        })?;
        Self::load(dir, capacity, device)
    }

    /// The capacity of the loaded weights.
    pub fn capacity(&self) -> Capacity {
        self.model.capacity()
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        self.model.device()
    }

    /// The underlying network.
    pub fn model(&self) -> &CrepeModel {
        &self.model
    }

    /// Default frames per forward pass for this capacity: about the fastest
    /// on a CPU, with peak working memory in the tens of MiB.
    pub fn default_batch_size(&self) -> usize {
        match self.capacity() {
            Capacity::Tiny => 64,
            Capacity::Full => 32,
        }
    }

    /// Activations `(batch, 360)` for normalised frames `(batch, 1024)`.
    pub fn activations(&self, frames: &Tensor) -> Result<Tensor> {
        self.model.forward(frames)
    }

    /// Activations for normalised frames given row-major (`n x 1024`), as a
    /// row-major `n x 360` vector. Runs in one forward pass.
    pub fn activations_vec(&self, frames: &[f32]) -> Result<Vec<f32>> {
        if !frames.len().is_multiple_of(WINDOW_SIZE) {
            return Err(CrepeError::InvalidInput(format!(
                "frame buffer length {} is not a multiple of {WINDOW_SIZE}",
                frames.len()
            )));
        }
        let n = frames.len() / WINDOW_SIZE;
        if n == 0 {
            return Ok(Vec::new());
        }
        let t = Tensor::from_slice(frames, (n, WINDOW_SIZE), self.device())?;
        Ok(self.activations(&t)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Activations (row-major `frames x 360`) for a whole 16 kHz signal,
    /// batch by batch. `progress` gets the fraction done after each batch
    /// and stops the run (with [`CrepeError::Canceled`]) by returning false.
    pub fn track_activations(
        &self,
        samples_16k: &[f32],
        opts: &TrackOptions,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Vec<f32>> {
        if opts.hop_length == 0 {
            return Err(CrepeError::InvalidInput(
                "hop_length must be positive".into(),
            ));
        }
        let total = frame_count(samples_16k.len(), opts.hop_length, opts.pad);
        let batch = opts
            .batch_size
            .unwrap_or_else(|| self.default_batch_size())
            .max(1);
        let mut acts = Vec::with_capacity(total * PITCH_BINS);
        let mut buf = Vec::new();
        if !progress(0.0) {
            return Err(CrepeError::Canceled);
        }
        let mut done = 0;
        while done < total {
            let count = batch.min(total - done);
            frame_range(
                samples_16k,
                opts.hop_length,
                opts.pad,
                done,
                count,
                &mut buf,
            );
            acts.extend(self.activations_vec(&buf)?);
            done += count;
            if !progress(done as f32 / total as f32) {
                return Err(CrepeError::Canceled);
            }
        }
        Ok(acts)
    }

    /// Tracks the pitch of a mono 16 kHz signal (see
    /// [`crate::resample::to_16k`] for other rates).
    pub fn track(
        &self,
        samples_16k: &[f32],
        opts: &TrackOptions,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<PitchTrack> {
        check_range(opts)?;
        let acts = self.track_activations(samples_16k, opts, progress)?;
        PitchTrack::from_activations(&acts, opts)
    }
}
