//! A dead letter ends what its message started: a job request or an upload that the consumer
//! loop sends to the DLQ (a poison message, or retries exhausted on a store failure) also ends
//! its job or file as failed with the cause, instead of leaving it queued or uploaded forever.
//! The jobs run on the `gemma3n` topic with a small test model, where no real worker runs.

use std::sync::Arc;

use roar_common::storage::job_output_dir;
use roar_processors::runtime::{Input, Model, ModelError, OutputFile, RunContext};
use roar_schemas::topics::{jobs_topic, FILES};
use roar_schemas::{ids, EventMeta, FileBody, FileEvent, FileInfo, JobRequested};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{melody_wav, produce, Infra};

/// Always succeeds: whatever fails here fails outside the model.
pub(crate) struct Fine;

impl Model for Fine {
    fn name(&self) -> &'static str {
        "gemma3n"
    }
    fn version(&self) -> String {
        "fine-1".into()
    }
    fn variations(&self) -> Vec<String> {
        vec!["e2b".into()]
    }
    fn run(&self, _input: &Input, _ctx: &mut RunContext) -> Result<Vec<OutputFile>, ModelError> {
        Ok(vec![OutputFile {
            name: "ok.txt".into(),
            kind: "text".into(),
            content_type: "text/plain".into(),
            bytes: b"ok".to_vec(),
        }])
    }
}

pub(crate) fn request(file_id: &str, model: &str, tag: &str) -> JobRequested {
    JobRequested {
        meta: EventMeta::new(format!("req-{tag}"), "user:alice"),
        job_id: ids::job_id(
            file_id,
            model,
            "e2b",
            tag,
            &crate::e2e_versions::served("gemma3n", "e2b"),
        ),
        file_id: file_id.into(),
        owner: "alice".into(),
        model: model.into(),
        variation: "e2b".into(),
        // The version the worker serves e2b at (the catalogue's): a worker runs only that.
        model_version: crate::e2e_versions::served("gemma3n", "e2b"),
        params_json: "{}".into(),
        attempt: 1,
        not_before: None,
        input: None,
    }
}

fn job(status: &Value, job_id: &str) -> Value {
    status["jobs"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["job_id"] == job_id).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_lettered_requests_and_uploads_end_failed_with_their_cause() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No model weights: no real worker joins the gemma3n group this test serves itself.
    let no_models = tempfile::tempdir().unwrap();
    cfg.processor.models_dir = no_models.path().to_path_buf();
    cfg.kafka.max_handler_attempts = 2;
    let svc = crate::support::Services::start(cfg.clone()).await;
    let alice = svc.token("alice", &[]);
    let file_id = svc
        .ready_file(&alice, "a.wav", melody_wav(&[(440.0, 0.5)], 8000, 1))
        .await;
    let cancel = CancellationToken::new();
    let worker = {
        let (cfg, cancel) = (cfg.clone(), cancel.clone());
        tokio::spawn(
            async move { roar_processors::runtime::serve(Arc::new(Fine), &cfg, cancel).await },
        )
    };

    // A store failure on every try: a regular file where the job's output folder's parent
    // should be, so reading its manifest fails with "not a directory", not "not found".
    let stuck = request(&file_id, "gemma3n", "store-down");
    let dir = infra
        .store_dir()
        .join(job_output_dir(&file_id, "gemma3n", "e2b", &stuck.job_id));
    let blocker = dir.parent().unwrap().parent().unwrap();
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(blocker, b"not a folder").unwrap();
    produce(&infra, &jobs_topic("gemma3n"), &file_id, &stuck).await;
    // A pitch request on the gemma3n topic: poison for this worker.
    let stray = request(&file_id, "pitch", "stray");
    produce(&infra, &jobs_topic("gemma3n"), &file_id, &stray).await;

    let st = svc
        .wait_for(&alice, &file_id, |v| {
            job(v, &stuck.job_id)["status"] == "failed"
                && job(v, &stray.job_id)["status"] == "failed"
        })
        .await;
    let j = job(&st, &stuck.job_id);
    assert_eq!(j["error"]["code"], "retries_exhausted", "{j:#}");
    assert_eq!(j["error"]["retryable"], true, "{j:#}");
    let j = job(&st, &stray.job_id);
    assert_eq!(j["error"]["code"], "wrong_model", "{j:#}");
    assert_eq!(j["error"]["retryable"], false, "{j:#}");

    // An upload whose probe is poison (a storage key outside the store) fails the file.
    let sha = format!("{:064x}", 7);
    let bad_file = ids::file_id("alice", &sha);
    let up = FileEvent {
        sealed: None,
        meta: EventMeta::new("up-bad", "user:alice"),
        file_id: bad_file.clone(),
        body: FileBody::Uploaded(FileInfo {
            owner: "alice".into(),
            filename: "b.wav".into(),
            mime: "audio/wav".into(),
            size: 10,
            sha256: sha,
            storage_key: "uploads/../../etc/passwd".into(),
        }),
    };
    produce(&infra, FILES, &bad_file, &up).await;
    let st = svc
        .wait_for(&alice, &bad_file, |v| v["file"]["status"] == "failed")
        .await;
    assert_eq!(st["file"]["error"]["code"], "invalid_request", "{st:#}");

    // A probe that cannot read an upload for another reason than its absence (a store outage;
    // here a regular file where the upload's folder should be) is retried, then ends failed as
    // retryable (re-drivable), never as an invalid upload.
    std::fs::write(infra.store_dir().join("uploads/blocked"), b"not a folder").unwrap();
    let sha = format!("{:064x}", 8);
    let down_file = ids::file_id("alice", &sha);
    let up = FileEvent {
        sealed: None,
        meta: EventMeta::new("up-down", "user:alice"),
        file_id: down_file.clone(),
        body: FileBody::Uploaded(FileInfo {
            owner: "alice".into(),
            filename: "c.wav".into(),
            mime: "audio/wav".into(),
            size: 10,
            sha256: sha,
            storage_key: "uploads/blocked/c.wav".into(),
        }),
    };
    produce(&infra, FILES, &down_file, &up).await;
    let st = svc
        .wait_for(&alice, &down_file, |v| v["file"]["status"] == "failed")
        .await;
    assert_eq!(st["file"]["error"]["code"], "retries_exhausted", "{st:#}");

    cancel.cancel();
    worker.await.unwrap().unwrap();
    svc.stop().await;
}
