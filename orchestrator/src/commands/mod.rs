//! Every event the orchestrator emits is produced here, and nowhere else: routes validate and
//! authorise, then call a command; a command decides what to emit, sends it, and answers with
//! the view and consistency token the route returns. New emission code belongs in this module.
//!
//! - [`files`]: `FileRegistered` (a direct upload's ticket) and `FileUploaded`, their names
//!   sealed with the file's data key.
//! - [`erase`]: `FileDeleted` of `DELETE /songs/{file_id}`: work canceled, data key destroyed,
//!   objects erased.
//! - [`jobs`]: `JobRequested` for `POST /process` and for retries (idempotent by job id).
//! - [`prompts`]: a musicgen prompt put aside in an object (erased with the song) before its
//!   request is emitted, so no topic holds it readable.
//! - [`cancel`]: `CancelRequested` on the control topic, and `JobCanceled` for a queued job.
//! - [`notify`]: the job events external workers report through `POST /notify`.
//! - [`dlq`]: a dead letter's message back on its source topic (`POST /admin/dlq/{id}/redrive`,
//!   `roar dlq redrive`), and the list of letters it works from.
//! - [`pipelines`]: `PipelineRequested` (a preset, or a job whose input job has not completed),
//!   and `PipelineCancelRequested` with the cancel of the steps already requested.
//! - [`replay`]: `JobRequested` for `roar replay` (a model's jobs again, another variation or
//!   version); the read model only answers which jobs there were.

pub(crate) mod cancel;
pub mod dlq;
pub(crate) mod erase;
pub(crate) mod files;
pub(crate) mod generate;
pub(crate) mod jobs;
pub(crate) mod notify;
pub(crate) mod pipelines;
pub mod prompts;
pub mod replay;
pub(crate) mod webhooks;

use crate::middleware::User;

/// The consistency token of an acknowledged event: `?after=` waits until it is projected.
pub(crate) fn consistency_token(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}:{partition}:{offset}")
}

/// The `actor` of the events a request of user `id` causes.
pub(crate) fn user_actor(id: &str) -> String {
    format!("user:{id}")
}

fn actor(user: &User) -> String {
    user_actor(user.id())
}
