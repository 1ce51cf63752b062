//! `GET /status/{file_id}/events`: the file's history as Server-Sent Events. The event id is
//! the history sequence number, so a client that reconnects with `Last-Event-ID` gets exactly
//! what it missed, from the database, whatever happened meanwhile.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use roar_projections::store::HistoryRow;
use tokio::sync::OwnedSemaphorePermit;

use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::User;
use crate::notifier;
use crate::routes::status::visible_file;
use crate::streams::UserStream;
use crate::views::{AuthErrors, ErrorBody, EventsHeaders, EventsQuery, FilePath, HistoryEventView};
use crate::{ApiError, AppState};

const PAGE: i64 = 200;

struct Cursor {
    s: AppState,
    file_id: String,
    last: i64,
    buf: VecDeque<HistoryRow>,
    rx: tokio::sync::watch::Receiver<u64>,
    _slot: OwnedSemaphorePermit,
    _user_slot: UserStream,
}

fn to_event(r: &HistoryRow) -> Event {
    let data = serde_json::to_string(&HistoryEventView::from(r))
        .expect("a history row serialises (string keys, finite numbers)");
    Event::default()
        .id(r.seq.to_string())
        .event(r.kind.clone())
        .data(data)
}

/// `GET /status/{file_id}/events`.
#[utoipa::path(get, path = "/status/{file_id}/events", tag = "status",
    params(
        FilePath,
        EventsHeaders,
        EventsQuery,
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `id` is the history sequence, `event` the kind (file_uploaded, file_probed, queued, started, progress, completed, failed, canceled, ...), `data` a `HistoryEventView` as JSON; `: heartbeat` comments keep it open. The stream does not end while the server runs.", content_type = "text/event-stream"),
        (status = 400, description = "an unknown query parameter, or a Last-Event-ID (header or query) that is not a non-negative integer", body = ErrorBody),
        (status = 404, description = "no such file of the caller's", body = ErrorBody),
        AuthErrors,
        (status = 503, description = "too many streams open (`http.sse_max_streams`), or a dependency is unavailable", body = ErrorBody),
    ))]
pub async fn events(
    State(s): State<AppState>,
    user: User,
    ApiPath(FilePath { file_id }): ApiPath<FilePath>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let f = visible_file(&s, &user, &file_id).await?;
    let header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an event id".into()))
        })
        .transpose()?;
    let query = q
        .last_event_id
        .map(|n| {
            (n >= 0).then_some(n).ok_or_else(|| {
                ApiError::BadRequest("last_event_id must be a non-negative event id".into())
            })
        })
        .transpose()?;
    let last = header.or(query).unwrap_or(0);
    let user_slot = s
        .user_streams
        .acquire(user.id())
        .ok_or_else(|| ApiError::Limit {
            code: "too_many_streams",
            message: format!(
                "you have {} event streams open (http.sse_max_streams_per_user): close one first",
                s.cfg.http.sse_max_streams_per_user
            ),
        })?;
    let slot = s
        .sse_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable("too many event streams open".into()))?;
    let heartbeat = Duration::from_secs(s.cfg.http.sse_heartbeat_seconds);
    let cursor = Cursor {
        rx: s.notifier.subscribe(),
        file_id: f.file_id,
        last,
        buf: VecDeque::new(),
        _slot: slot,
        _user_slot: user_slot,
        s,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        let poll = Duration::from_millis(c.s.cfg.http.sse_poll_ms);
        loop {
            if let Some(r) = c.buf.pop_front() {
                c.last = r.seq;
                return Some((Ok(to_event(&r)), c));
            }
            if c.s.shutdown.is_cancelled() {
                return None;
            }
            // Mark the notification seen before reading, so a commit after the read wakes us.
            c.rx.borrow_and_update();
            match c.s.read.history_after(&c.file_id, c.last, PAGE).await {
                Ok(rows) if !rows.is_empty() => {
                    c.buf.extend(rows);
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(file_id = %c.file_id, error = %e, "history read failed"),
            }
            let shutdown = c.s.shutdown.clone();
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = notifier::wait(&mut c.rx, poll) => {}
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}
