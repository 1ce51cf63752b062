//! A foreign client reads our topics: after a small workload (two uploads, one of them not
//! audio, a pitch job, and a whisper failure as a worker would emit it), the Python analytics example (examples/analytics/report.py, on
//! confluent-kafka, fastavro and DuckDB) reads `roar.files.v1` and `roar.job-events.v1` from the
//! real broker with the committed `.avsc` files and reports what happened.

use std::process::Command;

use roar_schemas::topics::JOB_EVENTS;
use roar_schemas::{EventMeta, JobBody, JobEvent};
use serde_json::{json, Value};

use crate::support::{melody_wav, produce, Infra, Services};

/// The interpreter with the example's packages (scripts/test.sh installs them into python3).
fn python() -> String {
    std::env::var("ROAR_ANALYTICS_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_example_reports_the_workload_from_the_topics() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);

    let file = svc
        .ready_file(&alice, "tone.wav", melody_wav(&[(440.0, 0.5)], 16_000, 1))
        .await;
    let junk = svc
        .upload(&alice, "notes.wav", b"not audio at all".to_vec())
        .await;
    assert_eq!(junk.status(), 201);
    let junk_id = junk.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    svc.wait_for(&alice, &junk_id, |v| v["file"]["status"] == "failed")
        .await;
    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "pitch", "variation": "tiny"}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    let job = body["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &job, |j| j["status"] == "completed")
        .await;

    // A failure from a worker this test does not run, as a whisper worker would emit it.
    let failed = JobEvent {
        meta: EventMeta::new("req-analytics", "service:roar-whisper"),
        job_id: "job-analytics-failed".into(),
        file_id: file.clone(),
        model: "whisper".into(),
        variation: "tiny.en".into(),
        body: JobBody::Failed {
            code: "model_error".into(),
            message: "the decoder diverged".into(),
            retryable: false,
        },
    };
    produce(&infra, JOB_EVENTS, &file, &failed).await;

    let brokers = infra.config().kafka.brokers;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/analytics/report.py"
            ))
            .args([
                "--brokers",
                &brokers,
                "--out",
                ":memory:",
                "--timeout",
                "60",
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs (scripts/test.sh installs the example's packages)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "report.py failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report.py printed no JSON ({e}): {stderr}"));

    assert_eq!(report["files"], 2, "{report:#}");
    assert_eq!(report["files_probed"], 1, "{report:#}");
    assert_eq!(
        report["jobs_per_model"],
        json!({"pitch": 1, "whisper": 1}),
        "{report:#}"
    );
    assert_eq!(
        report["outcomes"],
        json!({"pitch": {"completed": 1}, "whisper": {"failed": 1}}),
        "{report:#}"
    );
    let run = &report["run_seconds"]["pitch"];
    assert_eq!(run["jobs"], 1, "{report:#}");
    let p50 = run["p50"].as_f64().expect("a p50 run time");
    assert!(p50 > 0.0 && p50 == run["p95"].as_f64().unwrap(), "{run}");
    assert_eq!(
        report["failure_causes"],
        json!([{"model": "whisper", "code": "model_error", "count": 1}]),
        "{report:#}"
    );
    svc.stop().await;
}
