//! Issue 21, hole 5: `GET /files/…` read the whole object into memory before answering, and
//! had no `Range`. It now streams the object (or one range of it: 206, 416 outside it), as S3
//! serves its presigned URLs. The store's ranged stream is checked on both real stores (the
//! local directory and an S3 server), the route through HTTP on the local one, with the
//! per-user bandwidth limit on (`http.download_bytes_per_second_per_user`), which on S3 hands
//! out the orchestrator's links instead of presigned URLs.

use roar_common::storage::Storage;
use roar_schemas::topics::JOB_EVENTS;
use roar_schemas::{EventMeta, JobBody, JobEvent, Output};
use serde_json::json;

use crate::support::{fixture, sha256_hex, Infra, S3Server, Services};

/// 1 MiB + 7 of bytes no two chunks repeat (a wrong offset shows).
fn object() -> Vec<u8> {
    (0..(1u32 << 20) + 7)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Ranged reads of one object on `storage`: exact slices, and the whole object in several
/// chunks (streamed, not one buffer).
async fn check_ranges(storage: &Storage) {
    let bytes = object();
    let key = "outputs/f0/test/v/j0/big.bin";
    storage.put(key, bytes.clone().into()).await.unwrap();
    let meta = storage.head(key).await.unwrap().unwrap();
    let read = |range: Option<std::ops::Range<u64>>, tag: Option<String>| async move {
        let mut chunks = 0;
        let mut out = Vec::new();
        let mut st = storage.get_range_stream(key, range, tag).await?;
        while let Some(c) = futures::StreamExt::next(&mut st).await {
            out.extend_from_slice(&c?);
            chunks += 1;
        }
        Ok::<_, roar_common::storage::StorageError>((out, chunks))
    };
    let (all, chunks) = read(None, meta.e_tag.clone()).await.unwrap();
    assert!(all == bytes, "whole object differs");
    assert!(chunks > 1, "the whole object came in one chunk");
    let (part, _) = read(Some(1000..1010), None).await.unwrap();
    assert_eq!(part, bytes[1000..1010]);
    let n = bytes.len() as u64;
    let (tail, _) = read(Some(n - 3..n), None).await.unwrap();
    assert_eq!(tail, bytes[bytes.len() - 3..]);
    // Replaced since it was measured: not served as if it were the same object.
    storage.put(key, vec![1u8; 10].into()).await.unwrap();
    assert!(read(None, meta.e_tag.clone()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranged_streams_on_the_local_store_and_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let local = Storage::from_config(&roar_common::config::StorageConfig {
        url: format!("file://{}", dir.path().display()),
        ..Default::default()
    })
    .unwrap();
    check_ranges(&local).await;
    let s3 = S3Server::start("roar-ranges").await;
    let mut cfg = roar_common::Config::default();
    s3.configure(&mut cfg);
    check_ranges(&Storage::from_config(&cfg.storage).unwrap()).await;
}

/// A job of alice's on a fresh song, completed with `object()` as its one output (no worker:
/// the test reports the completion itself); the output's download link, and the store.
async fn output_link(svc: &Services) -> (String, Storage, String) {
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;
    let (code, v) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "pitch"}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let job = v["job_id"].as_str().unwrap().to_string();
    let queued = svc
        .wait_job(&alice, &file, &job, |j| j["status"] == "queued")
        .await;
    let variation = queued["variation"].as_str().unwrap().to_string();
    let bytes = object();
    let key = format!(
        "{}big.bin",
        roar_common::storage::job_output_dir(&file, "pitch", &variation, &job)
    );
    let storage = Storage::from_config(&svc.cfg.storage).unwrap();
    storage.put(&key, bytes.clone().into()).await.unwrap();
    let done = JobEvent {
        meta: EventMeta::new("test", "worker"),
        job_id: job.clone(),
        file_id: file.clone(),
        model: "pitch".into(),
        variation,
        body: JobBody::Completed {
            outputs: vec![Output {
                path: key.clone(),
                kind: "data".into(),
                content_type: "application/octet-stream".into(),
                size: bytes.len() as i64,
                sha256: sha256_hex(&bytes),
            }],
            duration_seconds: 1.0,
        },
    };
    svc.producer().send(JOB_EVENTS, &file, &done).await.unwrap();
    let completed = svc
        .wait_job(&alice, &file, &job, |j| j["status"] == "completed")
        .await;
    let url = completed["outputs"][0]["url"].as_str().unwrap().to_string();
    (url, storage, key)
}

/// All of a user's downloads share this (2 MiB/s, after a burst of as much).
const RATE: u64 = 2 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_stream_whole_or_one_range() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No worker takes the job: the test reports its completion itself.
    cfg.processor.models_dir = infra.dir.path().join("no-models");
    cfg.http.download_bytes_per_second_per_user = RATE;
    let svc = Services::start(cfg).await;
    let (url, storage, key) = output_link(&svc).await;
    let bytes = object();
    let client = reqwest::Client::new();
    let get = |range: Option<&str>| {
        let mut r = client.get(&url);
        if let Some(h) = range {
            r = r.header("Range", h);
        }
        r.send()
    };

    // Four parallel downloads of 1 MiB share the owner's bucket: at most 2 MiB go in the burst,
    // the rest at the rate. (A lower bound only: how fast the machine is does not matter.)
    let started = std::time::Instant::now();
    let all = futures::future::join_all(
        (0..4).map(|_| async { get(None).await.unwrap().bytes().await.unwrap() }),
    )
    .await;
    let paced = started.elapsed().as_secs_f64();
    assert!(all.iter().all(|b| *b == bytes), "a paced download differs");
    let floor = (4 * bytes.len() as u64 - RATE) as f64 / RATE as f64;
    assert!(
        paced >= floor,
        "4 MiB took {paced:.2} s, under the {floor:.2} s the rate allows"
    );

    let r = get(None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.content_length(), Some(bytes.len() as u64));
    assert!(r.bytes().await.unwrap() == bytes, "whole download differs");

    let n = bytes.len();
    for (h, from, to) in [
        ("bytes=1000-1999", 1000, 2000),
        ("bytes=1048576-", 1_048_576, n),
        ("bytes=-5", n - 5, n),
        ("bytes=10-99999999", 10, n),
    ] {
        let r = get(Some(h)).await.unwrap();
        assert_eq!(r.status(), 206, "{h}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {from}-{}/{n}", to - 1).as_str(),
            "{h}"
        );
        let body = r.bytes().await.unwrap();
        assert!(body == bytes[from..to], "{h}: wrong bytes");
    }
    let r = get(Some(&format!("bytes={n}-"))).await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{n}").as_str()
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "range_not_satisfiable", "{body}");
    // Several ranges, or a malformed one, may be ignored: the whole object.
    for h in ["bytes=0-1,5-6", "bytes=9-0", "lines=1-2"] {
        let r = get(Some(h)).await.unwrap();
        assert_eq!(r.status(), 200, "{h}");
        assert_eq!(r.bytes().await.unwrap().len(), n, "{h}");
    }
    // The link still names one object: gone from the store, it is 404, not an empty 200.
    storage.delete(&key).await.unwrap();
    assert_eq!(get(None).await.unwrap().status(), 404);
    svc.stop().await;
}

/// On S3 the limit would not reach presigned URLs (their bytes never pass roar): while it is
/// on, output links are the orchestrator's own, which stream from S3 through the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_limit_on_s3_outputs_are_served_through_the_orchestrator() {
    let s3 = S3Server::start("roar-limited").await;
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    s3.configure(&mut cfg);
    cfg.processor.models_dir = infra.dir.path().join("no-models");
    cfg.http.download_bytes_per_second_per_user = RATE;
    let svc = Services::start(cfg).await;
    let (url, _, _) = output_link(&svc).await;
    assert!(
        url.starts_with(&format!("{}/files/", svc.base)) && !url.starts_with(&s3.endpoint),
        "{url}"
    );
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == object(), "the download differs");
    svc.stop().await;
}
