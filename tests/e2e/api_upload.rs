//! Direct uploads through HTTP against the real stack: a signed orchestrator link on the local
//! store, and a presigned PUT (then `complete`) on a real S3-compatible server (moto); size and
//! content hash are enforced either way, and output links work on both.

use roar_schemas::topics::JOB_EVENTS;
use roar_schemas::{EventMeta, JobBody, JobEvent, Output};
use serde_json::{json, Value};

use crate::support::{self, fixture, sha256_hex, Infra, S3Server, Services};

async fn put(url: &str, bytes: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .put(url)
        .body(bytes)
        .send()
        .await
        .unwrap();
    support::status_and_json(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_direct_upload_checks_size_and_hash_and_conflicts_on_duplicates() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let audio = fixture("sine.wav");
    let req = json!({"filename": "../x/song.wav", "size": audio.len(), "sha256": sha256_hex(&audio), "mime": "audio/wav"});

    for (body, code) in [
        (
            json!({"filename": "a", "size": 0, "sha256": sha256_hex(b"")}),
            422,
        ),
        (
            json!({"filename": "a", "size": 10, "sha256": "nothex"}),
            422,
        ),
        (
            json!({"filename": "a", "size": 1u64 << 40, "sha256": sha256_hex(b"x")}),
            413,
        ),
        (
            json!({"filename": "a", "size": "ten", "sha256": sha256_hex(b"x")}),
            422,
        ),
    ] {
        let (got, v) = svc.post_json(&alice, "/upload", &body).await;
        assert_eq!(got, code, "{body}: {v}");
    }
    let r = reqwest::Client::new()
        .post(svc.url("/upload"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{\"filename\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = reqwest::Client::new()
        .post(svc.url("/upload"))
        .bearer_auth(&alice)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let (code, reg) = svc.post_json(&alice, "/upload", &req).await;
    assert_eq!(code, 201, "{reg}");
    let file = reg["file_id"].as_str().unwrap().to_string();
    assert_eq!(
        file,
        roar_schemas::ids::file_id("alice", &sha256_hex(&audio))
    );
    let url = reg["upload_url"].as_str().unwrap().to_string();
    assert!(url.contains(&format!("/upload/{file}?t=")), "{url}");
    assert!(reg["expires_at"].is_string());

    // Wrong content of the right size, too many bytes, a tampered link: refused.
    let mut wrong = audio.clone();
    wrong[100] ^= 0xff;
    assert_eq!(put(&url, wrong).await.0, 422);
    let mut longer = audio.clone();
    longer.push(0);
    assert_eq!(put(&url, longer).await.0, 413);
    assert_eq!(
        put(&url.replace("sig=", "sig=ab"), audio.clone()).await.0,
        403
    );
    let other = url.replace(&file, "f0123456789abcdef0123456789abcdef");
    assert_eq!(put(&other, audio.clone()).await.0, 403);

    let (code, v) = put(&url, audio.clone()).await;
    assert_eq!(code, 201, "{v}");
    let st = svc
        .wait_for(&alice, &file, |v| v["file"]["status"] == "ready")
        .await;
    assert_eq!(st["file"]["filename"], "song.wav");
    assert_eq!(st["file"]["size"], audio.len());

    // The same content again: 409 with the existing id, for both upload styles.
    let (code, v) = svc.post_json(&alice, "/upload", &req).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("Song already exists"))
    );
    assert_eq!(v["file_id"], file.as_str());
    assert_eq!(
        svc.upload(&alice, "again.wav", audio.clone())
            .await
            .status(),
        409
    );
    assert_eq!(put(&url, audio).await.0, 409);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_presigned_put_then_complete_and_presigned_output_downloads() {
    let s3 = S3Server::start("roar-test").await;
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    s3.configure(&mut cfg);
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let audio = fixture("sine.flac");
    let req = json!({"filename": "song.flac", "size": audio.len(), "sha256": sha256_hex(&audio), "mime": "audio/flac"});
    let (code, reg) = svc.post_json(&alice, "/upload", &req).await;
    assert_eq!(code, 201, "{reg}");
    let file = reg["file_id"].as_str().unwrap().to_string();
    let url = reg["upload_url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&s3.endpoint) && url.contains("X-Amz-Signature="),
        "{url}"
    );
    let complete = reg["complete_url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&svc.base)
        .to_string();
    assert_eq!(complete, format!("/upload/{file}/complete"));

    // Complete before anything arrived: 409. Wrong bytes: 422 and the object is removed.
    let token = reg["consistency_token"].as_str().unwrap();
    let (_, st) = svc
        .get_json(&alice, &format!("/status/{file}?after={token}"))
        .await;
    assert_eq!(st["file"]["status"], "pending_upload", "{st}");
    let (code, v) = svc.post_json(&alice, &complete, &json!({})).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("upload_missing")),
        "{v}"
    );
    let mut wrong = audio.clone();
    wrong[50] ^= 0xff;
    assert_eq!(put(&url, wrong).await.0, 200);
    assert_eq!(svc.post_json(&alice, &complete, &json!({})).await.0, 422);
    assert_eq!(
        svc.post_json(&svc.token("bob", &[]), &complete, &json!({}))
            .await
            .0,
        404
    );

    assert_eq!(put(&url, audio.clone()).await.0, 200);
    let (code, v) = svc.post_json(&alice, &complete, &json!({})).await;
    assert_eq!(code, 200, "{v}");
    let st = svc
        .wait_for(&alice, &file, |v| v["file"]["status"] == "ready")
        .await;
    assert_eq!(st["file"]["metadata"]["codec"], "flac");

    // An output in S3 gets a presigned GET in /status.
    let (code, job) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen"}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    let jid = job["job_id"].as_str().unwrap();
    let key = format!("outputs/{file}/musicgen/small/{jid}/song.json");
    let storage = roar_common::storage::Storage::from_config(&svc.cfg.storage).unwrap();
    storage
        .put(&key, bytes::Bytes::from_static(b"{\"ok\":1}"))
        .await
        .unwrap();
    let ev = JobEvent {
        meta: EventMeta::new("test", "worker"),
        job_id: jid.into(),
        file_id: file.clone(),
        model: "musicgen".into(),
        variation: "small".into(),
        body: JobBody::Completed {
            outputs: vec![Output {
                path: key,
                kind: "json".into(),
                content_type: "application/json".into(),
                size: 8,
                sha256: "x".into(),
            }],
            duration_seconds: 1.0,
        },
    };
    svc.producer().send(JOB_EVENTS, &file, &ev).await.unwrap();
    let done = svc
        .wait_job(&alice, &file, jid, |j| j["status"] == "completed")
        .await;
    let out = done["outputs"][0]["url"].as_str().unwrap();
    assert!(
        out.starts_with(&s3.endpoint) && out.contains("X-Amz-Signature="),
        "{out}"
    );
    let got = reqwest::get(out).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"{\"ok\":1}");
    svc.stop().await;
}
