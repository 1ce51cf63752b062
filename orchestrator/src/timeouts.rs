//! Request and body timeouts. A client that sends headers and then stalls its body, or a
//! request whose handler waits on a stuck dependency, would otherwise hold a connection, a
//! task and (for uploads) a half-written object for as long as the socket stays open.
//!
//! - Every request body fails once `http.body_idle_timeout_seconds` pass without a chunk: a
//!   slow upload that keeps sending is fine, a stalled one ends (400, "upload interrupted").
//! - Every request but the uploads' must be answered within `http.request_timeout_seconds`
//!   (503 `timeout`). Uploads are bounded by the idle timeout and their size instead; an SSE
//!   stream or a download answers at once and is bounded by its own heartbeat and the client.

use std::io;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::ApiError;

/// Wraps the request body so that a read waiting longer than `idle` for data fails.
pub(crate) async fn body_idle(State(idle): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let req = req.map(|body| {
        let chunks = body.into_data_stream();
        Body::from_stream(futures::stream::unfold(
            Some(chunks),
            move |chunks| async move {
                let mut chunks = chunks?;
                match tokio::time::timeout(idle, chunks.next()).await {
                    Ok(Some(Ok(c))) => Some((Ok(c), Some(chunks))),
                    Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
                    Ok(None) => None,
                    Err(_) => Some((
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no request data for {} s", idle.as_secs()),
                        )),
                        None,
                    )),
                }
            },
        ))
    });
    next.run(req).await
}

/// Answers 503 `timeout` when the handler has not answered within `limit`.
pub(crate) async fn request(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout(limit.as_secs()).into_response(),
    }
}
