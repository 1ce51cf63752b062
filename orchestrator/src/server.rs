//! The accept loop: the router served by hyper's connection builder, as `axum::serve` does,
//! plus the bound it leaves off. A client that sends its request head (request line and
//! headers) byte by byte would otherwise hold a connection and a task for as long as it likes
//! (slowloris); hyper closes a connection whose head has not fully arrived
//! `http.header_read_timeout_seconds` after it began, which needs the timer set here. The same
//! bound ends a keep-alive connection left idle that long.
//!
//! On `cancel` the listener closes, every connection finishes the request it is serving (idle
//! ones close at once), and [`run`] returns when the last one has.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `cancel` fires, then drains the open connections.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    cancel: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            // Finished connections are reaped as they end, so the set stays the open ones.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // pause instead of spinning on the error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = cancel.cancelled() => None,
            };
            let result = match done {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            // A client that went away or timed out its head: nothing to answer.
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}
