//! Fuzzing the API's inputs in process: the real router (request ids, auth, extractors,
//! handlers) on a real broker, PostgreSQL and object store, called without a socket so that
//! 10,000 requests per target take seconds. Targets: JSON request bodies (garbage, and mutated
//! valid bodies of `/process`, `/webhooks`, `/upload` and `/notify`), query strings of every
//! route that takes one (mutated valid ones, and garbage), and multipart uploads (mutated valid
//! forms, and garbage). Every answer must be a status the OpenAPI document lists for its operation, never a
//! 5xx, and every refusal the API's error body. The schemathesis test (`api_fuzz`) checks the
//! answers' shapes against the document; this one throws what no document describes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use proptest::prelude::*;
use roar_common::auth::Authenticator;
use roar_common::kafka::{ControlFollower, EventProducer};
use roar_common::storage::Storage;
use roar_orchestrator::AppState;
use roar_testkit::fuzz::{fuzz, garbage, mutated};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::support::{melody_wav, Infra};

const FILE: &str = "f0123456789abcdef0123456789abcdef";
const JOB: &str = "j0123456789abcdef0123456789abcdef";
const BOUNDARY: &str = "roarFuzzBoundary";

/// The orchestrator's router on `infra`, as `roar orchestrator` builds it (no rate limit and no
/// per-user quotas: the fuzzer is one user sending thousands of requests, and a 429 would hide
/// what the handlers behind the quota do with the input).
async fn router(infra: &Infra, cancel: &CancellationToken) -> (Router, Arc<roar_common::Config>) {
    let mut cfg = infra.config();
    cfg.http.rate_limit_per_second = 0.0;
    cfg.quota.jobs_in_flight = 0;
    cfg.quota.jobs_per_day = 0;
    cfg.quota.pending_uploads = 0;
    cfg.quota.stored_bytes = 0;
    // No projector runs: a well-formed `after` token would wait for it.
    cfg.http.consistency_wait_ms = 0;
    let cfg = Arc::new(cfg);
    roar::services::bootstrap_topics(&cfg).await.unwrap();
    let pool = roar_projections::connect(cfg.database.url.expose(), 4, Duration::from_secs(30))
        .await
        .unwrap();
    roar_projections::migrate(&pool).await.unwrap();
    let state = AppState::new(
        cfg.clone(),
        EventProducer::new(&cfg.kafka).unwrap(),
        Storage::from_config(&cfg.storage).unwrap(),
        pool,
        Authenticator::new(&cfg.auth),
        roar_common::telemetry::metrics_handle(),
        ControlFollower::spawn(&cfg.kafka, cancel.clone()).unwrap(),
    );
    (roar_orchestrator::router(state), cfg)
}

/// The statuses the document lists per (method, path template).
fn documented() -> HashMap<(String, String), BTreeSet<u16>> {
    let doc: Value = serde_json::from_str(&roar_orchestrator::openapi::json()).unwrap();
    let mut out = HashMap::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let codes = op["responses"]
                .as_object()
                .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
                .unwrap_or_default();
            out.insert((method.to_uppercase(), path.clone()), codes);
        }
    }
    out
}

/// One request of a target: the operation it names in the document, and the request.
struct Sent {
    method: Method,
    template: &'static str,
    uri: String,
    token: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Sends requests and checks every answer against the document.
struct Checker {
    app: Router,
    docs: HashMap<(String, String), BTreeSet<u16>>,
    rt: tokio::runtime::Handle,
}

impl Checker {
    fn check(&self, s: Sent) -> Result<(), String> {
        let mut req = Request::builder().method(s.method.clone()).uri(&s.uri);
        if let Some(t) = &s.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = &s.content_type {
            req = req.header("content-type", ct);
        }
        let req = req
            .body(Body::from(s.body))
            .map_err(|e| format!("{}: {e}", s.uri))?;
        let (status, body) = self.rt.block_on(async {
            let resp = self.app.clone().oneshot(req).await.expect("infallible");
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await;
            (status, body)
        });
        let body = body.map_err(|e| format!("{} {}: body: {e}", s.method, s.uri))?;
        let listed = &self.docs[&(s.method.to_string(), s.template.to_string())];
        if status >= 500 || !listed.contains(&status) {
            return Err(format!(
                "{} {} answered {status} (documented: {listed:?}): {}",
                s.method,
                s.uri,
                String::from_utf8_lossy(&body)
            ));
        }
        if status >= 400 {
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "{} {}: {status} without the error body: {e}",
                    s.method, s.uri
                )
            })?;
            if !v["code"].is_string() || !v["error"].is_string() {
                return Err(format!("{} {}: {status} body {v}", s.method, s.uri));
            }
        }
        Ok(())
    }
}

/// Percent-encodes what a URI cannot hold, keeping `%`, `=` and `&` so that broken escapes
/// and odd pairs reach the query parser.
fn query_of(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'%'
            | b'='
            | b'&'
            | b'+'
            | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn multipart(name: &str, filename: &str, content: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
         Content-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(content);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_any_body_query_and_upload_with_a_documented_status() {
    let infra = Infra::start().await;
    let cancel = CancellationToken::new();
    let (app, cfg) = router(&infra, &cancel).await;
    let auth = Authenticator::new(&cfg.auth);
    let user = auth.mint("fuzz-user", &[], None).unwrap();
    let admin = auth.mint("fuzz-admin", &["admin"], None).unwrap();
    let service = auth.mint("fuzz-worker", &["service"], None).unwrap();
    let checker = Arc::new(Checker {
        app,
        docs: documented(),
        rt: tokio::runtime::Handle::current(),
    });

    // JSON bodies: each route with valid seeds, mutated, and garbage.
    let bodies: Vec<(&'static str, String, Value)> = vec![
        (
            "/process",
            user.clone(),
            json!({"file_id": FILE, "model": "pitch"}),
        ),
        (
            "/process",
            user.clone(),
            json!({"file_id": FILE, "models": ["pitch", {"model": "demucs", "variation": "htdemucs_6s", "params": {"shifts": 1}}]}),
        ),
        (
            "/process",
            user.clone(),
            json!([{"file_id": FILE, "model": "whisper", "params": {"language": "en"}}]),
        ),
        (
            "/process",
            user.clone(),
            json!({"file_id": FILE, "model": "pitch", "callback_url": "https://hooks.example.com/roar?k=1", "callback_events": ["job.*"]}),
        ),
        (
            "/webhooks",
            user.clone(),
            json!({"url": "https://hooks.example.com:8443/roar", "events": ["job.completed", "job.failed"], "secret": format!("whsec_{}", "QUJD".repeat(8))}),
        ),
        (
            "/upload",
            user.clone(),
            json!({"filename": "a.wav", "size": 44, "sha256": "ab".repeat(32), "mime": "audio/wav"}),
        ),
        (
            "/notify",
            service.clone(),
            json!({"job_id": JOB, "status": "progress", "progress": 50.0, "message": "half"}),
        ),
        (
            "/notify",
            service.clone(),
            json!({"job_id": JOB, "file_id": FILE, "status": "completed", "outputs": [{"path": format!("outputs/{FILE}/x.csv"), "kind": "pitch", "content_type": "text/csv", "size": 1, "sha256": "00"}], "duration_seconds": 1.5}),
        ),
        (
            "/notify",
            service.clone(),
            json!({"job_id": JOB, "status": "failed", "error": {"code": "x", "message": "y", "retryable": false}}),
        ),
    ];
    let routes: Vec<(&'static str, String)> =
        bodies.iter().map(|(r, t, _)| (*r, t.clone())).collect();
    let seeds = bodies
        .iter()
        .map(|(_, _, v)| v.to_string().into_bytes())
        .collect();
    let inputs = prop_oneof![
        4 => mutated(seeds),
        1 => (0..routes.len(), garbage(128)),
    ];
    let c = checker.clone();
    tokio::task::spawn_blocking(move || {
        fuzz("json bodies", 10_000, inputs, |(i, body)| {
            let (template, token) = &routes[i];
            c.check(Sent {
                method: Method::POST,
                template,
                uri: template.to_string(),
                token: Some(token.clone()),
                content_type: Some("application/json".into()),
                body,
            })
        })
    })
    .await
    .unwrap();

    // Query strings of every route that takes one.
    let queries: Vec<(Method, &'static str, String, Option<String>, &'static str)> = vec![
        (Method::GET, "/songs", "/songs".into(), Some(user.clone()), "limit=10&cursor=f0123456789abcdef0123456789abcdef"),
        (Method::GET, "/admin/jobs", "/admin/jobs".into(), Some(admin.clone()), "status=queued&limit=200&cursor=j0123456789abcdef0123456789abcdef"),
        (Method::GET, "/status/{file_id}", format!("/status/{FILE}"), Some(user.clone()), "after=roar.files.v1:0:12&as_of=2026-12-06T20:00:00Z"),
        (Method::GET, "/files/{name}", "/files/song.wav".into(), None, "t=eyJtIjoiR0VUIn0&sig=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
    ];
    let seeds = queries.iter().map(|q| q.4.as_bytes().to_vec()).collect();
    let inputs = prop_oneof![
        4 => mutated(seeds),
        1 => (0..queries.len(), garbage(96)),
    ];
    let c = checker.clone();
    tokio::task::spawn_blocking(move || {
        fuzz("query strings", 10_000, inputs, |(i, q)| {
            let (method, template, path, token, _) = &queries[i];
            c.check(Sent {
                method: method.clone(),
                template,
                uri: format!("{path}?{}", query_of(&q)),
                token: token.clone(),
                content_type: None,
                body: Vec::new(),
            })
        })
    })
    .await
    .unwrap();

    // Multipart uploads: a valid form (some mutations still upload, which the broker and store
    // take), a form with another part name, and garbage.
    let wav = melody_wav(&[(440.0, 0.01)], 8_000, 1);
    let seeds = vec![
        multipart("file", "tone.wav", &wav),
        multipart("file", "../../etc/passwd", b"RIFF"),
        multipart("other", "tone.wav", &wav),
    ];
    let inputs = prop_oneof![
        4 => mutated(seeds).prop_map(|(_, b)| b),
        1 => garbage(256),
    ];
    let c = checker.clone();
    tokio::task::spawn_blocking(move || {
        fuzz("multipart uploads", 10_000, inputs, |body| {
            c.check(Sent {
                method: Method::POST,
                template: "/upload",
                uri: "/upload".into(),
                token: Some(user.clone()),
                content_type: Some(format!("multipart/form-data; boundary={BOUNDARY}")),
                body,
            })
        })
    })
    .await
    .unwrap();
    cancel.cancel();
}
