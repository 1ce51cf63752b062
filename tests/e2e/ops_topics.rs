//! `roar topics` checks how long every topic keeps its messages and sets it right, on a real
//! broker: topics an older release made (the job topics kept 30 days, so a rebuild after that
//! lost each job's owner and params) are reported by `roar topics --check` and fixed by
//! `roar topics`, leaving the topics that were right alone.

use std::process::Command;
use std::time::Duration;

use roar_common::kafka::ensure_topics;
use roar_schemas::topics::{self, jobs_topic, MODELS};

use crate::support::Infra;

const THIRTY_DAYS_MS: i64 = 30 * 24 * 3600 * 1000;

fn roar_topics(infra: &Infra, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roar"))
        .arg("topics")
        .args(args)
        .env("ROAR_KAFKA__BROKERS", infra.broker.bootstrap())
        .env("ROAR_KAFKA__PARTITIONS", "2")
        .env("ROAR_TELEMETRY__LOG_LEVEL", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roar_topics_finds_and_fixes_topics_that_would_lose_commands() {
    let infra = Infra::start().await;
    let cfg = infra.config();
    // What an older release created: job topics that drop requests after 30 days.
    let mut old = topics::all(cfg.kafka.partitions);
    for s in &mut old {
        if s.name.starts_with("roar.jobs.") {
            assert_eq!(s.retention_ms, -1, "job topics are the system of record");
            s.retention_ms = THIRTY_DAYS_MS;
        }
    }
    ensure_topics(&cfg.kafka, &old, Duration::from_secs(30))
        .await
        .unwrap();

    let (ok, out, err) = roar_topics(&infra, &["--check"]);
    assert!(!ok, "--check passed over the drift: {out}");
    for m in MODELS {
        let line = format!(
            "{}: retention.ms {THIRTY_DAYS_MS} → -1 (forever)",
            jobs_topic(m)
        );
        assert!(out.contains(&line), "no {line:?} in {out}");
    }
    assert_eq!(
        out.lines().count(),
        MODELS.len(),
        "only the job topics: {out}"
    );
    assert!(err.contains("run `roar topics`"), "{err}");

    let (ok, out, err) = roar_topics(&infra, &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("(set)").count(), MODELS.len(), "{out}");

    let (ok, out, err) = roar_topics(&infra, &["--check"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("every topic keeps"), "{out}");
    let drift = roar::topics::retention_drift(&cfg, &topics::all(cfg.kafka.partitions))
        .await
        .unwrap();
    assert!(drift.is_empty(), "{drift:?}");
}
