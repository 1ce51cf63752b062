use std::path::PathBuf;

/// Why separation could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemucsError {
    /// The weights file for a variation is not where it should be.
    #[error("demucs weights for {variation:?} not found: expected {path} (official variations: `roar models fetch demucs {variation}`; to convert checkpoints see processors/demucs/README.md)")]
    WeightsMissing { variation: String, path: PathBuf },
    /// A weights or config file exists but does not describe the expected model.
    #[error("invalid demucs weights {path}: {message}")]
    InvalidWeights { path: PathBuf, message: String },
    /// Downloading official weights failed (network, HTTP status); trying again may help.
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
    /// The caller asked for something the model cannot do (bad shape, bad option).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Stopped between segments because the job was canceled.
    #[error("canceled")]
    Canceled,
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

impl DemucsError {
    /// Whether trying again might succeed (device errors, I/O, downloads); bad input and missing weights
    /// will not go away.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DemucsError::Candle(_) | DemucsError::Io(_) | DemucsError::Download { .. }
        )
    }
}

pub type Result<T, E = DemucsError> = std::result::Result<T, E>;
