//! The orchestrator under load from another process, so the server's CPU and memory are its
//! own: `serve` starts the real stack (tansu in memory and a throw-away PostgreSQL as child
//! processes; orchestrator, projector, probe and pipeline manager in this process, no model
//! worker), uploads two files with a few jobs each, prints one JSON line (`base`, `token`,
//! `file_id`, `sse_file_id` (the idle streams' song), `pid`, `brokers`) and serves until stdin
//! closes; each `heap` line on stdin prints one JSON line of the allocator's own accounting
//! (glibc `mallinfo2`: bytes in use, bytes free inside the heap, bytes in mmapped blocks), so
//! the script can tell live data from what the allocator keeps. The other modes are the load
//! generator, run as a second process against that line's values. `scripts/bench-api.sh` runs
//! them all and reads the server's resident memory from /proc (see docs/benchmarks.md).
//!
//! ```sh
//! cargo bench --bench api_load -- serve [worker]
//! cargo bench --bench api_load -- get|post-new|post-existing BASE TOKEN FILE_ID [REQUESTS] [IN_FLIGHT]
//! cargo bench --bench api_load -- sse BASE TOKEN FILE_ID [STREAMS] [HOLD_SECONDS]
//! cargo bench --bench api_load -- job-started BASE TOKEN FILE_ID BROKERS [REQUESTS] [IN_FLIGHT]
//! ```
//!
//! `serve worker` also runs a pitch worker in the server process: the real worker runtime
//! around a model that answers at once (`job_started::NoopPitch`), for the `job-started` mode
//! (`scripts/bench-job-started.sh`); the line it prints then has `brokers` for that mode's
//! observer. The other rows are taken without it.
//!
//! The load modes print one line: requests per second, p50/p99/max latency. `sse` opens
//! STREAMS idle `GET /status/{id}/events` streams, prints `open N` once all are open, holds
//! them HOLD_SECONDS and fails if any ended meanwhile (or was refused: the answer's body says
//! which limit). `job-started` prints the same line for new pitch jobs, each counted from its
//! request to its worker's `JobStarted`, then the split (see `api_load/job_started.rs`).

mod common;
#[path = "api_load/job_started.rs"]
mod job_started;
#[path = "../tests/e2e/support/mod.rs"]
mod support;

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use serde_json::json;

use tokio_util::sync::CancellationToken;

use crate::common::load;
use crate::support::{Infra, Services};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .context("missing argument (see the header)")
    };
    let num = |i: usize, default: usize| -> Result<usize> {
        args.get(i)
            .map_or(Ok(default), |a| a.parse().context("not a number"))
    };
    match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1).is_some_and(|a| a == "worker")).await,
        Some(mode @ ("get" | "post-new" | "post-existing")) => {
            let target = Target::new(arg(1)?, arg(2)?, arg(3)?);
            requests(&target, mode, num(4, 5000)?, num(5, 32)?).await
        }
        Some("sse") => {
            let target = Target::new(arg(1)?, arg(2)?, arg(3)?);
            sse(&target, num(4, 10_000)?, num(5, 10)?).await
        }
        Some("job-started") => {
            let target = Target::new(arg(1)?, arg(2)?, arg(3)?);
            job_started::run(&target, &arg(4)?, num(5, 5000)?, num(6, 32)?).await
        }
        _ => bail!(
            "usage: api_load serve | get | post-new | post-existing | sse | job-started (see the \
             header)"
        ),
    }
}

async fn serve(with_worker: bool) -> Result<()> {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No model worker here: the server's own cost is what is measured.
    let empty = tempfile::tempdir()?;
    cfg.processor.models_dir = empty.path().to_path_buf();
    // One user sends every request: the rate limit and the per-user quotas (0 = unlimited)
    // would turn the post-new row into 429s once its user has `jobs_in_flight` jobs queued
    // (no worker runs them). Only this bench's stack is configured so; production keeps them.
    cfg.http.rate_limit_per_second = 0.0;
    cfg.quota.jobs_in_flight = 0;
    cfg.quota.jobs_per_day = 0;
    cfg.quota.pending_uploads = 0;
    cfg.quota.stored_bytes = 0;
    cfg.http.sse_max_streams_per_user = 1 << 20;
    cfg.database.max_connections = 10;
    cfg.telemetry.log_level = "error".into();
    if with_worker {
        // tansu 0.6's object-store engine (in memory here too) answers a fetch with the batches
        // that start at or after its offset: the worker, resuming inside a batch of several
        // requests after a pause, never saw the rest of it (jobs stayed queued for good). One
        // event per batch leaves no inside (kafka.batch_max_messages, docs/reliability.md).
        cfg.kafka.batch_max_messages = 1;
    }
    let worker_cfg = cfg.clone();
    let svc = Services::start(cfg).await;
    let stop_worker = CancellationToken::new();
    let worker = with_worker.then(|| {
        let cancel = stop_worker.clone();
        tokio::spawn(async move {
            let model = std::sync::Arc::new(job_started::NoopPitch);
            roar_processors::runtime::serve(model, &worker_cfg, cancel).await
        })
    });
    let token = svc.token("bench", &[]);
    // Two songs of 5 jobs each (no worker runs them), so /status has rows to render: the load
    // rows use the first (post-new adds its jobs there), the idle streams the second. A stream
    // opens with its song's whole history: on the first, after post-new, that is thousands of
    // events per stream, which is not an idle stream.
    let mut files = Vec::new();
    for name in ["sine.wav", "sine.flac"] {
        let file = svc.ready_file(&token, name, support::fixture(name)).await;
        for d in 0..5 {
            let body = json!({"file_id": file, "model": "musicgen", "params": {"duration": 2 + d}});
            let (code, _) = svc.post_json(&token, "/process", &body).await;
            if code != 202 {
                bail!("POST /process answered {code}");
            }
        }
        files.push(file);
    }
    let line = json!({"base": svc.base, "token": token, "file_id": files[0],
                      "sse_file_id": files[1], "pid": std::process::id(),
                      "brokers": svc.cfg.kafka.brokers});
    println!("{line}");
    std::io::stdout().flush()?;
    // Serve until whoever started us closes our stdin; answer its `heap` probes meanwhile.
    tokio::task::spawn_blocking(|| {
        for line in std::io::stdin().lock().lines() {
            if line.is_ok_and(|l| l.trim() == "heap") {
                println!("{}", heap());
                let _ = std::io::stdout().flush();
            }
        }
    })
    .await?;
    stop_worker.cancel();
    if let Some(w) = worker {
        w.await??;
    }
    svc.stop().await;
    drop(infra);
    Ok(())
}

/// The allocator's accounting, as one JSON line: `in_use` (bytes handed out from the heap),
/// `mmapped` (large blocks mapped on their own, also live) and `free` (freed bytes the heap
/// keeps, which RSS still counts where they were touched). glibc only.
fn heap() -> serde_json::Value {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value; it only
        // reads the allocator's statistics under the allocator's own locks.
        let m = unsafe { libc::mallinfo2() };
        json!({"heap": {"in_use": m.uordblks, "mmapped": m.hblkhd, "free": m.fordblks}})
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    json!({"heap": null})
}

struct Target {
    base: String,
    token: String,
    file: String,
}

impl Target {
    fn new(base: String, token: String, file: String) -> Self {
        Self { base, token, file }
    }
}

/// `n` requests of `mode`, `c` in flight, on one connection pool.
async fn requests(t: &Target, mode: &str, n: usize, c: usize) -> Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(c * 2)
        .build()?;
    let send = |i: usize| {
        let req = match mode {
            "get" => client.get(format!("{}/status/{}", t.base, t.file)),
            _ => {
                // A new job each time: the params differ, so does the job id. Started once per
                // run so repeated runs against one server stay new.
                let params = if mode == "post-new" {
                    json!({"duration": 1.0 + i as f64 * 1e-6, "prompt": format!("bench {}", start_id())})
                } else {
                    json!({"duration": 2})
                };
                client
                    .post(format!("{}/process", t.base))
                    .json(&json!({"file_id": t.file, "model": "musicgen", "params": params}))
            }
        };
        let req = req.bearer_auth(&t.token);
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(599) }
    };
    // Warm the pool and the server's caches first.
    let _ = load(c * 4, c, &send).await;
    let run = load(n, c, &send).await;
    report(mode, run.latencies, run.wall, &run.failed);
    Ok(())
}

/// A per-process stamp, so post-new bodies differ between runs against one server.
fn start_id() -> u128 {
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    })
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration, failed: &[u16]) {
    lat.sort();
    if lat.is_empty() {
        println!("{name}: every request failed ({})", failures(failed));
        return;
    }
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<14} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} ok, {})",
        lat.len() as f64 / wall.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*lat.last().expect("not empty")),
        lat.len(),
        failures(failed),
    );
}

/// "0 failed", or the count per status, so a refused row says why it is not a figure.
fn failures(codes: &[u16]) -> String {
    if codes.is_empty() {
        return "0 failed".into();
    }
    let mut by = std::collections::BTreeMap::<u16, usize>::new();
    for c in codes {
        *by.entry(*c).or_default() += 1;
    }
    let list: Vec<String> = by.iter().map(|(c, n)| format!("{n}× {c}")).collect();
    format!("{} failed: {}; NOT A FIGURE", codes.len(), list.join(", "))
}

/// Opens `streams` idle SSE streams (a connection each), holds them `hold` seconds, then
/// checks every one is still open.
async fn sse(t: &Target, streams: usize, hold: usize) -> Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let url = format!("{}/status/{}/events", t.base, t.file);
    let mut open = Vec::with_capacity(streams);
    // A few hundred connects at a time: the listen backlog is finite.
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while next < streams || !pending.is_empty() {
        while next < streams && pending.len() < 256 {
            pending.push(client.get(&url).bearer_auth(&t.token).send());
            next += 1;
        }
        if let Some(r) = pending.next().await {
            let r = r.with_context(|| format!("opening stream {}", open.len()))?;
            if r.status() != 200 {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                bail!("stream {} answered {status}: {body}", open.len());
            }
            open.push(r.bytes_stream());
        }
    }
    println!("open {}", open.len());
    std::io::stdout().flush()?;
    tokio::time::sleep(Duration::from_secs(hold as u64)).await;
    // A stream the server closed (or broke) has ended by now; an open idle one has nothing.
    let mut ended = 0;
    for s in &mut open {
        if matches!(s.next().now_or_never(), Some(None | Some(Err(_)))) {
            ended += 1;
        }
    }
    println!("{streams} streams held {hold} s; {ended} ended early");
    if ended > 0 {
        bail!("{ended} of {streams} streams ended while idle");
    }
    Ok(())
}
