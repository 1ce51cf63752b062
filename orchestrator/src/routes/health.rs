use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", security(()), responses((status = 200, description = "the process answers")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Readiness: the database and the object store answer.
#[utoipa::path(get, path = "/ready", tag = "ops", security(()), responses((status = 200, description = "database and storage answer"), (status = 503, description = "a dependency is down")))]
pub async fn ready(State(s): State<AppState>) -> (StatusCode, Json<Value>) {
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
    (
        code,
        Json(
            json!({ "status": if ok { "ok" } else { "degraded" }, "database": db, "storage": storage }),
        ),
    )
}

/// Prometheus exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()), responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> String {
    s.metrics.render()
}
