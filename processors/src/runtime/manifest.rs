//! `manifest.json`: written last in a job's output folder, so its presence means the outputs
//! are complete. It names the job that made them, which makes re-delivered requests skippable.

use roar_schemas::Output;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub job_id: String,
    pub file_id: String,
    pub model: String,
    pub variation: String,
    pub model_version: String,
    pub params: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Seconds the model ran.
    pub duration_seconds: f64,
    pub outputs: Vec<Output>,
}

pub const FILE_NAME: &str = "manifest.json";
