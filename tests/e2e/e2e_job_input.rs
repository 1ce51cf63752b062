//! A job that reads another job's output (`JobRequested.input`, the pipelines' hand-off): the
//! real pitch worker finds the upstream job's output through its manifest, checks its size and
//! sha256, and tracks that audio, not the upload. A missing or altered input fails the job for
//! good with a clear code. The upstream job's folder is laid out as a finished demucs job
//! leaves it (its outputs, then its manifest), so only the hand-off is under test here.

use roar_common::catalog;
use roar_common::storage::job_output_dir;
use roar_schemas::ids::JobIdentity;
use roar_schemas::topics::jobs_topic;
use roar_schemas::{EventMeta, JobInput};
use serde_json::{json, Value};

use crate::support::jobs::finished_separation;
use crate::support::{melody_wav, produce, Infra, Services};

/// Asks for pitch on `output` of the upstream job, as the process manager will; returns its id.
async fn pitch_on(infra: &Infra, file_id: &str, upstream: &str, output: &str) -> String {
    let r = catalog::resolve("pitch", Some("tiny"), None).unwrap();
    let id =
        JobIdentity::new(file_id, "pitch", "tiny", &r.params, &r.model_version).reading(JobInput {
            job_id: upstream.into(),
            model: "demucs".into(),
            variation: "htdemucs".into(),
            output: output.into(),
        });
    let job_id = id.job_id().to_string();
    let req = id.request(EventMeta::new("req-input", "user:alice"), "alice".into(), 1);
    produce(infra, &jobs_topic("pitch"), file_id, &req).await;
    job_id
}

fn error_code(job: &Value) -> &str {
    job["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_reads_the_upstream_output_its_input_names_and_fails_clearly_without_it() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    // The upload is an E4 (MIDI 64); the upstream "vocals" an A4 (MIDI 69).
    let file_id = svc
        .ready_file(&alice, "mix.wav", melody_wav(&[(329.63, 1.5)], 16_000, 1))
        .await;
    let upstream = finished_separation(&infra, &file_id, &melody_wav(&[(440.0, 1.5)], 16_000, 1));

    let on_vocals = pitch_on(&infra, &file_id, &upstream, "vocals").await;
    let missing = pitch_on(&infra, &file_id, &upstream, "drums").await;
    let nowhere = pitch_on(&infra, &file_id, &format!("j{}", "0".repeat(32)), "vocals").await;

    let j = svc
        .wait_job(&alice, &file_id, &on_vocals, |j| j["status"] == "completed")
        .await;
    let notes = j["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"].as_str().unwrap().ends_with("/notes.json"))
        .unwrap();
    let notes: Value = serde_json::from_slice(
        &std::fs::read(infra.store_dir().join(notes["path"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let midi: Vec<u64> = notes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["midi"].as_u64().unwrap())
        .collect();
    assert_eq!(midi, [69], "tracked the upload, not the input: {notes:#}");

    for (job_id, needle) in [
        (&missing, "no output \"drums\""),
        (&nowhere, "no finished outputs"),
    ] {
        let j = svc
            .wait_job(&alice, &file_id, job_id, |j| j["status"] == "failed")
            .await;
        assert_eq!(error_code(&j), "missing_input", "{j:#}");
        assert_eq!(j["error"]["retryable"], false, "{j:#}");
        assert!(
            j["error"]["message"].as_str().unwrap().contains(needle),
            "{j:#}"
        );
    }

    // An upstream output altered after its job finished is refused, not decoded.
    let dir = job_output_dir(&file_id, "demucs", "htdemucs", &upstream);
    std::fs::write(
        infra.store_dir().join(format!("{dir}vocals.wav")),
        melody_wav(&[(523.25, 1.5)], 16_000, 1),
    )
    .unwrap();
    let params = json!({"hop_ms": 20.0});
    let r = catalog::resolve("pitch", Some("tiny"), Some(&params)).unwrap();
    let id = JobIdentity::new(&file_id, "pitch", "tiny", &r.params, &r.model_version).reading(
        JobInput {
            job_id: upstream.clone(),
            model: "demucs".into(),
            variation: "htdemucs".into(),
            output: "vocals".into(),
        },
    );
    let changed = id.job_id().to_string();
    let req = id.request(
        EventMeta::new("req-changed", "user:alice"),
        "alice".into(),
        1,
    );
    produce(&infra, &jobs_topic("pitch"), &file_id, &req).await;
    let j = svc
        .wait_job(&alice, &file_id, &changed, |j| j["status"] == "failed")
        .await;
    assert_eq!(error_code(&j), "input_changed", "{j:#}");
    svc.stop().await;
}
