//! Jobs that generate their file's content (`POST /generate`): such a job has no input to
//! read; once its outputs are durable its audio output becomes the file's content (the upload
//! key, announced with `FileUploaded`, after which the probe makes it `ready` like any upload),
//! and a job that ends without it fails the file (`FileGenerationFailed`).

use roar_common::catalog::GENERATES_SONG;
use roar_common::kafka::{EventProducer, HandleError};
use roar_common::storage::{upload_key, Storage, StorageError};
use roar_schemas::topics::FILES;
use roar_schemas::{FileBody, FileEvent, FileInfo, JobBody, JobRequested, Output};
use sha2::{Digest, Sha256};

/// Whether the request generates its file's content.
pub(crate) fn generates_song(params_json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(params_json)
        .is_ok_and(|p| p.get(GENERATES_SONG) == Some(&serde_json::Value::Bool(true)))
}

fn retry(e: StorageError) -> HandleError {
    HandleError::Retry(e.to_string())
}

async fn emit(
    producer: &EventProducer,
    req: &JobRequested,
    actor: &str,
    body: FileBody,
) -> Result<(), HandleError> {
    let ev = FileEvent {
        sealed: None,
        meta: req.meta.follow(actor.to_string()),
        file_id: req.file_id.clone(),
        body,
    };
    producer
        .send(FILES, &req.file_id, &ev)
        .await
        .map(|_| ())
        .map_err(|e| HandleError::Retry(e.to_string()))
}

/// Makes the job's audio output the file's content and announces it. Safe to repeat (a
/// redelivered job whose outputs exist registers again); content already there that differs
/// (a replay with another model version) is kept, and this job's song stays in its outputs.
pub(crate) async fn register(
    storage: &Storage,
    producer: &EventProducer,
    req: &JobRequested,
    actor: &str,
    outputs: &[Output],
) -> Result<(), HandleError> {
    let Some(song) = outputs.iter().find(|o| o.kind == "audio") else {
        return Err(HandleError::poison(
            roar_schemas::DeadLetterKind::Invalid,
            "a song-generating job produced no audio output",
        ));
    };
    let key = upload_key(&req.file_id);
    match storage.get(&key).await {
        Ok(existing) => {
            if hex::encode(Sha256::digest(&existing)) != song.sha256 {
                tracing::warn!(file_id = %req.file_id, job_id = %req.job_id,
                    "the song has other content already; this job's song stays in its outputs");
                return Ok(());
            }
        }
        Err(StorageError::NotFound(_)) => {
            let bytes = storage.get(&song.path).await.map_err(retry)?;
            if hex::encode(Sha256::digest(&bytes)) != song.sha256 {
                return Err(HandleError::Retry(format!(
                    "output {} does not match its manifest yet",
                    song.path
                )));
            }
            storage.put(&key, bytes).await.map_err(retry)?;
        }
        Err(e) => return Err(retry(e)),
    }
    let filename = song
        .path
        .rsplit('/')
        .next()
        .unwrap_or("generated.wav")
        .to_string();
    let info = FileInfo {
        owner: req.owner.clone(),
        filename,
        mime: song.content_type.clone(),
        size: song.size,
        sha256: song.sha256.clone(),
        storage_key: key,
    };
    emit(producer, req, actor, FileBody::Uploaded(info)).await?;
    tracing::info!(file_id = %req.file_id, job_id = %req.job_id, size = song.size, "generated song registered");
    Ok(())
}

/// After a job event: a generation that ended without its song fails the file.
pub(crate) async fn after(
    producer: &EventProducer,
    req: &JobRequested,
    actor: &str,
    body: &JobBody,
) -> Result<(), HandleError> {
    let (code, message) = match body {
        JobBody::Canceled { reason } => ("generation_canceled", reason.clone()),
        JobBody::Failed { code, message, .. } => {
            ("generation_failed", format!("{code}: {message}"))
        }
        _ => return Ok(()),
    };
    if !generates_song(&req.params_json) {
        return Ok(());
    }
    let body = FileBody::GenerationFailed {
        job_id: req.job_id.clone(),
        code: code.into(),
        message,
    };
    emit(producer, req, actor, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marker_itself_makes_a_song_job() {
        assert!(generates_song(r#"{"generates_song":true,"prompt":"x"}"#));
        assert!(!generates_song(r#"{"generates_song":"true"}"#));
        assert!(!generates_song(r#"{"generates_song":false}"#));
        assert!(!generates_song(r#"{"prompt":"generates_song"}"#));
        assert!(!generates_song("not json"));
    }
}
