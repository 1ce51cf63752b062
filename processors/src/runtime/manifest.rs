//! `manifest.json`: written last in a job's output folder, so its presence means the outputs
//! are complete. It names the job that made them, which makes re-delivered requests skippable.
//! Writing a job's outputs and reading back a finished one live here too.

use bytes::Bytes;
use chrono::Utc;
use roar_common::kafka::HandleError;
use roar_common::storage::{Storage, StorageError};
use roar_schemas::{JobRequested, Output};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::OutputFile;

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

/// The manifest of a finished run of this job, if there is one.
pub(crate) async fn finished(
    storage: &Storage,
    dir: &str,
    job_id: &str,
) -> Result<Option<Manifest>, HandleError> {
    match storage.get(&format!("{dir}{}", FILE_NAME)).await {
        Ok(bytes) => Ok(serde_json::from_slice::<Manifest>(&bytes)
            .ok()
            .filter(|m| m.job_id == job_id)),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(HandleError::Retry(e.to_string())),
    }
}

/// Writes every output, then the manifest last: its presence means the set is complete.
pub(crate) async fn write_outputs(
    storage: &Storage,
    req: &JobRequested,
    dir: &str,
    files: Vec<OutputFile>,
    seconds: f64,
) -> Result<Vec<Output>, HandleError> {
    let mut outputs = Vec::with_capacity(files.len());
    for f in files {
        let path = format!("{dir}{}", f.name);
        let sha256 = hex::encode(Sha256::digest(&f.bytes));
        let size = f.bytes.len() as i64;
        storage
            .put(&path, Bytes::from(f.bytes))
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        outputs.push(Output {
            path,
            kind: f.kind,
            content_type: f.content_type,
            size,
            sha256,
        });
    }
    let m = Manifest {
        job_id: req.job_id.clone(),
        file_id: req.file_id.clone(),
        model: req.model.clone(),
        variation: req.variation.clone(),
        model_version: req.model_version.clone(),
        params: serde_json::from_str(&req.params_json).unwrap_or_default(),
        created_at: Utc::now(),
        duration_seconds: seconds,
        outputs: outputs.clone(),
    };
    let json = serde_json::to_vec_pretty(&m).map_err(|e| HandleError::Retry(e.to_string()))?;
    storage
        .put(&format!("{dir}{}", FILE_NAME), Bytes::from(json))
        .await
        .map_err(|e| HandleError::Retry(e.to_string()))?;
    Ok(outputs)
}

/// A plain file name inside the job's folder, not the manifest's.
pub(crate) fn valid_output_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.') && name != FILE_NAME
}

/// Where a worker notes that it handled request `event_id` of job `job_id` to its end (an
/// outcome event is on the log: completed, failed, canceled, skipped or a retry scheduled):
/// `handled/{file_id}/{job_id}/{event_id}`, beside the file's outputs rather than among a job's
/// own files. The same request delivered again (a redelivery, a process manager that emitted it
/// twice across a crash) is then dropped instead of run a second time; a new request for the
/// job (an admin retry, the next attempt) has another event id and runs. Deleting the song
/// erases its folder of markers with its outputs.
fn handled_key(req: &JobRequested) -> String {
    // Event ids are UUIDs; anything else is hashed so it cannot leave the folder.
    let id = &req.meta.event_id;
    let name = if uuid_like(id) {
        id.to_string()
    } else {
        hex::encode(Sha256::digest(id.as_bytes()))
    };
    format!("handled/{}/{}/{name}", req.file_id, req.job_id)
}

fn uuid_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Whether request `req` (by its event id) was handled to its end already.
pub(crate) async fn handled(storage: &Storage, req: &JobRequested) -> Result<bool, HandleError> {
    storage
        .head(&handled_key(req))
        .await
        .map(|m| m.is_some())
        .map_err(|e| HandleError::Retry(e.to_string()))
}

/// Notes that request `req` was handled (best effort: its outcome is already durable, so a
/// storage failure here is logged, never a reason to run the job again).
pub(crate) async fn mark_handled(storage: &Storage, req: &JobRequested) {
    if let Err(e) = storage
        .put(&handled_key(req), Bytes::from_static(b"{}"))
        .await
    {
        tracing::warn!(error = %e, "could not note the request as handled");
    }
}
