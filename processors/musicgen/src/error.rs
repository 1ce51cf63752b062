use std::path::PathBuf;

/// Why a model could not be loaded or a generation could not run.
#[derive(Debug, thiserror::Error)]
pub enum MusicgenError {
    /// A file of the model directory is not where it should be.
    #[error("musicgen weights for {variation:?} not found: expected {path} (`roar models fetch musicgen {variation}`; see processors/musicgen/README.md)")]
    WeightsMissing { variation: String, path: PathBuf },
    /// A config, weights or tokenizer file exists but does not describe a model we can run.
    #[error("invalid musicgen model {path}: {message}")]
    InvalidModel { path: PathBuf, message: String },
    /// Generation parameters out of range, or input the model cannot use; the message says
    /// which and why (the worker maps this to HTTP 422).
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// The text could not be tokenized.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Downloading weights failed (network, HTTP status, checksum); trying again may help.
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
    /// Stopped between steps because the caller asked to.
    #[error("canceled")]
    Canceled,
    /// candle failed (device out of memory, driver error...).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

impl MusicgenError {
    /// Whether running the same request again might succeed: device and I/O errors and
    /// downloads may be transient; bad parameters, bad files and a cancel are not retried.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            MusicgenError::Candle(_) | MusicgenError::Io(_) | MusicgenError::Download { .. }
        )
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        MusicgenError::InvalidModel {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn params(message: impl Into<String>) -> Self {
        MusicgenError::InvalidParams(message.into())
    }
}

pub type Result<T, E = MusicgenError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(MusicgenError::Io(std::io::Error::other("disk")).is_retryable());
        assert!(MusicgenError::Download {
            url: "u".into(),
            message: "503".into()
        }
        .is_retryable());
        assert!(!MusicgenError::params("duration").is_retryable());
        assert!(!MusicgenError::Canceled.is_retryable());
        assert!(!MusicgenError::invalid("/m", "bad").is_retryable());
        assert!(!MusicgenError::Tokenizer("x".into()).is_retryable());
    }
}
