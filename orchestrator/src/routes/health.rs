use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::views::{HealthView, ReadyView};
use crate::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", security(()),
    responses((status = 200, description = "the process answers", body = HealthView)))]
pub async fn health() -> Json<HealthView> {
    Json(HealthView {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: the database and the object store answer.
#[utoipa::path(get, path = "/ready", tag = "ops", security(()),
    responses(
        (status = 200, description = "database and storage answer", body = ReadyView),
        (status = 503, description = "a dependency is down (which one is in the body)", body = ReadyView),
    ))]
pub async fn ready(State(s): State<AppState>) -> (StatusCode, Json<ReadyView>) {
    let db = tokio::time::timeout(Duration::from_secs(2), s.read.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let storage = tokio::time::timeout(Duration::from_secs(2), s.storage.head("health/probe"))
        .await
        .is_ok_and(|r| r.is_ok());
    let ok = db && storage;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if ok { "ok" } else { "degraded" };
    (
        code,
        Json(ReadyView {
            status,
            database: db,
            storage,
        }),
    )
}
