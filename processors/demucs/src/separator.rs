//! Loading one model or a bag of models from a variation directory.
//!
//! Layout under `<models_dir>/demucs/<variation>/`: either `model.safetensors`, or `bag.json`
//! (`{"models": ["a.safetensors", ...], "weights": [[1,0,0,0], ...]}`) beside the files it
//! names. Each safetensors file carries its `HTDemucsConfig` as JSON in the `config` metadata
//! entry, written by `scripts/convert_demucs.py`.

use crate::model::HTDemucs;

/// One model, or a bag whose per-source weights say how much each member contributes.
pub struct Separator {
    pub models: Vec<HTDemucs>,
    /// `weights[m][s]`: weight of model `m` for source `s`.
    pub weights: Vec<Vec<f32>>,
}
