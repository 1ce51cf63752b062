//! Jobs: what `/status`, `/process`, the job commands and the admin view show, and what
//! external workers send to `/notify`.

use chrono::{DateTime, Utc};
use roar_common::kafka::LiveWorker;
use roar_projections::apply::JobRow;
use roar_projections::store::HistoryRow;
use roar_schemas::{JobInput, JobStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, Object, ObjectBuilder, Ref, Schema, Type,
};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::schema as s;

/// What a job reads when not the uploaded file: one output of another job on the file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobInputView {
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    pub model: String,
    pub variation: String,
    /// The output's name: its file name without the extension (`vocals`).
    pub output: String,
}

impl From<&JobInput> for JobInputView {
    fn from(i: &JobInput) -> Self {
        JobInputView {
            job_id: i.job_id.clone(),
            model: i.model.clone(),
            variation: i.variation.clone(),
            output: i.output.clone(),
        }
    }
}

/// A job as `/status` and the admin view show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    pub model: String,
    pub variation: String,
    pub model_version: String,
    #[schema(schema_with = s::job_params)]
    pub params: Value,
    #[schema(schema_with = s::job_status)]
    pub status: JobStatus,
    /// Completed without running: its outputs existed already.
    pub skipped: bool,
    /// Percent, 0–100.
    pub progress: f32,
    /// The worker's last progress message.
    pub message: Option<String>,
    pub attempt: i32,
    /// Why it failed (status `failed`).
    pub error: Option<JobError>,
    pub outputs: Vec<OutputView>,
    /// What the job reads: `null` for the uploaded file, else one output of another job.
    pub input: Option<JobInputView>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: Option<String>,
    /// Whether another attempt may succeed.
    pub retryable: Option<bool>,
}

/// One output of a completed job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutputView {
    /// The storage key (`outputs/{file_id}/...`).
    pub path: String,
    pub kind: String,
    pub content_type: String,
    pub size: i64,
    #[schema(schema_with = s::sha256_hex)]
    pub sha256: String,
    /// Downloads it until the link expires (`http.link_ttl_seconds`): a presigned S3 URL or a
    /// link the orchestrator signed. In `/status` and `/process`, not in the admin list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The outputs the read model stores for `job`, without links.
pub fn stored_outputs(job: &JobRow) -> Vec<OutputView> {
    if job.outputs.is_null() {
        return Vec::new();
    }
    serde_json::from_value(job.outputs.clone()).unwrap_or_else(|e| {
        // The projection writes what the worker sent; anything else is a bug to log, not a
        // reason to fail the read.
        tracing::warn!(job_id = %job.job_id, error = %e, "unreadable job outputs");
        Vec::new()
    })
}

impl JobView {
    /// The view of a row; `outputs` as given (with or without links).
    pub fn new(j: &JobRow, outputs: Vec<OutputView>) -> Self {
        JobView {
            job_id: j.job_id.clone(),
            file_id: j.file_id.clone(),
            model: j.model.clone(),
            variation: j.variation.clone(),
            model_version: j.model_version.clone(),
            params: j.params.clone(),
            status: j.status,
            skipped: j.skipped,
            progress: j.progress,
            message: j.message.clone(),
            attempt: j.attempt,
            error: j.error_code.as_ref().map(|code| JobError {
                code: code.clone(),
                message: j.error_message.clone(),
                retryable: j.retryable,
            }),
            outputs,
            input: j.input().as_ref().map(JobInputView::from),
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            updated_at: j.updated_at,
        }
    }
}

impl JobView {
    /// A queued job that no live worker in `live` serves at its variation and version says so
    /// in `message`: it waits on its topic (never runs on other weights) until one starts.
    pub fn explain_wait(&mut self, live: &[LiveWorker]) {
        if self.status != JobStatus::Queued
            || live
                .iter()
                .any(|w| w.serves(&self.model, &self.variation, &self.model_version))
        {
            return;
        }
        self.message = Some(format!(
            "waiting: no live worker serves {} {} at version {}",
            self.model, self.variation, self.model_version
        ));
    }
}

/// A job in the admin list: the job and whose it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminJobView {
    #[serde(flatten)]
    pub job: JobView,
    pub owner: String,
}

/// `GET /admin/jobs`: a page of every user's jobs, most recently changed first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobsPage {
    pub jobs: Vec<AdminJobView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// The `status` a command answers where it is not a stored [`JobStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// `POST /process`: the job completed already; its outputs are in the answer.
    Skipped,
    /// Cancel: the job may be running; every worker was asked to stop it.
    CancelRequested,
}

impl CommandStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Skipped => "skipped",
            CommandStatus::CancelRequested => "cancel_requested",
        }
    }
}

/// What a command did to a job: a stored status, or a word of the command's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Job(JobStatus),
    Command(CommandStatus),
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Job(s) => s.as_str(),
            Outcome::Command(c) => c.as_str(),
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn requested_status() -> Object {
    s::words([
        JobStatus::Queued.as_str(),
        JobStatus::Running.as_str(),
        CommandStatus::Skipped.as_str(),
    ])
}

fn cancel_status() -> Object {
    s::words([
        JobStatus::Canceled.as_str(),
        CommandStatus::CancelRequested.as_str(),
    ])
}

fn queued() -> Object {
    s::one_word(JobStatus::Queued.as_str())
}

/// A job `POST /process` asked for (or found).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobRequestView {
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    pub model: String,
    pub variation: String,
    pub model_version: String,
    #[schema(schema_with = s::job_params)]
    pub params: Value,
    /// `queued`: a new job or attempt was requested (or one is pending already); `running`: it
    /// runs already; `skipped`: it completed already, `outputs` are here.
    #[schema(schema_with = requested_status)]
    pub status: Outcome,
    /// Absent when skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i32>,
    /// Only when skipped, with download URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<OutputView>>,
    /// Only when queued by this or a pending request: pass to `GET /status/{file_id}?after=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
    /// Only for a job that reads another job's output (`input`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<JobInputView>,
    /// Only when the input's job has not completed yet: the two-step pipeline that runs the
    /// input's job, then this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = s::pipeline_id)]
    pub pipeline_id: Option<String>,
}

/// `POST /admin/jobs/{job_id}/retry`: another attempt was requested.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryAccepted {
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    #[schema(schema_with = queued)]
    pub status: JobStatus,
    pub attempt: i32,
    pub consistency_token: String,
}

/// A cancel was accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelAccepted {
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    /// `canceled`: it was queued and is canceled now; `cancel_requested`: a worker may be
    /// running it and stops at its next check.
    #[schema(schema_with = cancel_status)]
    pub status: Outcome,
    pub consistency_token: String,
}

/// A job event an external worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyStatus {
    Started,
    Progress,
    Completed,
    Failed,
    Canceled,
}

impl NotifyStatus {
    /// The spelling on the wire (serde's `snake_case`; a unit test keeps them equal).
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyStatus::Started => "started",
            NotifyStatus::Progress => "progress",
            NotifyStatus::Completed => "completed",
            NotifyStatus::Failed => "failed",
            NotifyStatus::Canceled => "canceled",
        }
    }
}

/// `POST /notify`: a job event from a worker outside the cluster.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    /// Must be the job's when given (409 otherwise).
    #[schema(schema_with = s::file_id_or_null)]
    pub file_id: Option<String>,
    /// Must be the job's when given (409 otherwise).
    pub model: Option<String>,
    pub status: NotifyStatus,
    /// `started`: the worker's name (default `external`).
    pub worker: Option<String>,
    /// `started`: the attempt (default 1).
    #[serde(default, deserialize_with = "super::numbers::optional_integer")]
    pub attempt: Option<i32>,
    /// Percent; required for `progress`.
    #[schema(minimum = 0, maximum = 100)]
    pub progress: Option<f32>,
    /// `progress`: what the worker is doing; `canceled`: why.
    pub message: Option<String>,
    /// `completed`: what was written; each `path` a key under `outputs/{file_id}/`.
    #[serde(default)]
    pub outputs: Vec<NotifyOutput>,
    /// `completed`: how long the work took.
    pub duration_seconds: Option<f64>,
    /// Required for `failed`.
    pub error: Option<NotifyError>,
}

/// `NotifyRequest`'s document: the derived object, and what a derive cannot say, the fields a
/// status needs (`progress` a percent, `failed` an `error`; 422 without them).
pub fn notify_request_schema(derived: RefOr<Schema>) -> Schema {
    use NotifyStatus as N;
    let status = |names: &[NotifyStatus]| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names.iter().map(|n| n.as_str())))
    };
    let needs = |name: NotifyStatus, field: &str, schema: RefOr<Schema>| {
        ObjectBuilder::new()
            .property("status", status(&[name]))
            .property(field, schema)
            .required(field)
    };
    let percent = ObjectBuilder::new().schema_type(Type::Number).build();
    AllOfBuilder::new()
        .item(derived)
        .item(
            AnyOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .property("status", status(&[N::Started, N::Completed, N::Canceled])),
                )
                .item(needs(N::Progress, "progress", percent.into()))
                .item(needs(
                    N::Failed,
                    "error",
                    Ref::from_schema_name("NotifyError").into(),
                )),
        )
        .build()
        .into()
}

/// An output a worker wrote.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NotifyOutput {
    /// The storage key: under `outputs/{file_id}/` of the job's file (409 for another file's),
    /// no empty, `.` or `..` segment.
    #[schema(schema_with = s::output_path)]
    pub path: String,
    pub kind: String,
    pub content_type: String,
    #[serde(deserialize_with = "super::numbers::integer")]
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub retryable: bool,
}

/// `POST /notify`: the event was published.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotifyAccepted {
    #[schema(schema_with = s::job_id)]
    pub job_id: String,
    /// The kind of the published job event (the request's `status`).
    pub event: NotifyStatus,
    pub consistency_token: String,
}

/// The `data` of one Server-Sent Event on `GET /status/{file_id}/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEventView {
    /// The history sequence number (also the SSE `id`).
    pub seq: i64,
    /// The event kind (also the SSE `event`), e.g. `file_uploaded`, `queued`, `progress`.
    pub kind: String,
    pub job_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    #[schema(schema_with = s::history_body)]
    pub body: Value,
}

impl From<&HistoryRow> for HistoryEventView {
    fn from(r: &HistoryRow) -> Self {
        HistoryEventView {
            seq: r.seq,
            kind: r.kind.clone(),
            job_id: r.job_id.clone(),
            occurred_at: r.occurred_at,
            body: r.body.clone(),
        }
    }
}
