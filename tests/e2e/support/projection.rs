//! Helpers for the projection tests: a broker and a Postgres of their own (from the shared
//! harness), the projector alone (no orchestrator, no workers), and builders of the events the
//! other services would produce, so a test can write any order, duplicate or poison it wants.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::ClientConfig;
use roar_common::kafka::EventProducer;
use roar_common::Config;
use roar_projections::ProjectionError;
use roar_schemas::ids;
use roar_schemas::topics::{jobs_topic, FILES, JOB_EVENTS};
use roar_schemas::{
    DeadLetter, EventMeta, FileBody, FileEvent, FileInfo, JobBody, JobEvent, JobRequested, Output,
};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Infra;

/// A broker, a migrated database, a producer, and the projector when started.
pub struct Env {
    pub infra: Infra,
    pub cfg: Config,
    pub pool: PgPool,
    pub producer: EventProducer,
}

/// A running projector that a test can stop politely or kill.
pub struct Projector {
    pub cancel: CancellationToken,
    pub handle: JoinHandle<Result<(), ProjectionError>>,
}

impl Projector {
    /// Drops the projector wherever it is (mid-poll, mid-transaction), like a killed process.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("projector stops within 30 s")
            .expect("projector task")
            .expect("projector stopped cleanly");
    }
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Env {
        let infra = Infra::start().await;
        let mut cfg = infra.config();
        tweak(&mut cfg);
        roar_common::telemetry::init_tracing(&cfg.telemetry);
        roar::services::bootstrap_topics(&cfg).await.unwrap();
        let pool = roar_projections::connect(cfg.database.url.expose(), 5, Duration::from_secs(30))
            .await
            .unwrap();
        roar_projections::migrate(&pool).await.unwrap();
        let producer = EventProducer::new(&cfg.kafka).unwrap();
        Env {
            infra,
            cfg,
            pool,
            producer,
        }
    }

    pub fn spawn_projector(&self) -> Projector {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn({
            let cfg = self.cfg.clone();
            let pool = self.pool.clone();
            let producer = self.producer.clone();
            let cancel = cancel.clone();
            async move { roar_projections::run(&cfg, pool, producer, cancel).await }
        });
        Projector { cancel, handle }
    }

    pub async fn send_file(&self, e: &FileEvent) {
        self.producer.send(FILES, &e.file_id, e).await.unwrap();
    }

    pub async fn send_job(&self, e: &JobEvent) {
        self.producer.send(JOB_EVENTS, &e.file_id, e).await.unwrap();
    }

    pub async fn send_request(&self, r: &JobRequested) {
        self.producer
            .send(&jobs_topic(&r.model), &r.file_id, r)
            .await
            .unwrap();
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// Waits (60 s at most) until the history holds `n` events and the stored offsets cover
    /// every message on the projected topics: then nothing is left to apply, so a count taken
    /// afterwards is final (an event applied twice would show, not arrive later).
    pub async fn wait_history(&self, n: i64) {
        let (mut last, mut behind) = (0, u64::MAX);
        for _ in 0..600 {
            last = self.count("SELECT count(*) FROM events").await;
            if last >= n {
                behind = roar_projections::lag::events_behind(&self.cfg.kafka, &self.pool)
                    .await
                    .unwrap();
                if behind == 0 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("history holds {last} events ({behind} not yet applied), expected {n}");
    }

    /// Reads `n` dead letters (30 s at most each).
    pub async fn dead_letters(&self, n: usize) -> Vec<DeadLetter> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.infra.broker.bootstrap())
            .set("group.id", format!("test-dlq-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[roar_schemas::topics::DLQ]).unwrap();
        let mut out = Vec::new();
        while out.len() < n {
            let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("a dead letter within 30 s")
                .unwrap();
            out.push(roar_schemas::decode(rdkafka::Message::payload(&m).unwrap()).unwrap());
        }
        out
    }
}

/// A fixed clock: `at(s)` is `s` seconds after a base, so tests choose occurred_at freely.
pub fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000 + s, 0).unwrap()
}

fn meta(s: i64, request: &str) -> EventMeta {
    let mut m = EventMeta::new(request, "test");
    m.occurred_at = at(s);
    m
}

pub fn file_id(owner: &str, n: usize) -> String {
    ids::file_id(owner, &format!("{n:064x}"))
}

pub fn uploaded(owner: &str, n: usize, s: i64) -> FileEvent {
    let file_id = file_id(owner, n);
    FileEvent {
        sealed: None,
        meta: meta(s, &format!("up-{n}")),
        body: FileBody::Uploaded(FileInfo {
            owner: owner.into(),
            filename: format!("song-{n}.wav"),
            mime: "audio/wav".into(),
            size: 1000 + n as i64,
            sha256: format!("{n:064x}"),
            storage_key: format!("uploads/{file_id}/original"),
        }),
        file_id,
    }
}

/// A job request, with its id computed the way the orchestrator does.
pub fn request(
    file_id: &str,
    owner: &str,
    model: &str,
    variation: &str,
    version: &str,
    s: i64,
) -> JobRequested {
    let params = "{}".to_string();
    JobRequested {
        meta: meta(s, "req"),
        job_id: ids::job_id(file_id, model, variation, &params, version),
        file_id: file_id.into(),
        owner: owner.into(),
        model: model.into(),
        variation: variation.into(),
        model_version: version.into(),
        params_json: params,
        attempt: 1,
        not_before: None,
        input: None,
    }
}

/// An event of the job `r` asked for.
pub fn job_event(r: &JobRequested, s: i64, body: JobBody) -> JobEvent {
    JobEvent {
        meta: meta(s, &r.meta.request_id),
        job_id: r.job_id.clone(),
        file_id: r.file_id.clone(),
        model: r.model.clone(),
        variation: r.variation.clone(),
        body,
    }
}

pub fn started(attempt: i32) -> JobBody {
    JobBody::Started {
        worker: "w1".into(),
        attempt,
    }
}

pub fn progress(percent: f32) -> JobBody {
    JobBody::Progress {
        percent,
        message: format!("{percent}%"),
    }
}

pub fn completed(path: &str) -> JobBody {
    JobBody::Completed {
        outputs: vec![Output {
            path: path.into(),
            kind: "f0".into(),
            content_type: "application/json".into(),
            size: 10,
            sha256: "ab".into(),
        }],
        duration_seconds: 1.5,
    }
}

pub fn failed(retryable: bool) -> JobBody {
    JobBody::Failed {
        code: "oom".into(),
        message: "out of memory".into(),
        retryable,
    }
}

/// Every row of the model as text, sorted, for comparing two models.
pub async fn snapshot(pool: &PgPool, schema: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let q = |t: &str, cols: &str, order: &str| {
        format!("SELECT ({cols})::text FROM {schema}.{t} x ORDER BY {order}")
    };
    let files: Vec<String> = sqlx::query_scalar(&q("files", "x.*", "file_id"))
        .fetch_all(pool)
        .await
        .unwrap();
    let jobs: Vec<String> = sqlx::query_scalar(&q("jobs", "x.*", "job_id"))
        .fetch_all(pool)
        .await
        .unwrap();
    // The history's seq is its apply order, which differs between runs; the rest must not.
    let events: Vec<String> = sqlx::query_scalar(&q(
        "events",
        "x.topic, x.partition, x.\"offset\", x.event_id, x.file_id, x.job_id, x.kind, x.occurred_at, x.request_id, x.body, x.payload",
        "topic, partition, \"offset\"",
    ))
    .fetch_all(pool)
    .await
    .unwrap();
    (files, jobs, events)
}
