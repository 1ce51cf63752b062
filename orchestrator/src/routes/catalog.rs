//! `GET /models` and `GET /songs`.

use axum::extract::State;
use axum::Json;

use crate::extract::ApiQuery;
use crate::middleware::User;
use crate::routes::cursor;
use crate::views::{
    AuthErrors, ErrorBody, FileView, ModelView, ModelsView, PageQuery, PresetsView, SongsPage,
};
use crate::{ApiError, AppState};

/// `GET /models`: the catalogue (variations, versions, params with their types) and, per model,
/// the workers that announced themselves on the control topic and have not gone quiet.
#[utoipa::path(get, path = "/models", tag = "jobs",
    responses(
        (status = 200, description = "the catalogue and the live workers", body = ModelsView),
        AuthErrors,
    ))]
pub async fn models(State(s): State<AppState>, _user: User) -> Json<ModelsView> {
    let live = s.control.live_workers(chrono::Utc::now());
    Json(ModelsView {
        models: roar_common::catalog::models()
            .iter()
            .map(|m| ModelView::new(m, &live))
            .collect(),
        workers_known: s.control.caught_up(),
        presets: PresetsView::all().presets,
    })
}

/// `GET /songs?limit=&cursor=`: the caller's files, newest first.
#[utoipa::path(get, path = "/songs", tag = "files",
    params(PageQuery),
    responses(
        (status = 200, description = "the caller's files, newest first", body = SongsPage),
        (status = 400, description = "an unknown query parameter, a limit outside 1..=200, or an invalid cursor", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn songs(
    State(s): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<SongsPage>, ApiError> {
    let limit = cursor::limit(q.limit)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| cursor::decode(c, 'f'))
        .transpose()?;
    let mut rows = s.read.songs(user.id(), limit + 1, before).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more
        .then(|| {
            rows.last()
                .map(|f| cursor::encode(f.created_at, &f.file_id))
        })
        .flatten();
    Ok(Json(SongsPage {
        songs: rows.iter().map(FileView::from).collect(),
        next_cursor: next,
    }))
}
