//! Rust types for every roar event, and their mapping to the Avro records in `schemas/avro/`.

use std::sync::LazyLock;

use apache_avro::types::Value;
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use crate::avro::{opt_bytes, opt_micros, opt_string, record, string, union_names, Fields};
use crate::schema_set::{DecodeError, SchemaSet};

/// A roar event type: one Avro record schema, stored on one kind of topic.
pub trait Event: Sized + Clone + std::fmt::Debug + PartialEq {
    /// The schema's file stem in `schemas/avro/` (e.g. `job_event`).
    const NAME: &'static str;
    /// The current schema and every committed earlier version.
    fn schemas() -> &'static SchemaSet;
    fn to_value(&self) -> Value;
    fn from_value(v: Value) -> Result<Self, DecodeError>;
    fn meta(&self) -> &EventMeta;
}

/// The envelope every event carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventMeta {
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub request_id: String,
    pub traceparent: Option<String>,
    pub actor: String,
}

impl EventMeta {
    /// A fresh envelope: a new event id, stamped now, in the current trace (if any).
    pub fn new(request_id: impl Into<String>, actor: impl Into<String>) -> Self {
        Self {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: now_micros(),
            request_id: request_id.into(),
            traceparent: crate::trace::current(),
            actor: actor.into(),
        }
    }

    /// A follow-up envelope: same request, new event id and time, another actor. It names the
    /// span active now (a worker's span is a child of the request's), else keeps this one's.
    pub fn follow(&self, actor: impl Into<String>) -> Self {
        let next = Self::new(self.request_id.clone(), actor);
        Self {
            traceparent: next
                .traceparent
                .clone()
                .or_else(|| self.traceparent.clone()),
            ..next
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        record(vec![
            ("event_id", string(&self.event_id)),
            (
                "occurred_at",
                Value::TimestampMicros(self.occurred_at.timestamp_micros()),
            ),
            ("request_id", string(&self.request_id)),
            ("traceparent", opt_string(&self.traceparent)),
            ("actor", string(&self.actor)),
        ])
    }

    pub(crate) fn from_fields(mut f: Fields) -> Result<Self, DecodeError> {
        Ok(Self {
            event_id: f.string("event_id")?,
            occurred_at: micros(f.long("occurred_at")?)?,
            request_id: f.string("request_id")?,
            traceparent: f.opt_string("traceparent")?,
            actor: f.string("actor")?,
        })
    }
}

/// Now, truncated to the microsecond precision that Avro keeps, so a round trip is exact.
pub fn now_micros() -> DateTime<Utc> {
    let t = Utc::now().timestamp_micros();
    Utc.timestamp_micros(t).single().unwrap_or_else(Utc::now)
}

fn micros(t: i64) -> Result<DateTime<Utc>, DecodeError> {
    Utc.timestamp_micros(t)
        .single()
        .ok_or_else(|| DecodeError::Shape(format!("timestamp {t} out of range")))
}

// ---------------------------------------------------------------- roar.files.v1

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileEvent {
    pub meta: EventMeta,
    pub file_id: String,
    pub body: FileBody,
}

/// What is known about an uploaded file's content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    pub owner: String,
    pub filename: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
}

/// What the probe learnt by decoding the audio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSummary {
    pub metadata_key: String,
    pub codec: String,
    pub duration_seconds: f64,
    pub sample_rate: i32,
    pub channels: i32,
    pub frames: i64,
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileBody {
    Registered {
        info: FileInfo,
        upload_expires_at: DateTime<Utc>,
    },
    Uploaded(FileInfo),
    Probed(ProbeSummary),
    ProbeFailed {
        code: String,
        message: String,
    },
    Deleted {
        reason: Option<String>,
    },
}

static FILE_BODY: LazyLock<Vec<String>> =
    LazyLock::new(|| union_names(&FileEvent::schemas().current, "body"));

fn file_info_value(i: &FileInfo) -> Value {
    record(vec![
        ("owner", string(&i.owner)),
        ("filename", string(&i.filename)),
        ("mime", string(&i.mime)),
        ("size", Value::Long(i.size)),
        ("sha256", string(&i.sha256)),
        ("storage_key", string(&i.storage_key)),
    ])
}

fn file_info(v: Value) -> Result<FileInfo, DecodeError> {
    file_info_fields(Fields::new("FileInfo", v)?)
}

fn file_info_fields(mut f: Fields) -> Result<FileInfo, DecodeError> {
    Ok(FileInfo {
        owner: f.string("owner")?,
        filename: f.string("filename")?,
        mime: f.string("mime")?,
        size: f.long("size")?,
        sha256: f.string("sha256")?,
        storage_key: f.string("storage_key")?,
    })
}

impl Event for FileEvent {
    const NAME: &'static str = "file_event";

    fn schemas() -> &'static SchemaSet {
        static S: LazyLock<SchemaSet> = LazyLock::new(|| {
            SchemaSet::new(
                include_str!("../avro/file_event.avsc"),
                &[include_str!("../avro/history/file_event.v1.avsc")],
            )
        });
        &S
    }

    fn to_value(&self) -> Value {
        let body = match &self.body {
            FileBody::Registered {
                info,
                upload_expires_at,
            } => {
                let mut v = file_info_value(info);
                if let Value::Record(f) = &mut v {
                    f.push((
                        "upload_expires_at".into(),
                        Value::TimestampMicros(upload_expires_at.timestamp_micros()),
                    ));
                }
                Value::Union(0, Box::new(v))
            }
            FileBody::Uploaded(i) => Value::Union(1, Box::new(file_info_value(i))),
            FileBody::Probed(p) => Value::Union(
                2,
                Box::new(record(vec![
                    ("metadata_key", string(&p.metadata_key)),
                    ("codec", string(&p.codec)),
                    ("duration_seconds", Value::Double(p.duration_seconds)),
                    ("sample_rate", Value::Int(p.sample_rate)),
                    ("channels", Value::Int(p.channels)),
                    ("frames", Value::Long(p.frames)),
                    ("peak_dbfs", Value::Double(p.peak_dbfs)),
                    ("rms_dbfs", Value::Double(p.rms_dbfs)),
                ])),
            ),
            FileBody::ProbeFailed { code, message } => Value::Union(
                3,
                Box::new(record(vec![
                    ("code", string(code)),
                    ("message", string(message)),
                ])),
            ),
            FileBody::Deleted { reason } => {
                Value::Union(4, Box::new(record(vec![("reason", opt_string(reason))])))
            }
        };
        record(vec![
            ("meta", self.meta.to_value()),
            ("file_id", string(&self.file_id)),
            ("body", body),
        ])
    }

    fn from_value(v: Value) -> Result<Self, DecodeError> {
        let mut f = Fields::new("FileEvent", v)?;
        let meta = EventMeta::from_fields(f.record("meta", "EventMeta")?)?;
        let file_id = f.string("file_id")?;
        let (name, v) = f.variant("body", &FILE_BODY)?;
        let body = match name.as_str() {
            "FileRegistered" => {
                let mut b = Fields::new("FileRegistered", v)?;
                let upload_expires_at = micros(b.long("upload_expires_at")?)?;
                FileBody::Registered {
                    info: file_info_fields(b)?,
                    upload_expires_at,
                }
            }
            "FileUploaded" => FileBody::Uploaded(file_info(v)?),
            "FileProbed" => {
                let mut b = Fields::new("FileProbed", v)?;
                FileBody::Probed(ProbeSummary {
                    metadata_key: b.string("metadata_key")?,
                    codec: b.string("codec")?,
                    duration_seconds: b.double("duration_seconds")?,
                    sample_rate: b.int("sample_rate")?,
                    channels: b.int("channels")?,
                    frames: b.long("frames")?,
                    peak_dbfs: b.double("peak_dbfs")?,
                    rms_dbfs: b.double("rms_dbfs")?,
                })
            }
            "FileProbeFailed" => {
                let mut b = Fields::new("FileProbeFailed", v)?;
                FileBody::ProbeFailed {
                    code: b.string("code")?,
                    message: b.string("message")?,
                }
            }
            "FileDeleted" => {
                let mut b = Fields::new("FileDeleted", v)?;
                FileBody::Deleted {
                    reason: b.opt_string("reason")?,
                }
            }
            other => return Err(DecodeError::UnknownVariant(other.to_string())),
        };
        Ok(Self {
            meta,
            file_id,
            body,
        })
    }

    fn meta(&self) -> &EventMeta {
        &self.meta
    }
}

// ---------------------------------------------------------------- roar.jobs.<model>.v1

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRequested {
    pub meta: EventMeta,
    pub job_id: String,
    pub file_id: String,
    pub owner: String,
    pub model: String,
    pub variation: String,
    pub model_version: String,
    /// Model parameters as a canonical JSON object (Avro has no free-form map of any value).
    pub params_json: String,
    /// 1 for the first try.
    pub attempt: i32,
    /// A retry is not started before this time.
    pub not_before: Option<DateTime<Utc>>,
    /// What the job reads: `None` for the uploaded file, else one output of another job on the
    /// same file (schema version 2; earlier requests decode as `None`).
    pub input: Option<JobInput>,
}

/// One output of another job, the input of a job that chains on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobInput {
    /// The upstream job.
    pub job_id: String,
    /// The upstream job's model and variation, which place its manifest:
    /// `outputs/{file_id}/{model}/{variation}/{job_id}/manifest.json`.
    pub model: String,
    pub variation: String,
    /// The output's name: its file name without the extension (`vocals` for `vocals.wav`).
    pub output: String,
}

impl JobInput {
    fn to_value(&self) -> Value {
        record(vec![
            ("job_id", string(&self.job_id)),
            ("model", string(&self.model)),
            ("variation", string(&self.variation)),
            ("output", string(&self.output)),
        ])
    }

    fn from_fields(mut f: Fields) -> Result<Self, DecodeError> {
        Ok(Self {
            job_id: f.string("job_id")?,
            model: f.string("model")?,
            variation: f.string("variation")?,
            output: f.string("output")?,
        })
    }
}

impl Event for JobRequested {
    const NAME: &'static str = "job_request";

    fn schemas() -> &'static SchemaSet {
        static S: LazyLock<SchemaSet> = LazyLock::new(|| {
            SchemaSet::new(
                include_str!("../avro/job_request.avsc"),
                &[
                    include_str!("../avro/history/job_request.v1.avsc"),
                    include_str!("../avro/history/job_request.v2.avsc"),
                ],
            )
        });
        &S
    }

    fn to_value(&self) -> Value {
        record(vec![
            ("meta", self.meta.to_value()),
            ("job_id", string(&self.job_id)),
            ("file_id", string(&self.file_id)),
            ("owner", string(&self.owner)),
            ("model", string(&self.model)),
            ("variation", string(&self.variation)),
            ("model_version", string(&self.model_version)),
            ("params_json", string(&self.params_json)),
            ("attempt", Value::Int(self.attempt)),
            (
                "not_before",
                opt_micros(self.not_before.map(|t| t.timestamp_micros())),
            ),
            (
                "input",
                match &self.input {
                    Some(i) => Value::Union(1, Box::new(i.to_value())),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
        ])
    }

    fn from_value(v: Value) -> Result<Self, DecodeError> {
        let mut f = Fields::new("JobRequested", v)?;
        Ok(Self {
            meta: EventMeta::from_fields(f.record("meta", "EventMeta")?)?,
            job_id: f.string("job_id")?,
            file_id: f.string("file_id")?,
            owner: f.string("owner")?,
            model: f.string("model")?,
            variation: f.string("variation")?,
            model_version: f.string("model_version")?,
            params_json: f.string("params_json")?,
            attempt: f.int("attempt")?,
            not_before: f.opt_micros("not_before")?.map(micros).transpose()?,
            input: f
                .opt_record("input", "JobInput")?
                .map(JobInput::from_fields)
                .transpose()?,
        })
    }

    fn meta(&self) -> &EventMeta {
        &self.meta
    }
}

// ---------------------------------------------------------------- roar.job-events.v1

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobEvent {
    pub meta: EventMeta,
    pub job_id: String,
    pub file_id: String,
    pub model: String,
    pub variation: String,
    pub body: JobBody,
}

/// One output file of a job.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Output {
    pub path: String,
    pub kind: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobBody {
    /// Projection-only: no role writes it to a topic. The projector applies each
    /// [`JobRequested`] as this event, so the history and the SSE stream show `queued`; a
    /// consumer of the topics reads `JobRequested` on `roar.jobs.<model>.v1` instead.
    Queued {
        owner: String,
        model_version: String,
        params_json: String,
    },
    Started {
        worker: String,
        attempt: i32,
    },
    Progress {
        percent: f32,
        message: String,
    },
    Completed {
        outputs: Vec<Output>,
        duration_seconds: f64,
    },
    Failed {
        code: String,
        message: String,
        retryable: bool,
    },
    RetryScheduled {
        attempt: i32,
        not_before: DateTime<Utc>,
        reason: String,
    },
    Canceled {
        reason: String,
    },
    Skipped {
        outputs: Vec<Output>,
    },
}

impl JobBody {
    /// The name used in the read model and in SSE event types.
    pub fn kind(&self) -> &'static str {
        match self {
            JobBody::Queued { .. } => "queued",
            JobBody::Started { .. } => "started",
            JobBody::Progress { .. } => "progress",
            JobBody::Completed { .. } => "completed",
            JobBody::Failed { .. } => "failed",
            JobBody::RetryScheduled { .. } => "retry_scheduled",
            JobBody::Canceled { .. } => "canceled",
            JobBody::Skipped { .. } => "skipped",
        }
    }
}

static JOB_BODY: LazyLock<Vec<String>> =
    LazyLock::new(|| union_names(&JobEvent::schemas().current, "body"));

fn outputs_value(outputs: &[Output]) -> Value {
    Value::Array(
        outputs
            .iter()
            .map(|o| {
                record(vec![
                    ("path", string(&o.path)),
                    ("kind", string(&o.kind)),
                    ("content_type", string(&o.content_type)),
                    ("size", Value::Long(o.size)),
                    ("sha256", string(&o.sha256)),
                ])
            })
            .collect(),
    )
}

fn outputs(items: Vec<Value>) -> Result<Vec<Output>, DecodeError> {
    items
        .into_iter()
        .map(|v| {
            let mut f = Fields::new("Output", v)?;
            Ok(Output {
                path: f.string("path")?,
                kind: f.string("kind")?,
                content_type: f.string("content_type")?,
                size: f.long("size")?,
                sha256: f.string("sha256")?,
            })
        })
        .collect()
}

impl Event for JobEvent {
    const NAME: &'static str = "job_event";

    fn schemas() -> &'static SchemaSet {
        static S: LazyLock<SchemaSet> = LazyLock::new(|| {
            SchemaSet::new(
                include_str!("../avro/job_event.avsc"),
                &[include_str!("../avro/history/job_event.v1.avsc")],
            )
        });
        &S
    }

    fn to_value(&self) -> Value {
        let (idx, body) = match &self.body {
            JobBody::Queued {
                owner,
                model_version,
                params_json,
            } => (
                0,
                record(vec![
                    ("owner", string(owner)),
                    ("model_version", string(model_version)),
                    ("params_json", string(params_json)),
                ]),
            ),
            JobBody::Started { worker, attempt } => (
                1,
                record(vec![
                    ("worker", string(worker)),
                    ("attempt", Value::Int(*attempt)),
                ]),
            ),
            JobBody::Progress { percent, message } => (
                2,
                record(vec![
                    ("percent", Value::Float(*percent)),
                    ("message", string(message)),
                ]),
            ),
            JobBody::Completed {
                outputs,
                duration_seconds,
            } => (
                3,
                record(vec![
                    ("outputs", outputs_value(outputs)),
                    ("duration_seconds", Value::Double(*duration_seconds)),
                ]),
            ),
            JobBody::Failed {
                code,
                message,
                retryable,
            } => (
                4,
                record(vec![
                    ("code", string(code)),
                    ("message", string(message)),
                    ("retryable", Value::Boolean(*retryable)),
                ]),
            ),
            JobBody::RetryScheduled {
                attempt,
                not_before,
                reason,
            } => (
                5,
                record(vec![
                    ("attempt", Value::Int(*attempt)),
                    (
                        "not_before",
                        Value::TimestampMicros(not_before.timestamp_micros()),
                    ),
                    ("reason", string(reason)),
                ]),
            ),
            JobBody::Canceled { reason } => (6, record(vec![("reason", string(reason))])),
            JobBody::Skipped { outputs } => (7, record(vec![("outputs", outputs_value(outputs))])),
        };
        record(vec![
            ("meta", self.meta.to_value()),
            ("job_id", string(&self.job_id)),
            ("file_id", string(&self.file_id)),
            ("model", string(&self.model)),
            ("variation", string(&self.variation)),
            ("body", Value::Union(idx, Box::new(body))),
        ])
    }

    fn from_value(v: Value) -> Result<Self, DecodeError> {
        let mut f = Fields::new("JobEvent", v)?;
        let meta = EventMeta::from_fields(f.record("meta", "EventMeta")?)?;
        let job_id = f.string("job_id")?;
        let file_id = f.string("file_id")?;
        let model = f.string("model")?;
        let variation = f.string("variation")?;
        let (name, v) = f.variant("body", &JOB_BODY)?;
        let mut b = Fields::new("JobEvent.body", v)?;
        let body = match name.as_str() {
            "JobQueued" => JobBody::Queued {
                owner: b.string("owner")?,
                model_version: b.string("model_version")?,
                params_json: b.string("params_json")?,
            },
            "JobStarted" => JobBody::Started {
                worker: b.string("worker")?,
                attempt: b.int("attempt")?,
            },
            "JobProgress" => JobBody::Progress {
                percent: b.float("percent")?,
                message: b.string("message")?,
            },
            "JobCompleted" => JobBody::Completed {
                outputs: outputs(b.array("outputs")?)?,
                duration_seconds: b.double("duration_seconds")?,
            },
            "JobFailed" => JobBody::Failed {
                code: b.string("code")?,
                message: b.string("message")?,
                retryable: b.boolean("retryable")?,
            },
            "JobRetryScheduled" => JobBody::RetryScheduled {
                attempt: b.int("attempt")?,
                not_before: micros(b.long("not_before")?)?,
                reason: b.string("reason")?,
            },
            "JobCanceled" => JobBody::Canceled {
                reason: b.string("reason")?,
            },
            "JobSkipped" => JobBody::Skipped {
                outputs: outputs(b.array("outputs")?)?,
            },
            other => return Err(DecodeError::UnknownVariant(other.to_string())),
        };
        Ok(Self {
            meta,
            job_id,
            file_id,
            model,
            variation,
            body,
        })
    }

    fn meta(&self) -> &EventMeta {
        &self.meta
    }
}

// ---------------------------------------------------------------- roar.control.v1

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlEvent {
    pub meta: EventMeta,
    pub job_id: String,
    pub body: ControlBody,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlBody {
    CancelRequested {
        file_id: String,
        reason: String,
    },
    /// A processor instance is alive (sent every `interval_seconds`); `job_id` is empty.
    WorkerAlive {
        worker: String,
        model: String,
        model_version: String,
        variations: Vec<String>,
        device: String,
        interval_seconds: i32,
        stopping: bool,
    },
}

static CONTROL_BODY: LazyLock<Vec<String>> =
    LazyLock::new(|| union_names(&ControlEvent::schemas().current, "body"));

impl Event for ControlEvent {
    const NAME: &'static str = "control_event";

    fn schemas() -> &'static SchemaSet {
        static S: LazyLock<SchemaSet> = LazyLock::new(|| {
            SchemaSet::new(
                include_str!("../avro/control_event.avsc"),
                &[
                    include_str!("../avro/history/control_event.v1.avsc"),
                    include_str!("../avro/history/control_event.v2.avsc"),
                ],
            )
        });
        &S
    }

    fn to_value(&self) -> Value {
        let body = match &self.body {
            ControlBody::CancelRequested { file_id, reason } => Value::Union(
                0,
                Box::new(record(vec![
                    ("file_id", string(file_id)),
                    ("reason", string(reason)),
                ])),
            ),
            ControlBody::WorkerAlive {
                worker,
                model,
                model_version,
                variations,
                device,
                interval_seconds,
                stopping,
            } => Value::Union(
                1,
                Box::new(record(vec![
                    ("worker", string(worker)),
                    ("model", string(model)),
                    ("model_version", string(model_version)),
                    (
                        "variations",
                        Value::Array(variations.iter().map(|v| string(v)).collect()),
                    ),
                    ("device", string(device)),
                    ("interval_seconds", Value::Int(*interval_seconds)),
                    ("stopping", Value::Boolean(*stopping)),
                ])),
            ),
        };
        record(vec![
            ("meta", self.meta.to_value()),
            ("job_id", string(&self.job_id)),
            ("body", body),
        ])
    }

    fn from_value(v: Value) -> Result<Self, DecodeError> {
        let mut f = Fields::new("ControlEvent", v)?;
        let meta = EventMeta::from_fields(f.record("meta", "EventMeta")?)?;
        let job_id = f.string("job_id")?;
        let (name, v) = f.variant("body", &CONTROL_BODY)?;
        let mut b = Fields::new("ControlEvent.body", v)?;
        let body = match name.as_str() {
            "CancelRequested" => ControlBody::CancelRequested {
                file_id: b.string("file_id")?,
                reason: b.string("reason")?,
            },
            "WorkerAlive" => ControlBody::WorkerAlive {
                worker: b.string("worker")?,
                model: b.string("model")?,
                model_version: b.string("model_version")?,
                variations: b.strings("variations")?,
                device: b.string("device")?,
                interval_seconds: b.int("interval_seconds")?,
                stopping: b.boolean("stopping")?,
            },
            other => return Err(DecodeError::UnknownVariant(other.to_string())),
        };
        Ok(Self { meta, job_id, body })
    }

    fn meta(&self) -> &EventMeta {
        &self.meta
    }
}

// ---------------------------------------------------------------- roar.dlq.v1

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub meta: EventMeta,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub consumer_group: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Why it is here: the text of a [`DeadLetterKind`](crate::DeadLetterKind). Kept as text on
    /// the wire type so that a kind added by a newer producer does not make the letter
    /// unreadable; [`DeadLetter::kind`] parses it.
    pub error_kind: String,
    pub error: String,
}

impl DeadLetter {
    /// The kind, if it is one this build knows.
    pub fn kind(&self) -> Result<crate::DeadLetterKind, crate::UnknownWord> {
        self.error_kind.parse()
    }
}

impl Event for DeadLetter {
    const NAME: &'static str = "dead_letter";

    fn schemas() -> &'static SchemaSet {
        static S: LazyLock<SchemaSet> = LazyLock::new(|| {
            SchemaSet::new(
                include_str!("../avro/dead_letter.avsc"),
                &[include_str!("../avro/history/dead_letter.v1.avsc")],
            )
        });
        &S
    }

    fn to_value(&self) -> Value {
        record(vec![
            ("meta", self.meta.to_value()),
            ("source_topic", string(&self.source_topic)),
            ("source_partition", Value::Int(self.source_partition)),
            ("source_offset", Value::Long(self.source_offset)),
            ("consumer_group", string(&self.consumer_group)),
            ("key", opt_bytes(&self.key)),
            ("payload", opt_bytes(&self.payload)),
            ("error_kind", string(&self.error_kind)),
            ("error", string(&self.error)),
        ])
    }

    fn from_value(v: Value) -> Result<Self, DecodeError> {
        let mut f = Fields::new("DeadLetter", v)?;
        Ok(Self {
            meta: EventMeta::from_fields(f.record("meta", "EventMeta")?)?,
            source_topic: f.string("source_topic")?,
            source_partition: f.int("source_partition")?,
            source_offset: f.long("source_offset")?,
            consumer_group: f.string("consumer_group")?,
            key: f.opt_bytes("key")?,
            payload: f.opt_bytes("payload")?,
            error_kind: f.string("error_kind")?,
            error: f.string("error")?,
        })
    }

    fn meta(&self) -> &EventMeta {
        &self.meta
    }
}
