//! Loading one model or a bag of models from a variation directory.
//!
//! Layout under `<models_dir>/demucs/<variation>/`: either `model.safetensors`, or `bag.json`
//! (`{"models": ["a.safetensors", ...], "weights": [[1,0,0,0], ...]}`) beside the files it
//! names. Each safetensors file holds the reference state dict under its own names and its
//! `HTDemucsConfig` as JSON in the `config` metadata entry, as `scripts/convert_demucs.py`
//! writes them.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::config::HTDemucsConfig;
use crate::model::HTDemucs;
use crate::{DemucsError, Result, SegmentModel};

/// One model, or a bag whose per-source weights say how much each member contributes.
pub struct Separator {
    pub models: Vec<HTDemucs>,
    /// `weights[m][s]`: weight of model `m` for source `s`.
    pub weights: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct BagFile {
    models: Vec<String>,
    weights: Option<Vec<Vec<f32>>>,
}

impl Separator {
    /// Loads `<dir>/<variation>/model.safetensors` or the bag in `<dir>/<variation>/bag.json`.
    pub fn load(dir: &Path, variation: &str, device: &Device) -> Result<Self> {
        let vdir = dir.join(variation);
        let bag = vdir.join("bag.json");
        if bag.is_file() {
            let text = std::fs::read_to_string(&bag)?;
            let spec: BagFile = serde_json::from_str(&text).map_err(|e| invalid(&bag, e))?;
            let models = spec
                .models
                .iter()
                .map(|f| load_model(&vdir.join(f), variation, device))
                .collect::<Result<Vec<_>>>()?;
            let sources = models
                .first()
                .map(|m| m.config().sources.len())
                .unwrap_or(0);
            let weights = spec
                .weights
                .unwrap_or_else(|| vec![vec![1.0; sources]; models.len()]);
            return Self::new(models, weights).map_err(|m| invalid(&bag, m));
        }
        let path = vdir.join("model.safetensors");
        let model = load_model(&path, variation, device)?;
        let sources = model.config().sources.len();
        Self::new(vec![model], vec![vec![1.0; sources]]).map_err(|m| invalid(&path, m))
    }

    /// A bag from loaded models; all must separate the same sources at the same rate.
    pub fn new(models: Vec<HTDemucs>, weights: Vec<Vec<f32>>) -> std::result::Result<Self, String> {
        let first = models
            .first()
            .ok_or("a bag needs at least one model")?
            .config()
            .clone();
        for m in &models {
            let c = m.config();
            if c.sources != first.sources
                || c.samplerate != first.samplerate
                || c.audio_channels != first.audio_channels
            {
                return Err("bag members disagree on sources, sample rate or channels".into());
            }
        }
        if weights.len() != models.len() || weights.iter().any(|w| w.len() != first.sources.len()) {
            return Err(format!(
                "bag weights must be {} lists of {} numbers",
                models.len(),
                first.sources.len()
            ));
        }
        for s in 0..first.sources.len() {
            if weights.iter().map(|w| w[s]).sum::<f32>() <= 0.0 {
                return Err(format!(
                    "no model of the bag serves source {}",
                    first.sources[s]
                ));
            }
        }
        Ok(Self { models, weights })
    }

    pub fn sources(&self) -> &[String] {
        &self.models[0].config().sources
    }

    pub fn samplerate(&self) -> u32 {
        self.models[0].config().samplerate
    }

    pub fn audio_channels(&self) -> usize {
        self.models[0].config().audio_channels
    }

    /// The members as the apply loop takes them.
    pub fn segment_models(&self) -> Vec<&dyn SegmentModel> {
        self.models.iter().map(|m| m as &dyn SegmentModel).collect()
    }
}

/// Loads one model file, its config from the safetensors metadata.
pub fn load_model(path: &Path, variation: &str, device: &Device) -> Result<HTDemucs> {
    if !path.is_file() {
        return Err(DemucsError::WeightsMissing {
            variation: variation.to_string(),
            path: path.to_path_buf(),
        });
    }
    let cfg = read_config(path)?;
    // Read whole rather than memory-mapped (which is `unsafe`: another process could change
    // the file under the map): the tensors are copied out of it either way, and the mapped
    // pages would count in the resident set as the buffer does.
    let vb = VarBuilder::from_buffered_safetensors(std::fs::read(path)?, DType::F32, device)?;
    HTDemucs::load(vb, &cfg).map_err(|e| match e {
        DemucsError::Candle(c) => invalid(path, c),
        other => other,
    })
}

/// The `config` entry of a safetensors header's `__metadata__`.
pub fn read_config(path: &Path) -> Result<HTDemucsConfig> {
    let mut f = std::fs::File::open(path)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(invalid(path, "safetensors header too large"));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| invalid(path, e))?;
    let config = header
        .get("__metadata__")
        .and_then(|m| m.get("config"))
        .and_then(|c| c.as_str())
        .ok_or_else(|| {
            invalid(
                path,
                "no `config` metadata entry (convert with scripts/convert_demucs.py)",
            )
        })?;
    serde_json::from_str(config).map_err(|e| invalid(path, e))
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> DemucsError {
    DemucsError::InvalidWeights {
        path: PathBuf::from(path),
        message: e.to_string(),
    }
}
