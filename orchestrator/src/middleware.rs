//! Request-scoped plumbing: the `X-Request-ID` (accepted or generated, echoed back, visible to
//! error responses and logs), the request's span (continuing a caller's W3C trace), per-route
//! metrics, CORS, and the authenticated caller.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use roar_common::auth::{AuthError, Claims};
use roar_common::metrics::{HTTP_LATENCY, HTTP_REQUESTS};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::Instrument;

use crate::{ApiError, AppState};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static(roar_common::trace::HEADER);

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

/// The request id of the request being served by this task ("" outside a request).
pub fn current_request_id() -> String {
    CURRENT_REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_default()
}

/// A caller-supplied id is kept if it is short and printable; otherwise a new one is made.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Request id, tracing span, metrics.
pub async fn track(req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().clone();
    let span = tracing::info_span!("http", request_id = %id, %method, %route,
        otel.name = %format!("{method} {route}"), otel.kind = "server");
    // Continue the caller's trace (a W3C `traceparent` header); the events this request
    // causes carry the trace on to the workers.
    let parent = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    roar_common::trace::set_parent(&span, parent);
    let started = Instant::now();
    let mut resp = CURRENT_REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span.clone()))
        .await;
    let status = resp.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_LATENCY, "route" => route).record(started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        )
    });
    resp
}

pub fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([REQUEST_ID]);
    if origins.is_empty() {
        layer.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct User(pub Claims);

impl User {
    pub fn id(&self) -> &str {
        &self.0.sub
    }
    pub fn is_admin(&self) -> bool {
        self.0.has_role("admin")
    }
    /// Whether the caller may see or act on something owned by `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        self.is_admin() || self.0.sub == owner
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing);
        let token = header.and_then(|h| {
            h.strip_prefix("Bearer ")
                .ok_or(AuthError::Invalid("expected a Bearer token".into()))
        });
        let claims = match token {
            Ok(t) => state.auth.verify_fresh(t.trim()).await,
            Err(e) => Err(e),
        };
        let claims = claims.map_err(|e| match e {
            AuthError::NotConfigured => ApiError::Unavailable(e.to_string()),
            other => ApiError::Unauthorized(other.to_string()),
        })?;
        state
            .limiter
            .check(&claims.sub)
            .map_err(|retry_after_seconds| ApiError::TooManyRequests {
                retry_after_seconds,
            })?;
        Ok(User(claims))
    }
}
