//! `GET /files/{name}?t=&sig=`: serves an object of the local store (of S3 too, while the
//! download limit is on: see `links::download_url`) to whoever holds a signed
//! link (the link is the credential, as a presigned S3 URL would be), streamed (memory stays
//! bounded whatever the object's size), whole or one byte range (`Range`, 206/416), as S3
//! serves its presigned URLs.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use roar_common::storage::StorageError;

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

/// Whose bandwidth a download of `key` takes: the owner of the file it lies under. A key under
/// no known file (or a read model that cannot answer) shares one anonymous bucket, so it is
/// limited all the same.
async fn owner_of(s: &AppState, key: &str) -> String {
    let Some(file_id) = crate::throttle::file_of_key(key) else {
        return String::new();
    };
    match s.read.file(file_id).await {
        Ok(Some(f)) => f.owner,
        Ok(None) => String::new(),
        Err(e) => {
            tracing::warn!(file_id, error = %e, "download owner unknown; paced as anonymous");
            String::new()
        }
    }
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// One satisfiable range (end exclusive, never past the object).
    Part(std::ops::Range<u64>),
    /// The whole object: no header, or one a server may ignore (malformed, several ranges,
    /// another unit), as HTTP allows.
    Whole,
    /// A range that starts at or beyond the end (416).
    Outside,
}

/// Parses a `Range` header value against an object of `size` bytes (one `bytes=` range).
pub(crate) fn range_ask(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(h) = header else {
        return RangeAsk::Whole;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let number = |t: &str| {
        (!t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u64>().ok())
            .flatten()
    };
    match (first, last) {
        // `-n`: the last n bytes.
        ("", n) => match number(n) {
            Some(0) => RangeAsk::Outside,
            Some(_) if size == 0 => RangeAsk::Outside,
            Some(n) => RangeAsk::Part(size - n.min(size)..size),
            None => RangeAsk::Whole,
        },
        (a, "") => match number(a) {
            Some(a) if a >= size => RangeAsk::Outside,
            Some(a) => RangeAsk::Part(a..size),
            None => RangeAsk::Whole,
        },
        (a, b) => match (number(a), number(b)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= size {
                    RangeAsk::Outside
                } else {
                    RangeAsk::Part(a..b.min(size - 1) + 1)
                }
            }
            _ => RangeAsk::Whole,
        },
    }
}

#[utoipa::path(get, path = "/files/{name}", tag = "files", security(()),
    params(("name" = String, Path, description = "the file name (cosmetic: the link names the object)"), LinkQuery,
        ("Range" = Option<String>, Header, description = "one `bytes=` range (`a-b`, `a-`, `-n`); anything else is ignored and the whole object sent")),
    responses(
        (status = 200, description = "the object, streamed, with the content type its extension implies (`application/octet-stream` when unknown); `Accept-Ranges: bytes`", content_type = "*/*"),
        (status = 206, description = "the requested range of the object, with `Content-Range`", content_type = "*/*"),
        (status = 400, description = "a parameter missing or unknown", body = ErrorBody),
        (status = 403, description = "invalid or expired link", body = ErrorBody),
        (status = 404, description = "the object is gone", body = ErrorBody),
        (status = 416, description = "the range starts beyond the object's end (`range_not_satisfiable`; `Content-Range: bytes */size`)", body = ErrorBody),
        (status = 503, description = "the object store is unavailable", body = ErrorBody),
    ))]
pub async fn download(
    State(s): State<AppState>,
    ApiPath(_name): ApiPath<String>,
    ApiQuery(q): ApiQuery<LinkQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = links::verify_current(&s, &q.t, &q.sig, "GET")?;
    let unavailable = |e: StorageError| match e {
        StorageError::NotFound(_) => ApiError::NotFound,
        e => ApiError::Unavailable(e.to_string()),
    };
    let meta = s
        .storage
        .head(&claims.k)
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::NotFound)?;
    let size = meta.size;
    let wanted = range_ask(headers.get(RANGE).and_then(|v| v.to_str().ok()), size);
    let range = match wanted {
        RangeAsk::Outside => return Err(ApiError::RangeNotSatisfiable { size }),
        RangeAsk::Part(r) => Some(r),
        RangeAsk::Whole => None,
    };
    // Streamed chunk by chunk: memory stays bounded whatever the object's size. The e-tag
    // pins the object measured above.
    let stream = s
        .storage
        .get_range_stream(&claims.k, range.clone(), meta.e_tag.clone())
        .await
        .map_err(unavailable)?;
    let name: String = claims
        .k
        .rsplit('/')
        .next()
        .unwrap_or("download")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let body = match &s.downloads {
        Some(t) => Body::from_stream(t.pace(&owner_of(&s, &claims.k).await, stream)),
        None => Body::from_stream(stream),
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    let header = |v: String| HeaderValue::from_str(&v).map_err(ApiError::internal);
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(content_type(&claims.k)),
    );
    h.insert(
        CONTENT_DISPOSITION,
        header(format!("attachment; filename=\"{name}\""))?,
    );
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    match range {
        Some(r) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            h.insert(CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
            h.insert(
                CONTENT_RANGE,
                header(format!("bytes {}-{}/{size}", r.start, r.end - 1))?,
            );
        }
        None => {
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_http_says() {
        use RangeAsk::*;
        let ask = |h: &str| range_ask(Some(h), 100);
        assert_eq!(range_ask(None, 100), Whole);
        assert_eq!(ask("bytes=0-9"), Part(0..10));
        assert_eq!(ask("bytes=10-19"), Part(10..20));
        assert_eq!(ask("bytes=90-500"), Part(90..100), "clipped to the end");
        assert_eq!(ask("bytes=99-99"), Part(99..100));
        assert_eq!(ask("bytes=50-"), Part(50..100));
        assert_eq!(ask("bytes=-10"), Part(90..100));
        assert_eq!(ask("bytes=-500"), Part(0..100));
        assert_eq!(ask("bytes=100-"), Outside);
        assert_eq!(ask("bytes=100-200"), Outside);
        assert_eq!(ask("bytes=-0"), Outside);
        assert_eq!(range_ask(Some("bytes=-5"), 0), Outside);
        assert_eq!(range_ask(Some("bytes=0-"), 0), Outside);
        for ignored in [
            "bytes=9-0",
            "bytes=0-1,5-6",
            "items=0-9",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "bytes 0-9",
            "",
        ] {
            assert_eq!(ask(ignored), Whole, "{ignored:?}");
        }
    }
}
