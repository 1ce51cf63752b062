//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a Gemma model.
#[derive(Debug, thiserror::Error)]
pub enum GemmaError {
    /// A file the model needs is not where it should be.
    #[error("Gemma weights not found: expected {path} ({hint})")]
    WeightsMissing { path: PathBuf, hint: String },
    /// A weight, config or tokenizer file exists but does not describe the expected model.
    #[error("invalid Gemma model: {0}")]
    InvalidModel(String),
    /// The caller passed something the model cannot use (empty prompt, too long...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The caller's callback asked to stop.
    #[error("canceled")]
    Canceled,
    /// Downloading weights failed (network, HTTP status, checksum); trying again may help.
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
    /// The download source has no such file.
    #[error("not found: {url}")]
    NotFound { url: String },
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl GemmaError {
    /// Whether running the same request again may succeed: cancellation, device errors,
    /// I/O and downloads may pass later; missing or invalid weights and bad input will not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GemmaError::Canceled
                | GemmaError::Tensor(_)
                | GemmaError::Io(_)
                | GemmaError::Download { .. }
        )
    }
}

pub type Result<T, E = GemmaError> = std::result::Result<T, E>;
