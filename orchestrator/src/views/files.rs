//! Files: what `/status`, `/songs` and the upload routes show and take.

use chrono::{DateTime, Utc};
use roar_projections::apply::FileRow;
use roar_schemas::FileStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::generate::GenerationView;
use super::schema as s;

/// A file and its probe results.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    pub filename: String,
    pub mime: String,
    pub size: i64,
    #[schema(schema_with = s::file_sha256)]
    pub sha256: String,
    #[schema(schema_with = s::file_status)]
    pub status: FileStatus,
    /// Why it failed (status `failed`): the probe could not decode it, or its generation ended
    /// without it (`generation_failed`, `generation_canceled`).
    pub error: Option<FileError>,
    /// What the probe found (status `ready`).
    pub metadata: Option<ProbeView>,
    /// A generated song's prompt and job (`POST /generate`); null for uploads.
    pub generation: Option<GenerationView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileError {
    pub code: String,
    pub message: Option<String>,
}

/// The probe's summary of the decoded audio. Levels of digital silence are `null` (−∞ dBFS).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProbeView {
    /// Where the full probe report is stored.
    pub metadata_key: String,
    pub codec: String,
    pub duration_seconds: f64,
    pub sample_rate: i32,
    pub channels: i32,
    pub frames: i64,
    pub peak_dbfs: Option<f64>,
    pub rms_dbfs: Option<f64>,
}

impl From<&FileRow> for FileView {
    fn from(f: &FileRow) -> Self {
        FileView {
            file_id: f.file_id.clone(),
            filename: f.filename.clone(),
            mime: f.mime.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
            status: f.status,
            error: f.error_code.as_ref().map(|code| FileError {
                code: code.clone(),
                message: f.error_message.clone(),
            }),
            metadata: f.probe.as_ref().and_then(|p| {
                // The projection writes what the probe sent; anything else is a bug to log, not
                // a reason to fail the read.
                serde_json::from_value(p.clone())
                    .map_err(|e| tracing::warn!(file_id = %f.file_id, error = %e, "unreadable probe summary"))
                    .ok()
            }),
            generation: f.generation.as_ref().and_then(|g| {
                serde_json::from_value(g.clone())
                    .map_err(|e| tracing::warn!(file_id = %f.file_id, error = %e, "unreadable generation"))
                    .ok()
            }),
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

/// `GET /songs`: a page of the caller's files, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SongsPage {
    pub songs: Vec<FileView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `POST /upload` with a JSON body: announce a direct upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// Only the last path segment is kept, without control characters, at most 255 characters.
    pub filename: String,
    /// Bytes; at most `http.max_upload_bytes` (413 above).
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "super::numbers::integer")]
    pub size: u64,
    /// Hex SHA-256 of the content (either case); checked when the upload arrives.
    #[schema(schema_with = s::sha256_any_case)]
    pub sha256: String,
    /// Kept when it is 1–255 printable ASCII characters; `application/octet-stream` otherwise.
    pub mime: Option<String>,
}

/// `POST /upload` with a `multipart/form-data` body: small files in the request itself.
/// One part, `file`: the handler refuses any other (400), so a part name it could not read
/// (multipart headers allow no control characters) is never a valid body.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only its OpenAPI description is used: the handler streams the part
pub struct MultipartUpload {
    /// The content (its part's filename and content type are kept).
    #[schema(value_type = String, format = Binary, min_length = 1)]
    pub file: Vec<u8>,
}

/// Where to PUT the bytes, until when, and (S3) what to call afterwards.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadTicket {
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    /// `pending_upload`.
    #[schema(schema_with = pending_upload)]
    pub status: FileStatus,
    pub upload_url: String,
    /// Always `PUT`.
    #[schema(schema_with = put)]
    pub method: String,
    pub expires_at: DateTime<Utc>,
    /// S3 only: `POST` here after the PUT. On the local store the PUT completes the upload.
    pub complete_url: Option<String>,
    pub consistency_token: String,
}

fn pending_upload() -> utoipa::openapi::schema::Object {
    s::one_word(FileStatus::PendingUpload.as_str())
}

fn put() -> utoipa::openapi::schema::Object {
    s::one_word("PUT")
}

fn uploaded() -> utoipa::openapi::schema::Object {
    s::one_word(FileStatus::Uploaded.as_str())
}

/// The content is stored and checked; `FileUploaded` was emitted and the probe will decode it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    #[schema(schema_with = s::file_id)]
    pub file_id: String,
    /// `uploaded`.
    #[schema(schema_with = uploaded)]
    pub status: FileStatus,
    pub size: u64,
    #[schema(schema_with = s::sha256_hex)]
    pub sha256: String,
    pub consistency_token: String,
}

/// `POST /upload` answers a ticket (JSON body) or the uploaded file (multipart body).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum UploadCreated {
    Ticket(UploadTicket),
    Uploaded(Uploaded),
}
