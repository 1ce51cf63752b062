//! The sending side: claims due deliveries from Postgres, sends each signed attempt through
//! the guarded client, and records the outcome: delivered, retried later with exponential
//! backoff, failed after `webhooks.max_attempts`, or refused by the SSRF guard. Each attempt
//! opens the registration's sealed secret; the periodic sweep also re-seals secrets left clear
//! or under a retired key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use roar_common::config::WebhooksConfig;
use roar_common::metrics::{WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_SECONDS, WEBHOOK_PENDING};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::guard::{Guard, GuardError};
use crate::seal::{SealError, SealKeys};
use crate::status::DeliveryStatus;
use crate::store::{self, Attempt, Due};
use crate::{sign, WebhookError};

/// Bytes of a failed response's body kept in `last_error`.
const ERROR_BODY_CHARS: usize = 256;

/// How often old delivery records are swept (`webhooks.retention_days`).
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Sends deliveries; one per dispatcher process.
pub struct Sender {
    pool: PgPool,
    guard: Guard,
    keys: SealKeys,
    client: reqwest::Client,
    cfg: WebhooksConfig,
}

impl Sender {
    pub fn new(pool: PgPool, cfg: &WebhooksConfig) -> Result<Sender, WebhookError> {
        let guard = Guard::from_config(cfg)?;
        // Without the key no secret opens: refuse to start rather than fail every delivery.
        let keys = SealKeys::from_config(cfg)?;
        if keys.current_id().is_none() {
            return Err(SealError::NoKey.into());
        }
        let client = reqwest::Client::builder()
            // Every name the client connects to is resolved and vetted by the guard.
            .dns_resolver(Arc::new(guard.clone()))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect to whatever it resolves: never use one.
            .no_proxy()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_seconds))
            .timeout(Duration::from_secs(cfg.timeout_seconds))
            .user_agent(concat!("roar-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Sender {
            pool,
            guard,
            keys,
            client,
            cfg: cfg.clone(),
        })
    }

    /// Claims and sends due deliveries every `poll_interval_ms` until `cancel` fires; at most
    /// `concurrency` are in flight.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        // A claim outlives the longest attempt, so no other dispatcher sends it meanwhile.
        let lease = Duration::from_secs(self.cfg.timeout_seconds * 2 + 5);
        let mut last_sweep: Option<Instant> = None;
        loop {
            if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                last_sweep = Some(Instant::now());
                match store::sweep(&self.pool, self.cfg.retention_days).await {
                    Ok((d, c)) if d + c > 0 => {
                        tracing::info!(deliveries = d, callbacks = c, "old webhook records deleted")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot sweep old webhook records"),
                }
                match store::reseal(&self.pool, &self.keys).await {
                    Ok((n, left)) if n + left > 0 => {
                        tracing::info!(
                            resealed = n,
                            unreadable = left,
                            "webhook secrets re-sealed under the current key"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot re-seal webhook secrets"),
                }
            }
            let claimed = match store::claim(&self.pool, self.cfg.concurrency as i64, lease).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying");
                    Vec::new()
                }
            };
            let full = claimed.len() >= self.cfg.concurrency;
            futures::stream::iter(claimed)
                .for_each_concurrent(self.cfg.concurrency, |d| {
                    let this = self.clone();
                    async move { this.attempt(d).await }
                })
                .await;
            if let Ok(n) = store::pending(&self.pool).await {
                metrics::gauge!(WEBHOOK_PENDING).set(n as f64);
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    async fn attempt(&self, d: Due) {
        let started = Instant::now();
        let now = Utc::now();
        let a = self.send(&d, now).await;
        metrics::histogram!(WEBHOOK_DELIVERY_SECONDS).record(started.elapsed().as_secs_f64());
        let outcome = a.status.outcome();
        metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
        tracing::info!(webhook_id = %d.webhook_id, event_id = %d.event_id, attempt = d.attempts + 1, outcome, status_code = ?a.status_code, error = ?a.error, "webhook attempt");
        if let Err(e) = store::finish_attempt(&self.pool, &d, &a, Utc::now()).await {
            // The claim's lease ends and the attempt is made again: receivers dedupe by id.
            tracing::warn!(webhook_id = %d.webhook_id, event_id = %d.event_id, error = %e, "webhook attempt not recorded");
        }
    }

    /// The attempt's outcome; the retry time follows the attempts made so far.
    async fn send(&self, d: &Due, now: DateTime<Utc>) -> Attempt {
        let attempts = d.attempts + 1;
        let again = |code: Option<i32>, error: String| {
            if attempts as u32 >= self.cfg.max_attempts {
                Attempt {
                    status: DeliveryStatus::Failed,
                    status_code: code,
                    error: Some(error),
                    retry_at: now,
                }
            } else {
                Attempt {
                    status: DeliveryStatus::Pending,
                    status_code: code,
                    error: Some(error),
                    retry_at: now + backoff(&self.cfg, attempts as u32),
                }
            }
        };
        let refused = |e: &GuardError| Attempt {
            status: DeliveryStatus::Refused,
            status_code: None,
            error: Some(e.to_string()),
            retry_at: now,
        };
        // Literal addresses never reach the resolver: judge them here, before connecting.
        let url = match self.guard.check_url(&d.url) {
            Ok(u) => u,
            Err(e) => return refused(&e),
        };
        // A key problem is the operator's to fix (a retired key dropped too early): the
        // delivery waits for its next attempt, its record saying why.
        let secret = match d.signing_secret(&self.keys) {
            Ok(s) => s,
            Err(e) => return again(None, format!("cannot open the signing secret: {e}")),
        };
        let key = match sign::key(&secret) {
            Ok(k) => k,
            Err(e) => return refused(&GuardError::InvalidUrl(e.to_string())),
        };
        let ts = now.timestamp();
        let req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                sign::signature(&key, &d.event_id, ts, d.body.as_bytes()),
            )
            .body(d.body.clone());
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return match guard_error(&e) {
                    Some(g) if !g.retryable() => refused(g),
                    _ => again(None, describe(&e)),
                }
            }
        };
        let code = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = read_limited(resp, self.cfg.max_response_bytes).await;
        if code.is_success() {
            return Attempt {
                status: DeliveryStatus::Delivered,
                status_code: Some(code.as_u16() as i32),
                error: None,
                retry_at: now,
            };
        }
        let error = match (code.is_redirection(), location) {
            (true, Some(to)) => format!(
                "answered {code} to {to}: redirects are not followed (register the final URL)"
            ),
            _ => format!("answered {code}: {text}"),
        };
        again(Some(code.as_u16() as i32), error)
    }
}

/// Wait before attempt `attempts + 1`: `backoff_initial_ms` doubled per failure so far, at
/// most `backoff_max_ms`.
pub fn backoff(cfg: &WebhooksConfig, attempts: u32) -> chrono::Duration {
    let factor = 1u64 << attempts.saturating_sub(1).min(40);
    let ms = cfg
        .backoff_initial_ms
        .saturating_mul(factor)
        .min(cfg.backoff_max_ms);
    chrono::Duration::milliseconds(ms as i64)
}

/// The guard's verdict inside a client error (the resolver's error travels as its source).
fn guard_error(e: &reqwest::Error) -> Option<&GuardError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(g) = s.downcast_ref::<GuardError>() {
            return Some(g);
        }
        source = s.source();
    }
    None
}

/// A client error with its causes, one line.
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Reads at most `limit` bytes of the body (time-bounded by the client's timeout) and keeps
/// the start of it for the record.
async fn read_limited(mut resp: reqwest::Response, limit: u64) -> String {
    let mut buf = Vec::new();
    while (buf.len() as u64) < limit {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf)
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect()
}
