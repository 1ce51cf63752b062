//! `GET /status/{file_id}?as_of=T`: the file and its jobs as they were at T, folded from the
//! projection's event history, through HTTP against the real stack.

use serde_json::json;

use crate::support::{find_job, fixture, history_times, Infra, Services};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_as_of_a_past_time_shows_that_past() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;
    // musicgen: no worker runs it here, so the job stays queued.
    let (code, body) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen"}),
        )
        .await;
    assert_eq!(code, 202, "{body:#}");
    let job = body["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &job, |j| j["status"] == "queued")
        .await;

    // The past moments come from the history itself (the services' clocks), not from the
    // test's clock and a pause: just before the upload, and the instant the probe made the
    // file ready, which is before the job was asked for.
    let history = history_times(&infra, &file).await;
    let time_of = |kind: &str| {
        history
            .iter()
            .find(|(_, k, _)| k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {history:?}"))
            .2
    };
    let before_upload = time_of("file_uploaded") - chrono::Duration::microseconds(1);
    let ready_no_job = time_of("file_probed");
    assert!(time_of("queued") > ready_no_job, "{history:?}");

    let at = |t: chrono::DateTime<chrono::Utc>| {
        let t = t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        format!("/status/{file}?as_of={}", t.replace('+', "%2B"))
    };
    let (code, past) = svc.get_json(&alice, &at(ready_no_job)).await;
    assert_eq!(code, 200, "{past:#}");
    assert_eq!(past["file"]["status"], "ready");
    assert_eq!(past["jobs"], json!([]));
    assert!(past["as_of"].is_string());
    let (_, now) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert!(find_job(&now, &job).is_some(), "{now:#}");
    assert_eq!(
        now["file"], past["file"],
        "nothing about the file changed since"
    );

    // Before the file existed: not found. Another user: not found. Garbage time: 400.
    assert_eq!(svc.get_json(&alice, &at(before_upload)).await.0, 404);
    assert_eq!(svc.get_json(&bob, &at(ready_no_job)).await.0, 404);
    assert_eq!(
        svc.get_json(&alice, &format!("/status/{file}?as_of=yesterday"))
            .await
            .0,
        400
    );
    svc.stop().await;
}
