//! The `musicgen` model on the runtime: roar-musicgen (MusicGen on candle) generates music from
//! the job's prompt. With `prompt_seconds` the upload's last seconds are continued (EnCodec
//! encodes them into the decoder's prompt, as audiocraft's `generate_continuation`); the
//! `melody` variation follows the upload's chroma. Writes `generated.<ext>` (the continued
//! tail first, when there is one) and `generation.json` (prompt, seed, every parameter used).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roar_common::config::MusicgenConfig;
use roar_musicgen::{Device, MusicGen, MusicgenError, Request, Sampling, Stage};
use serde_json::{json, Value};

use crate::encode::{self, Clip, Format};
use crate::runtime::{Input, Loaded, Model, ModelError, OutputFile, RunContext};

/// Recorded in manifests and liveness announcements.
pub const VERSION: &str = "musicgen-transformers-5.25-candle-1";

/// Generators by variation, loaded on first use and kept.
pub struct Musicgen {
    dir: PathBuf,
    device: Device,
    loaded: Loaded<MusicGen>,
    limits: MusicgenConfig,
}

impl Musicgen {
    /// Serves the variations present under `models_dir/musicgen/<variation>/` (a complete
    /// download has `config.json`); none is an error naming the file expected.
    pub fn new(models_dir: &Path) -> Result<Self, MusicgenError> {
        let dir = models_dir.join("musicgen");
        let known = roar_musicgen::hub::VARIATIONS.map(|(v, _)| v);
        let loaded = Loaded::present("musicgen", &dir, &known, |d| {
            d.join("config.json").is_file()
        })
        .ok_or_else(|| MusicgenError::WeightsMissing {
            variation: known[0].into(),
            path: dir.join(known[0]).join("config.json"),
        })?;
        Ok(Self {
            dir,
            device: Device::Cpu,
            loaded,
            limits: MusicgenConfig::default(),
        })
    }

    /// Runs the model on `device` (from `processor.device`) instead of the CPU.
    pub fn on(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// This service's limits (`musicgen.*`), checked again here: a request written to the
    /// topic directly never passed the orchestrator's check.
    pub fn with_limits(mut self, limits: MusicgenConfig) -> Self {
        self.limits = limits;
        self
    }

    fn model(&self, variation: &str) -> Result<Arc<MusicGen>, ModelError> {
        self.loaded.get(variation, || {
            MusicGen::load(&self.dir.join(variation), variation, &self.device).map_err(error)
        })
    }
}

fn error(e: MusicgenError) -> ModelError {
    match e {
        MusicgenError::Canceled => ModelError::Canceled,
        MusicgenError::WeightsMissing { .. } => {
            ModelError::permanent("weights_missing", e.to_string())
        }
        MusicgenError::InvalidModel { .. } => {
            ModelError::permanent("invalid_weights", e.to_string())
        }
        MusicgenError::InvalidParams(_) | MusicgenError::Tokenizer(_) => {
            ModelError::permanent("invalid_params", e.to_string())
        }
        e if e.is_retryable() => ModelError::retryable("inference_error", e.to_string()),
        e => ModelError::permanent("inference_error", e.to_string()),
    }
}

fn bad(message: String) -> ModelError {
    ModelError::permanent("invalid_params", message)
}

/// A job's parameters (already checked against the catalogue), resolved for the generator.
#[derive(Debug, PartialEq)]
struct Params {
    prompt: String,
    duration: f32,
    /// Seconds of the upload's end to continue; `None`: generate from the prompt alone.
    prompt_seconds: Option<f32>,
    sampling: Sampling,
    format: Format,
}

fn params(p: &Value, job_id: &str) -> Result<Params, ModelError> {
    let num = |k: &str| p.get(k).and_then(Value::as_f64);
    let defaults = Sampling::default();
    let kbps = p.get("mp3_bitrate").and_then(Value::as_u64).unwrap_or(320);
    let format = p.get("format").and_then(Value::as_str).unwrap_or("wav16");
    Ok(Params {
        prompt: p
            .get("prompt")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        duration: num("duration").unwrap_or(10.0) as f32,
        prompt_seconds: num("prompt_seconds").map(|s| s as f32),
        sampling: Sampling {
            temperature: num("temperature").map_or(defaults.temperature, |t| t as f32),
            top_k: p
                .get("top_k")
                .and_then(Value::as_u64)
                .map_or(defaults.top_k, |k| k as usize),
            top_p: num("top_p").map_or(defaults.top_p, |t| t as f32),
            guidance_scale: num("guidance_scale").map_or(defaults.guidance_scale, |g| g as f32),
            // Without a seed, one drawn from the job id: a retried job generates the same music.
            seed: p
                .get("seed")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| fnv1a(job_id.as_bytes())),
        },
        format: Format::parse(format, kbps as u32).map_err(|e| bad(e.to_string()))?,
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The upload as mono at `rate`, as MusicGen reads audio.
fn mono_at(input: &Input, rate: u32) -> Result<Vec<f32>, ModelError> {
    let audio = &input.audio;
    if audio.channels == 0 {
        return Err(ModelError::permanent(
            "invalid_audio",
            "audio without channels",
        ));
    }
    let mono = audio.mono();
    if audio.sample_rate == rate {
        return Ok(mono);
    }
    roar_crepe::resample::resample(&mono, audio.sample_rate, rate)
        .map_err(|e| ModelError::permanent("invalid_audio", e.to_string()))
}

/// Generates for `input` with `model`.
fn generate(
    model: &MusicGen,
    limits: &MusicgenConfig,
    input: &Input,
    ctx: &mut RunContext,
) -> Result<Vec<OutputFile>, ModelError> {
    limits.check(&input.params).map_err(bad)?;
    let p = params(&input.params, &input.job_id)?;
    let rate = model.sample_rate();
    ctx.progress(1.0, "preparing");
    let mut req = Request {
        prompt: Some(p.prompt.clone()).filter(|s| !s.trim().is_empty()),
        duration_seconds: p.duration,
        max_duration_seconds: limits.max_duration_seconds as f32,
        sampling: p.sampling.clone(),
        ..Request::default()
    };
    if let Some(secs) = p.prompt_seconds {
        let song = mono_at(input, rate)?;
        let keep = ((secs * rate as f32).round() as usize).min(song.len());
        req.continuation = Some(song[song.len() - keep..].to_vec());
    }
    if model.is_melody() {
        req.melody = Some(mono_at(input, rate)?);
    }
    ctx.checkpoint()?;
    // Sampling is the bulk of the work (2–90 %), EnCodec's rendering the rest.
    let out = {
        let ctx = &mut *ctx;
        model
            .generate(&req, &mut |g| {
                let f = g.done as f32 / g.total.max(1) as f32;
                match g.stage {
                    Stage::EncodingPrompt => ctx.progress(2.0, "encoding the song's end"),
                    Stage::Generating => ctx.progress(2.0 + 88.0 * f, "generating"),
                    Stage::Decoding => ctx.progress(90.0 + 8.0 * f, "rendering audio"),
                }
                !ctx.stopped()
            })
            .map_err(error)?
    };
    ctx.checkpoint()?;
    ctx.progress(98.0, "encoding");
    let mut audio = vec![out.audio];
    Clip::default().apply(&mut audio);
    let bytes = encode::encode(&audio, out.sample_rate, p.format)
        .map_err(|e| ModelError::permanent("encode_error", e.to_string()))?;
    let frame_rate = model.config().audio_encoder.frame_rate() as f64;
    let about = json!({
        "prompt": p.prompt,
        "seed": p.sampling.seed,
        "variation": input.variation,
        "duration_seconds": p.duration,
        "prompt_seconds": out.prompt_frames as f64 / frame_rate,
        "sample_rate": out.sample_rate,
        "seconds": audio[0].len() as f64 / f64::from(out.sample_rate),
        "frames": out.codes.first().map_or(0, Vec::len),
        "sampling": {
            "temperature": p.sampling.temperature,
            "top_k": p.sampling.top_k,
            "top_p": p.sampling.top_p,
            "guidance_scale": p.sampling.guidance_scale,
        },
        "params": input.params,
    });
    Ok(vec![
        OutputFile {
            name: format!("generated.{}", p.format.extension()),
            kind: "audio".into(),
            content_type: p.format.content_type().into(),
            bytes,
        },
        OutputFile {
            name: "generation.json".into(),
            kind: "summary".into(),
            content_type: "application/json".into(),
            bytes: serde_json::to_vec_pretty(&about).unwrap_or_default(),
        },
    ])
}

impl Model for Musicgen {
    fn name(&self) -> &'static str {
        "musicgen"
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
        let model = self.model(&input.variation)?;
        generate(&model, &self.limits, input, ctx)
    }
}

#[cfg(test)]
#[path = "musicgen_tests.rs"]
mod tests;
