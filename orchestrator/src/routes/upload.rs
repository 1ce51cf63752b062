use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::Json;
use roar_schemas::{FileInfo, FileStatus};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use roar_common::storage::upload_key;

use crate::commands;
use crate::commands::files::clean_filename;
use crate::middleware::User;
use crate::views::{
    AuthErrors, ErrorBody, MultipartUpload, UploadCreated, UploadRequest, Uploaded,
};
use crate::{quotas, uploads};
use crate::{ApiError, AppState};

/// `POST /upload`: JSON registers a direct upload (see `presign`); multipart carries the bytes.
#[utoipa::path(post, path = "/upload", tag = "files",
    request_body(description = "JSON registers a direct upload; multipart/form-data with a `file` part uploads a small file in the request",
        content(
            (UploadRequest = "application/json"),
            (MultipartUpload = "multipart/form-data"),
        )),
    responses(
        (status = 201, description = "JSON: where to PUT the bytes (`UploadTicket`); multipart: the file, uploaded (`Uploaded`)", body = UploadCreated),
        (status = 400, description = "malformed JSON or multipart body, no `file` part, a part other than `file`, or an empty file", body = ErrorBody),
        (status = 409, description = "the caller already uploaded this content (`duplicate`): `file_id` names it; or an upload of it is still being accepted (`upload_in_progress`: try again in a few seconds)", body = ErrorBody),
        (status = 413, description = "larger than `http.max_upload_bytes` (a JSON body: larger than `http.max_body_bytes`), or it would take the caller past `quota.stored_bytes` (`storage_quota`)", body = ErrorBody),
        (status = 415, description = "neither JSON nor multipart/form-data", body = ErrorBody),
        (status = 422, description = "JSON of another shape: a missing or unknown field, a size of 0, a sha256 that is not 64 hex digits", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn upload(
    State(s): State<AppState>,
    user: User,
    req: Request,
) -> Result<(StatusCode, Json<UploadCreated>), ApiError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ct.starts_with("application/json") {
        // This route allows upload-sized bodies; a JSON body gets the JSON limit.
        let bytes = axum::body::to_bytes(req.into_body(), s.cfg.http.max_body_bytes)
            .await
            .map_err(|_| ApiError::PayloadTooLarge("request body too large".into()))?;
        let body: UploadRequest =
            serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
                serde_json::error::Category::Data => ApiError::Unprocessable(e.to_string()),
                _ => ApiError::BadRequest(format!("malformed JSON: {e}")),
            })?;
        return crate::routes::presign::register(s, user, body).await;
    }
    if !ct.starts_with("multipart/form-data") {
        return Err(ApiError::UnsupportedMediaType(
            "expected application/json (direct upload) or multipart/form-data".into(),
        ));
    }
    let mp = Multipart::from_request(req, &s)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    multipart_upload(s, user, mp).await
}

fn unexpected_part(name: Option<&str>) -> ApiError {
    ApiError::BadRequest(format!(
        "multipart body has a part {:?}; send one part, `file`",
        name.unwrap_or("")
    ))
}

/// The multipart upload (one part, `file`): stores the bytes, then emits `FileUploaded`.
async fn multipart_upload(
    s: AppState,
    user: User,
    mut mp: Multipart,
) -> Result<(StatusCode, Json<UploadCreated>), ApiError> {
    let max = s.cfg.http.max_upload_bytes;
    // A user at the storage quota is refused before the bytes are read.
    quotas::check_storage(&s, user.id()).await?;
    let field = match mp
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
    {
        Some(f) if f.name() == Some("file") => f,
        Some(f) => return Err(unexpected_part(f.name())),
        None => {
            return Err(ApiError::BadRequest(
                "multipart body has no `file` field".into(),
            ))
        }
    };
    let filename = clean_filename(field.file_name().unwrap_or("upload"));
    let mime = field
        .content_type()
        .unwrap_or("application/octet-stream")
        .to_string();

    let tmp_key = format!("uploads/tmp/{}", uuid::Uuid::new_v4());
    let mut writer = s.storage.writer(&tmp_key).map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut field = field;
    let copied: Result<(), ApiError> = async {
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| ApiError::BadRequest(format!("upload interrupted: {e}")))?
        {
            size += chunk.len() as u64;
            if size > max {
                return Err(ApiError::PayloadTooLarge(format!(
                    "upload exceeds {max} bytes"
                )));
            }
            hasher.update(&chunk);
            writer.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        writer.shutdown().await.map_err(ApiError::internal)
    }
    .await;
    if let Err(e) = copied {
        let _ = writer.abort().await;
        let _ = s.storage.delete(&tmp_key).await;
        return Err(e);
    }
    drop(field);
    // The body ends with the file: a later part is as much a mistake as an earlier one. (The
    // writer is shut down by now; only the stored object is left to remove.)
    let rest = match mp.next_field().await {
        Ok(None) => Ok(()),
        Ok(Some(f)) => Err(unexpected_part(f.name())),
        Err(e) => Err(ApiError::BadRequest(format!(
            "malformed multipart body: {e}"
        ))),
    };
    if let Err(e) = rest {
        let _ = s.storage.delete(&tmp_key).await;
        return Err(e);
    }
    if size == 0 {
        let _ = s.storage.delete(&tmp_key).await;
        return Err(ApiError::BadRequest("the uploaded file is empty".into()));
    }
    let sha256 = hex::encode(hasher.finalize());
    let file_id = roar_schemas::ids::file_id(user.id(), &sha256);

    let existing = s.read.file(&file_id).await?;
    if existing
        .as_ref()
        .is_some_and(|f| f.status != FileStatus::Deleted)
    {
        let _ = s.storage.delete(&tmp_key).await;
        return Err(ApiError::Duplicate { file_id });
    }
    // The read model lags the topic: the claim answers for uploads it does not show yet (and
    // lets one of two concurrent uploads of the content win).
    let admission = match quotas::admit(
        &s,
        user.id(),
        quotas::Kind::Upload,
        &file_id,
        size,
        roar_schemas::events::now_micros(),
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            let _ = s.storage.delete(&tmp_key).await;
            return Err(e);
        }
    };
    let claim = match uploads::claim(&s, &file_id, existing.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            admission.release(&s).await;
            let _ = s.storage.delete(&tmp_key).await;
            return Err(e);
        }
    };
    let key = upload_key(&file_id);
    if let Err(e) = s.storage.rename(&tmp_key, &key).await {
        claim.release(&s).await;
        admission.release(&s).await;
        return Err(ApiError::internal(e));
    }

    let info = FileInfo {
        owner: user.id().to_string(),
        filename,
        mime,
        size: size as i64,
        sha256: sha256.clone(),
        storage_key: key,
    };
    let actor = commands::user_actor(user.id());
    let token = match commands::files::uploaded(&s, claim, actor, &file_id, info).await {
        Ok(t) => t,
        Err(e) => {
            admission.release(&s).await;
            return Err(e);
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(UploadCreated::Uploaded(Uploaded {
            file_id,
            status: FileStatus::Uploaded,
            size,
            sha256,
            consistency_token: token,
        })),
    ))
}
