//! The operations endpoint of the roles without an API (the projector, the probe, the model
//! workers): `/metrics` (Prometheus), `/health` (the process answers: liveness) and `/ready`
//! (the role has started and its dependencies answer: readiness), on the role's own
//! `*.ops_addr`. The orchestrator serves the same three paths on its API port.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// Longest one readiness check may take before it counts as failed (kubelet probes time out
/// after a few seconds; a hung dependency must answer "not ready", not hang the probe).
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/ready` checks for one role. Cloning shares the started flag.
#[derive(Clone)]
pub struct Ops {
    role: &'static str,
    started: Arc<AtomicBool>,
    checks: Vec<(&'static str, Check)>,
}

impl Ops {
    pub fn new(role: &'static str) -> Self {
        Self {
            role,
            started: Arc::new(AtomicBool::new(false)),
            checks: Vec::new(),
        }
    }

    /// Adds a dependency `/ready` asks on every request (`name` appears in its body).
    pub fn check<F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(f()) as CheckFuture)));
        self
    }

    /// The role is running (weights loaded, consumers started): `/ready` may answer 200.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Serves the three paths on `listener` until `cancel` fires.
    pub async fn serve(
        self,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, role = self.role, "ops endpoint listening (/metrics, /health, /ready)");
        let app = Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(Arc::new(self));
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
    }
}

async fn health(State(ops): State<Arc<Ops>>) -> Json<Value> {
    Json(json!({ "status": "ok", "role": ops.role, "version": env!("CARGO_PKG_VERSION") }))
}

async fn ready(State(ops): State<Arc<Ops>>) -> (StatusCode, Json<Value>) {
    let started = ops.started.load(Ordering::SeqCst);
    let mut ok = started;
    let mut checks = Map::new();
    for (name, check) in &ops.checks {
        let r = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        // The body says which dependency failed, the log says why (the port is unauthenticated:
        // error texts may name hosts).
        if let Err(e) = &r {
            tracing::warn!(check = name, error = %e, "readiness check failed");
        }
        ok &= r.is_ok();
        checks.insert(name.to_string(), json!(r.is_ok()));
    }
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if ok { "ok" } else { "not ready" };
    (
        code,
        Json(json!({ "status": status, "role": ops.role, "started": started, "checks": checks })),
    )
}

async fn metrics() -> String {
    roar_common::telemetry::metrics_handle().render()
}

/// Binds a role's ops address, naming the knob in the error.
pub async fn bind(addr: std::net::SocketAddr, knob: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the ops endpoint {addr} ({knob})"))
}
