//! Issue 21, hole 8: nothing bounded how long a request or its body could take, abandoned
//! direct uploads stayed pending (and their staged bytes stored) for ever, and `?as_of=` folded
//! however much history a file had. Each is attacked here from outside: a body that stalls, a
//! request stuck on a locked table, a request head sent byte by byte (slowloris), uploads
//! registered and abandoned, leftovers in the store, and `as_of` reads out of range.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{fixture, history_kinds, sha256_hex, Infra, Services};

/// Sends a PUT's headers and the first half of its body, then stalls; returns what the server
/// answered (status line and body) or "" when it closed without an answer.
async fn stalled_put(base: &str, path_and_query: &str, body: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..body.len() / 2]).await.unwrap();
    let mut answer = Vec::new();
    // Far beyond the 1 s idle timeout: the server must answer long before.
    let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server kept waiting for the stalled body");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Opens a connection and sends a request's head one byte every 100 ms (a minute for the whole
/// head), never finishing it; returns what the server sent before it closed the connection.
async fn dribbled_head(base: &str) -> String {
    let addr = base.trim_start_matches("http://").to_string();
    let conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = rd.read_to_end(&mut answer).await;
        answer
    });
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}",
        "a".repeat(600)
    );
    for b in head.bytes() {
        if reader.is_finished() || wr.write_all(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = tokio::time::timeout(Duration::from_secs(10), reader).await;
    let answer = answer.expect("the server waited for the whole dribbled head");
    String::from_utf8_lossy(&answer.unwrap()).into_owned()
}

async fn register(svc: &Services, token: &str, bytes: &[u8], name: &str) -> Value {
    let req = json!({"filename": name, "size": bytes.len(), "sha256": sha256_hex(bytes)});
    let (code, reg) = svc.post_json(token, "/upload", &req).await;
    assert_eq!(code, 201, "{reg}");
    reg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_body_and_a_stuck_request_end_with_an_answer() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.http.body_idle_timeout_seconds = 1;
    cfg.http.request_timeout_seconds = 2;
    cfg.http.consistency_wait_ms = 500;
    cfg.http.sweep_interval_seconds = 0;
    cfg.http.header_read_timeout_seconds = 1;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let audio = fixture("sine.flac");

    // A head sent byte by byte (slowloris) is cut off after the header read timeout: the
    // connection is closed without an answer, long before the head would be complete.
    let started = std::time::Instant::now();
    let answer = dribbled_head(&svc.base).await;
    assert_eq!(answer, "", "no answer to a head that never completed");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "closed after {took:?}");
    let (code, _) = svc.get_json(&alice, "/me/usage").await;
    assert_eq!(code, 200, "the server still serves other clients");
    let reg = register(&svc, &alice, &audio, "song.flac").await;
    let file = reg["file_id"].as_str().unwrap().to_string();
    let url = reg["upload_url"].as_str().unwrap();
    let path = url.trim_start_matches(&svc.base);

    let answer = stalled_put(&svc.base, path, &audio).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("no request data for 1 s"), "{answer}");
    // Nothing of the half body was kept or published.
    let store = infra.store_dir();
    assert!(!store.join(roar_common::storage::upload_key(&file)).exists());
    let tmp = store.join("uploads/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary objects left behind: {left:?}");
    // The link still works for a client that sends its bytes.
    let r = reqwest::Client::new()
        .put(url)
        .body(audio.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());

    // A request stuck on its dependency (the read model's table locked) is answered 503
    // `timeout` after `http.request_timeout_seconds`, not held for as long as the lock.
    let pool = sqlx::PgPool::connect(&infra.pg.url("roar")).await.unwrap();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE files IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let path = format!("/status/{file}");
    let stuck = svc.get_json(&alice, &path);
    let answered = tokio::time::timeout(Duration::from_secs(20), stuck).await;
    let took = started.elapsed();
    lock.rollback().await.unwrap();
    let (code, body) = answered.expect("the stuck request was answered");
    assert_eq!(
        (code, body["code"].as_str()),
        (503, Some("timeout")),
        "{body}"
    );
    assert!(took < Duration::from_secs(15), "answered after {took:?}");
    let (code, body) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert_eq!(code, 200, "{body}");
    pool.close().await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_uploads_and_leftover_objects_are_swept() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.http.link_ttl_seconds = 1;
    cfg.http.upload_grace_seconds = 1;
    cfg.http.sweep_interval_seconds = 1;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    // A file uploaded in full is never swept.
    let kept = svc
        .ready_file(&alice, "kept.wav", fixture("sine.wav"))
        .await;
    let audio = fixture("sine.flac");
    let reg = register(&svc, &alice, &audio, "abandoned.flac").await;
    let file = reg["file_id"].as_str().unwrap().to_string();
    // Leftovers: a staged object of an upload never completed, a temporary object of a
    // process that died mid-upload.
    let store = infra.store_dir();
    let staged = store.join(roar_common::storage::staging_key(&file));
    let tmp = store.join("uploads/tmp/0b5e7c1e-left-behind");
    for p in [&staged, &tmp] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"partial").unwrap();
    }

    let mut gone = false;
    for _ in 0..300 {
        let (code, _) = svc.get_json(&alice, &format!("/status/{file}")).await;
        if code == 404 && !staged.exists() && !tmp.exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "not swept: staged {} tmp {}",
        staged.exists(),
        tmp.exists()
    );
    let kinds = history_kinds(&infra, &file).await;
    assert_eq!(
        kinds.last().map(|(_, k)| k.as_str()),
        Some("file_deleted"),
        "{kinds:?}"
    );
    // The swept upload no longer blocks its content: it may be registered (and sent) again.
    let again = register(&svc, &alice, &audio, "abandoned.flac").await;
    assert_eq!(again["file_id"], file.as_str());
    let (code, st) = svc.get_json(&alice, &format!("/status/{kept}")).await;
    assert_eq!(
        (code, st["file"]["status"].as_str()),
        (200, Some("ready")),
        "{st}"
    );
    assert!(store.join(roar_common::storage::upload_key(&kept)).exists());
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn as_of_reads_out_of_range_are_refused() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.http.as_of_max_events = 1;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;
    let at = |t: chrono::DateTime<chrono::Utc>| {
        let t = t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        format!("/status/{file}?as_of={}", t.replace('+', "%2B"))
    };
    let now = chrono::Utc::now();
    // Uploaded and probed: two events to fold, one allowed.
    let (code, body) = svc.get_json(&alice, &at(now)).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (422, Some("unprocessable")),
        "{body}"
    );
    let (code, body) = svc
        .get_json(&alice, &at(now + chrono::Duration::days(1)))
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    assert!(body["error"].as_str().unwrap().contains("future"), "{body}");
    // Before the upload there is nothing to fold: the usual 404, not a refusal.
    let (code, body) = svc
        .get_json(&alice, &at(now - chrono::Duration::days(1)))
        .await;
    assert_eq!(code, 404, "{body}");
    svc.stop().await;
}
