//! Storing a webhook registration: a user's (`POST /webhooks`), one job's, or every job of a
//! pipeline a request started (`callback_url` on `POST /process`). The signing secret is sealed
//! before it is written (`roar_webhooks::seal`); nothing is stored in clear.

use chrono::Utc;
use roar_webhooks::seal::SealKeys;
use roar_webhooks::store;

use crate::middleware::User;
use crate::views::WebhookRequest;
use crate::{ApiError, AppState};

/// What a `callback_url` follows; a user's webhook has no scope (every job of theirs).
#[derive(Debug, Clone)]
pub struct Scope {
    /// The job the request answered about.
    pub job_id: String,
    /// The pipeline the request started, whose end is delivered too.
    pub pipeline_id: Option<String>,
    /// Every job the registration follows (`job_id` among them).
    pub job_ids: Vec<String>,
}

impl Scope {
    /// One job.
    pub fn job(job_id: impl Into<String>) -> Scope {
        let job_id = job_id.into();
        Scope {
            job_ids: vec![job_id.clone()],
            job_id,
            pipeline_id: None,
        }
    }
}

/// A validated `callback_url` and the secret that will sign its deliveries.
#[derive(Debug)]
pub struct Callback {
    pub req: WebhookRequest,
    pub secret: String,
}

/// The keys that seal signing secrets; 503 while webhooks are off or `webhooks.secret_key` is
/// unset (nothing is ever stored in clear; `roar orchestrator` refuses to start in the second
/// case, so only an API embedded without the start-up check meets it).
pub fn sealing_keys(s: &AppState) -> Result<SealKeys, ApiError> {
    if !s.cfg.webhooks.enabled {
        return Err(ApiError::Unavailable(
            "webhooks are off on this service (webhooks.enabled = false)".into(),
        ));
    }
    let keys = SealKeys::from_config(&s.cfg.webhooks).map_err(ApiError::internal)?;
    if keys.current_id().is_none() {
        return Err(ApiError::Unavailable(
            "webhooks are off on this service: it has no webhooks.secret_key to seal their \
             signing secrets with"
                .into(),
        ));
    }
    Ok(keys)
}

/// Stores a validated registration, its secret sealed.
pub async fn register(
    s: &AppState,
    user: &User,
    req: &WebhookRequest,
    secret: &str,
    scope: Option<Scope>,
) -> Result<store::Registration, ApiError> {
    let webhook_id = store::new_id();
    let sealed = sealing_keys(s)?
        .seal(&webhook_id, secret)
        .map_err(ApiError::internal)?;
    let (job_id, pipeline_id, job_ids) = match scope {
        Some(sc) => (Some(sc.job_id), sc.pipeline_id, sc.job_ids),
        None => (None, None, Vec::new()),
    };
    let r = store::Registration {
        webhook_id,
        owner: user.id().to_string(),
        job_id,
        pipeline_id,
        job_ids,
        url: req.url.clone(),
        events: req.events.clone().unwrap_or_default(),
        secret: None,
        secret_key_id: Some(sealed.key_id),
        secret_sealed: Some(sealed.bytes),
        created_at: Utc::now(),
    };
    store::insert(&s.db, &r).await?;
    tracing::info!(webhook_id = %r.webhook_id, job_id = ?r.job_id, pipeline_id = ?r.pipeline_id, "webhook registered");
    Ok(r)
}

/// Registers `cb` (if any) for `scope`; its id, for the `callback-webhook-ids` header.
pub async fn register_callback(
    s: &AppState,
    user: &User,
    cb: Option<&Callback>,
    scope: impl FnOnce() -> Scope,
) -> Result<Option<String>, ApiError> {
    match cb {
        Some(cb) => Ok(Some(
            register(s, user, &cb.req, &cb.secret, Some(scope()))
                .await?
                .webhook_id,
        )),
        None => Ok(None),
    }
}
