//! Issue 21, hole 9 (rest): error bodies never leak internals. Every error path an attacker
//! can reach (another tenant's ids, malformed bodies and paths, bad tokens and links, and a
//! database that fails under the API) answers `{error, code, request_id}` and nothing that
//! names a host, port, path, SQL, a Rust type or another user.

use serde_json::{json, Value};

use crate::support::{melody_wav, Infra, Services};

/// What no error body may contain (besides the owner of the file asked about).
fn leaks(infra: &Infra, svc: &Services, owner: &str) -> Vec<String> {
    let mut words: Vec<String> = [
        "127.0.0.1",
        "localhost",
        "postgres",
        "sqlx",
        "SELECT",
        "relation",
        "tansu",
        "rdkafka",
        "panicked",
        "src/",
        ".rs:",
        "/tmp",
        "/work",
        "roar_",
        "object_store",
        "RUST_BACKTRACE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    words.push(infra.pg.port.to_string());
    words.push(infra.store_dir().display().to_string());
    words.push(svc.cfg.kafka.brokers.clone());
    words.push(owner.to_string());
    words
}

/// Checks one error answer: the documented shape, and none of `forbidden` in the raw body.
async fn check(what: &str, r: reqwest::Response, status: u16, forbidden: &[String]) {
    let got = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(got, status, "{what}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
    let mut keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "error", "request_id"], "{what}: {body}");
    for f in forbidden {
        assert!(!body.contains(f.as_str()), "{what} leaks {f:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_bodies_name_no_host_path_query_type_or_other_user() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // The failing-database read below must reach the database: the status cache would answer
    // it with the body rendered while the file became ready.
    cfg.http.status_cache_bytes = 0;
    let svc = Services::start(cfg).await;
    let owner = "alice-7Rq2";
    let alice = svc.token(owner, &[]);
    let bob = svc.token("bob", &[]);
    let file = svc
        .ready_file(&alice, "tone.wav", melody_wav(&[(440.0, 0.3)], 16_000, 1))
        .await;
    let forbidden = leaks(&infra, &svc, owner);
    let c = reqwest::Client::new();
    let url = |p: &str| svc.url(p);

    // Another tenant's ids, on every kind of route.
    let as_bob = [
        c.get(url(&format!("/status/{file}"))),
        c.get(url(&format!("/status/{file}/events"))),
        c.delete(url(&format!("/songs/{file}"))),
        c.post(url("/process"))
            .json(&json!({"file_id": file, "model": "pitch"})),
        c.post(url(&format!("/upload/{file}/complete"))),
    ];
    for (i, rb) in as_bob.into_iter().enumerate() {
        let r = rb.bearer_auth(&bob).send().await.unwrap();
        check(&format!("bob's request {i}"), r, 404, &forbidden).await;
    }
    // Malformed input.
    let bad = [
        (
            c.post(url("/process"))
                .header("content-type", "application/json")
                .body("{\"file_id\":"),
            400,
        ),
        (
            c.post(url("/process"))
                .json(&json!({"file_id": file, "model": "pitch", "params": {"hop_ms": "x"}})),
            422,
        ),
        (
            c.post(url("/process"))
                .json(&json!({"file_id": file, "model": "nope"})),
            422,
        ),
        (c.get(url("/status/not-an-id")), 404),
        (c.get(url(&format!("/status/{file}?as_of=yesterday"))), 400),
        (c.get(url("/songs?limit=100000")), 400),
        (
            c.post(url("/upload"))
                .json(&json!({"filename": "a.wav", "size": -1, "sha256": "zz"})),
            422,
        ),
    ];
    for (i, (rb, status)) in bad.into_iter().enumerate() {
        let r = rb.bearer_auth(&alice).send().await.unwrap();
        check(&format!("bad request {i}"), r, status, &forbidden).await;
    }
    // Bad credentials.
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    for (what, rb) in [
        ("no token", c.get(url("/songs"))),
        ("forged token", c.get(url("/songs")).bearer_auth(&forged)),
        ("garbage token", c.get(url("/songs")).bearer_auth("a.b.c")),
    ] {
        check(what, rb.send().await.unwrap(), 401, &forbidden).await;
    }
    let r = c
        .get(url("/files/x.wav?t=abc&sig=k.def"))
        .send()
        .await
        .unwrap();
    check("forged link", r, 403, &forbidden).await;

    // The database fails under the API: the answer names neither the table nor the query.
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    sqlx::query("ALTER TABLE jobs RENAME TO jobs_gone")
        .execute(&pool)
        .await
        .unwrap();
    let r = c
        .get(url(&format!("/status/{file}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let mut db_forbidden = forbidden.clone();
    db_forbidden.extend(["jobs_gone".to_string(), "does not exist".to_string()]);
    check("a failing database", r, 503, &db_forbidden).await;
    sqlx::query("ALTER TABLE jobs_gone RENAME TO jobs")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    svc.stop().await;
}
