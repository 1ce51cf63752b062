//! Direct uploads: `POST /upload` with JSON {filename, size, sha256, mime} registers the file
//! and answers with a URL to PUT the bytes to, so large files never pass through a JSON API.
//! On S3 the URL is presigned and the client calls `POST /upload/{file_id}/complete` after the
//! PUT; on the local store the URL is an orchestrator link (HMAC) whose PUT completes the upload
//! itself. Either way the size and content hash are checked before `FileUploaded` is emitted.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use futures::StreamExt;
use roar_common::storage::{staging_key, upload_key, StorageError};
use roar_schemas::{FileInfo, FileStatus};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::commands;
use crate::commands::files::clean_filename;
use crate::extract::{ApiPath, ApiQuery};
use crate::links::{self, LinkClaims, UploadClaims};
use crate::middleware::User;
use crate::views::{
    AuthErrors, ErrorBody, FilePath, LinkQuery, UploadCreated, UploadRequest, UploadTicket,
    Uploaded,
};
use crate::{quotas, uploads};
use crate::{ApiError, AppState};

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `POST /upload` (JSON).
pub async fn register(
    s: AppState,
    user: User,
    req: UploadRequest,
) -> Result<(StatusCode, Json<UploadCreated>), ApiError> {
    let max = s.cfg.http.max_upload_bytes;
    if req.size == 0 {
        return Err(ApiError::Unprocessable(
            "size must be at least 1 byte".into(),
        ));
    }
    if req.size > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "upload exceeds {max} bytes"
        )));
    }
    if !is_sha256(&req.sha256) {
        return Err(ApiError::Unprocessable(
            "sha256 must be 64 hex digits".into(),
        ));
    }
    let sha256 = req.sha256.to_ascii_lowercase();
    let mime = req
        .mime
        .filter(|m| {
            !m.is_empty() && m.len() <= 255 && m.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        })
        .unwrap_or_else(|| "application/octet-stream".into());
    let file_id = roar_schemas::ids::file_id(user.id(), &sha256);
    let existing = s.read.file(&file_id).await?;
    if let Some(existing) = &existing {
        if !matches!(
            existing.status,
            FileStatus::Deleted | FileStatus::PendingUpload
        ) {
            return Err(ApiError::Duplicate { file_id });
        }
    }
    // Accepted a moment ago, before the projector has shown it: still a duplicate.
    match uploads::claimed(&s, &file_id, existing.as_ref()).await? {
        uploads::Holder::Confirmed => return Err(ApiError::Duplicate { file_id }),
        uploads::Holder::Unconfirmed => return Err(uploads::in_progress()),
        uploads::Holder::None => {}
    }
    let ttl = s.cfg.http.link_ttl_seconds;
    let expires_at = roar_schemas::events::now_micros() + chrono::Duration::seconds(ttl as i64);
    let info = FileInfo {
        owner: user.id().to_string(),
        filename: clean_filename(&req.filename),
        mime,
        size: req.size as i64,
        sha256: sha256.clone(),
        storage_key: upload_key(&file_id),
    };
    // A presigned PUT can be replayed until it expires: it writes a staging key, never the
    // final one (`complete` copies what it checked).
    let presigned = s
        .storage
        .presign("PUT", &staging_key(&file_id), Duration::from_secs(ttl))
        .await
        .map_err(ApiError::internal)?;
    let storage_key = info.storage_key.clone();
    uploads::record_registration(&s, &file_id, &info).await?;
    let admission = quotas::admit(
        &s,
        user.id(),
        quotas::Kind::Registration,
        &file_id,
        req.size,
        roar_schemas::events::now_micros(),
    )
    .await?;
    let actor = commands::user_actor(user.id());
    let token = match commands::files::registered(&s, actor, &file_id, info, expires_at).await {
        Ok(t) => t,
        Err(e) => {
            admission.release(&s).await;
            return Err(e);
        }
    };
    let base = s.cfg.http.public_url.trim_end_matches('/');
    let (upload_url, complete_url) = match presigned {
        Some(url) => (
            url.to_string(),
            Some(format!("{base}/upload/{file_id}/complete")),
        ),
        None => {
            let claims = LinkClaims {
                m: "PUT".into(),
                k: storage_key,
                e: expires_at.timestamp(),
                up: Some(UploadClaims {
                    file_id: file_id.clone(),
                    size: req.size,
                    sha256: sha256.clone(),
                }),
            };
            let query = links::sign_current(&s, &claims)?;
            (format!("{base}/upload/{file_id}?{query}"), None)
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(UploadCreated::Ticket(UploadTicket {
            file_id,
            status: FileStatus::PendingUpload,
            upload_url,
            method: "PUT".into(),
            expires_at,
            complete_url,
            consistency_token: token,
        })),
    ))
}

/// `PUT /upload/{file_id}?t=&sig=`: the local store's signed upload link.
#[utoipa::path(put, path = "/upload/{file_id}", tag = "files", security(()),
    params(FilePath, LinkQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "exactly the registered bytes"),
    responses(
        (status = 201, description = "stored and checked; FileUploaded emitted", body = Uploaded),
        (status = 400, description = "a parameter missing or unknown, or the upload was interrupted", body = ErrorBody),
        (status = 403, description = "invalid or expired link, or a link for another file", body = ErrorBody),
        (status = 409, description = "already uploaded (`duplicate`), or an upload of it is still being accepted (`upload_in_progress`: try again in a few seconds)", body = ErrorBody),
        (status = 413, description = "more bytes than registered", body = ErrorBody),
        (status = 422, description = "fewer bytes than registered, or another sha256", body = ErrorBody),
        (status = 503, description = "the read model or the object store is unavailable", body = ErrorBody),
    ))]
pub async fn put_signed(
    State(s): State<AppState>,
    ApiPath(FilePath { file_id }): ApiPath<FilePath>,
    ApiQuery(q): ApiQuery<LinkQuery>,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let claims = links::verify_current(&s, &q.t, &q.sig, "PUT")?;
    let up = claims
        .up
        .filter(|u| u.file_id == file_id)
        .ok_or_else(|| ApiError::Forbidden("invalid or expired link".into()))?;
    // The owner, name and type come from the registration (the link does not carry them).
    let registered = uploads::registration(&s, &file_id)
        .await?
        .filter(|r| r.size == up.size as i64 && r.sha256 == up.sha256)
        .ok_or_else(|| ApiError::Forbidden("invalid or expired link".into()))?;
    let existing = s.read.file(&file_id).await?;
    if let Some(f) = &existing {
        if !matches!(f.status, FileStatus::Deleted | FileStatus::PendingUpload) {
            return Err(ApiError::Duplicate { file_id });
        }
    }
    let tmp = format!("uploads/tmp/{}", uuid::Uuid::new_v4());
    let mut writer = s.storage.writer(&tmp).map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    let copied: Result<(), ApiError> = async {
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > up.size {
                return Err(ApiError::PayloadTooLarge(format!(
                    "more than the {} bytes registered",
                    up.size
                )));
            }
            hasher.update(&chunk);
            writer.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        if size != up.size {
            return Err(ApiError::Unprocessable(format!(
                "got {size} bytes, {} registered",
                up.size
            )));
        }
        if hex::encode(hasher.finalize_reset()) != up.sha256 {
            return Err(ApiError::Unprocessable(
                "content does not match the registered sha256".into(),
            ));
        }
        writer.shutdown().await.map_err(ApiError::internal)
    }
    .await;
    if let Err(e) = copied {
        let _ = writer.abort().await;
        let _ = s.storage.delete(&tmp).await;
        return Err(e);
    }
    // One of two concurrent uploads of the content wins; so does the first of two in a row,
    // however far behind the read model is.
    let claim = match uploads::claim(&s, &file_id, existing.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            let _ = s.storage.delete(&tmp).await;
            return Err(e);
        }
    };
    if let Err(e) = s.storage.rename(&tmp, &claims.k).await {
        claim.release(&s).await;
        return Err(ApiError::internal(e));
    }
    let owner = registered.owner;
    let info = FileInfo {
        owner: owner.clone(),
        filename: registered.filename,
        mime: registered.mime,
        size: up.size as i64,
        sha256: up.sha256,
        storage_key: claims.k,
    };
    let (size, sha256) = (up.size, info.sha256.clone());
    let token =
        commands::files::uploaded(&s, claim, commands::user_actor(&owner), &file_id, info).await?;
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            file_id,
            status: FileStatus::Uploaded,
            size,
            sha256,
            consistency_token: token,
        }),
    ))
}

/// `POST /upload/{file_id}/complete`: after a PUT to a presigned URL, checks what arrived.
#[utoipa::path(post, path = "/upload/{file_id}/complete", tag = "files",
    params(FilePath),
    responses(
        (status = 200, description = "checked; FileUploaded emitted", body = Uploaded),
        (status = 404, description = "no such file of the caller's", body = ErrorBody),
        (status = 409, description = "nothing uploaded yet (`upload_missing`), the file is not waiting for an upload (`not_pending`), or another upload of the content is still being accepted (`upload_in_progress`: try again)", body = ErrorBody),
        (status = 422, description = "size or sha256 differs from the registration; the object is removed", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn complete(
    State(s): State<AppState>,
    user: User,
    ApiPath(FilePath { file_id }): ApiPath<FilePath>,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let f = crate::routes::status::visible_file(&s, &user, &file_id).await?;
    if f.status != FileStatus::PendingUpload {
        return Err(ApiError::Conflict {
            code: "not_pending",
            message: format!("file is {}, not waiting for an upload", f.status),
        });
    }
    let missing = || ApiError::Conflict {
        code: "upload_missing",
        message: "nothing has been uploaded to the upload URL yet".into(),
    };
    let staged = staging_key(&file_id);
    let meta = s
        .storage
        .head(&staged)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(missing)?;
    let mismatch = |m: String| async {
        let _ = s.storage.delete(&staged).await;
        ApiError::Unprocessable(m)
    };
    if meta.size as i64 != f.size {
        return Err(mismatch(format!("got {} bytes, {} registered", meta.size, f.size)).await);
    }
    // Copy through a key no link can write, hashing exactly the bytes copied: a PUT racing
    // this check cannot swap what lands under the final key.
    let mut stream = match s.storage.get_stream(&staged).await {
        Ok(st) => st,
        Err(StorageError::NotFound(_)) => return Err(missing()),
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    let tmp = format!("uploads/tmp/{}", uuid::Uuid::new_v4());
    let mut writer = s.storage.writer(&tmp).map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size = 0i64;
    let copied: Result<(), ApiError> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::Unavailable(e.to_string()))?;
            size += chunk.len() as i64;
            if size > f.size {
                break;
            }
            hasher.update(&chunk);
            writer.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        Ok(())
    }
    .await;
    let same = size == f.size && hex::encode(hasher.finalize()) == f.sha256;
    if copied.is_err() || !same {
        let _ = writer.abort().await;
        let _ = s.storage.delete(&tmp).await;
        copied?;
        return Err(mismatch("content does not match the registered size and sha256".into()).await);
    }
    writer.shutdown().await.map_err(ApiError::internal)?;
    s.storage
        .rename(&tmp, &f.storage_key)
        .await
        .map_err(ApiError::internal)?;
    if let Err(e) = s.storage.delete(&staged).await {
        tracing::warn!(%file_id, error = %e, "staging object not deleted; it is left behind");
    }
    let info = FileInfo {
        owner: f.owner.clone(),
        filename: f.filename.clone(),
        mime: f.mime.clone(),
        size: f.size,
        sha256: f.sha256.clone(),
        storage_key: f.storage_key.clone(),
    };
    let claim = uploads::claim(&s, &file_id, Some(&f)).await?;
    let token =
        commands::files::uploaded(&s, claim, commands::user_actor(user.id()), &file_id, info)
            .await?;
    Ok((
        StatusCode::OK,
        Json(Uploaded {
            file_id,
            status: FileStatus::Uploaded,
            size: f.size.max(0) as u64,
            sha256: f.sha256,
            consistency_token: token,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_sha256_form_is_what_register_accepts() {
        let pattern = crate::views::schema::pattern_of(&crate::views::schema::sha256_any_case());
        let hex = "0123456789abcdef".repeat(4);
        for s in [
            hex.clone(),
            hex.to_uppercase(),
            hex[1..].to_string(),
            format!("{hex}0"),
            format!("{}g", &hex[1..]),
            String::new(),
        ] {
            assert_eq!(pattern.is_match(&s), is_sha256(&s), "{s}");
        }
    }
}
