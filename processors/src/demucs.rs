//! The `demucs` model on the runtime: roar-demucs (HTDemucs v4 on candle) separates the upload
//! into stems, as the reference `demucs.separate` does: the track is brought to the model's
//! rate and channels, separated segment by segment (progress and cancel between segments), and
//! each stem is written as `<stem>.<ext>` after clip protection. `two_stems` writes the stem and
//! `no_<stem>`, the sum of all the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roar_demucs::apply::{self, ApplyOptions};
use roar_demucs::{DemucsError, Device, SegmentModel, Separator};
use serde_json::Value;

use crate::encode::{self, Clip, Format};
use crate::runtime::{Input, Loaded, Model, ModelError, OutputFile, RunContext};

/// Recorded in manifests and liveness announcements.
pub const VERSION: &str = "htdemucs-4.0.1-candle-1";
const VARIATIONS: [&str; 3] = ["htdemucs", "htdemucs_6s", "htdemucs_ft"];

/// Separators by variation, loaded on first use and kept.
pub struct Demucs {
    dir: PathBuf,
    device: Device,
    loaded: Loaded<Separator>,
}

impl Demucs {
    /// Serves the variations present under `models_dir/demucs/<variation>/` (a
    /// `model.safetensors` or a `bag.json`); none is an error naming the file expected.
    pub fn new(models_dir: &Path) -> Result<Self, DemucsError> {
        // Process-wide, before any model memory exists: a demucs worker reuses its freed
        // tensor memory instead of faulting it in again for every segment.
        if !crate::alloc::tune_allocator() {
            tracing::debug!("allocator settings not applied (not glibc)");
        }
        let dir = models_dir.join("demucs");
        let loaded = Loaded::present("demucs", &dir, &VARIATIONS, |d| {
            d.join("model.safetensors").is_file() || d.join("bag.json").is_file()
        })
        .ok_or_else(|| DemucsError::WeightsMissing {
            variation: VARIATIONS[0].into(),
            path: dir.join(VARIATIONS[0]).join("model.safetensors"),
        })?;
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

    fn separator(&self, variation: &str) -> Result<Arc<Separator>, ModelError> {
        self.loaded.get(variation, || {
            Separator::load(&self.dir, variation, &self.device).map_err(error)
        })
    }
}

fn error(e: DemucsError) -> ModelError {
    match e {
        DemucsError::Canceled => ModelError::Canceled,
        DemucsError::WeightsMissing { .. } => {
            ModelError::permanent("weights_missing", e.to_string())
        }
        DemucsError::InvalidWeights { .. } => {
            ModelError::permanent("invalid_weights", e.to_string())
        }
        DemucsError::InvalidInput(_) => ModelError::permanent("invalid_params", e.to_string()),
        e if e.is_retryable() => ModelError::retryable("inference_error", e.to_string()),
        e => ModelError::permanent("inference_error", e.to_string()),
    }
}

fn bad(message: String) -> ModelError {
    ModelError::permanent("invalid_params", message)
}

/// A job's parameters (already checked against the catalogue), resolved for one model.
#[derive(Debug, PartialEq)]
struct Params {
    /// Source indices to write, in the model's order.
    stems: Vec<usize>,
    /// Write `stem` and `no_stem` instead.
    two_stems: Option<usize>,
    apply: ApplyOptions,
    format: Format,
    clip: Clip,
}

fn params(p: &Value, sources: &[String], job_id: &str) -> Result<Params, ModelError> {
    let index = |name: &str| {
        sources.iter().position(|s| s == name).ok_or_else(|| {
            bad(format!(
                "stem {name:?} is not separated by this variation (it has: {})",
                sources.join(", ")
            ))
        })
    };
    let two_stems = match p.get("two_stems").and_then(Value::as_str) {
        Some(name) => Some(index(name)?),
        None => None,
    };
    let stems = match p.get("stems").and_then(Value::as_array) {
        Some(_) if two_stems.is_some() => {
            return Err(bad("give either stems or two_stems, not both".into()))
        }
        Some(list) => {
            let mut idx = list
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| bad("stems: expected names".into()))
                })
                .map(|n| n.and_then(index))
                .collect::<Result<Vec<_>, _>>()?;
            idx.sort_unstable();
            idx.dedup();
            idx
        }
        None => (0..sources.len()).collect(),
    };
    let num = |k: &str| p.get(k).and_then(Value::as_f64);
    let defaults = ApplyOptions::default();
    let shifts = p.get("shifts").and_then(Value::as_u64);
    let kbps = p.get("mp3_bitrate").and_then(Value::as_u64).unwrap_or(320);
    let format = p.get("format").and_then(Value::as_str).unwrap_or("wav16");
    let clip = match p.get("clip").and_then(Value::as_str) {
        Some(c) => Clip::parse(c).ok_or_else(|| bad(format!("clip: unknown mode {c:?}")))?,
        None => Clip::default(),
    };
    Ok(Params {
        stems,
        two_stems,
        apply: ApplyOptions {
            shifts: shifts.map_or(defaults.shifts, |s| s as usize),
            overlap: num("overlap").unwrap_or(defaults.overlap),
            segment: num("segment"),
            // The shifts are random in the reference; seeding them from the job makes a retry
            // of the same job produce the same stems.
            seed: fnv1a(job_id.as_bytes()),
        },
        format: Format::parse(format, kbps as u32).map_err(|e| bad(e.to_string()))?,
        clip,
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The upload as `[channel][sample]` with the model's channel count, as the reference's
/// `convert_audio_channels`: mono is repeated, extra channels beyond the first ones dropped.
fn to_channels(interleaved: &[f32], from: usize, to: usize) -> Result<Vec<Vec<f32>>, ModelError> {
    if from == 0 || to == 0 {
        return Err(ModelError::permanent(
            "invalid_audio",
            "audio without channels",
        ));
    }
    let frames = interleaved.len() / from;
    let channel =
        |c: usize| -> Vec<f32> { (0..frames).map(|i| interleaved[i * from + c]).collect() };
    Ok(if from == to {
        (0..to).map(channel).collect()
    } else if to == 1 {
        let mono = (0..frames)
            .map(|i| interleaved[i * from..][..from].iter().sum::<f32>() / from as f32)
            .collect();
        vec![mono]
    } else if from == 1 {
        vec![channel(0); to]
    } else if from > to {
        (0..to).map(channel).collect()
    } else {
        return Err(ModelError::permanent(
            "invalid_audio",
            format!("the model takes {to} channels, the upload has {from}"),
        ));
    })
}

/// Separates `input` with `models` (a bag with `weights`) and encodes the chosen stems.
fn separate(
    models: &[&dyn SegmentModel],
    weights: &[Vec<f32>],
    input: &Input,
    ctx: &mut RunContext,
) -> Result<Vec<OutputFile>, ModelError> {
    let first = models
        .first()
        .ok_or_else(|| ModelError::permanent("invalid_weights", "no model loaded"))?;
    let sources = first.sources().to_vec();
    let rate = first.samplerate();
    let p = params(&input.params, &sources, &input.job_id)?;
    ctx.progress(1.0, "preparing audio");
    let audio = &input.audio;
    let mut mix = to_channels(&audio.samples, audio.channels, first.audio_channels())?;
    if audio.sample_rate != rate {
        for ch in &mut mix {
            *ch = roar_crepe::resample::resample(ch, audio.sample_rate, rate)
                .map_err(|e| ModelError::permanent("invalid_audio", e.to_string()))?;
        }
    }
    ctx.checkpoint()?;
    // Separation is the bulk of the work: 2–95 %.
    let mut stems = {
        let ctx = &mut *ctx;
        apply::separate(models, weights, &mix, &p.apply, &mut |done, total| {
            ctx.progress(2.0 + 93.0 * done as f32 / total.max(1) as f32, "separating");
            !ctx.stopped()
        })
        .map_err(error)?
    };
    drop(mix);
    let chosen: Vec<(String, Vec<Vec<f32>>)> = match p.two_stems {
        Some(k) => {
            let name = &sources[k];
            let stem = std::mem::take(&mut stems[k]);
            // no_STEM is the sum of every other source, as the reference writes it.
            let mut rest = vec![vec![0f32; stem[0].len()]; stem.len()];
            for other in stems.iter().filter(|o| !o.is_empty()) {
                for (acc, ch) in rest.iter_mut().zip(other) {
                    acc.iter_mut().zip(ch).for_each(|(a, b)| *a += b);
                }
            }
            vec![(name.clone(), stem), (format!("no_{name}"), rest)]
        }
        None => p
            .stems
            .iter()
            .map(|s| (sources[*s].clone(), std::mem::take(&mut stems[*s])))
            .collect(),
    };
    let mut out = Vec::with_capacity(chosen.len());
    for (i, (name, mut audio)) in chosen.into_iter().enumerate() {
        ctx.checkpoint()?;
        ctx.progress(95.0 + 5.0 * i as f32 / out.capacity() as f32, "encoding");
        p.clip.apply(&mut audio);
        let bytes = encode::encode(&audio, rate, p.format)
            .map_err(|e| ModelError::permanent("encode_error", e.to_string()))?;
        out.push(OutputFile {
            name: format!("{name}.{}", p.format.extension()),
            kind: "stem".into(),
            content_type: p.format.content_type().into(),
            bytes,
        });
    }
    Ok(out)
}

impl Model for Demucs {
    fn name(&self) -> &'static str {
        "demucs"
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
        let sep = self.separator(&input.variation)?;
        separate(&sep.segment_models(), &sep.weights, input, ctx)
    }
}

#[cfg(test)]
#[path = "demucs_tests.rs"]
mod tests;
