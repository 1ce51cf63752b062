//! The run's clients: they call the API as a real client would, retrying while a part is down.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::PATIENCE;
use crate::support::melody_wav;

/// What a job of the run asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Model {
    /// CREPE tiny: most jobs.
    Pitch,
    /// HTDemucs (the small fixture network): one job in eight.
    Demucs,
}

impl Model {
    /// The model of the run's job `n`. Even jobs start before their wave's fault, so every
    /// demucs job is in flight when a part dies.
    pub(super) fn of(n: usize) -> Model {
        if n % 8 == 2 {
            Model::Demucs
        } else {
            Model::Pitch
        }
    }

    fn request(self, file_id: &str) -> Value {
        match self {
            Model::Pitch => json!({"file_id": file_id, "model": "pitch"}),
            // All four stems as WAV; no shifts (one pass) keeps the job small.
            Model::Demucs => {
                json!({"file_id": file_id, "model": "demucs", "params": {"shifts": 0}})
            }
        }
    }

    /// The model and variation folders its outputs go to (`outputs/<file>/<model>/<variation>/<job>/`).
    pub(super) fn folder(self) -> (&'static str, &'static str) {
        match self {
            Model::Pitch => ("pitch", "tiny"),
            Model::Demucs => ("demucs", "htdemucs"),
        }
    }
}

/// A job as its client saw it end.
pub(super) struct Done {
    pub(super) file_id: String,
    pub(super) job_id: String,
    pub(super) status: String,
    pub(super) model: Model,
}

/// A client's request, tried again (as a real client would) while the part that answers it is
/// down: a connection error, a timeout, a 5xx or a 429 mean "later".
async fn call(build: impl Fn() -> reqwest::RequestBuilder, what: &str) -> (u16, Value) {
    let deadline = Instant::now() + *PATIENCE;
    loop {
        if let Ok(r) = build().timeout(Duration::from_secs(10)).send().await {
            let code = r.status().as_u16();
            if code < 500 && code != 429 {
                return (code, r.json().await.unwrap_or(Value::Null));
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no answer within {:?}",
            *PATIENCE
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One user's view of the API.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// Uploads `wav`; returns its file id.
    async fn upload(&self, wav: Vec<u8>, name: &str) -> String {
        let deadline = Instant::now() + *PATIENCE;
        loop {
            let (code, up) = call(
                || {
                    let part =
                        reqwest::multipart::Part::bytes(wav.clone()).file_name(name.to_string());
                    self.http
                        .post(format!("{}/upload", self.base))
                        .bearer_auth(&self.token)
                        .multipart(reqwest::multipart::Form::new().part("file", part))
                },
                "upload",
            )
            .await;
            // An earlier try is still being accepted, or its orchestrator was killed before the
            // event was sent (taken over once its claim is stale): try again, as asked.
            if code == 409 && up["code"] == "upload_in_progress" {
                assert!(
                    Instant::now() < deadline,
                    "upload {name}: still in progress"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            // 409 `duplicate`: an earlier try was accepted but its answer was lost (the
            // orchestrator was killed after the broker had the event).
            assert!(
                code == 201 || (code == 409 && up["code"] == "duplicate"),
                "upload {name}: {code} {up}"
            );
            return up["file_id"].as_str().expect("a file id").to_string();
        }
    }

    async fn status(&self, file_id: &str) -> (u16, Value) {
        call(
            || {
                self.http
                    .get(format!("{}/status/{file_id}", self.base))
                    .bearer_auth(&self.token)
            },
            "status",
        )
        .await
    }

    /// Polls until the file is `ready`; it must never fail.
    async fn wait_ready(&self, file_id: &str) {
        let deadline = Instant::now() + *PATIENCE;
        loop {
            let (code, v) = self.status(file_id).await;
            if code == 200 && v["file"]["status"] == "ready" {
                return;
            }
            assert!(
                code == 404 || (code == 200 && v["file"]["status"] != "failed"),
                "file {file_id}: {code} {v}"
            );
            assert!(Instant::now() < deadline, "file {file_id} not ready: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn api(base: String, token: String) -> Api {
    Api {
        http: reqwest::Client::new(),
        base,
        token,
    }
}

/// One client's work: upload clip `n`, wait until it is ready, ask for its job (pitch, or
/// demucs for one in eight), wait until the job ends.
pub(super) async fn client(base: String, token: String, n: usize) -> Done {
    let api = api(base, token);
    let model = Model::of(n);
    // A different melody per clip: every upload is new content (a repeat would be a 409).
    let hz = 220.0 + 7.0 * n as f32;
    let wav = melody_wav(&[(hz, 0.3), (hz * 1.5, 0.2)], 16_000, 1);
    let file_id = api.upload(wav, &format!("c{n}.wav")).await;
    api.wait_ready(&file_id).await;
    let (code, req) = call(
        || {
            api.http
                .post(format!("{}/process", api.base))
                .bearer_auth(&api.token)
                .json(&model.request(&file_id))
        },
        "process",
    )
    .await;
    assert!(
        code == 202 || code == 200,
        "process {file_id}: {code} {req}"
    );
    let job_id = req["job_id"].as_str().expect("a job id").to_string();
    let deadline = Instant::now() + *PATIENCE;
    loop {
        let (_, v) = api.status(&file_id).await;
        let job = v["jobs"]
            .as_array()
            .and_then(|jobs| jobs.iter().find(|j| j["job_id"] == job_id.as_str()));
        if let Some(s) = job.and_then(|j| j["status"].as_str()) {
            if s == "completed" || s == "failed" || s == "canceled" {
                return Done {
                    file_id,
                    job_id,
                    status: s.to_string(),
                    model,
                };
            }
        }
        assert!(Instant::now() < deadline, "job {job_id} did not end: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The clients-only phase's client: until `stop`, uploads clip after clip (numbered from
/// `next`), polls each until it is `ready`, then polls it a few more times: a file once shown
/// `ready` must stay so (a restarted projector or PostgreSQL never shows an older read model).
/// Returns the file ids it was given.
pub(super) async fn uploader(
    base: String,
    token: String,
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let api = api(base, token);
    let mut files = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let k = next.fetch_add(1, Ordering::Relaxed);
        // Unique per k, and never a job phase clip (whose first note lasts 0.3 s).
        let notes = [
            (200.0 + 5.0 * (k % 1000) as f32, 0.2),
            (250.0 + 5.0 * (k / 1000) as f32, 0.3),
        ];
        let file_id = api
            .upload(melody_wav(&notes, 16_000, 1), &format!("u{k}.wav"))
            .await;
        api.wait_ready(&file_id).await;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (code, v) = api.status(&file_id).await;
            assert!(
                code == 200 && v["file"]["status"] == "ready",
                "file {file_id} was ready, then: {code} {v}"
            );
        }
        files.push(file_id);
    }
    files
}

/// `SELECT count(*) …` on the read model, or `None` while PostgreSQL is down.
pub(super) async fn count(url: &str, query: &str) -> Option<i64> {
    use sqlx::Connection;
    let mut conn = tokio::time::timeout(Duration::from_secs(2), sqlx::PgConnection::connect(url))
        .await
        .ok()?
        .ok()?;
    sqlx::query_scalar(query).fetch_one(&mut conn).await.ok()
}
