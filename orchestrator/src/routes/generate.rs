//! `POST /generate`: text → music with no upload. The request names a song of the caller's
//! (its file id derives from the request, so asking twice names the same song and job); the
//! musicgen job writes the song's content and the song is then a file like any upload.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use roar_common::catalog::{self, Resolved};
use roar_common::config::MusicgenConfig;
use serde_json::{Map, Value};

use crate::extract::ApiJson;
use crate::middleware::User;
use crate::views::{
    AuthErrors, ErrorBody, GenerateAccepted, GenerateBody, GenerateRequest, JsonBodyErrors,
    GENERATOR, NEEDS_A_SONG, NOT_IN_PARAMS,
};
use crate::{ApiError, AppState};

/// The body as the musicgen job it asks for, within this service's limits.
pub(crate) fn parse(limits: &MusicgenConfig, req: GenerateRequest) -> Result<Resolved, ApiError> {
    let bad = ApiError::Unprocessable;
    if let Some(v) = req
        .variation
        .as_deref()
        .filter(|v| NEEDS_A_SONG.contains(v))
    {
        return Err(bad(format!(
            "variation {v:?} follows a song's melody: use POST /process with it on a song"
        )));
    }
    let mut params = match req.params {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("params must be a JSON object".into())),
    };
    if let Some(k) = NOT_IN_PARAMS.iter().find(|k| params.contains_key(**k)) {
        return Err(bad(match *k {
            "prompt_seconds" => "params.prompt_seconds continues a song: use POST /process \
                                 with it on a song"
                .into(),
            "duration" => "give the length as `duration_seconds`, not in params".into(),
            k => format!("give `{k}` at the top level, not in params"),
        }));
    }
    params.insert("prompt".into(), Value::from(req.prompt));
    if let Some(d) = req.duration_seconds {
        params.insert("duration".into(), Value::from(d));
    }
    let r = catalog::resolve(
        GENERATOR,
        req.variation.as_deref(),
        Some(&Value::Object(params)),
    )
    .map_err(|e| bad(e.to_string()))?;
    limits.check(&r.params).map_err(bad)?;
    Ok(r)
}

/// `POST /generate`.
#[utoipa::path(post, path = "/generate", tag = "jobs",
    request_body = GenerateBody,
    responses(
        (status = 202, description = "the song was requested: its file is `generating` and `job` is `queued` (a new song, or a new attempt after a failed or canceled generation)", body = GenerateAccepted),
        (status = 200, description = "nothing new: the same request's song is being generated or exists already (`job.status` says which)", body = GenerateAccepted),
        (status = 409, description = "the same request's song was deleted (`file_deleted`)", body = ErrorBody),
        JsonBodyErrors,
        (status = 422, description = "the JSON does not have the documented shape, or a value is over this service's limits (`musicgen.max_duration_seconds`, `musicgen.max_prompt_chars`); the message names the field and what is valid", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn generate(
    State(s): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<GenerateRequest>,
) -> Result<(StatusCode, Json<GenerateAccepted>), ApiError> {
    let r = parse(&s.cfg.musicgen, body)?;
    let (emitted, accepted) = crate::commands::generate::song(&s, &user, &r).await?;
    let code = if emitted {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(accepted)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(body: Value) -> Result<Resolved, String> {
        let req: GenerateRequest = serde_json::from_value(body).map_err(|e| e.to_string())?;
        parse(&MusicgenConfig::default(), req).map_err(|e| e.to_string())
    }

    #[test]
    fn a_request_becomes_a_musicgen_job_within_the_limits() {
        let r = parsed(json!({"prompt": "calm piano", "duration_seconds": 4})).unwrap();
        assert_eq!((r.model, r.variation.as_str()), ("musicgen", "small"));
        assert_eq!(r.params["prompt"], "calm piano");
        assert_eq!(r.params["duration"], 4.0);
        assert_eq!(r.params["top_k"], 250, "catalogue defaults fill in");
        let r =
            parsed(json!({"prompt": "", "variation": "medium", "params": {"seed": 7}})).unwrap();
        assert_eq!(
            (r.variation.as_str(), &r.params["seed"]),
            ("medium", &json!(7))
        );
        assert_eq!(r.params["duration"], 10.0);

        for (body, hint) in [
            (
                json!({"prompt": "x", "duration_seconds": 31}),
                "max_duration_seconds",
            ),
            (json!({"prompt": "x", "duration_seconds": 0.5}), "duration"),
            (json!({"prompt": "x".repeat(2001)}), "prompt"),
            (
                json!({"prompt": "x", "variation": "melody"}),
                "POST /process",
            ),
            (
                json!({"prompt": "x", "variation": "xl"}),
                "small, medium, large",
            ),
            (
                json!({"prompt": "x", "params": {"prompt_seconds": 2}}),
                "POST /process",
            ),
            (
                json!({"prompt": "x", "params": {"duration": 2}}),
                "duration_seconds",
            ),
            (
                json!({"prompt": "x", "params": {"prompt": "y"}}),
                "top level",
            ),
            (json!({"prompt": "x", "params": {"top_k": -1}}), "top_k"),
            (
                json!({"prompt": "x", "params": {"generates_song": true}}),
                "generates_song",
            ),
            (json!({"prompt": "x", "params": 3}), "object"),
            (json!({"prompt": "x", "extra": 1}), "extra"),
            (json!({"duration_seconds": 5}), "prompt"),
        ] {
            let e = parsed(body.clone()).unwrap_err();
            assert!(e.contains(hint), "{body}: {e}");
        }
    }
}
