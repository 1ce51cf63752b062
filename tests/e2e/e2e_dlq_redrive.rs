//! Re-driving a dead letter: a job request that ran out of retries on a store failure is in
//! the DLQ and its job failed; once the store is back, an admin sends the letter back to its
//! topic (`POST /admin/dlq/{id}/redrive`) and the job completes. A second re-drive (HTTP or
//! `roar dlq redrive`) sends nothing; only admins see or re-drive letters.

use std::process::Command;
use std::sync::Arc;

use roar_common::storage::job_output_dir;
use roar_schemas::topics::jobs_topic;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::e2e_dead_letter::{request, Fine};
use crate::support::{find_job, melody_wav, produce, topic_len, Infra};

fn roar_dlq(infra: &Infra, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roar"))
        .arg("dlq")
        .args(args)
        .env("ROAR_KAFKA__BROKERS", infra.broker.bootstrap())
        .env("ROAR_DATABASE__URL", infra.pg.url("roar"))
        .env("ROAR_TELEMETRY__LOG_LEVEL", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_redrives_a_dead_letter_once_and_its_job_completes() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No model weights: no real worker joins the gemma3n group this test serves itself.
    let no_models = tempfile::tempdir().unwrap();
    cfg.processor.models_dir = no_models.path().to_path_buf();
    cfg.kafka.max_handler_attempts = 2;
    let svc = crate::support::Services::start(cfg.clone()).await;
    let alice = svc.token("alice", &[]);
    let admin = svc.token("root", &["admin"]);
    let file_id = svc
        .ready_file(&alice, "a.wav", melody_wav(&[(440.0, 0.5)], 8000, 1))
        .await;
    let cancel = CancellationToken::new();
    let worker = {
        let (cfg, cancel) = (cfg.clone(), cancel.clone());
        tokio::spawn(
            async move { roar_processors::runtime::serve(Arc::new(Fine), &cfg, cancel).await },
        )
    };

    // The store fails on every try: a regular file where the job's output folder's parent
    // should be.
    let req = request(&file_id, "gemma3n", "redrive");
    let dir = infra
        .store_dir()
        .join(job_output_dir(&file_id, "gemma3n", "e2b", &req.job_id));
    let blocker = dir.parent().unwrap().parent().unwrap().to_path_buf();
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a folder").unwrap();
    let topic = jobs_topic("gemma3n");
    produce(&infra, &topic, &file_id, &req).await;
    let j = svc
        .wait_job(&alice, &file_id, &req.job_id, |j| j["status"] == "failed")
        .await;
    assert_eq!(j["error"]["code"], "retries_exhausted", "{j:#}");

    // Only admins see the DLQ.
    let (code, _) = svc.get_json(&alice, "/admin/dlq").await;
    assert_eq!(code, 403);
    let (code, page) = svc.get_json(&admin, "/admin/dlq").await;
    assert_eq!(code, 200, "{page:#}");
    let letters = page["letters"].as_array().unwrap();
    let letter = letters
        .iter()
        .find(|l| l["source_topic"] == topic.as_str())
        .unwrap_or_else(|| panic!("no letter from {topic}: {page:#}"))
        .clone();
    assert_eq!(letter["kind"], "failed", "{letter:#}");
    assert_eq!(letter["key"], file_id.as_str());
    assert_eq!(letter["redrive"], Value::Null);
    let id = letter["letter_id"].as_str().unwrap().to_string();
    assert!(id.starts_with(&format!("dlq-{topic}-")), "{id}");
    let path = format!("/admin/dlq/{id}/redrive");

    let (code, _) = svc.post_json(&alice, &path, &json!({})).await;
    assert_eq!(code, 403);
    let (code, body) = svc
        .post_json(
            &admin,
            "/admin/dlq/dlq-roar.files.v1-0-999/redrive",
            &json!({}),
        )
        .await;
    assert_eq!(code, 404, "{body:#}");
    let (code, body) = svc
        .post_json(&admin, "/admin/dlq/not-a-letter/redrive", &json!({}))
        .await;
    assert_eq!(code, 404, "{body:#}");

    // The store is back: the re-driven request runs and the job completes.
    std::fs::remove_file(&blocker).unwrap();
    let before = topic_len(&infra.broker.bootstrap(), &topic);
    let (code, first) = svc.post_json(&admin, &path, &json!({})).await;
    assert_eq!(code, 200, "{first:#}");
    assert_eq!(first["sent_now"], true, "{first:#}");
    assert_eq!(first["redrive"]["topic"], topic.as_str());
    assert_eq!(first["redrive"]["actor"], "user:root");
    let j = svc
        .wait_job(&alice, &file_id, &req.job_id, |j| {
            j["status"] == "completed"
        })
        .await;
    assert_eq!(j["outputs"].as_array().map(Vec::len), Some(1), "{j:#}");

    // Again, by HTTP and by the CLI: nothing more is sent.
    let (code, again) = svc.post_json(&admin, &path, &json!({})).await;
    assert_eq!(code, 200, "{again:#}");
    assert_eq!(again["sent_now"], false, "{again:#}");
    assert_eq!(again["redrive"], first["redrive"]);
    let (ok, out, err) = roar_dlq(&infra, &["redrive", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("already re-driven"), "{out}");
    assert_eq!(topic_len(&infra.broker.bootstrap(), &topic), before + 1);

    let (ok, out, err) = roar_dlq(&infra, &["list", "--json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["letter_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {listed:#}"));
    assert_eq!(mine["redrive"]["offset"], first["redrive"]["offset"]);
    let (ok, _, err) = roar_dlq(&infra, &["redrive", "dlq-roar.files.v1-0-999"]);
    assert!(!ok);
    assert!(
        err.contains("no dead letter dlq-roar.files.v1-0-999"),
        "{err}"
    );

    // The job ended once per run: failed, then completed after the re-drive.
    let st = svc
        .status(&alice, &file_id)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(find_job(&st, &req.job_id).unwrap()["status"], "completed");

    cancel.cancel();
    worker.await.unwrap().unwrap();
    svc.stop().await;
}
