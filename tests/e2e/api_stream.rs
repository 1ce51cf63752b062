//! The read side through HTTP against the real stack: SSE with heartbeats and resume,
//! `/songs` pages, `/models` with live workers, and `/notify` from an external worker.

use std::time::Duration;

use roar_schemas::topics::{CONTROL, JOB_EVENTS};
use roar_schemas::{ControlBody, ControlEvent, EventMeta, JobBody, JobEvent};
use serde_json::{json, Value};

use crate::support::{fixture, Infra, Services, SseReader};

const JOB: &str = "j00000000000000000000000000000001";

/// A job row made the way a worker's events make one, without the job request path.
async fn queued_job(svc: &Services, file_id: &str, owner: &str) {
    let ev = JobEvent {
        meta: EventMeta::new("test", "test"),
        job_id: JOB.into(),
        file_id: file_id.into(),
        model: "pitch".into(),
        variation: "tiny".into(),
        body: JobBody::Queued {
            owner: owner.into(),
            model_version: "crepe-tiny".into(),
            params_json: "{}".into(),
        },
    };
    svc.producer().send(JOB_EVENTS, file_id, &ev).await.unwrap();
}

/// A progress event of the job, as its worker would emit it.
async fn progress(svc: &Services, file_id: &str, percent: f32) {
    let ev = JobEvent {
        meta: EventMeta::new("test", "worker"),
        job_id: JOB.into(),
        file_id: file_id.into(),
        model: "pitch".into(),
        variation: "tiny".into(),
        body: JobBody::Progress {
            percent,
            message: format!("{percent}"),
        },
    };
    svc.producer().send(JOB_EVENTS, file_id, &ev).await.unwrap();
}

async fn open_events(
    svc: &Services,
    token: &str,
    file: &str,
    last: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(svc.url(&format!("/status/{file}/events")))
        .bearer_auth(token);
    if let Some(id) = last {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_streams_history_and_live_events_and_resumes_without_loss_or_repeats() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.http.sse_heartbeat_seconds = 1;
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;

    assert_eq!(
        open_events(&svc, &svc.token("bob", &[]), &file, None)
            .await
            .status(),
        404
    );
    let r = open_events(&svc, &alice, &file, None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut sse = SseReader::new(r);
    let wait = Duration::from_secs(20);
    let a = sse.next(wait).await.expect("history: uploaded");
    let b = sse.next(wait).await.expect("history: probed");
    assert_eq!(a.event.as_deref(), Some("file_uploaded"));
    assert_eq!(b.event.as_deref(), Some("file_probed"));

    // Live: an event emitted now arrives on the open stream.
    queued_job(&svc, &file, "alice").await;
    let c = sse.next(wait).await.expect("live event");
    assert_eq!(c.event.as_deref(), Some("queued"));
    let data: Value = serde_json::from_str(&c.data).unwrap();
    assert_eq!(data["job_id"], JOB);
    // Idle: the next thing on the stream is a heartbeat (every second here), not an event.
    assert_eq!(
        sse.heartbeat(wait).await,
        Ok(()),
        "a heartbeat, nothing else"
    );
    drop(sse);

    // While disconnected, the job progresses; a resumed stream gets exactly what it missed.
    let last_seen = c.id.clone().unwrap();
    for pct in [10.0, 50.0] {
        progress(&svc, &file, pct).await;
    }
    svc.wait_job(&alice, &file, JOB, |j| j["progress"] == 50.0)
        .await;
    let mut sse = SseReader::new(open_events(&svc, &alice, &file, Some(&last_seen)).await);
    let d = sse.next(wait).await.unwrap();
    let e = sse.next(wait).await.unwrap();
    assert_eq!(
        (d.event.as_deref(), e.event.as_deref()),
        (Some("progress"), Some("progress"))
    );
    assert_eq!(
        serde_json::from_str::<Value>(&d.data).unwrap()["body"]["body"]["percent"],
        10.0
    );
    // Nothing repeated or extra: the next event on the stream is the next one emitted.
    progress(&svc, &file, 60.0).await;
    let f = sse.next(wait).await.expect("live event after the resume");
    assert_eq!(
        serde_json::from_str::<Value>(&f.data).unwrap()["body"]["body"]["percent"],
        60.0,
        "{f:?}"
    );

    // Every id, across both connections, is the full history once, in order: a fresh stream
    // replays it up to the last event emitted.
    let seen: Vec<String> = [a, b, c, d, e, f]
        .into_iter()
        .map(|x| x.id.unwrap())
        .collect();
    let mut all = SseReader::new(open_events(&svc, &alice, &file, None).await);
    let mut ids = Vec::new();
    while ids.last() != seen.last() {
        let ev = all.next(wait).await;
        ids.push(ev.expect("the replayed history").id.unwrap());
        assert!(ids.len() <= seen.len(), "{ids:?} vs {seen:?}");
    }
    assert_eq!(ids, seen);

    let bad = reqwest::Client::new()
        .get(svc.url(&format!("/status/{file}/events")))
        .bearer_auth(&alice)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    svc.stop().await;
}

/// `roar_status_cache_total{result=...}` on the metrics page (0 when absent).
async fn cache_count(metrics_url: &str, result: &str) -> f64 {
    let page = reqwest::get(metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("roar_status_cache_total{{result=\"{result}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Issue 24: plain `GET /status` reads come from a cache of the rendered body, and a read made
/// after a projector commit never gets the body rendered before it. The cache's age limit is
/// set far beyond this test's length, so only the commit notification can make the reads
/// right; the SSE event of the commit is the test's sign that the commit happened (the
/// stream learns of it from the same notification).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_is_cached_until_the_projection_commits_and_never_served_stale() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.http.status_cache_max_age_ms = 300_000;
    // Only commits wake the event stream here, never the timer: its event then proves the
    // notification arrived.
    cfg.http.sse_poll_ms = 600_000;
    let port = roar::stack::free_port().unwrap();
    cfg.http.metrics_addr = format!("127.0.0.1:{port}").parse().unwrap();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let svc = Services::start(cfg).await;
    let (alice, bob) = (svc.token("alice", &[]), svc.token("bob", &[]));
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;
    let mut sse = SseReader::new(open_events(&svc, &alice, &file, None).await);
    let wait = Duration::from_secs(20);
    for kind in ["file_uploaded", "file_probed"] {
        assert_eq!(sse.next(wait).await.unwrap().event.as_deref(), Some(kind));
    }
    let path = format!("/status/{file}");

    // The same answer again, from the cache (three reads: an unrelated commit may fall
    // between two); another user still gets 404.
    let (code, first) = svc.get_json(&alice, &path).await;
    assert_eq!(code, 200, "{first}");
    let hits = cache_count(&metrics_url, "hit").await;
    for _ in 0..3 {
        assert_eq!(svc.get_json(&alice, &path).await.1, first);
    }
    assert!(
        cache_count(&metrics_url, "hit").await > hits,
        "no cache hit"
    );
    assert!(support_find_job(&first).is_none());
    assert_eq!(svc.get_json(&bob, &path).await.0, 404);

    // A commit: the next plain read shows it, at once.
    queued_job(&svc, &file, "alice").await;
    assert_eq!(
        sse.next(wait).await.unwrap().event.as_deref(),
        Some("queued")
    );
    let (_, after) = svc.get_json(&alice, &path).await;
    assert_eq!(
        support_find_job(&after).map(|j| j["status"].clone()),
        Some(json!("queued")),
        "a body rendered before the commit was served: {after:#}"
    );
    // And again for a change of an existing job (cached again meanwhile).
    let _ = svc.get_json(&alice, &path).await;
    progress(&svc, &file, 40.0).await;
    assert_eq!(
        sse.next(wait).await.unwrap().event.as_deref(),
        Some("progress")
    );
    let (_, later) = svc.get_json(&alice, &path).await;
    assert_eq!(
        support_find_job(&later).map(|j| j["progress"].clone()),
        Some(json!(40.0)),
        "{later:#}"
    );
    svc.stop().await;
}

fn support_find_job(status: &Value) -> Option<&Value> {
    crate::support::find_job(status, JOB)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn songs_page_models_list_live_workers_and_notify_publishes_job_events() {
    let infra = Infra::start().await;
    // No model weights: no worker of this stack announces itself, the test's own one does.
    let mut cfg = infra.config();
    cfg.processor.models_dir = infra.dir.path().join("no-models");
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);
    let mut ids = Vec::new();
    for name in ["sine.wav", "sine.flac", "sine.mp3"] {
        ids.push(svc.ready_file(&alice, name, fixture(name)).await);
    }

    // Pages of two, newest first, and nothing of Alice's for Bob.
    let (code, p1) = svc.get_json(&alice, "/songs?limit=2").await;
    assert_eq!(code, 200, "{p1}");
    assert_eq!(p1["songs"].as_array().unwrap().len(), 2);
    assert_eq!(p1["songs"][0]["file_id"], ids[2].as_str());
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = svc
        .get_json(&alice, &format!("/songs?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(p2["songs"].as_array().unwrap().len(), 1);
    assert_eq!(p2["songs"][0]["file_id"], ids[0].as_str());
    assert!(p2["next_cursor"].is_null());
    assert_eq!(svc.get_json(&bob, "/songs").await.1["songs"], json!([]));
    assert_eq!(svc.get_json(&alice, "/songs?cursor=garbage").await.0, 400);
    assert_eq!(svc.get_json(&alice, "/songs?limit=1000").await.0, 400);

    // The catalogue, with no worker alive yet; then one announces itself.
    let (code, m) = svc.get_json(&alice, "/models").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demucs", "whisper", "pitch", "musicgen", "gemma3n"]);
    assert!(m["models"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["live"] == false));
    assert_eq!(m["models"][2]["variations"][1]["name"], "full");
    assert!(m["models"][2]["params"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "hop_ms" && p["type"] == "float"));
    let alive = ControlEvent {
        meta: EventMeta::new("test", "worker:w1"),
        job_id: String::new(),
        body: ControlBody::WorkerAlive {
            worker: "w1".into(),
            model: "pitch".into(),
            model_version: "crepe-tiny".into(),
            variations: vec!["tiny".into()],
            device: "cpu".into(),
            interval_seconds: 30,
            stopping: false,
            versions: vec!["crepe-tiny".into()],
        },
    };
    svc.producer().send(CONTROL, "", &alive).await.unwrap();
    let mut live = Value::Null;
    for _ in 0..100 {
        live = svc.get_json(&alice, "/models").await.1;
        if live["models"][2]["live"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live["models"][2]["live"], true, "{live:#}");
    assert_eq!(live["models"][2]["workers"][0]["worker"], "w1");
    assert_eq!(live["models"][0]["live"], false);

    // /notify: service tokens only; the event lands in the job's status.
    let file = &ids[0];
    queued_job(&svc, file, "alice").await;
    svc.wait_job(&alice, file, JOB, |j| j["status"] == "queued")
        .await;
    let service = svc.token("worker-7", &["service"]);
    let progress =
        json!({"job_id": JOB, "status": "progress", "progress": 42.0, "message": "halfway"});
    assert_eq!(svc.post_json(&alice, "/notify", &progress).await.0, 403);
    let (code, v) = svc.post_json(&service, "/notify", &progress).await;
    assert_eq!(code, 202, "{v}");
    let j = svc
        .wait_job(&alice, file, JOB, |j| j["progress"] == 42.0)
        .await;
    assert_eq!(j["message"], "halfway");
    for (body, code) in [
        (json!({"job_id": JOB, "status": "exploded"}), 422),
        (
            json!({"job_id": JOB, "status": "progress", "progress": 420.0}),
            422,
        ),
        (json!({"job_id": JOB, "status": "failed"}), 422),
        // Well formed, but not this job's: a conflict with what the job is.
        (
            json!({"job_id": JOB, "status": "progress", "progress": 1.0, "file_id": ids[1]}),
            409,
        ),
        (
            json!({"job_id": JOB, "status": "progress", "progress": 1.0, "model": "whisper"}),
            409,
        ),
        (
            json!({"job_id": JOB, "status": "completed", "outputs": [{"path": format!("outputs/{}/x.csv", ids[1]), "kind": "x", "content_type": "x", "size": 1, "sha256": "x"}]}),
            409,
        ),
        // Malformed whatever the job: refused before it is looked up.
        (
            json!({"job_id": "j0123456789abcdef0123456789abcdef", "status": "progress", "progress": 420.0}),
            422,
        ),
        (
            json!({"job_id": JOB, "status": "completed", "outputs": [{"path": "outputs/../../etc/passwd", "kind": "x", "content_type": "x", "size": 1, "sha256": "x"}]}),
            422,
        ),
        (
            json!({"job_id": "j0123456789abcdef0123456789abcdef", "status": "started"}),
            404,
        ),
        (json!({"job_id": JOB}), 422),
    ] {
        let (got, v) = svc.post_json(&service, "/notify", &body).await;
        assert_eq!(got, code, "{body}: {v}");
    }
    let done = json!({"job_id": JOB, "status": "completed", "duration_seconds": 1.5,
        "outputs": [{"path": format!("outputs/{file}/pitch/tiny/{JOB}/f0.csv"), "kind": "f0", "content_type": "text/csv", "size": 3, "sha256": "ab"}]});
    assert_eq!(svc.post_json(&service, "/notify", &done).await.0, 202);
    let j = svc
        .wait_job(&alice, file, JOB, |j| j["status"] == "completed")
        .await;
    assert!(j["outputs"][0]["url"]
        .as_str()
        .unwrap()
        .contains("/files/f0.csv?"));
    svc.stop().await;
}
