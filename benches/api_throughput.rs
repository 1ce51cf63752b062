//! The orchestrator on loopback against the real stack (tansu in memory, a throw-away
//! PostgreSQL, the local object store), all services in this process:
//!
//!   cargo bench --bench api_throughput [-- REQUESTS CONCURRENCY SSE_SUBSCRIBERS]
//!
//! Measures GET /status (read model), POST /process that emits a new JobRequested (broker ack
//! on the request path), POST /process for a job that exists (read model only), each with
//! throughput and latency percentiles; then the memory of N idle SSE subscribers (resident set
//! growth of this process, which holds both the server and the client side of each stream).

mod common;

use std::sync::Arc;
use std::time::Duration;

use roar::stack::{find_tansu, free_port, Broker, Postgres, TansuFlavor};
use roar_common::auth::Authenticator;
use roar_common::config::Secret;
use roar_common::Config;
use roar_schemas::FileStatus;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::load;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{name:<34} {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ({} requests)",
        lat.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        lat.len()
    );
}

/// `n` requests of `make(i)` with `c` in flight: their latencies and the wall time. A bench of
/// a path that answers anything but 2xx measures nothing: it stops there.
async fn load_ok<F, Fut>(n: usize, c: usize, make: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let run = load(n, c, &make).await;
    assert!(run.failed.is_empty(), "statuses {:?}", run.failed);
    (run.latencies, run.wall)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(5000);
    let c = args.get(1).copied().unwrap_or(32);
    let subs = args.get(2).copied().unwrap_or(1000);

    let dir = tempfile::tempdir()?;
    let tansu = find_tansu("", TansuFlavor::Memory)
        .ok_or_else(|| anyhow::anyhow!("tansu not found: run scripts/install-tansu.sh"))?;
    let broker = Broker::start(
        &tansu,
        free_port()?,
        "memory://tansu/",
        &dir.path().join("tansu.log"),
    )?;
    let pg = Postgres::start(&dir.path().join("pg"), free_port()?)?;
    pg.ensure_database("roar").await?;
    let mut cfg = Config::default();
    cfg.kafka.brokers = broker.bootstrap();
    cfg.database.url = Secret::new(pg.url("roar"));
    cfg.storage.url = format!("file://{}", dir.path().join("store").display());
    cfg.auth.jwt_secret = Secret::new("bench-secret-0123456789abcdef");
    cfg.auth.link_secret = Secret::new("bench-link-key-4f1c9a7e2b8d6053a1e9");
    cfg.webhooks.secret_key = Secret::new("bench-webhook-key-7a2e9c1f4b6d8035e2a7");
    // One user sends every request: without this the new-job row runs into the per-user
    // quotas (0 = unlimited) after `jobs_in_flight` jobs. This bench's stack only.
    cfg.http.rate_limit_per_second = 0.0;
    cfg.quota.jobs_in_flight = 0;
    cfg.quota.jobs_per_day = 0;
    cfg.quota.pending_uploads = 0;
    cfg.quota.stored_bytes = 0;
    cfg.telemetry.log_level = "error".into();
    roar_common::telemetry::init_tracing(&cfg.telemetry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    cfg.http.public_url = base.clone();
    let cfg = Arc::new(cfg);
    let cancel = CancellationToken::new();
    let services = tokio::spawn(roar::services::all(cfg.clone(), listener, cancel.clone()));
    let token = Authenticator::new(&cfg.auth).mint("bench", &[], None)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(c * 2)
        .build()?;
    for _ in 0..400 {
        if client
            .get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let wav = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/audio/sine.wav"
    ))?;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(wav).file_name("sine.wav"),
    );
    let up: Value = client
        .post(format!("{base}/upload"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    let file = up["file_id"].as_str().unwrap().to_string();
    loop {
        let st: Value = client
            .get(format!("{base}/status/{file}"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if st["file"]["status"] == FileStatus::Ready.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few jobs, so /status has rows to render.
    for d in 0..5 {
        client
            .post(format!("{base}/process"))
            .bearer_auth(&token)
            .json(&json!({"file_id": file, "model": "musicgen", "params": {"duration": 2 + d}}))
            .send()
            .await?;
    }
    println!(
        "machine: {} cores; {n} requests per run, {c} in flight; loopback HTTP/1.1",
        std::thread::available_parallelism()?.get()
    );

    let get = |_i: usize| {
        let (client, url, token) = (
            client.clone(),
            format!("{base}/status/{file}"),
            token.clone(),
        );
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(599)
        }
    };
    load_ok(200, c, get).await; // warm-up
    let (lat, wall) = load_ok(n, c, get).await;
    report("GET /status/{file_id}", lat, wall);

    let post = |params: Value| {
        let (client, url, token) = (client.clone(), format!("{base}/process"), token.clone());
        let body = json!({"file_id": file, "model": "musicgen", "params": params});
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(599)
        }
    };
    // Each request a new job: the duration param differs, so does the job id.
    let (lat, wall) = load_ok(n, c, |i| {
        post(json!({"duration": 1.0 + (i as f64) * 28.0 / n as f64, "prompt": "bench"}))
    })
    .await;
    report("POST /process (new job, event)", lat, wall);
    let (lat, wall) = load_ok(n, c, |_| post(json!({"duration": 2}))).await;
    report("POST /process (existing job)", lat, wall);

    // Idle SSE subscribers: open them, let them settle, measure resident memory growth.
    let before = rss_kib();
    let mut streams = Vec::with_capacity(subs);
    for _ in 0..subs {
        let r = client
            .get(format!("{base}/status/{file}/events"))
            .bearer_auth(&token)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        streams.push(r);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib();
    println!(
        "{subs} idle SSE subscribers: RSS +{} KiB ({:.1} KiB each, server and client side together)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / subs as f64
    );
    drop(streams);
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), services).await;
    Ok(())
}
