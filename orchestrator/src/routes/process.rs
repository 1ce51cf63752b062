//! `POST /process`: one job, several models on one file, or a list of requests. Everything is
//! validated before anything is emitted, so a bad entry rejects the whole request.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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
use crate::routes::webhooks;
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
    ApiJson(mut body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let callback = take_callback(&mut body)?;
    let given = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    let chained = body.is_object() && (given("preset") || given("input"));
    // A preset or a chained job may start a pipeline: its callback also hears how that ended,
    // unless the caller chose the events.
    let callback = match callback {
        Some(req) => {
            let defaulted = req.events.is_none();
            let (mut req, secret) = webhooks::validate(&s, &user, req, false).await?;
            if chained && defaulted {
                req.events
                    .get_or_insert_with(Vec::new)
                    .push("pipeline.*".into());
            }
            Some(commands::webhooks::Callback { req, secret })
        }
        None => None,
    };
    if chained {
        let (code, response, ids) = if given("preset") {
            chained::preset(&s, &user, body, callback.as_ref()).await?
        } else {
            chained::with_input(&s, &user, body, callback.as_ref()).await?
        };
        let headers = callback_headers(callback.as_ref(), &ids)?;
        return Ok((code, headers, response).into_response());
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
    // Validated before anything is stored or emitted; stored before each job's request, so the
    // dispatcher knows the callback before the job's first event.
    let mut callback_ids = Vec::new();
    let mut results = Vec::with_capacity(wanted.len());
    let mut emitted = false;
    for (file_id, r) in &wanted {
        let id = commands::webhooks::register_callback(&s, &user, callback.as_ref(), || {
            commands::webhooks::Scope::job(
                commands::jobs::identity_reading(file_id, r, None).job_id(),
            )
        })
        .await?;
        callback_ids.extend(id);
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
    let headers = callback_headers(callback.as_ref(), &callback_ids)?;
    Ok((code, headers, Json(response)).into_response())
}

/// The body's shape is the same with or without a callback: its ids and secret (for the
/// signatures) travel as headers.
fn callback_headers(
    callback: Option<&commands::webhooks::Callback>,
    ids: &[String],
) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    if let Some(cb) = callback {
        let ids = HeaderValue::from_str(&ids.join(","));
        headers.insert("callback-webhook-ids", ids.map_err(ApiError::internal)?);
        let secret = HeaderValue::from_str(&cb.secret).map_err(ApiError::internal)?;
        headers.insert("callback-secret", secret);
    }
    Ok(headers)
}

/// Removes `callback_url`, `callback_events` and `callback_secret` from a single request
/// object: the job-scoped webhook they describe. Unlike the request's other members they may
/// not be `null` (the document says so: a `null` would read as "no callback" while the other
/// two asked for one).
fn take_callback(body: &mut Value) -> Result<Option<crate::views::WebhookRequest>, ApiError> {
    let Some(obj) = body.as_object_mut() else {
        return Ok(None);
    };
    let url = obj.remove("callback_url");
    let events = obj.remove("callback_events");
    let secret = obj.remove("callback_secret");
    for (name, v) in [
        ("callback_url", &url),
        ("callback_events", &events),
        ("callback_secret", &secret),
    ] {
        if v.as_ref().is_some_and(Value::is_null) {
            return Err(ApiError::Unprocessable(format!(
                "{name} may not be null: leave it out for no callback"
            )));
        }
    }
    let Some(url) = url else {
        if events.is_some() || secret.is_some() {
            return Err(ApiError::Unprocessable(
                "callback_events and callback_secret go with callback_url".into(),
            ));
        }
        return Ok(None);
    };
    let bad = |m: String| ApiError::Unprocessable(m);
    let req = crate::views::WebhookRequest {
        url: serde_json::from_value(url).map_err(|e| bad(format!("callback_url: {e}")))?,
        events: events
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| bad(format!("callback_events: {e}")))?,
        secret: secret
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| bad(format!("callback_secret: {e}")))?,
    };
    Ok(Some(req))
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
