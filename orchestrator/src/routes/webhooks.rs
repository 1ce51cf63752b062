//! `POST /webhooks`, `GET /webhooks`, `DELETE /webhooks/{id}`, `GET /webhooks/{id}/deliveries`:
//! a user's outbound webhooks (delivered by `roar webhooks`), and the `callback_url` of
//! `POST /process`, stored as a registration scoped to its jobs. The signing secret is stored
//! sealed (`roar_webhooks::seal`); it is shown once, in the answer that created it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use roar_webhooks::dispatch::{check_filters, default_events};
use roar_webhooks::guard::Guard;
use roar_webhooks::{sign, store};

use crate::commands;
use crate::extract::{ApiJson, ApiPath};
use crate::middleware::User;
use crate::views::{
    is_webhook_secret, is_webhook_url, AuthErrors, DeliveryList, DeliveryView, ErrorBody,
    JsonBodyErrors, WebhookList, WebhookPath, WebhookRequest, WebhookView, MAX_FILTERS,
};
use crate::{ApiError, AppState};

/// Deliveries listed per webhook.
const DELIVERIES_SHOWN: i64 = 100;

/// A registration as answered; `secret` only in the answer to its creation.
fn view(r: store::Registration, secret: Option<String>) -> WebhookView {
    WebhookView {
        webhook_id: r.webhook_id,
        url: r.url,
        events: r.events,
        job_id: r.job_id,
        created_at: r.created_at,
        secret,
    }
}

/// Validates a registration of `user`'s without storing it: the URL through the SSRF guard
/// (422 naming the address class) and then its form (the document's pattern), filters, secret,
/// and (`counted`: not a job's callback) the per-user limit (429 `webhooks`). Returns the
/// request as stored and its secret.
pub(crate) async fn validate(
    s: &AppState,
    user: &User,
    req: WebhookRequest,
    counted: bool,
) -> Result<(WebhookRequest, String), ApiError> {
    commands::webhooks::sealing_keys(s)?;
    let guard = Guard::from_config(&s.cfg.webhooks).map_err(ApiError::internal)?;
    let url = guard
        .check_url(&req.url)
        .map_err(|e| ApiError::Unprocessable(format!("url: {e}")))?;
    // After the guard, so an internal address is named as such; the form is what the
    // document's pattern admits (a host name, dotted IPv4 or bracketed IPv6, no fragment).
    if !is_webhook_url(&req.url) {
        return Err(ApiError::Unprocessable(
            "url: use http(s)://host[:port][/path][?query] with a host name, a dotted IPv4 \
             address or a bracketed IPv6 one, and unreserved or percent-escaped characters \
             (see the OpenAPI pattern)"
                .into(),
        ));
    }
    let events = req.events.clone().unwrap_or_else(default_events);
    if events.is_empty() || events.len() > MAX_FILTERS {
        return Err(ApiError::Unprocessable(format!(
            "events: give 1 to {MAX_FILTERS} filters (or leave it out for every way a job ends)"
        )));
    }
    check_filters(&events).map_err(|e| ApiError::Unprocessable(format!("events: {e}")))?;
    let secret = match &req.secret {
        Some(given) => {
            sign::key(given).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
            // sign::key accepts exactly this form; the check keeps the two from drifting.
            if !is_webhook_secret(given) {
                return Err(ApiError::Unprocessable(sign::BadSecret.to_string()));
            }
            given.clone()
        }
        None => sign::new_secret(),
    };
    let max = s.cfg.webhooks.max_per_user;
    if counted && store::count(&s.db, user.id()).await? as u64 >= max {
        return Err(ApiError::Limit {
            code: "webhooks",
            message: format!(
                "at most {max} webhooks per user (webhooks.max_per_user); delete one first"
            ),
        });
    }
    Ok((
        WebhookRequest {
            url: url.to_string(),
            events: Some(events),
            secret: None,
        },
        secret,
    ))
}

/// `POST /webhooks`: 201 with the registration and its secret (shown this once).
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", operation_id = "create_webhook",
    request_body = WebhookRequest,
    responses(
        (status = 201, description = "registered; `secret` signs every delivery and is shown only here", body = WebhookView),
        JsonBodyErrors,
        (status = 422, description = "the body does not have the documented shape, or the URL names a loopback, private, link-local or metadata address (or `localhost`): the message names the address class", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn create(
    State(s): State<AppState>,
    user: User,
    ApiJson(req): ApiJson<WebhookRequest>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    let (req, secret) = validate(&s, &user, req, true).await?;
    let r = commands::webhooks::register(&s, &user, &req, &secret, None).await?;
    Ok((StatusCode::CREATED, Json(view(r, Some(secret)))))
}

/// `GET /webhooks`: the caller's webhooks, without secrets (job callbacks are not listed: one
/// per job, they would make the list unbounded).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", operation_id = "webhooks",
    responses(
        (status = 200, description = "the caller's webhooks, without their secrets", body = WebhookList),
        AuthErrors,
    ))]
pub async fn list(State(s): State<AppState>, user: User) -> Result<Json<WebhookList>, ApiError> {
    let rows = store::list(&s.db, user.id()).await?;
    Ok(Json(WebhookList {
        webhooks: rows.into_iter().map(|r| view(r, None)).collect(),
    }))
}

/// `DELETE /webhooks/{id}`: 204; 404 when the caller holds no such webhook. Its pending
/// deliveries go with it.
#[utoipa::path(delete, path = "/webhooks/{webhook_id}", tag = "webhooks", operation_id = "delete_webhook",
    params(WebhookPath),
    responses(
        (status = 204, description = "deleted, with its pending deliveries"),
        (status = 404, description = "no such webhook of the caller's", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn delete(
    State(s): State<AppState>,
    user: User,
    ApiPath(WebhookPath { webhook_id: id }): ApiPath<WebhookPath>,
) -> Result<StatusCode, ApiError> {
    if store::delete(&s.db, user.id(), &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// `GET /webhooks/{id}/deliveries`: the newest 100 deliveries and how each went.
#[utoipa::path(get, path = "/webhooks/{webhook_id}/deliveries", tag = "webhooks", operation_id = "webhook_deliveries",
    params(WebhookPath),
    responses(
        (status = 200, description = "the newest 100 deliveries, newest first", body = DeliveryList),
        (status = 404, description = "no such webhook of the caller's", body = ErrorBody),
        AuthErrors,
    ))]
pub async fn deliveries(
    State(s): State<AppState>,
    user: User,
    ApiPath(WebhookPath { webhook_id: id }): ApiPath<WebhookPath>,
) -> Result<Json<DeliveryList>, ApiError> {
    if store::get(&s.db, user.id(), &id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let rows = store::deliveries(&s.db, &id, DELIVERIES_SHOWN).await?;
    Ok(Json(DeliveryList {
        deliveries: rows
            .into_iter()
            .map(|d| DeliveryView {
                next_attempt_at: (!d.status.is_final()).then_some(d.next_attempt_at),
                event_id: d.event_id,
                event_type: d.event_type,
                status: d.status.to_string(),
                attempts: d.attempts,
                last_status_code: d.last_status_code,
                last_error: d.last_error,
                created_at: d.created_at,
                finished_at: d.finished_at,
            })
            .collect(),
    }))
}
