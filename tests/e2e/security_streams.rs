//! Issue 21, hole 6: SSE slots were only global, so one user opening streams in a loop locked
//! every other user out. A user now holds at most `http.sse_max_streams_per_user` streams; the
//! rest get 429 `too_many_streams`, other users still get theirs, and closed streams give the
//! slot back. And every stream no longer queries Postgres on every commit: one read per commit
//! feeds all of them.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::support::{melody_wav, Infra, Services};

async fn open(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (u16, Option<reqwest::Response>, String) {
    let r = client.get(url).bearer_auth(token).send().await.unwrap();
    let code = r.status().as_u16();
    if code == 200 {
        (code, Some(r), String::new())
    } else {
        (code, None, r.text().await.unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_streams_from_one_user_take_only_that_users_share() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.http.sse_max_streams = 40;
    cfg.http.sse_max_streams_per_user = 16;
    cfg.http.sse_heartbeat_seconds = 1;
    // The request-rate limit is another defence; off here so only the stream cap answers.
    cfg.http.rate_limit_per_second = 0.0;
    let svc = Services::start(cfg).await;
    let (alice, bob) = (svc.token("alice", &[]), svc.token("bob", &[]));
    let wav = melody_wav(&[(330.0, 0.3)], 16_000, 1);
    let a_file = svc.ready_file(&alice, "a.wav", wav.clone()).await;
    let b_file = svc.ready_file(&bob, "b.wav", wav).await;
    let a_url = svc.url(&format!("/status/{a_file}/events"));
    let client = reqwest::Client::new();

    let attempts = futures::stream::iter(0..1000)
        .map(|_| open(&client, &a_url, &alice))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for (code, resp, body) in attempts {
        match code {
            200 => held.push(resp.unwrap()),
            429 => {
                assert!(body.contains("too_many_streams"), "{body}");
                refused += 1;
            }
            other => panic!("stream {other}: {body}"),
        }
    }
    assert_eq!(held.len(), 16, "alice holds exactly her share");
    assert_eq!(refused, 984);

    // Bob is not locked out.
    let (code, bob_stream, body) =
        open(&client, &svc.url(&format!("/status/{b_file}/events")), &bob).await;
    assert_eq!(code, 200, "{body}");
    drop(bob_stream);

    // Closing streams gives alice's slots back (the server notices the closed connection on
    // its next write: a heartbeat at the latest).
    held.truncate(10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (code, resp, _) = open(&client, &a_url, &alice).await;
        if code == 200 {
            held.extend(resp);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "closed streams never gave their slots back"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(held);
    svc.stop().await;
}

/// The value of `roar_sse_history_reads_total{kind=...}` on the metrics page (0 when absent).
async fn reads(metrics_url: &str, kind: &str) -> f64 {
    let page = reqwest::get(metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("roar_sse_history_reads_total{{kind=\"{kind}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Hole 6, second half: every open stream used to query Postgres on every projection commit.
/// Now one read per commit serves all of a file's streams; a stream reads by itself only its
/// backlog when it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_read_per_change_feeds_every_stream_of_the_file() {
    const STREAMS: usize = 20;
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    let port = roar::stack::free_port().unwrap();
    cfg.http.metrics_addr = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.http.sse_max_streams_per_user = STREAMS;
    // Only commits wake the fan-out here (no timer reads while the test counts).
    cfg.http.sse_poll_ms = 600_000;
    cfg.http.rate_limit_per_second = 0.0;
    // No worker: the requested jobs stay queued, one history row each.
    cfg.processor.models_dir = infra.dir.path().join("no-models");
    let svc = Services::start(cfg).await;
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "a.wav", melody_wav(&[(330.0, 0.3)], 16_000, 1))
        .await;
    let url = svc.url(&format!("/status/{file}/events"));
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let (code, resp, body) = open(&client, &url, &alice).await;
        assert_eq!(code, 200, "{body}");
        let mut r = crate::support::SseReader::new(resp.unwrap());
        // The backlog: uploaded, probed.
        for _ in 0..2 {
            assert!(r.next(Duration::from_secs(20)).await.is_some());
        }
        streams.push(r);
    }
    let (catch_up, fanout) = (
        reads(&metrics_url, "catch_up").await,
        reads(&metrics_url, "fanout").await,
    );
    assert!(
        catch_up >= STREAMS as f64,
        "each stream read its backlog: {catch_up}"
    );

    const JOBS: u32 = 5;
    for secs in 0..JOBS {
        let body = json!({"file_id": file, "model": "musicgen", "params": {"duration": 5 + secs}});
        assert_eq!(svc.post_json(&alice, "/process", &body).await.0, 202);
    }
    for (i, r) in streams.iter_mut().enumerate() {
        for n in 0..JOBS {
            let ev = r.next(Duration::from_secs(30)).await;
            assert_eq!(
                ev.as_ref().and_then(|e| e.event.as_deref()),
                Some("queued"),
                "stream {i}, event {n}: {ev:?}"
            );
        }
    }
    let catch_up_after = reads(&metrics_url, "catch_up").await;
    let fanout_after = reads(&metrics_url, "fanout").await;
    assert_eq!(catch_up_after, catch_up, "no stream read the change itself");
    let per_change = fanout_after - fanout;
    // One per commit (other commits may wake it too), never one per stream and change.
    assert!(
        per_change >= 1.0 && per_change < STREAMS as f64,
        "{per_change} fan-out reads for {JOBS} changes seen by {STREAMS} streams"
    );
    drop(streams);
    svc.stop().await;
}
