//! `GET /status/{file_id}`: a file with its jobs and pipelines, the view that composes the
//! others (kept apart so that jobs and pipelines need not know of each other's lists).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::files::FileView;
use super::jobs::JobView;
use super::pipelines::PipelineView;

/// `GET /status/{file_id}`: the file and every job on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub file: FileView,
    /// Oldest first; outputs carry download URLs.
    pub jobs: Vec<JobView>,
    /// The file's pipelines, oldest first: steps, their inputs and states, overall progress.
    pub pipelines: Vec<PipelineView>,
    /// Only with `?as_of=`: the time the view was folded at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    /// Only with `?after=`: false when the wait ran out before the token was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent: Option<bool>,
}
