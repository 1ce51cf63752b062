//! Issue 21, hole 4: a presigned S3 PUT stays valid until it expires, so it used to let a user
//! swap the checked upload for content of any size after `/complete`. The URL now writes a
//! staging key; `/complete` copies what it hashed to the final key and deletes the staging
//! object, so replaying the URL afterwards changes nothing the workers read.

use serde_json::json;

use crate::support::{fixture, sha256_hex, Infra, S3Server, Services};

async fn put(url: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .put(url)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_presigned_put_replayed_after_complete_changes_nothing() {
    let s3 = S3Server::start("roar-sec").await;
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    s3.configure(&mut cfg);
    let svc = Services::start(cfg).await;
    let storage = roar_common::storage::Storage::from_config(&svc.cfg.storage).unwrap();
    let alice = svc.token("alice", &[]);
    let audio = fixture("sine.flac");
    let sha = sha256_hex(&audio);
    let req =
        json!({"filename": "song.flac", "size": audio.len(), "sha256": sha, "mime": "audio/flac"});
    let (code, reg) = svc.post_json(&alice, "/upload", &req).await;
    assert_eq!(code, 201, "{reg}");
    let file = reg["file_id"].as_str().unwrap().to_string();
    let url = reg["upload_url"].as_str().unwrap().to_string();
    let final_key = roar_common::storage::upload_key(&file);
    assert!(
        !url.contains(&final_key),
        "the link must not name the final key: {url}"
    );
    let complete = format!("/upload/{file}/complete");
    let token = reg["consistency_token"].as_str().unwrap();
    let (_, st) = svc
        .get_json(&alice, &format!("/status/{file}?after={token}"))
        .await;
    assert_eq!(st["file"]["status"], "pending_upload", "{st}");

    assert_eq!(put(&url, audio.clone()).await, 200);
    let (code, v) = svc.post_json(&alice, &complete, &json!({})).await;
    assert_eq!(code, 200, "{v}");
    let staged = roar_common::storage::staging_key(&file);
    assert!(
        storage.head(&staged).await.unwrap().is_none(),
        "the staging object is deleted after completion"
    );
    svc.wait_for(&alice, &file, |v| v["file"]["status"] == "ready")
        .await;

    // The attacker replays the still-valid URL with other content of another size.
    let swapped = vec![0x5a; audio.len() * 3 + 17];
    assert_eq!(put(&url, swapped).await, 200, "S3 still takes the PUT");
    let stored = storage.get(&final_key).await.unwrap();
    assert_eq!(sha256_hex(&stored), sha, "the checked upload was replaced");
    // And completing again does not bring the swapped bytes in.
    let (code, v) = svc.post_json(&alice, &complete, &json!({})).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("not_pending")),
        "{v}"
    );
    let (_, st) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert_eq!(st["file"]["sha256"], sha.as_str(), "{st}");
    assert_eq!(st["file"]["size"], audio.len(), "{st}");
    svc.stop().await;
}
