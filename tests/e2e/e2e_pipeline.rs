//! Pipelines through the `roar pipeline` process manager and the real workers (issue 16): the
//! karaoke preset (demucs two_stems=vocals → whisper, pitch and gemma3n lyrics on the vocals
//! stem) on a generated two-source file (a tone under espeak-ng speech); no gemma3n worker runs
//! here, so the lyrics step is only requested (e2e_lyrics runs the `lyrics` preset through to
//! its files); a failing step ending its
//! dependents `upstream_failed`; a pipeline canceled mid-run; the manager killed with SIGKILL
//! mid-pipeline and restarted, after which every step ran exactly once and the read model equals
//! a rebuild. Demucs is the small fixture network (processors/demucs/tests/fixtures), whisper
//! tiny.en and CREPE tiny the real weights. The karaoke pipelines are asked for through HTTP
//! (`POST /process {file_id, preset}`), and cancels through `POST /pipelines/{id}/cancel`. The
//! failing step is a separation whose song's stored upload vanished after its probe (the worker
//! fails it for good, `missing_input`), so its dependents end `upstream_failed` from a request
//! like any other. The canceled karaoke runs its separation on a long upload and is canceled
//! through the API once /status shows that step running.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roar::services::Roles;
use roar_common::catalog;
use roar_common::storage::{job_output_dir, upload_key};
use roar_schemas::pipeline::{PipelineBody, PipelineEvent};
use roar_schemas::topics::{jobs_topic, JOB_EVENTS, PIPELINES};
use roar_schemas::{EventMeta, JobBody, JobEvent, JobInput, JobRequested};
use serde_json::{json, Value};

use crate::support::jobs::write_separation;
use crate::support::{self, find_job, produce, Infra, Services};

/// A models directory: the demucs fixture as `htdemucs`, the real whisper and CREPE weights.
fn models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let demucs = dir.path().join("demucs/htdemucs");
    std::fs::create_dir_all(&demucs).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/demucs/tests/fixtures/small.safetensors"
    );
    std::fs::copy(fixture, demucs.join("model.safetensors")).unwrap();
    let real = support::models_dir();
    for m in ["whisper", "crepe"] {
        std::os::unix::fs::symlink(real.join(m), dir.path().join(m)).unwrap();
    }
    dir
}

/// A sentence spoken by espeak-ng over a quieter 220 Hz tone, 22.05 kHz mono.
fn speech_over_tone() -> Vec<u8> {
    let speech = roar_processors::audio::decode(
        support::espeak_wav("sing the song of the lazy dog", 170),
        Some("wav"),
        60.0,
    )
    .unwrap();
    assert_eq!(speech.channels, 1);
    let rate = speech.sample_rate as f32;
    let mixed: Vec<f32> = speech
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| 0.6 * s + 0.2 * (2.0 * std::f32::consts::PI * 220.0 * i as f32 / rate).sin())
        .collect();
    roar_processors::audio::wav_pcm16(&mixed, speech.sample_rate, 1)
}

/// `POST /process {file_id, preset: "karaoke"}` as `token`: the pipeline's id and its steps'
/// job ids by step name.
async fn request_karaoke(
    svc: &Services,
    token: &str,
    file: &str,
) -> (String, HashMap<String, String>) {
    let (code, p) = svc
        .post_json(
            token,
            "/process",
            &json!({"file_id": file, "preset": "karaoke"}),
        )
        .await;
    assert_eq!(code, 202, "{p:#}");
    let jobs = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap().to_string();
            (name, s["job_id"].as_str().unwrap().to_string())
        })
        .collect::<HashMap<_, _>>();
    let names: Vec<&str> = jobs.keys().map(String::as_str).collect();
    assert_eq!(jobs.len(), 4, "{names:?}");
    (p["pipeline_id"].as_str().unwrap().to_string(), jobs)
}

/// Every event on `topic`, oldest first per partition (read up to the end as it is now).
async fn read_all<E: roar_schemas::Event + Send + 'static>(brokers: &str, topic: &str) -> Vec<E> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message;
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "e2e-pipeline-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in md.topics()[0].partitions() {
            let (lo, hi) = c
                .fetch_watermarks(&topic, p.id(), Duration::from_secs(10))
                .unwrap();
            if hi > lo {
                ends.insert(p.id(), hi);
                tpl.add_partition_offset(&topic, p.id(), rdkafka::Offset::Offset(lo))
                    .unwrap();
            }
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return out;
        }
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ends.is_empty() && Instant::now() < deadline {
            let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
                continue;
            };
            if let Some(bytes) = m.payload() {
                if let Ok(e) = roar_schemas::decode::<E>(bytes) {
                    out.push(e);
                }
            }
            if ends
                .get(&m.partition())
                .is_some_and(|end| m.offset() + 1 >= *end)
            {
                ends.remove(&m.partition());
            }
        }
        assert!(ends.is_empty(), "{topic} not read to its end");
        out
    })
    .await
    .unwrap()
}

/// The requests of `models`' jobs on their topics.
async fn requests(infra: &Infra, models: &[&str]) -> Vec<JobRequested> {
    let mut out = Vec::new();
    for m in models {
        out.extend(read_all::<JobRequested>(&infra.broker.bootstrap(), &jobs_topic(m)).await);
    }
    out
}

/// Waits until every `(job, status)` holds in `/status` (models on a loaded machine: minutes).
async fn wait_statuses(svc: &Services, token: &str, file: &str, want: &[(&str, &str)]) -> Value {
    svc.wait_for_within(token, file, Duration::from_secs(300), |v| {
        want.iter()
            .all(|(job, status)| find_job(v, job).is_some_and(|j| j["status"] == *status))
    })
    .await
}

fn count(kinds: &[(Option<String>, String)], job: &str, kind: &str) -> usize {
    kinds
        .iter()
        .filter(|(j, k)| j.as_deref() == Some(job) && k == kind)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_karaoke_pipeline_runs_each_step_on_its_upstream_and_a_failure_ends_its_dependents() {
    let infra = Infra::start().await;
    let models = models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let file = svc.ready_file(&alice, "duet.wav", speech_over_tone()).await;

    let (kid, k) = request_karaoke(&svc, &alice, &file).await;
    // A second preset on the same file shares the separation and transcription jobs.
    let (code, shared) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "preset": "transcribe-vocals"}),
        )
        .await;
    assert_eq!(code, 202, "{shared:#}");
    assert_eq!(shared["steps"][0]["job_id"], k["separate"].as_str());
    assert_eq!(shared["steps"][1]["job_id"], k["transcribe"].as_str());
    // A song whose stored upload vanished after its probe: karaoke on it fails at its first
    // step, for good (the worker finds no input), and the manager ends every step after it.
    let lost = svc
        .ready_file(
            &alice,
            "lost.wav",
            support::melody_wav(&[(330.0, 1.0)], 16_000, 1),
        )
        .await;
    std::fs::remove_file(infra.store_dir().join(upload_key(&lost))).unwrap();
    let (lid, l) = request_karaoke(&svc, &alice, &lost).await;

    let (sep, tr, pi) = (
        k["separate"].as_str(),
        k["transcribe"].as_str(),
        k["pitch"].as_str(),
    );
    let lost_sep = l["separate"].as_str();
    let dependents: Vec<&str> = ["transcribe", "pitch", "lyrics"]
        .iter()
        .map(|n| l[*n].as_str())
        .collect();
    let mut want = vec![
        (sep, "completed"),
        (tr, "completed"),
        (pi, "completed"),
        (lost_sep, "failed"),
    ];
    want.extend(dependents.iter().map(|j| (*j, "failed")));
    let st_lost = wait_statuses(&svc, &alice, &lost, &want[3..]).await;
    let st = wait_statuses(&svc, &alice, &file, &want[..3]).await;

    // The dependents read the vocals stem: their requests name it, and the stem is the
    // separation job's own output (size and sha256 as its manifest says; the workers check it).
    let reqs = requests(&infra, &["demucs", "whisper", "pitch", "gemma3n"]).await;
    // The API recorded the preset as one pipeline; the manager's requests carry its request id.
    let recorded = read_all::<PipelineEvent>(&infra.broker.bootstrap(), PIPELINES).await;
    let recorded = recorded
        .iter()
        .find(|p| p.pipeline_id == kid)
        .expect("the preset's PipelineRequested");
    assert!(matches!(
        &recorded.body,
        PipelineBody::Requested { preset: Some(p), .. } if p == "karaoke"
    ));
    let vocals = JobInput {
        job_id: sep.into(),
        model: "demucs".into(),
        variation: "htdemucs".into(),
        output: "vocals".into(),
    };
    // Each karaoke step was requested once for it (the transcription, which the second preset
    // shares, once more for that pipeline, under its request id: the worker runs it once).
    for job in [tr, pi, k["lyrics"].as_str()] {
        let r: Vec<_> = reqs
            .iter()
            .filter(|r| r.job_id == job && r.meta.request_id == recorded.meta.request_id)
            .collect();
        assert_eq!(r.len(), 1, "{job} requested once: {r:?}");
        assert_eq!(r[0].input.as_ref(), Some(&vocals), "{r:?}");
        assert_eq!(r[0].owner, "alice");
    }
    let sep_row = find_job(&st, sep).unwrap();
    let stems: Vec<&str> = sep_row["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert!(stems.contains(&"vocals.wav"), "{sep_row:#}");
    for job in [tr, pi] {
        let row = find_job(&st, job).unwrap();
        assert!(!row["outputs"].as_array().unwrap().is_empty(), "{row:#}");
    }
    let transcript = find_job(&st, tr).unwrap()["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["path"].as_str().unwrap().ends_with("segments.json"));
    assert!(transcript, "whisper wrote its segments");

    // Each dependent started only after the separation completed (the manager waited).
    let times = support::history_times(&infra, &file).await;
    let at = |job: &str, kind: &str| {
        times
            .iter()
            .find(|(j, k, _)| j.as_deref() == Some(job) && k == kind)
            .map(|(_, _, t)| *t)
            .unwrap_or_else(|| panic!("no {kind} of {job}: {times:?}"))
    };
    for job in [tr, pi] {
        assert!(at(job, "started") >= at(sep, "completed"), "{times:?}");
    }

    // The failing step failed on its own (its input is gone); its dependents, never run, were
    // ended by the manager naming the job they waited for, and so was the pipeline.
    let lost_row = |job: &str| find_job(&st_lost, job).unwrap().clone();
    assert_eq!(lost_row(lost_sep)["error"]["code"], "missing_input");
    let lost_reqs = requests(&infra, &["demucs", "whisper", "pitch", "gemma3n"]).await;
    let kinds = support::history_kinds(&infra, &lost).await;
    for job in &dependents {
        let row = lost_row(job);
        assert_eq!(row["error"]["code"], "upstream_failed", "{row:#}");
        assert_eq!(row["error"]["retryable"], false);
        let msg = row["error"]["message"].as_str().unwrap();
        assert!(msg.contains(lost_sep), "{msg}");
        assert_eq!(count(&kinds, job, "started"), 0, "{kinds:?}");
        assert!(
            !lost_reqs.iter().any(|r| r.job_id == *job),
            "{job} was never requested"
        );
    }
    let shown = &st_lost["pipelines"][0];
    assert_eq!(shown["pipeline_id"], lid.as_str());
    assert_eq!(shown["status"], "failed", "{shown:#}");
    let kinds = support::history_kinds(&infra, &file).await;
    // The shared jobs ran once; the second pipeline's requests of them were skipped.
    for job in [sep, tr] {
        assert_eq!(count(&kinds, job, "started"), 1, "{kinds:?}");
        assert_eq!(count(&kinds, job, "completed"), 1, "{kinds:?}");
    }

    // The manager's request of the failed step delivered again (what a manager killed between
    // emitting and committing does) is dropped by the worker, not run a second time: a job
    // requested after it on the same partition completes, and the failed step still started
    // and failed once.
    let again = lost_reqs
        .iter()
        .find(|r| r.job_id == lost_sep)
        .unwrap()
        .clone();
    produce(&infra, &jobs_topic("demucs"), &lost, &again).await;
    let params = json!({"two_stems": "drums"});
    let marker = catalog::resolve("demucs", None, Some(&params)).unwrap();
    let marker = roar_schemas::ids::JobIdentity::new(
        &lost,
        "demucs",
        &marker.variation,
        &marker.params,
        &marker.model_version,
    )
    .request(
        EventMeta::new("req-marker", "user:alice"),
        "alice".into(),
        1,
    );
    produce(&infra, &jobs_topic("demucs"), &lost, &marker).await;
    // The marker reads the same lost upload: it fails too, after the redelivery was handled.
    wait_statuses(&svc, &alice, &lost, &[(&marker.job_id, "failed")]).await;
    let kinds = support::history_kinds(&infra, &lost).await;
    assert_eq!(count(&kinds, lost_sep, "started"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, lost_sep, "failed"), 1, "{kinds:?}");
    svc.stop().await;
}

/// A models directory with only the demucs fixture (as `htdemucs`): the separation runs, and
/// no worker could run a step after it.
fn demucs_only() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let demucs = dir.path().join("demucs/htdemucs");
    std::fs::create_dir_all(&demucs).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/processors/demucs/tests/fixtures/small.safetensors"
    );
    std::fs::copy(fixture, demucs.join("model.safetensors")).unwrap();
    dir
}

/// The upload of the canceled karaoke: long enough that its separation (resampling to 44.1 kHz,
/// then the fixture network on 1 s segments) runs for seconds, while the cancel reaches the
/// worker a fraction of a second after /status shows the step running.
const LONG_SECONDS: f32 = 240.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canceling_a_pipeline_mid_run_cancels_the_running_step_and_every_later_one() {
    let infra = Infra::start().await;
    let models = demucs_only();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let long = support::melody_wav(&[(330.0, LONG_SECONDS)], 16_000, 1);
    let file = svc.ready_file(&alice, "long.wav", long).await;
    let (pid, k) = request_karaoke(&svc, &alice, &file).await;
    let sep = k["separate"].as_str();
    let dependents: Vec<&str> = ["transcribe", "pitch", "lyrics"]
        .iter()
        .map(|n| k[*n].as_str())
        .collect();
    // Mid-run: the separation is under way on its worker, as /status shows it.
    svc.wait_for_within(&alice, &file, Duration::from_secs(120), |v| {
        find_job(v, sep).is_some_and(|j| j["status"] == "running")
    })
    .await;
    // Another user's cancel is refused and changes nothing.
    let bob = svc.token("bob", &[]);
    let path = format!("/pipelines/{pid}/cancel");
    let (code, _) = svc.post_json(&bob, &path, &json!({})).await;
    assert_eq!(code, 404);
    let (code, c) = svc.post_json(&alice, &path, &json!({})).await;
    assert_eq!(code, 202, "{c:#}");
    // The running step was asked to stop by the API; the others are the manager's to cancel.
    assert_eq!(c["canceled_jobs"], json!([sep]), "{c:#}");
    let mut want = vec![(sep, "canceled")];
    want.extend(dependents.iter().map(|j| (*j, "canceled")));
    let st = wait_statuses(&svc, &alice, &file, &want).await;
    let row = find_job(&st, sep).unwrap();
    assert!(row["progress"].as_f64().unwrap() < 100.0, "{row:#}");
    assert_eq!(row["outputs"], json!([]), "{row:#}");
    let shown = &st["pipelines"][0];
    assert_eq!(shown["pipeline_id"], pid.as_str());
    assert_eq!(shown["status"], "canceled", "{shown:#}");

    // Each dependent's cause names the separation it waited on, whichever the manager read
    // first: the pipeline's cancel or the separation's own JobCanceled.
    let events = read_all::<JobEvent>(&infra.broker.bootstrap(), JOB_EVENTS).await;
    let kinds = support::history_kinds(&infra, &file).await;
    for job in &dependents {
        let reasons: Vec<&str> = events
            .iter()
            .filter(|e| e.job_id == *job)
            .filter_map(|e| match &e.body {
                JobBody::Canceled { reason } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(reasons.len(), 1, "{job}: {reasons:?}");
        assert!(
            reasons[0].contains(sep) && reasons[0].contains("step separate"),
            "{job}: {}",
            reasons[0]
        );
        assert_eq!(count(&kinds, job, "started"), 0, "{kinds:?}");
    }
    // Nothing was requested but the separation, once.
    let reqs = requests(&infra, &["demucs", "whisper", "pitch", "gemma3n"]).await;
    let asked: Vec<&str> = reqs.iter().map(|r| r.job_id.as_str()).collect();
    assert_eq!(asked, [sep], "{reqs:?}");
    assert_eq!(count(&kinds, sep, "started"), 1, "{kinds:?}");
    svc.stop().await;
}

/// `roar pipeline` as a process of its own (so it can be killed), on the test's stack.
fn spawn_manager(infra: &Infra, cfg: &roar_common::Config, log: &str) -> Child {
    let log = std::fs::File::create(infra.dir.path().join(log)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_roar"))
        .arg("pipeline")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ROAR_KAFKA__BROKERS", &cfg.kafka.brokers)
        .env("ROAR_KAFKA__PARTITIONS", cfg.kafka.partitions.to_string())
        .env("ROAR_KAFKA__SESSION_TIMEOUT_MS", "6000")
        // librdkafka's rebalance timeout: how long the group may wait for a member that died
        // without leaving to rejoin before the survivors get its partitions (default 5 min).
        .env("ROAR_KAFKA__MAX_POLL_INTERVAL_MS", "10000")
        .env("ROAR_DATABASE__URL", cfg.database.url.expose())
        .env("ROAR_DATABASE__MAX_CONNECTIONS", "3")
        .env("ROAR_STORAGE__URL", &cfg.storage.url)
        .env("ROAR_PIPELINE__OPS_ADDR", "127.0.0.1:0")
        .env("ROAR_TELEMETRY__LOG_LEVEL", "info")
        // One JSON object a line: the replica test reads which steps each manager requested.
        .env("ROAR_TELEMETRY__LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("roar binary starts")
}

/// Every manifest under the store's outputs, by job folder.
fn manifests(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.join("outputs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.file_name().is_some_and(|n| n == "manifest.json") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manager_killed_mid_pipeline_resumes_and_every_step_runs_once() {
    let infra = Infra::start().await;
    let models = models();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start_with(
        cfg.clone(),
        Roles {
            pipeline: false,
            webhooks: false,
        },
    )
    .await;
    let alice = svc.token("alice", &[]);
    let file = svc.ready_file(&alice, "duet.wav", speech_over_tone()).await;
    let mut manager = spawn_manager(&infra, &cfg, "pipeline-1.log");

    let (_, k) = request_karaoke(&svc, &alice, &file).await;
    let (sep, tr, pi) = (
        k["separate"].as_str(),
        k["transcribe"].as_str(),
        k["pitch"].as_str(),
    );
    // Mid-pipeline: the first step is under way (requested by the manager, picked up).
    svc.wait_for_within(&alice, &file, Duration::from_secs(120), |v| {
        find_job(v, sep).is_some_and(|j| j["status"] == "running" || j["status"] == "completed")
    })
    .await;
    manager.kill().unwrap(); // SIGKILL: no drain, no final commit.
    manager.wait().unwrap();
    // The separation finishes while no manager runs; nothing requests its dependents.
    svc.wait_job(&alice, &file, sep, |j| j["status"] == "completed")
        .await;
    let mut manager = spawn_manager(&infra, &cfg, "pipeline-2.log");
    let st = wait_statuses(
        &svc,
        &alice,
        &file,
        &[(sep, "completed"), (tr, "completed"), (pi, "completed")],
    )
    .await;
    manager.kill().unwrap();
    manager.wait().unwrap();

    // Exactly once: one start and one completion per step, one manifest per job folder, and
    // every request of a step carries the one event id the manager gives it.
    let kinds = support::history_kinds(&infra, &file).await;
    for job in [sep, tr, pi] {
        assert_eq!(count(&kinds, job, "started"), 1, "{job}: {kinds:?}");
        assert_eq!(count(&kinds, job, "completed"), 1, "{job}: {kinds:?}");
        let row = find_job(&st, job).unwrap();
        assert_eq!(row["skipped"], false, "{row:#}");
    }
    let found = manifests(&infra.store_dir());
    assert_eq!(found.len(), 3, "{found:?}");
    for (job, model, variation) in [
        (sep, "demucs", "htdemucs"),
        (tr, "whisper", "tiny.en"),
        (pi, "pitch", "tiny"),
    ] {
        let dir = job_output_dir(&file, model, variation, job);
        assert!(
            found
                .iter()
                .any(|m| m.ends_with(format!("{dir}manifest.json"))),
            "{dir}: {found:?}"
        );
    }
    // The lyrics step (no gemma3n worker here) was requested, once, like the others.
    let reqs = requests(&infra, &["demucs", "whisper", "pitch", "gemma3n"]).await;
    for job in [sep, tr, pi, k["lyrics"].as_str()] {
        let mut ids: Vec<&str> = reqs
            .iter()
            .filter(|r| r.job_id == job)
            .map(|r| r.meta.event_id.as_str())
            .collect();
        ids.dedup();
        assert_eq!(ids.len(), 1, "{job}: {ids:?}");
    }

    // The read model equals one rebuilt from the topics.
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    let live = support::projection::snapshot(&pool, "public").await;
    tokio::time::timeout(
        Duration::from_secs(120),
        roar_projections::rebuild(&svc.cfg, &pool, &tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("rebuild within 2 minutes")
    .expect("rebuild succeeds");
    let rebuilt = support::projection::snapshot(&pool, "public").await;
    assert_eq!(live, rebuilt);
    pool.close().await;
    svc.stop().await;
}

/// The steps a manager's log says it requested, as (pipeline_id, step).
fn requested_by(infra: &Infra, log: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(infra.dir.path().join(log)).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "step requested")
        .map(|v| {
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (field("pipeline_id"), field("step"))
        })
        .collect()
}

/// A models directory with only the real CREPE weights: a pitch worker, no demucs worker
/// (the test completes the separations as their worker would).
fn crepe_only() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let real = support::models_dir();
    std::os::unix::fs::symlink(real.join("crepe"), dir.path().join("crepe")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_manager_replicas_share_the_pipelines_and_a_kill_of_one_loses_and_repeats_nothing() {
    let infra = Infra::start().await;
    let models = crepe_only();
    let mut cfg = infra.config();
    cfg.processor.models_dir = models.path().to_path_buf();
    let svc = Services::start_with(
        cfg.clone(),
        Roles {
            pipeline: false,
            webhooks: false,
        },
    )
    .await;
    let alice = svc.token("alice", &[]);
    // Two `roar pipeline` processes in the one group `roar-pipeline`; each file's events go to
    // one partition, which one member owns.
    let (a_log, b_log) = ("replica-a.log", "replica-b.log");
    let mut a = spawn_manager(&infra, &cfg, a_log);
    let mut b = spawn_manager(&infra, &cfg, b_log);

    // Two-step pipelines (a separation, then pitch on its vocals) on one file each, until both
    // replicas have requested a separation: the group has split the partitions between them.
    // No demucs worker runs, so every pipeline stays mid-DAG: its first step requested, the
    // second waiting.
    let mut chains: Vec<(String, String, String, String)> = Vec::new(); // file, pipeline, sep, pitch
    while requested_by(&infra, a_log).is_empty() || requested_by(&infra, b_log).is_empty() {
        assert!(
            chains.len() < 16,
            "one replica never got a partition: {chains:?}"
        );
        let tone = support::melody_wav(&[(200.0 + 20.0 * chains.len() as f32, 1.0)], 16_000, 1);
        let file = svc.ready_file(&alice, "tone.wav", tone).await;
        let (code, v) = svc
            .post_json(
                &alice,
                "/process",
                &json!({"file_id": file, "model": "pitch", "variation": "tiny",
                        "input": {"model": "demucs", "output": "vocals"}}),
            )
            .await;
        assert_eq!(code, 202, "{v:#}");
        let pid = v["pipeline_id"].as_str().unwrap().to_string();
        let sep = v["input"]["job_id"].as_str().unwrap().to_string();
        let pitch = v["job_id"].as_str().unwrap().to_string();
        // Its separation is requested by one replica before the next file.
        let mut waited = 0;
        while ![a_log, b_log]
            .iter()
            .any(|l| requested_by(&infra, l).iter().any(|(p, _)| *p == pid))
        {
            assert!(waited < 600, "no replica requested {pid}'s separation");
            waited += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        chains.push((file, pid, sep, pitch));
    }
    let by_a: Vec<String> = requested_by(&infra, a_log)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    // Each pipeline was started by exactly one replica.
    for (_, pid, _, _) in &chains {
        let by_b = requested_by(&infra, b_log).iter().any(|(p, _)| p == pid);
        assert!(by_a.contains(pid) != by_b, "{pid}: a {by_a:?}");
    }

    // A dies mid-DAG (SIGKILL: no drain, no final commit); then every separation completes.
    a.kill().unwrap();
    a.wait().unwrap();
    let r = catalog::resolve("demucs", None, None).unwrap();
    for (i, (file, _, sep, _)) in chains.iter().enumerate() {
        let vocals = support::melody_wav(&[(300.0 + 20.0 * i as f32, 1.0)], 16_000, 1);
        let stem = write_separation(&infra, file, sep, &r, &vocals);
        let done = JobEvent {
            meta: EventMeta::new("test", "worker:demucs"),
            job_id: sep.clone(),
            file_id: file.clone(),
            model: "demucs".into(),
            variation: r.variation.clone(),
            body: JobBody::Completed {
                outputs: vec![stem],
                duration_seconds: 1.0,
            },
        };
        svc.producer().send(JOB_EVENTS, file, &done).await.unwrap();
    }
    // B takes A's partitions over (from their committed offsets) and requests every pitch
    // step, A's pipelines' included; each runs once.
    for (file, _, _, pitch) in &chains {
        wait_statuses(&svc, &alice, file, &[(pitch.as_str(), "completed")]).await;
    }
    b.kill().unwrap();
    b.wait().unwrap();
    let by_b = requested_by(&infra, b_log);
    for (file, pid, sep, pitch) in &chains {
        assert!(
            by_b.contains(&(pid.clone(), "pitch".into())),
            "{pid}: B requested {by_b:?}"
        );
        let kinds = support::history_kinds(&infra, file).await;
        assert_eq!(count(&kinds, pitch, "started"), 1, "{kinds:?}");
        assert_eq!(count(&kinds, pitch, "completed"), 1, "{kinds:?}");
        assert_eq!(count(&kinds, sep, "completed"), 1, "{kinds:?}");
    }
    // Nothing duplicated: each step's every request carries the one event id the manager gives
    // it (a replay of an uncommitted decision re-emits the same event, which workers skip).
    let reqs = requests(&infra, &["demucs", "pitch"]).await;
    for (_, _, sep, pitch) in &chains {
        for job in [sep, pitch] {
            let mut ids: Vec<&str> = reqs
                .iter()
                .filter(|r| r.job_id == *job)
                .map(|r| r.meta.event_id.as_str())
                .collect();
            ids.dedup();
            assert_eq!(ids.len(), 1, "{job}: {ids:?}");
        }
    }
    // One pitch manifest per pipeline (the separations' are the test's own).
    let found = manifests(&infra.store_dir());
    for (file, _, _, pitch) in &chains {
        let dir = job_output_dir(file, "pitch", "tiny", pitch);
        let n = found
            .iter()
            .filter(|m| m.ends_with(format!("{dir}manifest.json")))
            .count();
        assert_eq!(n, 1, "{dir}: {found:?}");
    }
    svc.stop().await;
}
