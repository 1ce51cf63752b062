//! `GET /status/{file_id}/events`: the file's history as Server-Sent Events. The event id is
//! the history sequence number, so a client that reconnects with `Last-Event-ID` gets exactly
//! what it missed, from the database, whatever happened meanwhile. After that backlog, new rows
//! come from the process's one fan-out read per commit ([`crate::fanout`]), not from a query of
//! this stream's own.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use roar_common::metrics::SSE_HISTORY_READS;
use roar_projections::store::HistoryRow;
use roar_projections::ReadModel;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::User;
use crate::routes::status::visible_file;
use crate::streams::UserStream;
use crate::views::{AuthErrors, ErrorBody, EventsHeaders, EventsQuery, FilePath, HistoryEventView};
use crate::{ApiError, AppState};

const PAGE: i64 = 200;

/// What one open stream keeps while idle: the few handles it needs, not the whole `AppState`
/// (thousands of idle streams each held a copy of it).
struct Cursor {
    read: ReadModel,
    /// [`AppState::sse_catch_up`]: held for each backlog page read.
    catch_up: Arc<Semaphore>,
    shutdown: CancellationToken,
    poll: Duration,
    file_id: String,
    last: i64,
    buf: VecDeque<Arc<HistoryRow>>,
    /// The file's new rows, from the fan-out.
    rx: broadcast::Receiver<Arc<HistoryRow>>,
    /// Whether the backlog (rows before the subscription, or missed by falling behind) is read.
    caught_up: bool,
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
    // Subscribed before the backlog is read: nothing committed in between is missed (rows
    // seen twice are skipped by their sequence number).
    let rx = s.fanout.subscribe(&s.read, &f.file_id).await?;
    let cursor = Cursor {
        rx,
        file_id: f.file_id,
        last,
        buf: VecDeque::new(),
        caught_up: false,
        _slot: slot,
        _user_slot: user_slot,
        read: s.read.clone(),
        catch_up: s.sse_catch_up.clone(),
        shutdown: s.shutdown.clone(),
        poll: Duration::from_millis(s.cfg.http.sse_poll_ms),
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        let poll = c.poll;
        loop {
            if let Some(r) = c.buf.pop_front() {
                if r.seq > c.last {
                    c.last = r.seq;
                    return Some((Ok(to_event(&r)), c));
                }
                continue;
            }
            // A backlog page left room for 200 rows; an idle stream needs none.
            c.buf.shrink_to(4);
            if c.shutdown.is_cancelled() {
                return None;
            }
            let shutdown = c.shutdown.clone();
            if !c.caught_up {
                // Streams opening on a long history each read it page by page; without a bound
                // their pages took every pooled connection and other requests waited until the
                // pool gave up (503 `unavailable`, first seen at stream 3,725 of the API bench).
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    p = c.catch_up.acquire() => p,
                };
                let Ok(_permit) = permit else { return None };
                metrics::counter!(SSE_HISTORY_READS, "kind" => "catch_up").increment(1);
                // Boxed: the query's state is needed only during the read, and inline it would
                // size every idle stream's future.
                let rows = Box::pin(c.read.history_after(&c.file_id, c.last, PAGE)).await;
                match rows {
                    Ok(rows) => {
                        c.caught_up = (rows.len() as i64) < PAGE;
                        c.buf.extend(rows.into_iter().map(Arc::new));
                    }
                    Err(e) => {
                        tracing::warn!(file_id = %c.file_id, error = %e, "history read failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(poll) => {}
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                r = c.rx.recv() => match r {
                    Ok(row) => c.buf.push_back(row),
                    // More than the broadcast holds arrived meanwhile: read them instead.
                    Err(RecvError::Lagged(_)) => c.caught_up = false,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}
