//! The `whisper` model on the runtime: roar-whisper (Whisper on candle, CTranslate2 or
//! safetensors weights) transcribes the upload. Outputs: `transcription.txt`, `segments.json`
//! (segments with word times and probabilities), `transcript.srt`, `transcript.vtt` and an
//! OpenAI-style `verbose.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roar_common::config::WhisperPrecision;
use roar_crepe::Device;
use roar_whisper::{Precision, Task, TranscribeOptions, Whisper, WhisperError};
use serde_json::Value;

use crate::runtime::{Input, Loaded, Model, ModelError, OutputFile, RunContext};

/// Recorded in manifests and liveness announcements.
pub const VERSION: &str = "whisper-ct2-candle-1";
const VARIATIONS: [&str; 2] = ["tiny.en", "base"];

/// Whisper models by variation, loaded on first use and kept.
pub struct WhisperModel {
    dir: PathBuf,
    device: Device,
    precision: WhisperPrecision,
    loaded: Loaded<Whisper>,
}

impl WhisperModel {
    /// Serves the variations present under `models_dir/whisper/<variation>/`; none is an error
    /// that says how to fetch them.
    pub fn new(models_dir: &Path) -> Result<Self, WhisperError> {
        let dir = models_dir.join("whisper");
        let Some(loaded) = Loaded::present("whisper", &dir, &VARIATIONS, |d| {
            d.join("tokenizer.json").is_file()
        }) else {
            return Err(WhisperError::WeightsMissing {
                path: dir.join("tiny.en").join("model.bin"),
                dir,
                variation: "tiny.en".into(),
            });
        };
        Ok(Self {
            dir,
            device: Device::Cpu,
            precision: WhisperPrecision::F32,
            loaded,
        })
    }

    /// Loads the weights at `precision` (`whisper.precision`). At int8 the worker serves other
    /// versions than float32's (see [`Model::weights_version`]).
    pub fn with_precision(mut self, precision: WhisperPrecision) -> Self {
        self.precision = precision;
        self
    }

    /// Runs the model on `device` (from `processor.device`) instead of the CPU.
    pub fn on(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    fn model(&self, variation: &str) -> Result<Arc<Whisper>, ModelError> {
        self.loaded.get(variation, || {
            let precision = match self.precision {
                WhisperPrecision::F32 => Precision::F32,
                WhisperPrecision::Int8 => Precision::Int8,
            };
            Whisper::load_with(&self.dir, variation, &self.device, precision).map_err(error)
        })
    }
}

fn error(e: WhisperError) -> ModelError {
    match e {
        WhisperError::Canceled => ModelError::Canceled,
        WhisperError::WeightsMissing { .. } => {
            ModelError::permanent("weights_missing", e.to_string())
        }
        WhisperError::InvalidInput(_) => ModelError::permanent("invalid_params", e.to_string()),
        e if e.is_retryable() => ModelError::retryable("inference_error", e.to_string()),
        e => ModelError::permanent("inference_error", e.to_string()),
    }
}

/// The job's params (checked against the catalogue) as decoding options. The temperature is
/// the first of the fallback ladder, which climbs by 0.2 up to 1.0 as Whisper's reference does.
fn options(params: &Value, multilingual: bool) -> Result<TranscribeOptions, ModelError> {
    let mut o = TranscribeOptions::default();
    let bad = |m: String| ModelError::permanent("invalid_params", m);
    if let Some(t) = params.get("task").and_then(Value::as_str) {
        o.task = match t {
            "transcribe" => Task::Transcribe,
            "translate" => Task::Translate,
            other => return Err(bad(format!("unknown task {other:?}"))),
        };
    }
    if o.task == Task::Translate && !multilingual {
        return Err(bad("translate needs a multilingual variation (base)".into()));
    }
    o.language = params
        .get("language")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(b) = params.get("beam_size").and_then(Value::as_u64) {
        o.beam_size = Some(b as usize);
    }
    if let Some(t) = params.get("temperature").and_then(Value::as_f64) {
        let first = t as f32;
        o.temperatures = std::iter::successors(Some(first), |t| Some(t + 0.2))
            .take_while(|t| *t <= 1.0 + 1e-6)
            .collect();
    }
    o.initial_prompt = params
        .get("initial_prompt")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(w) = params.get("word_timestamps").and_then(Value::as_bool) {
        o.word_timestamps = w;
    }
    Ok(o)
}

/// The job's audio as the speech models read it: mono at 16 kHz.
pub(crate) fn speech_audio(input: &Input) -> Result<Vec<f32>, ModelError> {
    roar_crepe::resample::to_16k(&input.audio.mono(), input.audio.sample_rate)
        .map_err(|e| ModelError::permanent("invalid_input", e.to_string()))
}

impl Model for WhisperModel {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn version(&self) -> String {
        self.weights_version(VERSION.into())
    }

    fn weights_version(&self, version: String) -> String {
        match self.precision {
            WhisperPrecision::F32 => version,
            WhisperPrecision::Int8 => version + WhisperPrecision::VERSION_SUFFIX,
        }
    }

    fn variations(&self) -> Vec<String> {
        self.loaded.variations().to_vec()
    }
    fn device(&self) -> String {
        crate::device::label(&self.device)
    }

    fn run(&self, input: &Input, ctx: &mut RunContext) -> Result<Vec<OutputFile>, ModelError> {
        let whisper = self.model(&input.variation)?;
        let opts = options(&input.params, whisper.is_multilingual())?;
        ctx.progress(1.0, "resampling");
        let audio = speech_audio(input)?;
        ctx.checkpoint()?;
        let transcript = {
            let ctx = &mut *ctx;
            whisper
                .transcribe(&audio, &opts, &mut |done| {
                    ctx.progress(2.0 + 96.0 * done, "transcribing");
                    !ctx.stopped()
                })
                .map_err(error)?
        };
        let segments = serde_json::json!({
            "language": transcript.language,
            "duration": transcript.duration,
            "segments": transcript.segments,
        });
        Ok(vec![
            OutputFile::text(
                "transcription.txt",
                "transcript",
                "text/plain; charset=utf-8",
                roar_whisper::to_text(&transcript),
            ),
            OutputFile::json("segments.json", "segments", &segments)?,
            OutputFile::text(
                "transcript.srt",
                "subtitles",
                "application/x-subrip",
                roar_whisper::to_srt(&transcript),
            ),
            OutputFile::text(
                "transcript.vtt",
                "subtitles",
                "text/vtt",
                roar_whisper::to_vtt(&transcript),
            ),
            OutputFile::json(
                "verbose.json",
                "verbose_json",
                &roar_whisper::to_verbose_json(&transcript),
            )?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_map_onto_decoding_options() {
        let o = options(
            &json!({"task": "transcribe", "beam_size": 3, "temperature": 0.4,
            "initial_prompt": "roar", "word_timestamps": false, "language": "en"}),
            false,
        )
        .unwrap();
        assert_eq!(o.beam_size, Some(3));
        assert_eq!(o.temperatures.len(), 4, "{:?}", o.temperatures);
        assert!((o.temperatures[0] - 0.4).abs() < 1e-6);
        assert_eq!(o.initial_prompt.as_deref(), Some("roar"));
        assert!(!o.word_timestamps);
        assert!(options(&json!({"task": "translate"}), false).is_err());
        assert!(options(&json!({"task": "translate"}), true).is_ok());
    }

    /// int8 weights are not the float32 version's: a worker loading them serves other
    /// versions (so its consumer groups and the jobs it takes differ), catalogued or not.
    #[test]
    fn an_int8_worker_serves_versions_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("whisper").join("tiny.en");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("tokenizer.json"), "{}").unwrap();
        let mut cfg = roar_common::Config::default();
        let versions = |m: &WhisperModel, cfg: &roar_common::Config| -> Vec<String> {
            crate::runtime::served(m, cfg)
                .into_iter()
                .map(|s| s.version)
                .collect()
        };
        let f32 = WhisperModel::new(dir.path()).unwrap();
        let int8 = WhisperModel::new(dir.path())
            .unwrap()
            .with_precision(WhisperPrecision::Int8);
        assert_eq!(versions(&f32, &cfg), ["whisper-tiny.en-1"]);
        assert_eq!(versions(&int8, &cfg), ["whisper-tiny.en-1-int8"]);
        assert_eq!(int8.version(), format!("{VERSION}-int8"));
        cfg.processor.model_versions.insert(
            "whisper".into(),
            [("tiny.en".to_string(), "whisper-tiny.en-7".to_string())].into(),
        );
        assert_eq!(versions(&f32, &cfg), ["whisper-tiny.en-7"]);
        assert_eq!(versions(&int8, &cfg), ["whisper-tiny.en-7-int8"]);
    }

    #[test]
    fn missing_weights_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let e = WhisperModel::new(dir.path()).err().unwrap().to_string();
        assert!(e.contains("fetch-weights.sh"), "{e}");
    }
}
