//! The orchestrator: the one HTTP door of the Lion's Roar Studio frontend. It authenticates
//! callers (JWT), turns commands (upload, process, cancel) into events on Kafka, and answers
//! queries (`/status`, `/songs`) from the projection's read model in Postgres. It never runs
//! models and never fetches a user-supplied URL.

pub mod commands;
mod error;
mod extract;
mod fanout;
mod links;
mod middleware;
mod notifier;
pub mod openapi;
mod quotas;
mod ratelimit;
mod routes;
mod server;
mod state;
mod status_cache;
mod streams;
mod sweeper;
mod throttle;
mod timeouts;
mod uploads;
pub mod views;

pub use error::ApiError;
pub use state::AppState;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The full router with its middleware.
pub fn router(state: AppState) -> Router {
    let max_body = state.cfg.http.max_body_bytes;
    let body_idle = std::time::Duration::from_secs(state.cfg.http.body_idle_timeout_seconds);
    let cors = middleware::cors(&state.cfg.http.cors_origins);
    routes::routes(&state.cfg.http)
        .layer(axum::middleware::from_fn_with_state(
            body_idle,
            timeouts::body_idle,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(middleware::track))
        .layer(cors)
        .with_state(state)
}

/// Serves until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    mut state: AppState,
    listener: TcpListener,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    state.shutdown = cancel.clone();
    state.notifier.spawn(state.read.clone(), cancel.clone());
    sweeper::spawn(state.clone(), cancel.clone());
    let poll = std::time::Duration::from_millis(state.cfg.http.sse_poll_ms);
    state
        .fanout
        .spawn(state.read.clone(), &state.notifier, poll, cancel.clone());
    state.auth.start_jwks(cancel.clone()).await;
    tracing::info!(%addr, "orchestrator listening");
    // The router is built once and shared by every connection (a clone is a reference count):
    // never resolved again per connection, which kept a deep copy of every route, its
    // middleware and state for an idle SSE stream's life (see docs/benchmarks.md).
    let header_read = std::time::Duration::from_secs(state.cfg.http.header_read_timeout_seconds);
    server::run(listener, router(state), header_read, cancel).await;
    Ok(())
}
