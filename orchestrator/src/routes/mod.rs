use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

mod health;
mod status;
mod upload;

pub fn routes(max_upload_bytes: u64) -> Router<AppState> {
    let uploads = Router::new()
        .route("/upload", post(upload::multipart_upload))
        .layer(DefaultBodyLimit::max(
            usize::try_from(max_upload_bytes)
                .unwrap_or(usize::MAX)
                .saturating_add(64 * 1024),
        ));
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/status/{file_id}", get(status::status))
        .merge(uploads)
}
