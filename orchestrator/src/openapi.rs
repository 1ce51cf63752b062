//! The OpenAPI 3 description of the API, generated from the handlers' annotations and the
//! types below (which document the JSON the handlers build). `schemas/openapi/orchestrator.yaml`
//! is this, checked in; a test fails when it is stale (`ROAR_UPDATE_OPENAPI=1` rewrites it,
//! and the test fails all the same until a run finds nothing to rewrite).

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: a message, a stable code, and the request id to quote in a report.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// e.g. `bad_request`, `unauthorized`, `not_found`, `duplicate`, `file_not_ready`,
    /// `job_finished`, `unprocessable`, `too_large`, `rate_limited`, `unavailable`.
    pub code: String,
    pub request_id: String,
    /// On `duplicate` (409): the existing file.
    pub file_id: Option<String>,
}

/// `POST /process`: one model on one file, or `models` for several; a JSON list of these
/// is accepted too (at most 20 jobs per request).
#[derive(Serialize, ToSchema)]
pub struct ProcessRequest {
    pub file_id: String,
    /// demucs | whisper | musicgen | pitch | gemma3n (see `GET /models`).
    pub model: Option<String>,
    /// Model names, or `{model, variation?, params?}` objects.
    pub models: Option<Vec<serde_json::Value>>,
    pub variation: Option<String>,
    pub params: Option<serde_json::Value>,
}

/// A job as `/process`, `/status` and the admin view show it.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    pub job_id: String,
    pub file_id: String,
    pub model: String,
    pub variation: String,
    pub model_version: String,
    pub params: serde_json::Value,
    /// queued | running | completed | failed | canceled; `/process` also answers `skipped`.
    pub status: String,
    pub attempt: i32,
    pub progress: Option<f32>,
    pub error: Option<serde_json::Value>,
    /// `{path, kind, content_type, size, sha256, url}`; `url` downloads it until it expires.
    pub outputs: Vec<serde_json::Value>,
    /// Pass to `GET /status/{file_id}?after=` to read your own write.
    pub consistency_token: Option<String>,
}

/// A file and its probe results.
#[derive(Serialize, ToSchema)]
pub struct FileView {
    pub file_id: String,
    pub filename: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    /// pending_upload | uploaded | ready | failed | deleted
    pub status: String,
    pub error: Option<serde_json::Value>,
    /// codec, duration_seconds, sample_rate, channels, frames, peak_dbfs, rms_dbfs
    pub metadata: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub file: FileView,
    pub jobs: Vec<JobView>,
    /// Only with `?after=`: false when the wait ran out before the token was applied.
    pub consistent: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct SongsPage {
    pub songs: Vec<FileView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `POST /upload` (JSON): announce a direct upload.
#[derive(Serialize, ToSchema)]
pub struct UploadRequest {
    pub filename: String,
    pub size: u64,
    /// Hex SHA-256 of the content; checked when the upload arrives.
    pub sha256: String,
    pub mime: Option<String>,
}

/// Where to PUT the bytes, until when, and (S3) what to call afterwards.
#[derive(Serialize, ToSchema)]
pub struct UploadTicket {
    pub file_id: String,
    pub status: String,
    pub upload_url: String,
    pub method: String,
    pub expires_at: String,
    pub complete_url: Option<String>,
    pub consistency_token: String,
}

/// `POST /notify`: a job event from a worker outside the cluster.
#[derive(Serialize, ToSchema)]
pub struct NotifyRequest {
    pub job_id: String,
    pub file_id: Option<String>,
    pub model: Option<String>,
    /// started | progress | completed | failed | canceled
    pub status: String,
    pub worker: Option<String>,
    pub attempt: Option<i32>,
    pub progress: Option<f32>,
    pub message: Option<String>,
    /// `{path, kind, content_type, size, sha256}`, paths under `outputs/{file_id}/`.
    pub outputs: Option<Vec<serde_json::Value>>,
    pub duration_seconds: Option<f64>,
    /// `{code, message, retryable}` for `failed`.
    pub error: Option<serde_json::Value>,
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "roar orchestrator", description = "The Lion's Roar Studio API: uploads, process requests, status, SSE, admin. Every error body is ErrorBody; every response carries X-Request-ID."),
    modifiers(&Bearer),
    security(("bearer" = [])),
    paths(
        crate::routes::upload::upload,
        crate::routes::presign::put_signed,
        crate::routes::presign::complete,
        crate::routes::process::process,
        crate::routes::status::status,
        crate::routes::events::events,
        crate::routes::catalog::songs,
        crate::routes::catalog::models,
        crate::routes::admin::cancel,
        crate::routes::admin::retry,
        crate::routes::admin::admin_cancel,
        crate::routes::admin::list,
        crate::routes::notify::notify,
        crate::routes::files::download,
        crate::routes::health::health,
        crate::routes::health::ready,
        crate::routes::health::metrics,
    ),
    components(schemas(ErrorBody, ProcessRequest, JobView, FileView, StatusView, SongsPage, UploadRequest, UploadTicket, NotifyRequest))
)]
pub struct ApiDoc;

/// The OpenAPI document as YAML.
pub fn yaml() -> String {
    ApiDoc::openapi()
        .to_yaml()
        .expect("the OpenAPI document serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/openapi/orchestrator.yaml"
    );

    /// Compares `now` with the file at `path`. Updating rewrites a file that differs and
    /// reports it as an error all the same, so only a run with nothing to rewrite passes.
    fn current_or_update(path: &str, now: &str, update: bool) -> Result<(), String> {
        if std::fs::read_to_string(path).ok().as_deref() == Some(now) {
            return Ok(());
        }
        if !update {
            return Err(format!(
                "{path} is stale; regenerate it with \
                 ROAR_UPDATE_OPENAPI=1 cargo nextest run -p roar-orchestrator openapi"
            ));
        }
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap())
            .and_then(|()| std::fs::write(path, now))
            .map_err(|e| format!("{path}: {e}"))?;
        Err(format!(
            "{path} rewritten by ROAR_UPDATE_OPENAPI; review and commit it"
        ))
    }

    #[test]
    fn the_checked_in_openapi_document_is_current() {
        let update = std::env::var_os("ROAR_UPDATE_OPENAPI").is_some();
        if let Err(e) = current_or_update(CHECKED_IN, &yaml(), update) {
            panic!("{e}");
        }
    }

    #[test]
    fn updating_rewrites_a_stale_document_and_still_fails() {
        let dir = std::env::temp_dir().join(format!("roar-openapi-{}", std::process::id()));
        let path = dir.join("api.yaml");
        let path = path.to_str().unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(path, "old").unwrap();
        assert!(current_or_update(path, "new", false).is_err());
        let e = current_or_update(path, "new", true).unwrap_err();
        assert!(e.contains("rewritten"), "{e}");
        assert_eq!(std::fs::read_to_string(path).unwrap(), "new");
        assert_eq!(current_or_update(path, "new", false), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_route_is_documented() {
        let doc = ApiDoc::openapi();
        for path in [
            "/upload",
            "/upload/{file_id}",
            "/upload/{file_id}/complete",
            "/process",
            "/status/{file_id}",
            "/status/{file_id}/events",
            "/songs",
            "/models",
            "/jobs/{job_id}/cancel",
            "/admin/jobs",
            "/admin/jobs/{job_id}/retry",
            "/admin/jobs/{job_id}/cancel",
            "/notify",
            "/files/{name}",
            "/health",
            "/ready",
            "/metrics",
        ] {
            assert!(
                doc.paths.paths.contains_key(path),
                "{path} is not documented"
            );
        }
        assert!(yaml().starts_with("openapi: 3."));
    }
}
