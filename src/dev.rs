//! `roar dev`: the whole system on one machine with no Docker. A PostgreSQL cluster
//! (`.roar/pg/`, or `DATABASE_URL`), a tansu broker keeping its log in that database (schema
//! `tansu`), a local object store (`.roar/store/`) and every service in this process. State
//! survives a restart; Ctrl-C stops everything cleanly. The broker and PostgreSQL die with this
//! process even when it is killed (SIGKILL included), and a start first stops anything an
//! earlier run left in its directory, so a crashed `roar dev` is restarted by running it again;
//! interrupted work is redelivered.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use roar_common::auth::Authenticator;
use roar_common::config::Secret;
use roar_common::Config;
use tokio_util::sync::CancellationToken;

use crate::stack::{self, Broker, Postgres};

mod weights;

/// Options of `roar dev`.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// Do not install the broker when it is missing (fail with the command instead), and fetch
    /// no model weights.
    pub no_install: bool,
}

fn port_free(port: u16, what: &str, knob: &str) -> Result<()> {
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        bail!("port {port} for {what} is in use: stop what holds it or set {knob}");
    }
    Ok(())
}

fn tansu_binary(cfg: &Config, opts: &DevOptions) -> Result<std::path::PathBuf> {
    let flavor = stack::TansuFlavor::Durable;
    if let Some(p) = stack::find_tansu(&cfg.dev.tansu_bin, flavor) {
        return Ok(p);
    }
    let install = flavor.install_command();
    if opts.no_install {
        bail!("the tansu broker (with PostgreSQL storage) is not installed: run `{install}` (or set ROAR_DEV__TANSU_BIN)");
    }
    eprintln!("roar dev: the tansu broker is missing; installing it once with `{install}` (about 10 minutes on 2 cores)…");
    let root = flavor
        .root()
        .context("neither CARGO_HOME nor HOME is set")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args([
            "install",
            "tansu",
            "--locked",
            "--version",
            stack::TANSU_VERSION,
            "--features",
            flavor.features(),
            "--root",
        ])
        .arg(&root)
        .status()
        .with_context(|| format!("running {cargo}: is the Rust toolchain installed?"))?;
    if !status.success() {
        bail!("installing tansu failed ({status}); run `{install}` by hand to see why");
    }
    stack::find_tansu(&cfg.dev.tansu_bin, flavor).with_context(|| {
        format!(
            "tansu was installed but {} has no bin/tansu",
            root.display()
        )
    })
}

/// A random key kept in `dir/name`, made on first use (64 hex characters).
fn dev_secret(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    if let Ok(s) = std::fs::read_to_string(&path) {
        if s.trim().len() >= roar_common::config::MIN_LINK_SECRET_LEN {
            return Ok(s.trim().to_string());
        }
    }
    let s = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::write(&path, &s)?;
    Ok(s)
}

/// `kafka.idle_pause_ms` under `roar dev` when the configuration leaves it unset.
const DEV_IDLE_PAUSE_MS: u64 = 1000;

/// The file in dev.dir holding the token key `roar dev` made.
pub const TOKEN_KEY_FILE: &str = "dev-secret";

/// The token key `roar dev` signs with in `cfg.dev.dir` when auth.jwt_secret is unset (what
/// `roar token` needs to mint tokens that stack accepts), if a `roar dev` has made one there.
pub fn existing_token_key(cfg: &Config) -> Option<String> {
    let s = std::fs::read_to_string(cfg.dev.dir.join(TOKEN_KEY_FILE)).ok()?;
    let s = s.trim();
    (s.len() >= roar_common::config::MIN_LINK_SECRET_LEN).then(|| s.to_string())
}

/// Where a `roar dev` from before the broker moved into PostgreSQL kept the broker's log.
const SQLITE_BROKER_LOG: &str = "broker/tansu.db";

/// A directory whose broker log is in SQLite (an older `roar dev`) cannot go on: this broker
/// starts empty in PostgreSQL, while the read model and the projector's positions in `pg/` refer
/// to the old log's offsets, so new events would be skipped. Nothing is deleted for the user.
fn refuse_sqlite_broker_log(dir: &Path) -> Result<()> {
    let old = dir.join(SQLITE_BROKER_LOG);
    if !old.exists() {
        return Ok(());
    }
    // A cluster moved out of the postgres user's reach lives elsewhere, behind a link.
    let pg = dir.join("pg");
    let moved = match std::fs::read_link(&pg) {
        Ok(target) => format!(" and {} (its PostgreSQL cluster)", target.display()),
        Err(_) => String::new(),
    };
    bail!(
        "{} is the broker log of an older `roar dev` (SQLite), which this one cannot read: the broker keeps its log in PostgreSQL now. Move {}{moved} aside (or delete them) to start afresh, or set ROAR_DEV__DIR to a new directory",
        old.display(),
        dir.display()
    )
}

/// Runs the development stack until `cancel` fires.
pub async fn run(mut cfg: Config, opts: DevOptions, cancel: CancellationToken) -> Result<()> {
    let dir = std::path::absolute(&cfg.dev.dir)?;
    std::fs::create_dir_all(dir.join("broker"))?;
    // One roar dev per directory: what a live one runs is not a leftover.
    let marker = dir.join("roar-dev.pid");
    if let Some(pid) = stack::tied::pid_file_process(&marker) {
        bail!(
            "another `roar dev` (pid {pid}) is running on {}: stop it first",
            dir.display()
        );
    }
    // The marker outlives only a run that did not stop cleanly.
    let unclean = marker.exists();
    for what in stack::stop_leftovers(&dir) {
        eprintln!("roar dev: stopped {what}, left running by an earlier run");
    }
    refuse_sqlite_broker_log(&dir)?;
    stack::tied::write_pid_file(&marker, std::process::id())?;
    let tansu = tansu_binary(&cfg, &opts)?;
    if !opts.no_install {
        let (models, checkout) = (cfg.processor.models_dir.clone(), std::env::current_dir()?);
        let skipped =
            tokio::task::spawn_blocking(move || weights::fetch_missing(&models, &checkout)).await?;
        for note in skipped {
            eprintln!("roar dev: {note}");
        }
    }

    let external_db = std::env::var("DATABASE_URL")
        .ok()
        .or_else(|| std::env::var("ROAR_DATABASE__URL").ok());
    let _pg = match external_db {
        Some(url) => {
            cfg.database.url = Secret::new(url);
            None
        }
        None => {
            port_free(
                cfg.dev.postgres_port,
                "PostgreSQL",
                "ROAR_DEV__POSTGRES_PORT",
            )?;
            let (cluster, moved) = stack::reachable_cluster_dir(&dir.join("pg"))?;
            if moved {
                eprintln!(
                    "roar dev: the postgres user cannot reach {}; its cluster is in {} (linked from there)",
                    dir.join("pg").display(),
                    cluster.display()
                );
            }
            let pg = Postgres::start(&cluster, cfg.dev.postgres_port)?;
            pg.ensure_database("roar").await?;
            cfg.database.url = Secret::new(pg.url("roar"));
            Some(pg)
        }
    };

    port_free(
        cfg.dev.kafka_port,
        "the Kafka broker",
        "ROAR_DEV__KAFKA_PORT",
    )?;
    let storage = stack::broker_pg::prepare(cfg.database.url.expose()).await?;
    let broker = Broker::start(
        &tansu,
        cfg.dev.kafka_port,
        &storage,
        &dir.join("broker/tansu.log"),
    )?;
    // For the next start, should this broker ever outlive this process.
    stack::tied::write_pid_file(&dir.join("broker/tansu.pid"), broker.pid())?;
    cfg.kafka.brokers = broker.bootstrap();
    if unclean {
        // The killed run's consumers are still members of their groups in the broker's state.
        // A group whose leader vanished mid-generation can hand a new member no partitions, so
        // joining waits until the broker has expired them (one session timeout).
        let wait = Duration::from_millis(u64::from(cfg.kafka.session_timeout_ms) + 2000);
        eprintln!(
            "roar dev: the last run did not stop cleanly; waiting {} s for the broker to expire its consumers",
            wait.as_secs()
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Ok(()),
        }
    }

    // Every role runs in this process, so an event wakes its idle consumer at once: pausing
    // idle consumers costs no latency here and spares the broker a fetch per consumer every
    // few milliseconds.
    cfg.kafka.idle_pause_ms.get_or_insert(DEV_IDLE_PAUSE_MS);
    if cfg.storage.url == roar_common::config::StorageConfig::default().url {
        cfg.storage.url = format!("file://{}", dir.join("store").display());
    }
    if cfg.auth.jwt_secret.expose().is_empty() {
        cfg.auth.jwt_secret = Secret::new(dev_secret(&dir, TOKEN_KEY_FILE)?);
    }
    // Links get a key of their own, kept per dev dir like the token key.
    if cfg.auth.link_secret.expose().is_empty() {
        cfg.auth.link_secret = Secret::new(dev_secret(&dir, "dev-link-secret")?);
    }
    // And the webhooks' signing secrets are sealed under a third.
    if cfg.webhooks.secret_key.expose().is_empty() {
        cfg.webhooks.secret_key = Secret::new(dev_secret(&dir, "dev-webhook-key")?);
    }
    cfg.validate()?;

    let listener = tokio::net::TcpListener::bind(cfg.http.addr)
        .await
        .with_context(|| format!("binding {} (set ROAR_HTTP__ADDR)", cfg.http.addr))?;
    let addr = listener.local_addr()?;
    let token = Authenticator::new(&cfg.auth).mint("dev-user", &[], Some(7 * 24 * 3600))?;
    eprintln!(
        "\nroar dev is up\n  API        http://{addr}  (try: curl http://{addr}/health)\n  metrics    http://{}/metrics\n  Kafka      {}\n  Postgres   {}\n  storage    {}\n  dev token  {token}\n  studio     http://{addr}/studio/#token={token}\n\nCtrl-C stops everything; state is kept in {}\n",
        cfg.http.metrics_addr,
        cfg.kafka.brokers,
        redact(cfg.database.url.expose()),
        cfg.storage.url,
        dir.display()
    );
    let cfg = Arc::new(cfg);
    let result = crate::services::all(cfg, listener, cancel).await;
    drop(broker);
    let _ = std::fs::remove_file(&marker);
    result
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((creds, rest)) if creds.contains(':') && creds.matches(':').count() > 1 => {
            let scheme = creds.split("://").next().unwrap_or("postgres");
            format!("{scheme}://***@{rest}")
        }
        _ => url.to_string(),
    }
}
