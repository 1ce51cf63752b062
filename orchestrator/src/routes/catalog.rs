//! `GET /models` and `GET /songs`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::ApiQuery;
use crate::middleware::User;
use crate::routes::cursor;
use crate::routes::status::file_json;
use crate::{ApiError, AppState};

/// `GET /models`: the catalogue (variations, versions, params with their types) and, per model,
/// the workers that announced themselves on the control topic and have not gone quiet.
#[utoipa::path(get, path = "/models", tag = "jobs",
    responses((status = 200, description = "{models: [{name, description, default_variation, variations, params, live, workers}], workers_known}")))]
pub async fn models(State(s): State<AppState>, _user: User) -> Result<Json<Value>, ApiError> {
    let live = s.control.live_workers(chrono::Utc::now());
    let models: Vec<Value> = roar_common::catalog::models()
        .iter()
        .map(|m| {
            let workers: Vec<_> = live.iter().filter(|w| w.model == m.name).collect();
            let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
            v["live"] = json!(!workers.is_empty());
            v["workers"] = json!(workers);
            v
        })
        .collect();
    Ok(Json(json!({
        "models": models,
        // Until the control topic is read to its end, `live: false` may only mean "not yet seen".
        "workers_known": s.control.caught_up(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SongsQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /songs?limit=&cursor=`: the caller's files, newest first.
#[utoipa::path(get, path = "/songs", tag = "files",
    params(("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses(
        (status = 200, description = "the caller's files, newest first", body = crate::openapi::SongsPage),
        (status = 400, description = "invalid limit or cursor", body = crate::openapi::ErrorBody),
    ))]
pub async fn songs(
    State(s): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<SongsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = cursor::limit(q.limit)?;
    let before = q.cursor.as_deref().map(cursor::decode).transpose()?;
    let mut rows = s.read.songs(user.id(), limit + 1, before).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| {
            rows.last()
                .map(|f| cursor::encode(f.created_at, &f.file_id))
        })
        .flatten();
    Ok(Json(json!({
        "songs": rows.iter().map(file_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}
