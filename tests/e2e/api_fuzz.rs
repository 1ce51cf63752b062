//! The API against its own OpenAPI document, property-based: schemathesis (a spec-driven HTTP
//! fuzzer, run as a subprocess) generates requests from the document the handlers are derived
//! from, sends them to the real stack, and checks every answer: no 5xx, every status listed for
//! the operation, every body and header as the schema says, requests the schema calls valid
//! accepted and those it calls invalid refused, auth not ignored, other methods 405.
//!
//! The stack runs without model workers, so jobs stay queued and the run stays short. The
//! examples phase gets a real file, job and webhook of the caller's, so the success paths are
//! checked too (random ids only reach the 404s). No webhook dispatcher runs: nothing is sent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{fixture, Infra, Services};

/// Fixed, so a failure reproduces with the same requests.
const SEED: &str = "20261206";
/// Generated cases per operation in the fuzzing phase (the coverage phase is systematic and
/// not bounded by it): about 2000 requests in all, so the run stays a small part of CI. The
/// seed is fixed, so changing this number changes the cases (docs/api.md says how to run it).
const MAX_EXAMPLES: &str = "15";

/// `ROAR_TEST_SCHEMATHESIS`, the virtualenv scripts/test.sh makes, or `schemathesis` on PATH.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("ROAR_TEST_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".roar/schemathesis/bin/schemathesis");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("schemathesis")
}

/// Adds `example` to a parameter of one operation (the examples phase sends it).
fn example_param(spec: &mut Value, path: &str, method: &str, name: &str, value: &str) {
    let params = spec["paths"][path][method]["parameters"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("{method} {path} has parameters"));
    let p = params
        .iter_mut()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} has {name}"));
    p["example"] = json!(value);
}

/// Adds an example body to one operation's JSON request body.
fn example_body(spec: &mut Value, path: &str, method: &str, body: Value) {
    spec["paths"][path][method]["requestBody"]["content"]["application/json"]["example"] = body;
}

/// What schemathesis is told beyond the document (schemathesis.toml).
const CONFIG: &str = r#"
[checks.positive_data_acceptance]
# Business answers to a well-formed request: 403 a signed link that is not valid, 404 an id
# that is not the caller's, 409 a resource whose state refuses it; and 413, because the size
# limits (`http.max_body_bytes`, `http.max_upload_bytes`) are deployment settings the
# checked-in document cannot state. No 401 (the token is valid) and no 429 (no rate limit).
expected-statuses = ["2xx", "403", "404", "409", "413"]

[checks.negative_data_rejection]
# schemathesis' defaults less 429 and 5xx, and 413: refusing a body as too large is refusing it.
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422"]

[[operations]]
# `as_of` may not lie in the future (there is no history there yet): a bound on the server's
# clock that a date-time in the document cannot state, so a generated far-future time gets its
# documented 400 (security_bounds checks that answer).
include-path = "/status/{file_id}"  # GET, its one operation
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "403", "404", "409", "413"]

"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_operation_answers_as_its_openapi_document_says() {
    let bin = schemathesis();
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No model weights: no workers, so requested jobs stay queued (and cost nothing).
    let no_models = infra.dir.path().join("no-models");
    std::fs::create_dir_all(&no_models).unwrap();
    cfg.processor.models_dir = no_models;
    // One user sends every request: the rate limit and the per-user quotas (0 = unlimited)
    // would only turn the run into 429s and 413s once it has asked for enough jobs.
    cfg.http.rate_limit_per_second = 0.0;
    cfg.quota.jobs_in_flight = 0;
    cfg.quota.jobs_per_day = 0;
    cfg.quota.pending_uploads = 0;
    cfg.quota.stored_bytes = 0;
    // Webhooks: the document cannot say which addresses a deployment refuses (the guard's
    // classes, or names resolved at delivery), so every network is open here, and the
    // per-user limit is far above what one run registers. Registration resolves no name, and
    // `Services::start` runs no dispatcher: nothing is ever sent to a generated URL.
    cfg.webhooks.allow_networks = "0.0.0.0/0,::/0".into();
    cfg.webhooks.max_per_user = 1_000_000;
    // `?after=` with a token far ahead waits this long; keep the run short.
    cfg.http.consistency_wait_ms = 100;
    // The document states the catalogue's ceilings; a deployment's lower musicgen limits (30 s
    // by default) are that deployment's documented 422s.
    cfg.musicgen.max_duration_seconds = roar_common::config::MusicgenConfig::DURATION_CEILING;
    cfg.musicgen.max_prompt_seconds = roar_common::config::MusicgenConfig::PROMPT_SECONDS_CEILING;
    let svc = Services::start(cfg).await;
    let token = svc.token("fuzzer", &["admin", "service"]);

    let file = svc
        .ready_file(&token, "sine.wav", fixture("sine.wav"))
        .await;
    let (code, job) = svc
        .post_json(
            &token,
            "/process",
            &json!({"file_id": file, "model": "pitch"}),
        )
        .await;
    assert_eq!(code, 202, "{job:#}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let (code, hook) = svc
        .post_json(
            &token,
            "/webhooks",
            &json!({"url": "https://hooks.example.com/roar", "events": ["job.completed"]}),
        )
        .await;
    assert_eq!(code, 201, "{hook:#}");
    let hook_id = hook["webhook_id"].as_str().unwrap().to_string();

    let mut spec: Value = serde_json::from_str(&roar_orchestrator::openapi::json()).unwrap();
    example_param(&mut spec, "/status/{file_id}", "get", "file_id", &file);
    example_param(
        &mut spec,
        "/upload/{file_id}/complete",
        "post",
        "file_id",
        &file,
    );
    example_param(
        &mut spec,
        "/jobs/{job_id}/cancel",
        "post",
        "job_id",
        &job_id,
    );
    example_param(
        &mut spec,
        "/admin/jobs/{job_id}/retry",
        "post",
        "job_id",
        &job_id,
    );
    example_param(
        &mut spec,
        "/admin/jobs/{job_id}/cancel",
        "post",
        "job_id",
        &job_id,
    );
    example_body(
        &mut spec,
        "/process",
        "post",
        json!({"file_id": file, "models": ["pitch", {"model": "musicgen", "params": {"duration": 2}}]}),
    );
    for (path, method) in [
        ("/webhooks/{webhook_id}/deliveries", "get"),
        ("/webhooks/{webhook_id}", "delete"),
    ] {
        example_param(&mut spec, path, method, "webhook_id", &hook_id);
    }
    example_body(
        &mut spec,
        "/webhooks",
        "post",
        json!({"url": "https://hooks.example.com/roar?to=roar", "events": ["job.*"]}),
    );
    example_body(
        &mut spec,
        "/generate",
        "post",
        json!({"prompt": "a calm piano", "duration_seconds": 2, "params": {"seed": 1}}),
    );
    example_body(
        &mut spec,
        "/notify",
        "post",
        json!({"job_id": job_id, "file_id": file, "model": "pitch", "status": "progress", "progress": 50, "message": "halfway"}),
    );
    let dir = infra.dir.path();
    let spec_path = dir.join("openapi.json");
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    let config_path = dir.join("schemathesis.toml");
    std::fs::write(&config_path, CONFIG).unwrap();

    let started = Instant::now();
    // The child writes straight to the test's output (nextest keeps it, and shows it on a
    // failure or a timeout), so a slow run shows how far it got.
    let status = tokio::process::Command::new(&bin)
        .arg("--config-file")
        .arg(&config_path)
        .arg("--no-color")
        .arg("run")
        .arg(&spec_path)
        .args(["--url", &svc.base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: with two, schemathesis' threads parse Python sources at once (hypothesis
        // describing its lambdas), and CPython 3.11's AST builder keeps its recursion depth in
        // state the threads share, so a run can die of "AST constructor recursion depth
        // mismatch" (a tool crash, seen once in CI), whatever the API answers.
        .args(["--checks", "all", "--workers", "1"])
        .args(["--generation-database", "none", "--request-timeout", "10"])
        .current_dir(dir)
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(600), status)
        .await
        .expect("schemathesis finishes within 10 minutes")
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; scripts/test.sh installs it (or set ROAR_TEST_SCHEMATHESIS)",
                bin.display()
            )
        });
    eprintln!(
        "schemathesis ran for {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(status.success(), "schemathesis found failures (above)");
    svc.stop().await;
}
