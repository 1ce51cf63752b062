//! A musicgen prompt is free text the user typed (often about people and events), so it never
//! travels on a topic readable: topics are append-only and outlive a song's deletion. Before a
//! job is requested, its prompt is written to `uploads/{file_id}/prompts/{job_id}` (erased
//! with the song's `uploads/` folder) and the request's params name that object
//! (`prompt_object`) instead of carrying the text; the worker reads it from there (a job whose
//! object is gone fails `prompt_erased`). A copy sealed with the file's data key
//! (`prompt_sealed`) lets the projector show the prompt in `/status` while the song exists;
//! deleting the song destroys that key. The job id is derived from the params the client sent
//! (the prompt among them) before the move, so asking twice still names one job.

use roar_common::storage::{prompt_key, Storage, StorageError};
use roar_projections::keys::{self, KeyError};
use roar_schemas::ids::canonical_json;
use roar_schemas::JobRequested;
use serde_json::Value;
use sqlx::PgPool;

use crate::ApiError;

/// The models whose `prompt` is personal free text.
const MODELS: [&str; 1] = ["musicgen"];

/// Why a prompt could not be put aside (and so nothing was requested).
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The song was deleted (its key destroyed): nothing may be requested on it (not retryable).
    #[error("song {0} was deleted")]
    Erased(String),
    /// The key table did not answer, or no randomness for the seal.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The object store did not take the prompt.
    #[error("storing the prompt: {0}")]
    Storage(#[from] StorageError),
}

impl PromptError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PromptError::Erased(_) => false,
            PromptError::Key(e) => e.is_retryable(),
            PromptError::Storage(e) => e.is_retryable(),
        }
    }
}

impl From<PromptError> for ApiError {
    fn from(e: PromptError) -> Self {
        match e {
            PromptError::Erased(_) => ApiError::NotFound,
            PromptError::Key(e) => e.into(),
            PromptError::Storage(e) => ApiError::internal(e),
        }
    }
}

/// Moves `req`'s prompt (if its model takes a personal one and it is not empty) into its object
/// and seals a copy into the params, as described above. Idempotent for one job: a retry
/// writes the same object again.
pub async fn put_aside(
    db: &PgPool,
    storage: &Storage,
    req: &mut JobRequested,
) -> Result<(), PromptError> {
    if !MODELS.contains(&req.model.as_str()) {
        return Ok(());
    }
    let Ok(params) = serde_json::from_str::<Value>(&req.params_json) else {
        return Ok(());
    };
    let Some(prompt) = params
        .get(keys::PROMPT)
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    else {
        return Ok(());
    };
    let key = keys::key_for_request(db, &req.file_id)
        .await?
        .ok_or_else(|| PromptError::Erased(req.file_id.clone()))?;
    let object = prompt_key(&req.file_id, &req.job_id);
    storage.put(&object, prompt.to_owned().into()).await?;
    let sealed = keys::seal_prompt(&params, &req.file_id, &object, &key)?;
    req.params_json = canonical_json(&sealed);
    Ok(())
}
