//! Issue 21, hole 6: SSE slots were only global, so one user opening streams in a loop locked
//! every other user out. A user now holds at most `http.sse_max_streams_per_user` streams; the
//! rest get 429 `too_many_streams`, other users still get theirs, and closed streams give the
//! slot back.

use std::time::Duration;

use futures::StreamExt;

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
