//! Error type for the Whisper crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running Whisper.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    /// The model directory lacks a file that the layout needs.
    #[error(
        "Whisper weights not found: expected {path} (variation {variation}); \
         fetch them with `scripts/whisper/fetch-weights.sh {dir}`"
    )]
    WeightsMissing {
        /// The file that was looked for.
        path: PathBuf,
        /// The directory the fetch script should be given.
        dir: PathBuf,
        /// The variation asked for (`tiny.en`, `base`...).
        variation: String,
    },

    /// A weight, config or tokenizer file exists but does not hold what Whisper needs.
    #[error("invalid Whisper model in {path}: {reason}")]
    InvalidModel {
        /// The offending file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// The caller passed something the model cannot use (empty audio, unknown language...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The progress callback asked to stop.
    #[error("transcription canceled")]
    Canceled,

    /// The tokenizer failed to encode or decode.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// An error raised by candle while computing (out of memory, device error...).
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),

    /// An I/O error outside of candle (reading a weight file...).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl WhisperError {
    /// Whether running the same request again may succeed.
    ///
    /// Missing or invalid weights and bad input stay wrong until someone changes
    /// them; a canceled run, a device error (out of memory) or an I/O hiccup may
    /// go through on a later try.
    pub fn is_retryable(&self) -> bool {
        match self {
            WhisperError::WeightsMissing { .. }
            | WhisperError::InvalidModel { .. }
            | WhisperError::InvalidInput(_)
            | WhisperError::Tokenizer(_) => false,
            WhisperError::Canceled | WhisperError::Tensor(_) | WhisperError::Io(_) => true,
        }
    }

    pub(crate) fn invalid(path: &std::path::Path, reason: impl Into<String>) -> Self {
        WhisperError::InvalidModel {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, WhisperError>;
