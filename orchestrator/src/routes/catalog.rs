//! `GET /models`, `GET /songs` and `DELETE /songs/{file_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::commands;
use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::User;
use crate::routes::cursor;
use crate::views::{
    AuthErrors, ErrorBody, FilePath, FileView, ModelView, ModelsView, PageQuery, PresetsView,
    SongsPage,
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

/// `DELETE /songs/{file_id}`: deletes a song for good (its owner, or an admin). Its objects are
/// erased and the data key that sealed its name in the event log is destroyed before the
/// answer, so no rebuild brings any of it back; its jobs are canceled by one event for the
/// whole song (workers confirm each job's cancel afterwards), and its rows go once the
/// deletion is projected (docs/security.md, "Deletion").
#[utoipa::path(delete, path = "/songs/{file_id}", tag = "files",
    params(FilePath),
    responses(
        (status = 202, description = "deleted: objects erased, key destroyed, the deletion and the cancel of every job of the song durable; the jobs end `canceled` and the rows go when the deletion is projected (until then a second DELETE repeats it, then 404)"),
        (status = 404, description = "no such song, another user's, or deleted already", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn delete_song(
    State(s): State<AppState>,
    user: User,
    ApiPath(FilePath { file_id }): ApiPath<FilePath>,
) -> Result<StatusCode, ApiError> {
    let file = crate::routes::status::visible_file(&s, &user, &file_id).await?;
    commands::erase::erase(&s, &user, &file).await?;
    Ok(StatusCode::ACCEPTED)
}
