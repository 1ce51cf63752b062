//! The pipelines' step hand-off latency through a real broker (tansu, in memory) and a real
//! PostgreSQL 15 on loopback: from an upstream job's `JobCompleted` to its dependent's
//! `JobStarted`, with the `roar pipeline` process manager in between and an idle worker.
//!
//!   cargo bench --profile dev --bench pipeline_handoff [-- PIPELINES]
//!
//! PIPELINES (default 300) two-step pipelines run one after another, each on its own file. A
//! stand-in worker consumes `roar.jobs.pitch.v1`: for the root step's request it emits the
//! root's `JobCompleted` (stamped just before it is sent); for the dependent's request it
//! emits `JobStarted` at once, as an idle worker does before it decodes anything. The hand-off
//! is the dependent's `JobStarted` time − the root's `JobCompleted` time: the manager's share
//! (consume, one transaction, emit) plus two broker round trips. Models add their own decode
//! time on top; that is in each model's benchmark, not here.

#[path = "../tests/e2e/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use roar_common::kafka::EventProducer;
use roar_schemas::ids::{self, pipeline_id, step_identity};
use roar_schemas::pipeline::{PipelineBody, PipelineEvent, PipelineStep, PipelineStepInput};
use roar_schemas::topics::{jobs_topic, JOB_EVENTS, PIPELINES};
use roar_schemas::{EventMeta, JobBody, JobEvent, JobRequested};
use tokio_util::sync::CancellationToken;

fn two_steps(n: usize) -> PipelineEvent {
    let file_id = ids::file_id("bench", &format!("{n:064x}"));
    let step = |name: &str, input: Option<&str>| PipelineStep {
        name: name.into(),
        job_id: String::new(),
        model: "pitch".into(),
        variation: "tiny".into(),
        model_version: "v1".into(),
        params_json: "{}".into(),
        input: input.map(|s| PipelineStepInput {
            step: s.into(),
            output: "f0".into(),
        }),
    };
    let mut steps = vec![step("root", None), step("next", Some("root"))];
    for i in 0..steps.len() {
        steps[i].job_id = step_identity(&file_id, &steps, &steps[i])
            .unwrap()
            .job_id()
            .to_string();
    }
    PipelineEvent {
        meta: EventMeta::new(format!("r{n}"), "bench"),
        pipeline_id: pipeline_id("bench", &file_id, steps.iter().map(|s| s.job_id.as_str())),
        file_id,
        owner: "bench".into(),
        body: PipelineBody::Requested {
            preset: None,
            steps,
        },
    }
}

fn job_event(r: &JobRequested, body: JobBody) -> JobEvent {
    JobEvent {
        meta: EventMeta::new(r.meta.request_id.clone(), "bench-worker"),
        job_id: r.job_id.clone(),
        file_id: r.file_id.clone(),
        model: r.model.clone(),
        variation: r.variation.clone(),
        body,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let infra = support::Infra::start().await;
    let cfg = infra.config();
    roar::services::bootstrap_topics(&cfg).await.unwrap();
    let pool = roar_projections::connect(cfg.database.url.expose(), 4, Duration::from_secs(30))
        .await
        .unwrap();
    roar_projections::migrate(&pool).await.unwrap();
    let cancel = CancellationToken::new();
    let manager = tokio::spawn({
        let (cfg, pool, cancel) = (cfg.clone(), pool.clone(), cancel.clone());
        async move { roar_projections::pipeline::run(&cfg, pool, cancel).await }
    });

    let producer = EventProducer::new(&cfg.kafka).unwrap();
    let worker: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cfg.kafka.brokers.as_str())
        .set("group.id", "bench-worker")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    worker.subscribe(&[&jobs_topic("pitch")]).unwrap();

    let mut handoffs = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let p = two_steps(i);
        producer.send(PIPELINES, &p.file_id, &p).await.unwrap();
        let mut completed_at = None;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), worker.recv())
                .await
                .expect("a request within 30 s")
                .unwrap();
            let r: JobRequested = roar_schemas::decode(m.payload().unwrap()).unwrap();
            if r.file_id != p.file_id {
                continue;
            }
            if r.input.is_none() {
                let done = job_event(
                    &r,
                    JobBody::Completed {
                        outputs: Vec::new(),
                        duration_seconds: 0.0,
                    },
                );
                completed_at = Some(done.meta.occurred_at);
                producer.send(JOB_EVENTS, &r.file_id, &done).await.unwrap();
            } else {
                let start = job_event(
                    &r,
                    JobBody::Started {
                        worker: "bench".into(),
                        attempt: 1,
                    },
                );
                let t = start.meta.occurred_at;
                producer.send(JOB_EVENTS, &r.file_id, &start).await.unwrap();
                let from = completed_at.expect("the root completed first");
                handoffs.push((t - from).num_microseconds().unwrap_or(0) as f64 / 1e3);
                break;
            }
        }
    }
    let total = started.elapsed();
    cancel.cancel();
    let _ = manager.await;
    handoffs.sort_by(f64::total_cmp);
    println!(
        "pipeline hand-off (JobCompleted → dependent JobStarted), {n} pipelines in {:.1} s: \
         p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total.as_secs_f64(),
        percentile(&handoffs, 0.50),
        percentile(&handoffs, 0.90),
        percentile(&handoffs, 0.99),
        handoffs.last().copied().unwrap_or(0.0),
    );
}
