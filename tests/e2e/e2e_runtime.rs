//! The processor runtime's failure handling with a small test model (a real `Model` whose
//! behaviour the test controls) served on the `gemma3n` job topic, where no real worker runs:
//! retryable failures are re-requested with backoff until they pass or attempts run out, then
//! the job fails and the request goes to the DLQ; liveness announcements reach the control topic.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use roar_processors::runtime::{Input, Model, ModelError, OutputFile, RunContext};
use roar_schemas::topics::{jobs_topic, CONTROL, DLQ};
use roar_schemas::{ControlBody, ControlEvent, DeadLetter, EventMeta, JobRequested};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{history_kinds, history_times, melody_wav, produce, Infra, Services};

/// Fails retryably until `fail_times` runs have failed, then writes one output.
struct Flaky {
    runs: AtomicU32,
    fail_times: u32,
}

impl Model for Flaky {
    fn name(&self) -> &'static str {
        "gemma3n"
    }
    fn version(&self) -> String {
        "flaky-1".into()
    }
    fn variations(&self) -> Vec<String> {
        vec!["e2b".into()]
    }
    fn run(&self, input: &Input, ctx: &mut RunContext) -> Result<Vec<OutputFile>, ModelError> {
        // Reports progress about every millisecond for a fifth of a second: far more often
        // than the runtime may forward (20/s in tests), for long enough that it forwards some.
        for i in 0..200 {
            ctx.checkpoint()?;
            ctx.progress(i as f32 / 2.0, "working");
            std::thread::sleep(Duration::from_millis(1));
        }
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        if run <= self.fail_times {
            return Err(ModelError::retryable(
                "device_busy",
                format!("run {run} failed"),
            ));
        }
        Ok(vec![OutputFile {
            name: "frames.txt".into(),
            kind: "text".into(),
            content_type: "text/plain".into(),
            bytes: input.audio.frames().to_string().into_bytes(),
        }])
    }
}

async fn request(infra: &Infra, file_id: &str, tag: &str) -> String {
    // The version the worker serves e2b at (the catalogue's): a worker runs only that.
    let version = crate::e2e_versions::served("gemma3n", "e2b");
    let job_id = roar_schemas::ids::job_id(file_id, "gemma3n", "e2b", tag, &version);
    let req = JobRequested {
        meta: EventMeta::new(format!("req-{tag}"), "user:alice"),
        job_id: job_id.clone(),
        file_id: file_id.into(),
        owner: "alice".into(),
        model: "gemma3n".into(),
        variation: "e2b".into(),
        model_version: version,
        params_json: "{}".into(),
        attempt: 1,
        not_before: None,
        input: None,
    };
    produce(infra, &jobs_topic("gemma3n"), file_id, &req).await;
    job_id
}

fn job(status: &Value, job_id: &str) -> Value {
    status["jobs"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["job_id"] == job_id).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retryable_failures_are_retried_with_backoff_then_fail_for_good_into_the_dlq() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No model weights: no real worker joins the gemma3n group this test serves itself.
    let no_models = tempfile::tempdir().unwrap();
    cfg.processor.models_dir = no_models.path().to_path_buf();
    cfg.processor.max_attempts = 3;
    cfg.processor.retry_base_seconds = 1;
    let svc = Services::start(cfg.clone()).await;
    let alice = svc.token("alice", &[]);
    let r = svc
        .upload(&alice, "a.wav", melody_wav(&[(440.0, 0.5)], 8000, 1))
        .await;
    let file_id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Two failures, then success on the third attempt.
    let model = Arc::new(Flaky {
        runs: AtomicU32::new(0),
        fail_times: 2,
    });
    let cancel = CancellationToken::new();
    let worker = {
        let (model, cfg, cancel) = (model.clone(), cfg.clone(), cancel.clone());
        tokio::spawn(async move { roar_processors::runtime::serve(model, &cfg, cancel).await })
    };
    let ok = request(&infra, &file_id, "eventually").await;
    let st = svc
        .wait_for(&alice, &file_id, |v| job(v, &ok)["status"] == "completed")
        .await;
    let j = job(&st, &ok);
    assert_eq!(j["attempt"], 3, "{j:#}");
    assert_eq!(model.runs.load(Ordering::SeqCst), 3);
    let kinds = history_kinds(&infra, &file_id).await;
    let mine: Vec<&str> = kinds
        .iter()
        .filter(|(j, _)| j.as_deref() == Some(ok.as_str()))
        .map(|(_, k)| k.as_str())
        .collect();
    let count = |k: &str| mine.iter().filter(|x| **x == k).count();
    assert_eq!(count("retry_scheduled"), 2, "{mine:?}");
    assert_eq!(count("started"), 3, "{mine:?}");
    assert_eq!(count("completed"), 1, "{mine:?}");
    // Progress is throttled to 20/s (the test config): within a run, progress events are at
    // least 50 ms apart, whatever the run's speed (a slow machine only spreads them further).
    let mut gaps = Vec::new();
    let mut last = None;
    for (job, kind, at) in history_times(&infra, &file_id).await {
        if job.as_deref() != Some(ok.as_str()) {
            continue;
        }
        match kind.as_str() {
            "started" => last = None,
            "progress" => {
                if let Some(prev) = last.replace(at) {
                    gaps.push((at - prev).num_microseconds().unwrap());
                }
            }
            _ => {}
        }
    }
    assert!(
        !gaps.is_empty(),
        "no run forwarded two progress events: {mine:?}"
    );
    // 1 ms of slack: the events are stamped by the wall clock, the throttle counts on the
    // monotonic one.
    assert!(gaps.iter().all(|g| *g >= 49_000), "{gaps:?} µs apart");

    // Three failures with three attempts: failed for good, and the request is dead-lettered.
    let model2 = Arc::new(Flaky {
        runs: AtomicU32::new(0),
        fail_times: 99,
    });
    cancel.cancel();
    worker.await.unwrap().unwrap();
    let cancel = CancellationToken::new();
    let worker = {
        let (model, cfg, cancel) = (model2.clone(), cfg.clone(), cancel.clone());
        tokio::spawn(async move { roar_processors::runtime::serve(model, &cfg, cancel).await })
    };
    let bad = request(&infra, &file_id, "never").await;
    let st = svc
        .wait_for(&alice, &file_id, |v| job(v, &bad)["status"] == "failed")
        .await;
    let j = job(&st, &bad);
    assert_eq!(j["error"]["code"], "device_busy", "{j:#}");
    assert_eq!(j["error"]["retryable"], true);
    assert_eq!(j["attempt"], 3);
    assert_eq!(model2.runs.load(Ordering::SeqCst), 3);

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", infra.broker.bootstrap())
        .set("group.id", "test-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[DLQ, CONTROL]).unwrap();
    let (mut letter, mut alive) = (None, false);
    while letter.is_none() || !alive {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dlq letter and liveness announcement")
            .unwrap();
        let payload = rdkafka::Message::payload(&m).unwrap();
        if rdkafka::Message::topic(&m) == DLQ {
            let d: DeadLetter = roar_schemas::decode(payload).unwrap();
            let group = roar_schemas::topics::version_group(
                "gemma3n",
                "e2b",
                &crate::e2e_versions::served("gemma3n", "e2b"),
            );
            if d.consumer_group == group {
                letter = Some(d);
            }
        } else {
            let c: ControlEvent = roar_schemas::decode(payload).unwrap();
            if let ControlBody::WorkerAlive {
                model,
                model_version,
                ..
            } = c.body
            {
                alive |= model == "gemma3n" && model_version == "flaky-1";
            }
        }
    }
    let letter = letter.unwrap();
    assert_eq!(letter.error_kind, "job_failed");
    assert_eq!(letter.source_topic, jobs_topic("gemma3n"));
    let req: JobRequested = roar_schemas::decode(letter.payload.as_deref().unwrap()).unwrap();
    assert_eq!((req.job_id.as_str(), req.attempt), (bad.as_str(), 3));

    cancel.cancel();
    worker.await.unwrap().unwrap();
    svc.stop().await;
}
