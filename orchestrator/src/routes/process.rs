//! `POST /process`: one job, several models on one file, or a list of requests. Everything is
//! validated before anything is emitted, so a bad entry rejects the whole request.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use roar_common::catalog::{self, Resolved};
use roar_projections::apply::FileRow;
use roar_schemas::FileStatus;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::ApiJson;
use crate::jobs;
use crate::middleware::User;
use crate::routes::status::visible_file;
use crate::{ApiError, AppState};

/// Most jobs one request may ask for.
pub const MAX_JOBS_PER_REQUEST: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessRequest {
    file_id: String,
    model: Option<String>,
    models: Option<Vec<ModelChoice>>,
    variation: Option<String>,
    params: Option<Value>,
}

/// An entry of `models`: a name (defaults for the rest) or a full choice.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ModelChoice {
    Name(String),
    Full {
        model: String,
        variation: Option<String>,
        params: Option<Value>,
    },
}

fn parse_one(v: Value, at: Option<usize>) -> Result<Vec<(String, Resolved)>, ApiError> {
    let here = at.map(|i| format!("request {i}: ")).unwrap_or_default();
    let req: ProcessRequest =
        serde_json::from_value(v).map_err(|e| ApiError::Unprocessable(format!("{here}{e}")))?;
    let bad = |m: String| ApiError::Unprocessable(format!("{here}{m}"));
    let choices: Vec<(String, Option<String>, Option<Value>)> = match (req.model, req.models) {
        (Some(m), None) => vec![(m, req.variation, req.params)],
        (None, Some(list)) => {
            if req.variation.is_some() || req.params.is_some() {
                return Err(bad(
                    "with `models`, give variation and params per model: {\"model\":..,\"variation\":..,\"params\":..}".into(),
                ));
            }
            if list.is_empty() {
                return Err(bad("`models` is empty".into()));
            }
            list.into_iter()
                .map(|c| match c {
                    ModelChoice::Name(m) => (m, None, None),
                    ModelChoice::Full {
                        model,
                        variation,
                        params,
                    } => (model, variation, params),
                })
                .collect()
        }
        (Some(_), Some(_)) => return Err(bad("give either `model` or `models`, not both".into())),
        (None, None) => return Err(bad("missing field `model`".into())),
    };
    choices
        .into_iter()
        .map(|(model, variation, params)| {
            catalog::resolve(&model, variation.as_deref(), params.as_ref())
                .map(|r| (req.file_id.clone(), r))
                .map_err(|e| bad(e.to_string()))
        })
        .collect()
}

/// Parses any accepted body shape into (file_id, resolved request) pairs.
fn parse(body: Value) -> Result<Vec<(String, Resolved)>, ApiError> {
    let all =
        match body {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(ApiError::Unprocessable("the request list is empty".into()));
                }
                let mut all = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    all.extend(parse_one(item, Some(i))?);
                }
                all
            }
            obj @ Value::Object(_) => parse_one(obj, None)?,
            _ => return Err(ApiError::Unprocessable(
                "expected a JSON object {file_id, model, variation?, params?} or a list of them"
                    .into(),
            )),
        };
    if all.len() > MAX_JOBS_PER_REQUEST {
        return Err(ApiError::Unprocessable(format!(
            "at most {MAX_JOBS_PER_REQUEST} jobs per request"
        )));
    }
    Ok(all)
}

/// The file must be processable: decoded by the probe.
fn check_ready(f: &FileRow) -> Result<(), ApiError> {
    match f.status {
        FileStatus::Ready => Ok(()),
        FileStatus::Failed => Err(ApiError::Unprocessable(format!(
            "file {} could not be decoded ({}); upload a valid audio file",
            f.file_id,
            f.error_message.as_deref().unwrap_or("unknown error")
        ))),
        other => Err(ApiError::Conflict {
            code: "file_not_ready",
            message: format!(
                "file {} is {other}, not ready yet; retry when /status shows it ready",
                f.file_id
            ),
        }),
    }
}

/// `POST /process`.
#[utoipa::path(post, path = "/process", tag = "jobs",
    request_body = crate::openapi::ProcessRequest,
    responses(
        (status = 202, description = "a job (or a new attempt) was requested; with `models` or a list: {jobs: [...]}", body = crate::openapi::JobView),
        (status = 200, description = "nothing new: the job is queued or running already, or `skipped` (completed, with outputs)", body = crate::openapi::JobView),
        (status = 400, description = "malformed JSON", body = crate::openapi::ErrorBody),
        (status = 404, description = "no such file of the caller's", body = crate::openapi::ErrorBody),
        (status = 409, description = "the file is not ready yet (`file_not_ready`)", body = crate::openapi::ErrorBody),
        (status = 413, description = "body larger than http.max_body_bytes", body = crate::openapi::ErrorBody),
        (status = 415, description = "not JSON", body = crate::openapi::ErrorBody),
        (status = 422, description = "unknown model, variation or params (the message lists what is valid), or the file failed to decode", body = crate::openapi::ErrorBody),
    ))]
pub async fn process(
    State(s): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let single = !body.is_array() && body.get("models").is_none();
    let wanted = parse(body)?;
    let mut files: HashMap<String, FileRow> = HashMap::new();
    for (file_id, _) in &wanted {
        if !files.contains_key(file_id) {
            let f = visible_file(&s, &user, file_id).await?;
            check_ready(&f)?;
            files.insert(file_id.clone(), f);
        }
    }
    let mut results = Vec::with_capacity(wanted.len());
    let mut emitted = false;
    for (file_id, r) in &wanted {
        let out = jobs::request(&s, &user, &files[file_id], r).await?;
        emitted |= out.emitted;
        results.push(out.body);
    }
    let code = if emitted {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if single {
        let one = results.pop().unwrap_or(Value::Null);
        return Ok((code, Json(one)));
    }
    Ok((code, Json(json!({ "jobs": results }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_shape_parses_and_mistakes_say_what_is_valid() {
        let f = "f0123456789abcdef0123456789abcdef";
        let one = parse(json!({"file_id": f, "model": "pitch"})).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].1.variation, "tiny");
        let many = parse(json!({"file_id": f, "models": ["pitch", {"model": "demucs", "variation": "htdemucs_6s"}]})).unwrap();
        assert_eq!(many[1].1.variation, "htdemucs_6s");
        let list =
            parse(json!([{"file_id": f, "model": "pitch"}, {"file_id": f, "model": "whisper"}]))
                .unwrap();
        assert_eq!(list.len(), 2);

        let e = parse(json!({"file_id": f, "model": "karaoke"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("demucs"), "{e}");
        let e = parse(json!([{"file_id": f, "model": "pitch"}, {"file_id": f, "model": "pitch", "variation": "x"}]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("request 1:") && e.contains("tiny, full"),
            "{e}"
        );
        assert!(parse(json!({"file_id": f})).is_err());
        assert!(parse(json!({"file_id": 5, "model": "pitch"})).is_err());
        assert!(parse(json!({"file_id": f, "model": "pitch", "extra": 1})).is_err());
        assert!(parse(json!({"file_id": f, "models": []})).is_err());
        assert!(parse(json!("pitch")).is_err());
        let too_many: Vec<Value> = (0..21)
            .map(|_| json!({"file_id": f, "model": "pitch"}))
            .collect();
        assert!(parse(Value::Array(too_many)).is_err());
    }
}
