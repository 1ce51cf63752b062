//! The `job-started` mode: how long a new job takes from `POST /process` to its worker's
//! `JobStarted`, with `IN_FLIGHT` jobs between the two at any time. The server runs the real
//! worker runtime (consumer loop, manifest check, decode, outputs, events) around a model
//! that returns at once ([`NoopPitch`], `serve worker`): what is measured is the hand-off
//! (the orchestrator's admission and produce, the broker, the worker's fetch), not CREPE.
//!
//! Per job three times are taken, all from the moment the request is sent:
//! - the `202` answer (what a client waits for);
//! - `JobStarted` seen on `roar.jobs.events.v1` by this process's own consumer (the issue's
//!   figure; it includes that consumer's fetch, `fetch.wait.max.ms` = 1);
//! - the `JobStarted` event's own time, stamped by the worker as it sends it (same machine,
//!   same clock): the hand-off without the event's trip back to an observer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use roar_processors::runtime::{Input, Model, ModelError, OutputFile, RunContext};
use roar_schemas::topics::JOB_EVENTS;
use roar_schemas::{JobBody, JobEvent};
use serde_json::json;
use tokio::sync::oneshot;

use crate::common::load;
use crate::Target;

/// Stands in for the pitch model on the real worker runtime: it answers at once with one
/// small output, so each job's cost is the runtime's alone.
pub struct NoopPitch;

impl Model for NoopPitch {
    fn name(&self) -> &'static str {
        "pitch"
    }

    fn version(&self) -> String {
        "bench-noop".into()
    }

    fn variations(&self) -> Vec<String> {
        // The catalogue's version of `tiny` is served (runtime::served), so the jobs
        // `POST /process` requests for pitch run here.
        vec!["tiny".into()]
    }

    fn run(&self, _: &Input, _: &mut RunContext) -> Result<Vec<OutputFile>, ModelError> {
        Ok(vec![OutputFile::text(
            "f0.json",
            "f0",
            "application/json",
            "[]".into(),
        )])
    }
}

/// When a job's `JobStarted` was seen here, and the time the worker stamped on it.
type Started = (Instant, DateTime<Utc>);

/// A job's `JobStarted`, seen before its request's answer came back, or awaited.
enum Slot {
    Seen(Started),
    Waiting(oneshot::Sender<Started>),
}

#[derive(Default)]
struct Watch(Mutex<HashMap<String, Slot>>);

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seen(&self, job_id: String, at: Started) {
        let mut slots = self.lock();
        match slots.remove(&job_id) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(at);
            }
            // A retry's second JobStarted: the first counts.
            Some(Slot::Seen(first)) => {
                slots.insert(job_id, Slot::Seen(first));
            }
            // Seen before the request's answer came back.
            None => {
                slots.insert(job_id, Slot::Seen(at));
            }
        }
    }

    fn wait(&self, job_id: &str) -> oneshot::Receiver<Started> {
        let (tx, rx) = oneshot::channel();
        let mut slots = self.lock();
        match slots.remove(job_id) {
            Some(Slot::Seen(at)) => {
                let _ = tx.send(at);
            }
            _ => {
                slots.insert(job_id.to_string(), Slot::Waiting(tx));
            }
        }
        rx
    }
}

/// Follows `roar.jobs.events.v1` from its start and hands every `JobStarted` to `watch`.
fn follow(brokers: &str, watch: Arc<Watch>) -> Result<()> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("bench-job-started-{}", crate::start_id()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "1")
        .create()
        .context("the JobStarted observer")?;
    consumer.subscribe(&[JOB_EVENTS])?;
    tokio::spawn(async move {
        loop {
            let Ok(m) = consumer.recv().await else {
                continue;
            };
            let seen = Instant::now();
            let Some(Ok(ev)) = m.payload().map(roar_schemas::decode::<JobEvent>) else {
                continue;
            };
            if let JobBody::Started { .. } = ev.body {
                watch.seen(ev.job_id, (seen, ev.meta.occurred_at));
            }
        }
    });
    Ok(())
}

/// What one job measured, from its request being sent.
struct Times {
    answered: Duration,
    seen: Duration,
    stamped: Duration,
}

/// `n` new pitch jobs, `c` between request and JobStarted at any time.
pub async fn run(t: &Target, brokers: &str, n: usize, c: usize) -> Result<()> {
    let watch = Arc::new(Watch::default());
    follow(brokers, watch.clone())?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(c * 2)
        .build()?;
    let times = Mutex::new(Vec::with_capacity(n));
    let stamp = crate::start_id() % 1000;
    let job = |i: usize| {
        // A new job each time: the params differ per job and per run.
        let body = json!({"file_id": t.file, "model": "pitch", "variation": "tiny", "params": {
            "fmin": 50.0 + stamp as f64 * 1e-3,
            "voicing_threshold": 0.2 + i as f64 * 1e-7,
        }});
        let req = client
            .post(format!("{}/process", t.base))
            .bearer_auth(&t.token)
            .json(&body);
        let (watch, times) = (watch.clone(), &times);
        async move {
            let (sent, sent_at) = (Instant::now(), Utc::now());
            let Ok(r) = req.send().await else { return 599 };
            if r.status() != 202 {
                return r.status().as_u16();
            }
            let answered = sent.elapsed();
            let Ok(v) = r.json::<serde_json::Value>().await else {
                return 599;
            };
            let Some(job_id) = v["job_id"].as_str() else {
                return 597;
            };
            let Ok(Ok((seen, stamped))) =
                tokio::time::timeout(Duration::from_secs(60), watch.wait(job_id)).await
            else {
                // No JobStarted within a minute: not a figure.
                eprintln!("job {job_id}: no JobStarted within 60 s");
                return 598;
            };
            let stamped = (stamped - sent_at).to_std().unwrap_or_default();
            times.lock().unwrap_or_else(|e| e.into_inner()).push(Times {
                answered,
                seen: seen - sent,
                stamped,
            });
            202
        }
    };
    // The worker's groups join, the pool and the caches warm up.
    let warm = load(c * 4, c, &job).await;
    if !warm.failed.is_empty() {
        crate::report(
            "job-started warm-up",
            warm.latencies,
            warm.wall,
            &warm.failed,
        );
    }
    times.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let run = load(n, c, &job).await;
    let times = times.into_inner().unwrap_or_else(|e| e.into_inner());
    crate::report("job-started", run.latencies, run.wall, &run.failed);
    let col = |f: fn(&Times) -> Duration| times.iter().map(f).collect::<Vec<_>>();
    println!(
        "  from POST sent: 202 answer {}; JobStarted seen here {}; JobStarted stamped by the worker {}",
        pcts(col(|t| t.answered)),
        pcts(col(|t| t.seen)),
        pcts(col(|t| t.stamped)),
    );
    Ok(())
}

fn pcts(mut d: Vec<Duration>) -> String {
    if d.is_empty() {
        return "(none)".into();
    }
    d.sort();
    let p = |q: f64| d[((d.len() as f64 * q) as usize).min(d.len() - 1)].as_secs_f64() * 1e3;
    format!("p50 {:.2} ms, p99 {:.2} ms", p(0.5), p(0.99))
}
