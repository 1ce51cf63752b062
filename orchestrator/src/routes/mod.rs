use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use roar_common::config::HttpConfig;

use crate::AppState;

pub(crate) mod admin;
pub(crate) mod catalog;
pub(crate) mod cursor;
pub(crate) mod dlq;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod generate;
pub(crate) mod health;
pub(crate) mod me;
pub(crate) mod notify;
pub(crate) mod pipelines;
pub(crate) mod presign;
pub(crate) mod process;
pub(crate) mod status;
pub(crate) mod studio;
pub(crate) mod upload;
pub(crate) mod webhooks;

pub fn routes(http: &HttpConfig) -> Router<AppState> {
    let max_upload_bytes = http.max_upload_bytes;
    let request_timeout = Duration::from_secs(http.request_timeout_seconds);
    // Uploads stream for as long as their bytes keep coming: only the idle timeout bounds them.
    let uploads = Router::new()
        .route("/upload", post(upload::upload))
        .route("/upload/{file_id}", put(presign::put_signed))
        .layer(DefaultBodyLimit::max(
            usize::try_from(max_upload_bytes)
                .unwrap_or(usize::MAX)
                .saturating_add(64 * 1024),
        ));
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/status/{file_id}", get(status::status))
        .route("/status/{file_id}/events", get(events::events))
        .route("/process", post(process::process))
        .route("/generate", post(generate::generate))
        .route("/songs", get(catalog::songs))
        .route("/songs/{file_id}", delete(catalog::delete_song))
        .route("/me/usage", get(me::usage))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/webhooks/{webhook_id}", delete(webhooks::delete))
        .route(
            "/webhooks/{webhook_id}/deliveries",
            get(webhooks::deliveries),
        )
        .route("/models", get(catalog::models))
        .route("/presets", get(pipelines::presets))
        .route("/pipelines/{pipeline_id}", get(pipelines::get))
        .route("/pipelines/{pipeline_id}/cancel", post(pipelines::cancel))
        .route("/jobs/{job_id}/cancel", post(admin::cancel))
        .route("/admin/jobs", get(admin::list))
        .route("/admin/jobs/{job_id}/retry", post(admin::retry))
        .route("/admin/jobs/{job_id}/cancel", post(admin::admin_cancel))
        .route("/admin/dlq", get(dlq::dead_letters))
        .route("/admin/dlq/{letter_id}/redrive", post(dlq::redrive_letter))
        .route("/notify", post(notify::notify))
        .route("/files/{name}", get(files::download))
        .route("/upload/{file_id}/complete", post(presign::complete))
        .route("/studio", get(studio::redirect))
        .route("/studio/", get(studio::index))
        .route("/studio/{name}", get(studio::asset))
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            crate::timeouts::request,
        ))
        .merge(uploads)
}
