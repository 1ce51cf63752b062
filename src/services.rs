//! Starting each role from a configuration: topic bootstrap, the orchestrator, the projector, the
//! pipelines' process manager, the webhook dispatcher and the processors, each with its metrics and probes (the
//! orchestrator on `http.metrics_addr`, never its API port; the others on their `*.ops_addr`,
//! see [`crate::ops`]). Each runs until its cancellation token
//! fires.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use roar_common::auth::Authenticator;
use roar_common::kafka::{
    ensure_topics, run_consumer, BrokerWatch, ConsumerSpec, ControlFollower, EventProducer,
};
use roar_common::metrics::{BUILD_INFO, WORKERS_LIVE};
use roar_common::storage::Storage;
use roar_common::{telemetry, Config};
use roar_orchestrator::AppState;
use roar_processors::runtime::Model;
use roar_projections::ReadModel;
use roar_schemas::topics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ops::{self, Ops};

/// Creates missing topics and waits for the broker (up to 60 s).
pub async fn bootstrap_topics(cfg: &Config) -> Result<()> {
    if cfg.kafka.create_topics {
        ensure_topics(
            &cfg.kafka,
            &topics::all(cfg.kafka.partitions),
            Duration::from_secs(60),
        )
        .await
        .context("creating topics")?;
    }
    Ok(())
}

/// Connects to the read model's database and migrates it.
pub async fn database(cfg: &Config) -> Result<sqlx::PgPool> {
    let pool = roar_projections::connect(
        cfg.database.url.expose(),
        cfg.database.max_connections,
        Duration::from_secs(30),
    )
    .await
    .context("connecting to the read-model database (database.url)")?;
    roar_projections::migrate(&pool)
        .await
        .context("migrating the read model")?;
    Ok(pool)
}

/// Serves the orchestrator on `listener` until `cancel` fires.
pub async fn orchestrator(
    cfg: Arc<Config>,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<()> {
    // Before anything connects: an API that would sign links with a missing or weak key must
    // not start at all.
    cfg.validate_link_signing()?;
    // Metrics on a port of their own, which the network policy opens to Prometheus only.
    let ops = Ops::new("orchestrator");
    spawn_ops(
        &ops,
        cfg.http.metrics_addr,
        "http.metrics_addr",
        cancel.clone(),
    )
    .await?;
    let pool = database(&cfg).await?;
    let control = ControlFollower::spawn(&cfg.kafka, cancel.clone())?;
    started("orchestrator");
    tokio::spawn(count_live_workers(control.clone(), cancel.clone()));
    let state = AppState::new(
        cfg.clone(),
        EventProducer::new(&cfg.kafka)?,
        Storage::from_config(&cfg.storage)?,
        pool,
        Authenticator::new(&cfg.auth),
        telemetry::metrics_handle(),
        control,
    );
    ops.mark_started();
    roar_orchestrator::serve(state, listener, cancel).await?;
    Ok(())
}

/// Keeps `roar_workers_live{model}` at the number of workers the control topic says are alive,
/// every model present (0 is what the "no live worker" alert looks for).
async fn count_live_workers(control: Arc<ControlFollower>, cancel: CancellationToken) {
    loop {
        let live = control.live_workers(chrono::Utc::now());
        for model in topics::MODELS {
            let n = live.iter().filter(|w| w.model == model).count();
            metrics::gauge!(WORKERS_LIVE, "model" => model).set(n as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// `roar_build_info{role, version} 1`: which roles this process runs.
fn started(role: &'static str) {
    metrics::gauge!(BUILD_INFO, "role" => role, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Serves `ops` on `addr` (the `knob` that set it is named if binding fails) in the background.
async fn spawn_ops(
    ops: &Ops,
    addr: std::net::SocketAddr,
    knob: &str,
    cancel: CancellationToken,
) -> Result<()> {
    let listener = ops::bind(addr, knob).await?;
    tokio::spawn(ops.clone().serve(listener, cancel));
    Ok(())
}

/// Readiness of a consumer: the broker answers for `topic`.
fn broker_check(ops: Ops, cfg: &Config, topic: String) -> Result<Ops> {
    let watch = Arc::new(BrokerWatch::new(&cfg.kafka, Duration::from_secs(2))?);
    Ok(ops.check("broker", move || {
        let (watch, topic) = (watch.clone(), topic.clone());
        async move {
            tokio::task::spawn_blocking(move || watch.ping(&topic))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
    }))
}

/// Readiness of a role that keeps state in PostgreSQL: the database answers.
fn database_check(ops: Ops, pool: &sqlx::PgPool) -> Ops {
    let read_model = Arc::new(ReadModel::new(pool.clone()));
    ops.check("database", move || {
        let read_model = read_model.clone();
        async move { read_model.ping().await.map_err(|e| e.to_string()) }
    })
}

/// Readiness of a role that reads or writes objects: the store answers.
fn storage_check(ops: Ops, storage: Storage) -> Ops {
    ops.check("storage", move || {
        let storage = storage.clone();
        async move {
            storage
                .head("health/probe")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
}

/// Runs the projector until `cancel` fires, with its ops endpoint on `projector.ops_addr`.
pub async fn projector(cfg: Arc<Config>, cancel: CancellationToken) -> Result<()> {
    let ops = broker_check(Ops::new("projector"), &cfg, topics::JOB_EVENTS.into())?;
    spawn_ops(
        &ops,
        cfg.projector.ops_addr,
        "projector.ops_addr",
        cancel.clone(),
    )
    .await?;
    let pool = database(&cfg).await?;
    let ops = database_check(ops, &pool);
    let producer = EventProducer::new(&cfg.kafka)?;
    tokio::spawn(roar_projections::observe::report_loop(
        cfg.kafka.clone(),
        pool.clone(),
        cancel.clone(),
    ));
    started("projector");
    ops.mark_started();
    roar_projections::run(&cfg, pool, producer, cancel).await?;
    Ok(())
}

/// Runs the pipelines' process manager (consumer group `roar-pipeline`) until `cancel` fires,
/// with its ops endpoint on `pipeline.ops_addr`.
pub async fn pipeline(cfg: Arc<Config>, cancel: CancellationToken) -> Result<()> {
    let ops = broker_check(Ops::new("pipeline"), &cfg, topics::PIPELINES.into())?;
    spawn_ops(
        &ops,
        cfg.pipeline.ops_addr,
        "pipeline.ops_addr",
        cancel.clone(),
    )
    .await?;
    let pool = database(&cfg).await?;
    let ops = database_check(ops, &pool);
    started("pipeline");
    ops.mark_started();
    roar_projections::pipeline::run(&cfg, pool, cancel).await?;
    Ok(())
}

/// Runs the webhook dispatcher (consumer group `roar-webhooks`) until `cancel` fires, with its
/// ops endpoint on `webhooks.ops_addr`.
pub async fn webhooks(cfg: Arc<Config>, cancel: CancellationToken) -> Result<()> {
    let ops = broker_check(Ops::new("webhooks"), &cfg, topics::JOB_EVENTS.into())?;
    spawn_ops(
        &ops,
        cfg.webhooks.ops_addr,
        "webhooks.ops_addr",
        cancel.clone(),
    )
    .await?;
    let pool = database(&cfg).await?;
    let ops = database_check(ops, &pool);
    started("webhooks");
    ops.mark_started();
    roar_webhooks::run(&cfg, pool, cancel).await?;
    Ok(())
}

/// Runs the probe processor (consumer group `roar-probe`) until `cancel` fires, with its ops
/// endpoint on `processor.ops_addr`.
pub async fn probe(cfg: Arc<Config>, cancel: CancellationToken) -> Result<()> {
    let ops = processor_ops(&cfg, "probe", topics::FILES.into())?;
    spawn_ops(
        &ops,
        cfg.processor.ops_addr,
        "processor.ops_addr",
        cancel.clone(),
    )
    .await?;
    run_probe(cfg, ops, cancel).await
}

/// The readiness checks of a processor role consuming `topic`.
fn processor_ops(cfg: &Config, role: &'static str, topic: String) -> Result<Ops> {
    let ops = broker_check(Ops::new(role), cfg, topic)?;
    Ok(storage_check(ops, Storage::from_config(&cfg.storage)?))
}

async fn run_probe(cfg: Arc<Config>, ops: Ops, cancel: CancellationToken) -> Result<()> {
    let producer = EventProducer::new(&cfg.kafka)?;
    let storage = Storage::from_config(&cfg.storage)?;
    let handler = roar_processors::probe::Probe::new(
        storage,
        producer.clone(),
        roar_processors::audio::Limits::from_config(&cfg.processor),
    );
    let spec = ConsumerSpec {
        group: roar_processors::probe::GROUP.into(),
        topics: vec![topics::FILES.into()],
        kafka: cfg.kafka.clone(),
        fetch_wait_ms: cfg.processor.fetch_wait_ms,
    };
    started("probe");
    ops.mark_started();
    run_consumer(spec, handler, producer.clone(), cancel).await?;
    producer.drain(Duration::from_secs(5)).await;
    Ok(())
}

/// Runs the worker of `model` (consumer group `roar-<model>`) until `cancel` fires, with its ops
/// endpoint on `processor.ops_addr` (up while the weights load; ready once they have).
pub async fn processor(cfg: Arc<Config>, model: &str, cancel: CancellationToken) -> Result<()> {
    let ops = processor_ops(&cfg, "processor", topics::jobs_topic(model))?;
    spawn_ops(
        &ops,
        cfg.processor.ops_addr,
        "processor.ops_addr",
        cancel.clone(),
    )
    .await?;
    let model = load_model(&cfg, model)?;
    run_model(cfg, model, ops, cancel).await
}

async fn run_model(
    cfg: Arc<Config>,
    model: Arc<dyn Model>,
    ops: Ops,
    cancel: CancellationToken,
) -> Result<()> {
    started("processor");
    ops.mark_started();
    roar_processors::runtime::serve(model, &cfg, cancel).await?;
    Ok(())
}

/// The model implementation for `name`, with its weights found (or a clear error saying how to
/// get them).
pub fn load_model(cfg: &Config, name: &str) -> Result<Arc<dyn Model>> {
    // Asked for only once the weights are found, so a machine without them says that first.
    let device = || {
        roar_processors::device::select(cfg.processor.device)
            .with_context(|| format!("starting the {name} worker (processor.device)"))
    };
    match name {
        "pitch" => {
            let m = roar_processors::pitch::Pitch::new(&cfg.processor.models_dir)
                .context("starting the pitch worker (processor.models_dir)")?;
            Ok(Arc::new(m.on(device()?)))
        }
        "whisper" => {
            let m = roar_processors::whisper::WhisperModel::new(&cfg.processor.models_dir)
                .context("starting the whisper worker (processor.models_dir)")?
                .with_precision(cfg.whisper.precision);
            Ok(Arc::new(m.on(device()?)))
        }
        "demucs" => {
            let m = roar_processors::demucs::Demucs::new(&cfg.processor.models_dir)
                .context("starting the demucs worker (processor.models_dir)")?;
            Ok(Arc::new(m.on(device()?)))
        }
        "musicgen" => {
            let m = roar_processors::musicgen::Musicgen::new(&cfg.processor.models_dir)
                .context("starting the musicgen worker (processor.models_dir)")?
                .with_limits(cfg.musicgen.clone());
            Ok(Arc::new(m.on(device()?)))
        }
        "gemma3n" => {
            let m = roar_processors::gemma3n::Lyrics::new(&cfg.processor.models_dir)
                .context("starting the gemma3n (lyrics) worker (processor.models_dir)")?;
            Ok(Arc::new(m.on(device()?)))
        }
        m if topics::MODELS.contains(&m) => {
            anyhow::bail!("model {m} is not built into this binary yet")
        }
        m => anyhow::bail!(
            "unknown model {m:?}: expected probe or one of {:?}",
            topics::MODELS
        ),
    }
}

/// The catalogue with, per model, whether this machine can serve it (`roar models`).
pub fn describe_models(cfg: &Config, json: bool) -> String {
    let models = roar_common::catalog::models();
    let ready: Vec<(&str, std::result::Result<Vec<String>, String>)> = models
        .iter()
        .map(|m| {
            let r = load_model(cfg, m.name)
                .map(|model| model.variations())
                .map_err(|e| format!("{e:#}"));
            (m.name, r)
        })
        .collect();
    if json {
        let v: Vec<serde_json::Value> = models
            .iter()
            .zip(&ready)
            .map(|(m, (_, r))| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                v["served_variations"] = serde_json::json!(r.as_ref().ok());
                v["unavailable_reason"] = serde_json::json!(r.as_ref().err());
                v
            })
            .collect();
        return format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    let mut out = String::new();
    for (m, (_, r)) in models.iter().zip(&ready) {
        out += &format!("{} — {}\n", m.name, m.description);
        for v in &m.variations {
            let here = match r {
                Ok(served) if served.iter().any(|s| s == v.name) => "ready",
                Ok(_) => "weights missing",
                Err(_) => "unavailable",
            };
            let default = if v.name == m.default_variation {
                " (default)"
            } else {
                ""
            };
            out += &format!(
                "  {}{default}: {} [{}] — {here}\n",
                v.name, v.description, v.model_version
            );
        }
        for p in &m.params {
            let kind = serde_json::to_value(&p.kind).unwrap_or_default();
            let default = p
                .default
                .as_ref()
                .map(|d| format!(" = {d}"))
                .unwrap_or_default();
            out += &format!("  param {}{default}: {} {kind}\n", p.name, p.description);
        }
        if let Err(e) = r {
            out += &format!("  unavailable: {e}\n");
        }
    }
    out
}

/// Runs every service in this process (what `roar dev` and the end-to-end tests do). Returns
/// when `cancel` fires and all have stopped, or as soon as one fails (the others are then
/// canceled too).
pub async fn all(cfg: Arc<Config>, listener: TcpListener, cancel: CancellationToken) -> Result<()> {
    all_with(
        cfg,
        listener,
        cancel,
        Roles {
            pipeline: true,
            webhooks: true,
        },
    )
    .await
}

/// Which optional roles [`all_with`] runs in the process.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    /// The pipelines' process manager (a test may run it as a process of its own, to kill it).
    pub pipeline: bool,
    /// The webhook dispatcher.
    pub webhooks: bool,
}

/// [`all`], with the optional roles `roles` names.
pub async fn all_with(
    cfg: Arc<Config>,
    listener: TcpListener,
    cancel: CancellationToken,
    roles: Roles,
) -> Result<()> {
    bootstrap_topics(&cfg).await?;
    // Migrate once before the roles start so they don't race on the migration lock.
    database(&cfg).await?;
    let mut set = tokio::task::JoinSet::new();
    let guard = cancel.child_token();
    set.spawn(orchestrator(cfg.clone(), listener, guard.clone()));
    set.spawn(projector(cfg.clone(), guard.clone()));
    if roles.pipeline {
        set.spawn(pipeline(cfg.clone(), guard.clone()));
    }
    if roles.webhooks {
        set.spawn(webhooks(cfg.clone(), guard.clone()));
    }
    // The probe and the model workers share one ops endpoint here: they share the process.
    let ops = processor_ops(&cfg, "processor", topics::FILES.into())?;
    spawn_ops(
        &ops,
        cfg.processor.ops_addr,
        "processor.ops_addr",
        guard.clone(),
    )
    .await?;
    set.spawn(run_probe(cfg.clone(), ops.clone(), guard.clone()));
    // Model workers whose weights are here; the others are named with the fix.
    for name in topics::MODELS {
        match load_model(&cfg, name) {
            Ok(model) => {
                set.spawn(run_model(cfg.clone(), model, ops.clone(), guard.clone()));
            }
            Err(e) => {
                tracing::warn!(model = name, reason = %format!("{e:#}"), "model worker not started")
            }
        }
    }
    let mut first_error = None;
    while let Some(res) = set.join_next().await {
        let res = res.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = res {
            tracing::error!(error = %format!("{e:#}"), "a service failed; stopping the others");
            guard.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
