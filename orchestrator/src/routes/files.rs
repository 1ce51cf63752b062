//! `GET /files/{name}?t=&sig=`: serves an object of the local store to whoever holds a signed
//! link (the link is the credential, as a presigned S3 URL would be).

use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::extract::{ApiPath, ApiQuery};
use crate::links;
use crate::views::{ErrorBody, LinkQuery};
use crate::{ApiError, AppState};

fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next().unwrap_or_default() {
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "mp3" => "audio/mpeg",
        "mid" | "midi" => "audio/midi",
        "csv" => "text/csv",
        _ => "application/octet-stream",
    }
}

#[utoipa::path(get, path = "/files/{name}", tag = "files", security(()),
    params(("name" = String, Path, description = "the file name (cosmetic: the link names the object)"), LinkQuery),
    responses(
        (status = 200, description = "the object, with the content type its extension implies (`application/octet-stream` when unknown)", content_type = "*/*"),
        (status = 400, description = "a parameter missing or unknown", body = ErrorBody),
        (status = 403, description = "invalid or expired link", body = ErrorBody),
        (status = 404, description = "the object is gone", body = ErrorBody),
        (status = 503, description = "the object store is unavailable", body = ErrorBody),
    ))]
pub async fn download(
    State(s): State<AppState>,
    ApiPath(_name): ApiPath<String>,
    ApiQuery(q): ApiQuery<LinkQuery>,
) -> Result<Response, ApiError> {
    let claims = links::verify_current(&s, &q.t, &q.sig, "GET")?;
    let bytes = match s.storage.get(&claims.k).await {
        Ok(b) => b,
        Err(roar_common::storage::StorageError::NotFound(_)) => return Err(ApiError::NotFound),
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    let name: String = claims
        .k
        .rsplit('/')
        .next()
        .unwrap_or("download")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    Ok((
        [
            (CONTENT_TYPE, content_type(&claims.k).to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
