//! Error type for the CREPE crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running CREPE.
#[derive(Debug, thiserror::Error)]
pub enum CrepeError {
    /// The weight file is not where it was expected.
    #[error(
        "CREPE weights not found: expected {path} ({capacity} model); \
         fetch them with `scripts/crepe/fetch-weights.sh {dir}`"
    )]
    WeightsMissing {
        /// The file that was looked for.
        path: PathBuf,
        /// The directory the fetch script should be given.
        dir: PathBuf,
        /// `tiny` or `full`.
        capacity: &'static str,
    },

    /// The weight file exists but does not hold what CREPE needs.
    #[error("invalid CREPE weights in {path}: {reason}")]
    InvalidWeights {
        /// The offending file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// The caller passed something the model cannot use.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The progress callback asked to stop.
    #[error("pitch tracking canceled")]
    Canceled,

    /// An error raised by candle while computing (out of memory, device error...).
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),

    /// An I/O error outside of candle (reading a weight file...).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl CrepeError {
    /// Whether running the same request again may succeed.
    ///
    /// Missing or invalid weights and bad input are permanent until someone
    /// changes them; a canceled run, a device error (e.g. out of memory) or an
    /// I/O hiccup may go through on a later try.
    pub fn is_retryable(&self) -> bool {
        match self {
            CrepeError::WeightsMissing { .. }
            | CrepeError::InvalidWeights { .. }
            | CrepeError::InvalidInput(_) => false,
            CrepeError::Canceled | CrepeError::Tensor(_) | CrepeError::Io(_) => true,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, CrepeError>;
