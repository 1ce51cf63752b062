//! Issue 21, hole 7: no per-user limits. A user now has quotas on jobs in flight, jobs per day,
//! stored bytes and pending direct uploads (`quota.*`), each refused with its own status and
//! code, counted at once (a burst cannot slip past a read model that lags), and visible at
//! `GET /me/usage`. Another user's quota is untouched.

use futures::StreamExt;
use serde_json::{json, Value};

use crate::support::{find_job, fixture, sha256_hex, Infra, Services};

async fn request_job(svc: &Services, token: &str, file: &str, seconds: u32) -> (u16, Value) {
    let body = json!({"file_id": file, "model": "musicgen", "params": {"duration": seconds}});
    svc.post_json(token, "/process", &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_refuse_bursts_and_show_in_usage() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No worker runs the jobs: they stay queued until canceled.
    cfg.processor.models_dir = infra.dir.path().join("no-models");
    cfg.http.rate_limit_per_second = 0.0;
    let wav = fixture("sine.wav");
    let flac = fixture("sine.flac");
    cfg.quota.jobs_in_flight = 2;
    cfg.quota.jobs_per_day = 3;
    cfg.quota.stored_bytes = (wav.len() + flac.len() - 1) as u64;
    cfg.quota.pending_uploads = 1;
    let svc = Services::start(cfg).await;
    let (alice, bob) = (svc.token("alice", &[]), svc.token("bob", &[]));
    let file = svc.ready_file(&alice, "sine.wav", wav.clone()).await;

    let (code, u) = svc.get_json(&alice, "/me/usage").await;
    assert_eq!(code, 200, "{u}");
    assert_eq!(u["stored_bytes"], wav.len(), "{u}");
    assert_eq!(
        (u["jobs_in_flight"].as_u64(), u["jobs_today"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(u["limits"]["jobs_in_flight"], 2, "{u}");

    // A burst of four distinct jobs at once: exactly two get in, whatever the projection shows.
    let answers: Vec<(u16, Value)> = futures::stream::iter(5..9)
        .map(|secs| request_job(&svc, &alice, &file, secs))
        .buffer_unordered(4)
        .collect()
        .await;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(c, _)| *c == 202)
        .map(|(_, v)| v)
        .collect();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(c, _)| *c == 429)
        .map(|(_, v)| v)
        .collect();
    assert_eq!((accepted.len(), refused.len()), (2, 2), "{answers:?}");
    for v in &refused {
        assert_eq!(v["code"], "jobs_in_flight", "{v}");
        assert!(
            v["error"].as_str().unwrap().contains("queued or running"),
            "{v}"
        );
    }
    let (_, u) = svc.get_json(&alice, "/me/usage").await;
    assert_eq!(
        (u["jobs_in_flight"].as_u64(), u["jobs_today"].as_u64()),
        (Some(2), Some(2)),
        "{u}"
    );
    // Bob has quotas of his own.
    let bobs = svc.ready_file(&bob, "sine.flac", flac.clone()).await;
    assert_eq!(request_job(&svc, &bob, &bobs, 5).await.0, 202);

    // One canceled: room for one more in flight, which is the third of the day.
    let first = accepted[0]["job_id"].as_str().unwrap().to_string();
    let (code, v) = svc
        .post_json(&alice, &format!("/jobs/{first}/cancel"), &json!({}))
        .await;
    assert!(code == 202 || code == 200, "{code} {v}");
    svc.wait_job(&alice, &file, &first, |j| j["status"] == "canceled")
        .await;
    assert_eq!(request_job(&svc, &alice, &file, 20).await.0, 202);
    let second = accepted[1]["job_id"].as_str().unwrap().to_string();
    svc.post_json(&alice, &format!("/jobs/{second}/cancel"), &json!({}))
        .await;
    svc.wait_job(&alice, &file, &second, |j| j["status"] == "canceled")
        .await;
    let (code, v) = request_job(&svc, &alice, &file, 21).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (429, Some("jobs_per_day")),
        "{v}"
    );

    // Storage: the second file would pass the quota; refused, and nothing of it kept.
    let r = svc.upload(&alice, "sine.flac", flac.clone()).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "storage_quota", "{v}");
    let refused_id = roar_schemas::ids::file_id("alice", &sha256_hex(&flac));
    assert_eq!(svc.status(&alice, &refused_id).await.status(), 404);
    assert!(!infra
        .store_dir()
        .join(roar_common::storage::upload_key(&refused_id))
        .exists());
    let (_, u) = svc.get_json(&alice, "/me/usage").await;
    assert_eq!(u["stored_bytes"], wav.len(), "{u}");

    // Pending direct uploads: Bob may hold one registration, not two.
    let register = |bytes: Vec<u8>| {
        let req = json!({"filename": "x.wav", "size": bytes.len(), "sha256": sha256_hex(&bytes)});
        let svc = &svc;
        let bob = bob.clone();
        async move { svc.post_json(&bob, "/upload", &req).await }
    };
    let (code, v) = register(vec![1, 2, 3]).await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = register(vec![4, 5, 6]).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (429, Some("pending_uploads")),
        "{v}"
    );
    let (_, u) = svc.get_json(&bob, "/me/usage").await;
    assert_eq!(u["pending_uploads"], 1, "{u}");
    assert_eq!(
        u["stored_bytes"],
        flac.len() + 3,
        "the pending upload reserves its size: {u}"
    );
    svc.stop().await;
}

/// A pipeline (here a preset) is admitted as a whole when it is requested: all the jobs it will
/// run count against `jobs_in_flight` and `jobs_per_day` at once, or it is refused and nothing
/// is emitted. The process manager then requests the steps without asking again, and the
/// projected steps do not count twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_counts_every_step_when_it_is_requested() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.processor.models_dir = infra.dir.path().join("no-models");
    cfg.http.rate_limit_per_second = 0.0;
    cfg.quota.jobs_in_flight = 3;
    cfg.quota.jobs_per_day = 4;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;
    let preset = |name: &str| json!({"file_id": file, "preset": name});
    let usage = || async {
        let (_, u) = svc.get_json(&alice, "/me/usage").await;
        (u["jobs_in_flight"].as_u64(), u["jobs_today"].as_u64())
    };

    // Karaoke runs four jobs: more than three in flight, refused whole.
    let (code, v) = svc.post_json(&alice, "/process", &preset("karaoke")).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (429, Some("jobs_in_flight")),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("this pipeline has 4 jobs to run"),
        "{v}"
    );
    assert_eq!(usage().await, (Some(0), Some(0)));

    // Lyrics runs three: all three count at once, before anything is projected.
    let (code, v) = svc.post_json(&alice, "/process", &preset("lyrics")).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(usage().await, (Some(3), Some(3)));
    let jobs: Vec<String> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(jobs.len(), 3, "{v}");
    // Once the steps are projected (and the manager requested the first), still three.
    let st = svc
        .wait_for(&alice, &file, |st| {
            jobs.iter().all(|j| find_job(st, j).is_some())
        })
        .await;
    assert_eq!(st["pipelines"].as_array().unwrap().len(), 1, "{st:#}");
    assert_eq!(usage().await, (Some(3), Some(3)));

    // One more job of any kind is past the limit, as a pipeline or alone.
    let (code, v) = svc.post_json(&alice, "/process", &preset("stems")).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (429, Some("jobs_in_flight")),
        "{v}"
    );
    let (code, v) = request_job(&svc, &alice, &file, 5).await;
    assert_eq!((code, v["code"].as_str()), (429, Some("jobs_in_flight")));
    let (_, st) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert_eq!(st["pipelines"].as_array().unwrap().len(), 1, "{st:#}");
    assert_eq!(usage().await, (Some(3), Some(3)));
    svc.stop().await;
}
