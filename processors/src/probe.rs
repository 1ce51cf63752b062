//! The probe (consumer group `roar-probe`): for every `FileUploaded`, decode the audio, write
//! `outputs/{file_id}/metadata.json`, and emit `FileProbed`, or `FileProbeFailed` with a clear
//! code when the upload is not usable audio. A bad upload therefore ends in a failed state
//! rather than a stuck one.
//!
//! "Probed" means a workers' decode of the file will succeed: the container is recognised,
//! it has an audio track in a supported codec with a sane rate (≤ 768 kHz) and channel count
//! (≤ 32) that stay the same throughout, every packet decodes (damaged frames are skipped only
//! once good audio has been decoded, as players do), at least one frame decodes, and the file
//! is within the limits (bytes read, seconds and bytes of samples decoded). Length, peak and
//! RMS are measured on what was decoded, never taken from the header. The file is streamed
//! from storage and its samples are not kept, so memory stays at one chunk and one packet
//! whatever the file's size.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use roar_common::kafka::{Delivery, EventProducer, HandleError, Handler};
use roar_common::metrics::{PROBE_FILES, PROBE_SECONDS};
use roar_common::storage::{Storage, StorageError};
use roar_schemas::topics::FILES;
use roar_schemas::{DeadLetterKind, FileBody, FileEvent, FileInfo, FileStatus, ProbeSummary};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::audio::{self, AudioError, Limits, Source};

/// The consumer group of the probe.
pub const GROUP: &str = "roar-probe";

/// `outputs/{file_id}/metadata.json`.
pub fn metadata_key(file_id: &str) -> String {
    format!("outputs/{file_id}/metadata.json")
}

/// The contents of `metadata.json`.
#[derive(Debug, Serialize)]
pub struct Metadata<'a> {
    pub file_id: &'a str,
    /// As the log carries it: `sealed.<ext>` for uploads whose name is sealed (docs/security.md).
    pub original_filename: &'a str,
    pub uploaded_by: &'a str,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub mime_type: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    pub codec: &'a str,
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: usize,
    pub frames: u64,
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
    pub request_ids: Vec<&'a str>,
    pub processing_steps: Vec<&'a str>,
}

pub struct Probe {
    storage: Storage,
    producer: EventProducer,
    limits: Limits,
}

impl Probe {
    pub fn new(storage: Storage, producer: EventProducer, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            storage,
            producer,
            limits,
        })
    }

    async fn probe(&self, ev: &FileEvent, info: &FileInfo) -> Result<FileBody, HandleError> {
        let reader = match self.storage.reader(&info.storage_key).await {
            Ok(r) => r,
            Err(StorageError::NotFound(k)) => {
                return Ok(FileBody::ProbeFailed {
                    code: "missing_upload".into(),
                    message: format!("uploaded object {k} is missing"),
                });
            }
            Err(e) if e.is_retryable() => return Err(HandleError::Retry(e.to_string())),
            Err(e) => return Err(HandleError::poison(DeadLetterKind::Invalid, e.to_string())),
        };
        let hint = extension(&info.filename).or_else(|| Some(info.mime.clone()));
        let limits = self.limits.clone();
        // Decoding a long song takes seconds of CPU: never on the async executor.
        let measured = tokio::task::spawn_blocking(move || {
            audio::measure(Source::object(reader), hint.as_deref(), &limits)
        })
        .await
        .map_err(|e| HandleError::Retry(format!("decoder thread: {e}")))?;
        let d = match measured {
            Ok(d) => d,
            Err(e) if e.is_retryable() => return Err(HandleError::Retry(e.to_string())),
            Err(e) => return Ok(failed(&e)),
        };
        let key = metadata_key(&ev.file_id);
        let meta = Metadata {
            file_id: &ev.file_id,
            original_filename: &info.filename,
            uploaded_by: &info.owner,
            created_at: ev.meta.occurred_at,
            mime_type: &info.mime,
            size: info.size,
            sha256: &info.sha256,
            codec: &d.format.codec,
            duration_seconds: d.duration_seconds(),
            sample_rate: d.format.sample_rate,
            channels: d.format.channels,
            frames: d.frames,
            peak_dbfs: finite(d.peak_dbfs),
            rms_dbfs: finite(d.rms_dbfs),
            request_ids: vec![&ev.meta.request_id],
            processing_steps: vec!["probe"],
        };
        let json =
            serde_json::to_vec_pretty(&meta).map_err(|e| HandleError::Retry(e.to_string()))?;
        self.storage
            .put(&key, Bytes::from(json))
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        Ok(FileBody::Probed(ProbeSummary {
            metadata_key: key,
            codec: d.format.codec.clone(),
            duration_seconds: d.duration_seconds(),
            sample_rate: d.format.sample_rate as i32,
            channels: d.format.channels as i32,
            frames: d.frames as i64,
            peak_dbfs: meta.peak_dbfs,
            rms_dbfs: meta.rms_dbfs,
        }))
    }
}

/// JSON has no infinity: digital silence is reported at the format's floor.
fn finite(db: f64) -> f64 {
    if db.is_finite() {
        db
    } else {
        -200.0
    }
}

fn failed(e: &AudioError) -> FileBody {
    FileBody::ProbeFailed {
        code: e.code().into(),
        message: e.to_string(),
    }
}

fn extension(filename: &str) -> Option<String> {
    let (_, ext) = filename.rsplit_once('.')?;
    (!ext.is_empty() && ext.len() <= 5).then(|| ext.to_ascii_lowercase())
}

#[async_trait]
impl Handler for Probe {
    async fn handle(&self, d: &Delivery, _cancel: &CancellationToken) -> Result<(), HandleError> {
        let ev: FileEvent = d.decode()?;
        let FileBody::Uploaded(info) = &ev.body else {
            return Ok(());
        };
        let span =
            tracing::info_span!("probe", file_id = %ev.file_id, request_id = %ev.meta.request_id);
        // A child of the upload's span: the FileProbed event then names this one.
        roar_common::trace::set_parent(&span, ev.meta.traceparent.as_deref());
        self.probe_and_emit(&ev, info).instrument(span).await
    }

    /// An upload whose probe was dead-lettered fails, so the file never stays `uploaded`.
    async fn dead_lettered(
        &self,
        d: &Delivery,
        kind: DeadLetterKind,
        reason: &str,
    ) -> Result<(), HandleError> {
        let Ok(ev) = d.decode::<FileEvent>() else {
            return Ok(());
        };
        if !matches!(ev.body, FileBody::Uploaded(_)) {
            return Ok(());
        }
        metrics::counter!(PROBE_FILES, "outcome" => FileStatus::Failed.as_str()).increment(1);
        let out = FileEvent {
            sealed: None,
            meta: ev.meta.follow(format!("service:{GROUP}")),
            file_id: ev.file_id.clone(),
            body: FileBody::ProbeFailed {
                code: crate::dead_letter_code(kind).into(),
                message: reason.to_string(),
            },
        };
        self.producer
            .send(FILES, &ev.file_id, &out)
            .await
            .map(|_| ())
            .map_err(|e| HandleError::Retry(e.to_string()))
    }
}

impl Probe {
    async fn probe_and_emit(&self, ev: &FileEvent, info: &FileInfo) -> Result<(), HandleError> {
        let started = std::time::Instant::now();
        let body = self.probe(ev, info).await?;
        metrics::histogram!(PROBE_SECONDS).record(started.elapsed().as_secs_f64());
        let outcome = match &body {
            FileBody::ProbeFailed { code, message } => {
                tracing::info!(%code, %message, "upload is not usable audio");
                FileStatus::Failed.as_str()
            }
            _ => "probed",
        };
        metrics::counter!(PROBE_FILES, "outcome" => outcome).increment(1);
        let out = FileEvent {
            sealed: None,
            meta: ev.meta.follow(format!("service:{GROUP}")),
            file_id: ev.file_id.clone(),
            body,
        };
        self.producer
            .send(FILES, &ev.file_id, &out)
            .await
            .map(|_| ())
            .map_err(|e| HandleError::Retry(e.to_string()))
    }
}
