//! A repeat upload of the same content is a duplicate however far behind the read model is:
//! here no projector runs at all, so the read model never shows the first upload, and only
//! the orchestrator's own record of what it accepted (read your own writes) can answer 409.
//! Of two concurrent uploads of one content, exactly one is accepted.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{melody_wav, sha256_hex, Infra, Services};

type Api = tokio::task::JoinHandle<anyhow::Result<()>>;

/// The orchestrator alone on its own broker and database (no projector: the read model never
/// catches up), with a client attached.
async fn orchestrator_only() -> (Infra, Services, Api, CancellationToken) {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    roar::services::bootstrap_topics(&cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    cfg.http.public_url = base.clone();
    let cancel = CancellationToken::new();
    let api = tokio::spawn(roar::services::orchestrator(
        Arc::new(cfg.clone()),
        listener,
        cancel.clone(),
    ));
    let svc = Services::attach(base, cfg).await;
    (infra, svc, api, cancel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeat_upload_is_a_duplicate_before_the_read_model_shows_the_first() {
    let (_infra, svc, api, cancel) = orchestrator_only().await;
    let alice = svc.token("alice", &[]);

    // Multipart, twice in a row: the second is refused with the first's id.
    let audio = melody_wav(&[(440.0, 0.3)], 8000, 1);
    let r = svc.upload(&alice, "a.wav", audio.clone()).await;
    assert_eq!(r.status(), 201);
    let first: serde_json::Value = r.json().await.unwrap();
    let r = svc.upload(&alice, "again.wav", audio.clone()).await;
    assert_eq!(r.status(), 409);
    let dup: serde_json::Value = r.json().await.unwrap();
    assert_eq!(dup["file_id"], first["file_id"], "{dup:#}");
    // Another user's copy of the content is their own file.
    let bob = svc.token("bob", &[]);
    assert_eq!(svc.upload(&bob, "a.wav", audio).await.status(), 201);

    // Two at once: one wins.
    let other = melody_wav(&[(330.0, 0.3)], 8000, 1);
    let (a, b) = tokio::join!(
        svc.upload(&alice, "x.wav", other.clone()),
        svc.upload(&alice, "y.wav", other.clone())
    );
    let mut codes = [a.status().as_u16(), b.status().as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [201, 409]);

    // The signed-link flow: a ticket for content already accepted is refused, and so is a
    // second PUT on a link whose upload was accepted.
    let third = melody_wav(&[(550.0, 0.3)], 8000, 1);
    let req = json!({"filename": "t.wav", "size": third.len(), "sha256": sha256_hex(&third)});
    let (code, ticket) = svc.post_json(&alice, "/upload", &req).await;
    assert_eq!(code, 201, "{ticket:#}");
    let url = ticket["upload_url"].as_str().unwrap().to_string();
    let put = |bytes: Vec<u8>| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .put(url)
                .body(bytes)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(put(third.clone()).await, 201);
    assert_eq!(put(third.clone()).await, 409);
    let (code, v) = svc.post_json(&alice, "/upload", &req).await;
    assert_eq!(code, 409, "{v:#}");
    assert_eq!(v["file_id"], ticket["file_id"]);
    // The multipart way for the same content: refused as well.
    assert_eq!(svc.upload(&alice, "t.wav", third).await.status(), 409);

    cancel.cancel();
    api.await.unwrap().unwrap();
}

/// An orchestrator killed between taking a content's claim and sending its event leaves an
/// unconfirmed claim, and no event will ever come. A retry of the upload must not be told
/// "duplicate" (the client would wait for a file that never appears): it is told to try again
/// and, once the claim is stale, takes it over and is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_left_by_a_killed_orchestrator_is_taken_over_not_a_duplicate() {
    let (_infra, svc, api, cancel) = orchestrator_only().await;
    let db = sqlx::PgPool::connect(svc.cfg.database.url.expose())
        .await
        .unwrap();
    let alice = svc.token("alice", &[]);
    let audio = melody_wav(&[(660.0, 0.3)], 8000, 1);
    let sha = sha256_hex(&audio);
    let file_id = roar_schemas::ids::file_id("alice", &sha);
    // What the killed orchestrator left: its claim, never confirmed.
    sqlx::query("INSERT INTO upload_claims (file_id, claimed_at, token) VALUES ($1, now(), NULL)")
        .bind(&file_id)
        .execute(&db)
        .await
        .unwrap();

    let r = svc.upload(&alice, "a.wav", audio.clone()).await;
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "upload_in_progress", "{v:#}");
    let req = json!({"filename": "a.wav", "size": audio.len(), "sha256": sha});
    let (code, v) = svc.post_json(&alice, "/upload", &req).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("upload_in_progress")),
        "{v:#}"
    );

    // Once the claim is stale, the retry takes it over and is accepted.
    sqlx::query(
        "UPDATE upload_claims SET claimed_at = now() - interval '5 minutes' WHERE file_id = $1",
    )
    .bind(&file_id)
    .execute(&db)
    .await
    .unwrap();
    let r = svc.upload(&alice, "a.wav", audio.clone()).await;
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["file_id"], file_id.as_str(), "{v:#}");
    // And the content is now accepted: a repeat is a duplicate.
    let r = svc.upload(&alice, "a.wav", audio).await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "duplicate", "{v:#}");

    cancel.cancel();
    api.await.unwrap().unwrap();
}
