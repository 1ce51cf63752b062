//! `POST /process`: one job, several models on one file, or a list of requests. Everything is
//! validated before anything is emitted, so a bad entry rejects the whole request.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use roar_common::catalog::{self, Resolved};
use roar_projections::apply::FileRow;
use roar_schemas::FileStatus;
use serde_json::Value;

mod chained;

use crate::commands;
use crate::extract::ApiJson;
use crate::middleware::User;
use crate::routes::status::visible_file;
use crate::views::{
    AuthErrors, ErrorBody, JsonBodyErrors, ModelChoice, ProcessBody, ProcessRequest,
    ProcessResponse, RequestedJobs, MAX_JOBS_PER_REQUEST,
};
use crate::{ApiError, AppState};

/// One request's jobs; `at` is its index in a list body (whose entries name one model each).
fn parse_one(v: Value, at: Option<usize>) -> Result<Vec<(String, Resolved)>, ApiError> {
    let here = at.map(|i| format!("request {i}: ")).unwrap_or_default();
    let bad = |m: String| ApiError::Unprocessable(format!("{here}{m}"));
    let req: ProcessRequest = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
    if req.input.as_ref().is_some_and(|v| !v.is_null()) || req.preset.is_some() {
        return Err(bad(
            "`input` goes with one `model` and `preset` stands alone, each in a single request object"
                .into(),
        ));
    }
    let choices: Vec<(String, Option<String>, Option<Value>)> = match (req.model, req.models) {
        (Some(m), None) => vec![(m, req.variation, req.params)],
        (None, Some(_)) if at.is_some() => {
            return Err(bad(
                "in a list, each request names one `model`; use `models` in a single request"
                    .into(),
            ))
        }
        (None, Some(list)) => {
            if req.variation.is_some() || req.params.is_some() {
                return Err(bad(
                    "with `models`, give variation and params per model: {\"model\":..,\"variation\":..,\"params\":..}".into(),
                ));
            }
            if list.is_empty() {
                return Err(bad("`models` is empty".into()));
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, entry) in list.into_iter().enumerate() {
                out.push(match entry {
                    Value::String(m) => (m, None, None),
                    other => {
                        let c: ModelChoice = serde_json::from_value(other)
                            .map_err(|e| bad(format!("models[{i}]: {e}")))?;
                        (c.model, c.variation, c.params)
                    }
                });
            }
            out
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

/// The file must be processable: decoded by the probe. Either refusal is about the file's
/// state, not the request's form, so both are 409 (the request may be right for another file).
pub(crate) fn check_ready(f: &FileRow) -> Result<(), ApiError> {
    match f.status {
        FileStatus::Ready => Ok(()),
        FileStatus::Failed => Err(ApiError::Conflict {
            code: "file_failed",
            message: format!(
                "file {} could not be decoded ({}); upload a valid audio file",
                f.file_id,
                f.error_message.as_deref().unwrap_or("unknown error")
            ),
        }),
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
    request_body = ProcessBody,
    responses(
        (status = 202, description = "at least one job (or a new attempt) was requested; one `model`: the job, `models` or a list: `{jobs: [...]}` in request order", body = ProcessResponse),
        (status = 200, description = "nothing new: each job is queued or running already, or `skipped` (completed, with outputs)", body = ProcessResponse),
        (status = 404, description = "no such file of the caller's", body = ErrorBody),
        (status = 409, description = "the file is not ready yet (`file_not_ready`: retry when `/status` shows it ready), or it could not be decoded (`file_failed`)", body = ErrorBody),
        JsonBodyErrors,
        (status = 422, description = "the JSON does not have the documented shape: an unknown model, variation or parameter, a value out of range (the message lists what is valid), more than 20 jobs, a musicgen value over this service's limits (`musicgen.*`)", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn process(
    State(s): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<ProcessResponse>), ApiError> {
    let given = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    if body.is_object() && given("preset") {
        return chained::preset(&s, &user, body).await;
    }
    if body.is_object() && given("input") {
        return chained::with_input(&s, &user, body).await;
    }
    let single = !body.is_array() && body.get("models").is_none_or(Value::is_null);
    let wanted = parse(body)?;
    for (_, r) in &wanted {
        if r.model == crate::views::GENERATOR {
            s.cfg
                .musicgen
                .check(&r.params)
                .map_err(ApiError::Unprocessable)?;
        }
    }
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
        let out = commands::jobs::request(&s, &user, &files[file_id], r, None).await?;
        emitted |= out.emitted;
        results.push(out.view);
    }
    let code = if emitted {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let response = if single && results.len() == 1 {
        ProcessResponse::One(results.remove(0))
    } else {
        ProcessResponse::Many(RequestedJobs { jobs: results })
    };
    Ok((code, Json(response)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn null_is_absent_and_what_the_schema_forbids_is_refused() {
        let f = "f0123456789abcdef0123456789abcdef";
        let one = parse(json!({"file_id": f, "model": "pitch", "variation": null, "params": null, "models": null}))
            .unwrap();
        assert_eq!(one[0].1.variation, "tiny");
        let many = parse(
            json!({"file_id": f, "model": null, "models": [{"model": "pitch", "variation": null}]}),
        )
        .unwrap();
        assert_eq!(many.len(), 1);
        // An unknown key in a `models` entry is a typo, not something to ignore.
        let e = parse(json!({"file_id": f, "models": [{"model": "pitch", "variaton": "full"}]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("models[0]") && e.contains("variaton"), "{e}");
        // A list names one model per entry.
        let e = parse(json!([{"file_id": f, "models": ["pitch"]}]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("request 0:"), "{e}");
    }
}
