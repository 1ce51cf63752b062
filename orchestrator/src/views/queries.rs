//! Query strings. Unknown parameters and values that do not parse are refused with 400.

use chrono::{DateTime, Utc};
use roar_schemas::JobStatus;
use serde::Deserialize;
use utoipa::openapi::schema::Object;
use utoipa::IntoParams;

use super::schema as s;

/// Smallest and largest page size; the default.
pub const MIN_LIMIT: i64 = 1;
pub const MAX_LIMIT: i64 = 200;
pub const DEFAULT_LIMIT: i64 = 50;

fn after_token() -> Object {
    let mut o = s::consistency_token();
    o.description = Some(
        "a consistency token from a command's answer: wait (at most \
         `http.consistency_wait_ms`) until the projection has applied it; the answer says \
         whether it had (`consistent`)"
            .into(),
    );
    o
}

fn file_cursor() -> Object {
    s::cursor('f')
}

fn job_cursor() -> Object {
    s::cursor('j')
}

/// Routes on one file: `{file_id}` in the path. Anything that is not a file id is 404.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FilePath {
    #[param(schema_with = s::file_id, required = true)]
    pub file_id: String,
}

/// Routes on one job: `{job_id}` in the path. Anything that is not a job id is 404.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    #[param(schema_with = s::job_id, required = true)]
    pub job_id: String,
}

/// `GET /status/{file_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// A consistency token from a command's answer: wait (at most `http.consistency_wait_ms`)
    /// until the projection has applied it; the answer says whether it had (`consistent`).
    #[param(schema_with = after_token)]
    pub after: Option<String>,
    /// Show the file and its jobs as they were at this time (RFC 3339), folded from the event
    /// history; 404 when the file did not exist yet, 400 for a time in the future, 422 when
    /// more than `http.as_of_max_events` events would be folded.
    pub as_of: Option<DateTime<Utc>>,
}

/// `GET /songs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(schema_with = file_cursor)]
    pub cursor: Option<String>,
}

/// `GET /admin/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs in this status.
    #[param(schema_with = s::job_status)]
    pub status: Option<JobStatus>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(schema_with = job_cursor)]
    pub cursor: Option<String>,
}

/// `GET /status/{file_id}/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event id, like the `Last-Event-ID` header (which wins when both are
    /// given), for clients that cannot set headers.
    #[param(minimum = 0)]
    pub last_event_id: Option<i64>,
}

/// The headers of `GET /status/{file_id}/events` (the handler reads them itself).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // only its OpenAPI description is used
pub struct EventsHeaders {
    /// Resume after this event id (the `id` of the last event received); wins over
    /// `last_event_id`.
    #[param(rename = "Last-Event-ID", minimum = 0, nullable = false)]
    pub last_event_id: Option<i64>,
}

/// A signed link's query (`/files/{name}`, `PUT /upload/{file_id}`): the link is the credential.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The signed claims (base64url).
    #[param(pattern = "^[A-Za-z0-9_-]+$")]
    pub t: String,
    /// `<key id>.<HMAC-SHA256 of t, hex>`: the id names the link key that signed it (keys
    /// rotate; `auth.link_key_id`).
    #[param(pattern = "^[A-Za-z0-9_-]{1,16}\\.[0-9a-fA-F]{64}$")]
    pub sig: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_bounds_are_the_documented_ones() {
        // The `#[param]` attributes need literals; keep them in step with the constants.
        let doc = serde_json::to_value(PageQuery::into_params(|| None)).unwrap();
        let limit = &doc[0]["schema"];
        assert_eq!(limit["minimum"], MIN_LIMIT);
        assert_eq!(limit["maximum"], MAX_LIMIT);
    }
}
