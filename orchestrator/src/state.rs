use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use roar_common::auth::Authenticator;
use roar_common::kafka::{ControlFollower, EventProducer};
use roar_common::storage::Storage;
use roar_common::Config;
use roar_projections::ReadModel;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::commands::jobs::PendingRequests;
use crate::fanout::Fanout;
use crate::notifier::Notifier;
use crate::ratelimit::RateLimiter;
use crate::status_cache::StatusCache;
use crate::streams::UserStreams;
use crate::throttle::DownloadThrottle;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub producer: EventProducer,
    pub storage: Storage,
    /// Queries over the projection's tables.
    pub read: ReadModel,
    /// The orchestrator's own tables (upload claims and registrations, quota admissions,
    /// dead-letter re-drives, webhooks and their deliveries) and its advisory locks. The quota
    /// count also reads the projection's `jobs` and `files` here, in the statement that counts
    /// the admissions the read model does not reflect yet (one snapshot, under the user's lock).
    pub(crate) db: PgPool,
    /// Shared, not copied: axum clones the state for every request (and an SSE stream used to
    /// keep a copy), and the authenticator's keys and validation rules are deep data.
    pub auth: Arc<Authenticator>,
    pub metrics: PrometheusHandle,
    /// What the control topic says: live workers (for `/models`).
    pub control: Arc<ControlFollower>,
    pub(crate) pending: PendingRequests,
    pub(crate) notifier: Notifier,
    /// One history read per commit for every open event stream.
    pub(crate) fanout: Fanout,
    /// Rendered `GET /status` bodies, valid until the next projection commit.
    pub(crate) status_cache: Arc<StatusCache>,
    pub(crate) limiter: RateLimiter,
    pub(crate) sse_slots: Arc<Semaphore>,
    /// Backlog pages SSE streams may read at once: half the pool (`database.max_connections`),
    /// so that streams replaying a long history never hold every connection and the other
    /// requests always find one.
    pub(crate) sse_catch_up: Arc<Semaphore>,
    pub(crate) user_streams: UserStreams,
    /// `http.download_bytes_per_second_per_user`; `None` when off.
    pub(crate) downloads: Option<DownloadThrottle>,
    /// Fires when the server stops, so long-lived streams end and shutdown is not held up.
    pub(crate) shutdown: CancellationToken,
}

impl AppState {
    pub fn new(
        cfg: Arc<Config>,
        producer: EventProducer,
        storage: Storage,
        pool: PgPool,
        auth: Authenticator,
        metrics: PrometheusHandle,
        control: Arc<ControlFollower>,
    ) -> Self {
        Self {
            limiter: RateLimiter::new(cfg.http.rate_limit_per_second, cfg.http.rate_limit_burst),
            sse_slots: Arc::new(Semaphore::new(cfg.http.sse_max_streams)),
            sse_catch_up: Arc::new(Semaphore::new(catch_up_readers(
                cfg.database.max_connections,
            ))),
            user_streams: UserStreams::new(cfg.http.sse_max_streams_per_user),
            downloads: DownloadThrottle::new(cfg.http.download_bytes_per_second_per_user),
            status_cache: Arc::new(StatusCache::new(
                cfg.http.status_cache_bytes,
                std::time::Duration::from_millis(cfg.http.status_cache_max_age_ms),
            )),
            cfg,
            producer,
            storage,
            read: ReadModel::new(pool.clone()),
            db: pool,
            auth: Arc::new(auth),
            metrics,
            control,
            pending: PendingRequests::default(),
            notifier: Notifier::default(),
            fanout: Fanout::default(),
            shutdown: CancellationToken::new(),
        }
    }
}

/// How many SSE backlog pages may be read at once with a pool of `pool` connections: half of
/// it, and at least one.
fn catch_up_readers(pool: u32) -> usize {
    (pool as usize / 2).max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_backlogs_leave_half_the_pool_to_requests() {
        assert_eq!(super::catch_up_readers(10), 5);
        assert_eq!(super::catch_up_readers(5), 2);
        assert_eq!(
            super::catch_up_readers(1),
            1,
            "a stream still reads its backlog"
        );
    }
}
