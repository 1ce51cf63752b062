//! `POST /process` and the job commands through HTTP against the real stack: a job is named by
//! what determines its outputs, asking twice returns it, a completed job is skipped, and cancel,
//! retry and the admin view act on it. The jobs use musicgen, whose weights no registry ships,
//! so no worker runs them here: the tests emit the job events a worker would.

use roar_common::catalog;
use roar_schemas::ids::{canonical_json, job_id};
use roar_schemas::topics::{jobs_topic, CONTROL, JOB_EVENTS};
use roar_schemas::{ControlBody, ControlEvent, EventMeta, JobBody, JobEvent, Output};
use serde_json::{json, Value};

use crate::support::{self, fixture, read_topic, topic_len, Infra, Services};

fn expected_job_id(file_id: &str, model: &str, variation: Option<&str>, params: &Value) -> String {
    let r = catalog::resolve(model, variation, Some(params)).unwrap();
    job_id(
        file_id,
        r.model,
        &r.variation,
        &canonical_json(&r.params),
        &r.model_version,
    )
}

async fn emit(svc: &Services, job: &Value, body: JobBody) {
    let ev = JobEvent {
        meta: EventMeta::new("test", "worker:test"),
        job_id: job["job_id"].as_str().unwrap().into(),
        file_id: job["file_id"].as_str().unwrap().into(),
        model: job["model"].as_str().unwrap().into(),
        variation: job["variation"].as_str().unwrap().into(),
        body,
    };
    svc.producer()
        .send(JOB_EVENTS, &ev.file_id, &ev)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asking_twice_returns_the_same_job_and_a_completed_job_is_skipped() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;

    // What is invalid is refused with what would be valid.
    for (body, hint) in [
        (json!({"file_id": file, "model": "karaoke"}), "demucs"),
        (
            json!({"file_id": file, "model": "pitch", "variation": "huge"}),
            "tiny, full",
        ),
        (
            json!({"file_id": file, "model": "pitch", "params": {"hop": 1}}),
            "hop_ms",
        ),
        (
            json!({"file_id": file, "model": "pitch", "params": {"hop_ms": 0}}),
            "outside",
        ),
    ] {
        let (code, v) = svc.post_json(&alice, "/process", &body).await;
        assert_eq!(code, 422, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(hint), "{v}");
        assert_eq!(v["code"], "unprocessable");
    }
    // Another user's file does not exist for bob.
    let (code, _) = svc
        .post_json(
            &bob,
            "/process",
            &json!({"file_id": file, "model": "pitch"}),
        )
        .await;
    assert_eq!(code, 404);

    let topic = jobs_topic("musicgen");
    let before = topic_len(&svc.cfg.kafka.brokers, &topic);
    let params = json!({"duration": 5});
    let (code, first) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen", "params": params}),
        )
        .await;
    assert_eq!(code, 202, "{first}");
    assert_eq!(first["status"], "queued");
    assert_eq!(first["attempt"], 1);
    let jid = first["job_id"].as_str().unwrap().to_string();
    assert_eq!(jid, expected_job_id(&file, "musicgen", None, &params));
    assert_eq!(first["params"]["prompt"], "", "defaults are filled in");

    // Read-your-writes: the token makes /status wait until the job is projected.
    let token = first["consistency_token"].as_str().unwrap();
    let (code, st) = svc
        .get_json(&alice, &format!("/status/{file}?after={token}"))
        .await;
    assert_eq!(code, 200);
    assert_eq!(st["consistent"], true, "{st:#}");
    let job = support::find_job(&st, &jid)
        .expect("job visible after the token")
        .clone();
    assert_eq!(job["status"], "queued");

    // The same request again (defaults spelled out, params reordered): the same job, no event.
    let (code, again) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen", "variation": "small", "params": {"prompt": "", "duration": 5.0}}),
        )
        .await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["job_id"], jid.as_str());
    assert_eq!(again["status"], "queued");
    assert_eq!(topic_len(&svc.cfg.kafka.brokers, &topic), before + 1);

    // A worker runs it and writes an output.
    let key = format!("outputs/{file}/musicgen/small/{jid}/out.json");
    let content = br#"{"generated":true}"#;
    let path = infra.store_dir().join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    emit(
        &svc,
        &job,
        JobBody::Started {
            worker: "w1".into(),
            attempt: 1,
        },
    )
    .await;
    let output = Output {
        path: key.clone(),
        kind: "audio".into(),
        content_type: "application/json".into(),
        size: content.len() as i64,
        sha256: "00".into(),
    };
    emit(
        &svc,
        &job,
        JobBody::Completed {
            outputs: vec![output],
            duration_seconds: 0.5,
        },
    )
    .await;
    let done = svc
        .wait_job(&alice, &file, &jid, |j| j["status"] == "completed")
        .await;
    let url = done["outputs"][0]["url"]
        .as_str()
        .expect("download url")
        .to_string();
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), content);
    // A tampered link is refused.
    let tampered = url.replace("sig=", "sig=00");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);

    // Asking for a completed job: skipped, with its outputs, and nothing emitted.
    let (code, skipped) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen", "params": {"duration": 5}}),
        )
        .await;
    assert_eq!(code, 200, "{skipped}");
    assert_eq!(skipped["status"], "skipped");
    assert_eq!(skipped["job_id"], jid.as_str());
    assert_eq!(skipped["outputs"][0]["path"], key.as_str());
    assert!(skipped["outputs"][0]["url"].is_string());
    assert_eq!(topic_len(&svc.cfg.kafka.brokers, &topic), before + 1);

    // Several models at once: the completed one is skipped, the new ones are queued.
    let (code, many) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "models": [{"model": "musicgen", "params": {"duration": 5}}, "musicgen", "whisper"]}),
        )
        .await;
    assert_eq!(code, 202, "{many}");
    let statuses: Vec<&str> = many["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["skipped", "queued", "queued"]);
    assert_eq!(
        many["jobs"][2]["job_id"],
        expected_job_id(&file, "whisper", None, &json!({})).as_str()
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_retry_and_the_admin_view() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);
    let admin = svc.token("root", &["admin"]);
    let file = svc
        .ready_file(&alice, "sine.flac", fixture("sine.flac"))
        .await;

    let (code, job) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen", "params": {"prompt": "cancel me"}}),
        )
        .await;
    assert_eq!(code, 202, "{job}");
    let jid = job["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &jid, |j| j["status"] == "queued")
        .await;

    // Only the owner (or an admin) may cancel; a queued job is canceled at once.
    let cancel = format!("/jobs/{jid}/cancel");
    assert_eq!(svc.post_json(&bob, &cancel, &json!({})).await.0, 404);
    // Counted by kind and job: the workers' heartbeats share the control topic.
    let cancels_of = |jid: &str| {
        read_topic(&svc.cfg.kafka.brokers, CONTROL)
            .iter()
            .filter_map(|d| roar_schemas::decode::<ControlEvent>(d.payload.as_deref()?).ok())
            .filter(|c| c.job_id == jid && matches!(c.body, ControlBody::CancelRequested { .. }))
            .count()
    };
    assert_eq!(cancels_of(&jid), 0);
    let (code, v) = svc.post_json(&alice, &cancel, &json!({})).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "canceled");
    assert_eq!(cancels_of(&jid), 1, "CancelRequested sent");
    svc.wait_job(&alice, &file, &jid, |j| j["status"] == "canceled")
        .await;
    let (code, v) = svc.post_json(&alice, &cancel, &json!({})).await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["code"], "job_finished");

    // Asking again after a cancel: a new attempt of the same job.
    let (code, v) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "musicgen", "params": {"prompt": "cancel me"}}),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["job_id"], jid.as_str());
    assert_eq!(v["attempt"], 2);
    svc.wait_job(&alice, &file, &jid, |j| j["status"] == "queued")
        .await;

    // Admin endpoints need the role.
    let retry = format!("/admin/jobs/{jid}/retry");
    assert_eq!(svc.post_json(&alice, &retry, &json!({})).await.0, 403);
    assert_eq!(svc.get_json(&alice, "/admin/jobs").await.0, 403);
    // A queued job cannot be retried; a failed one can.
    let (code, v) = svc.post_json(&admin, &retry, &json!({})).await;
    assert_eq!((code, v["code"].as_str()), (409, Some("job_not_retryable")));
    emit(
        &svc,
        &job,
        JobBody::Started {
            worker: "w".into(),
            attempt: 2,
        },
    )
    .await;
    emit(
        &svc,
        &job,
        JobBody::Failed {
            code: "oom".into(),
            message: "out of memory".into(),
            retryable: false,
        },
    )
    .await;
    let failed = svc
        .wait_job(&alice, &file, &jid, |j| j["status"] == "failed")
        .await;
    assert_eq!(failed["error"]["code"], "oom");
    let (code, failed_list) = svc.get_json(&admin, "/admin/jobs?status=failed").await;
    assert_eq!(code, 200);
    assert_eq!(failed_list["jobs"][0]["job_id"], jid.as_str());
    assert_eq!(failed_list["jobs"][0]["owner"], "alice");
    let (code, v) = svc.post_json(&admin, &retry, &json!({})).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["attempt"], 3);
    svc.wait_job(&alice, &file, &jid, |j| j["status"] == "queued")
        .await;
    let (_, queued) = svc
        .get_json(&admin, "/admin/jobs?status=queued&limit=1")
        .await;
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(
        svc.get_json(&admin, "/admin/jobs?status=bogus").await.0,
        400
    );
    assert_eq!(svc.get_json(&admin, "/admin/jobs?limit=0").await.0, 400);

    // A running job: the cancel goes to the workers; the job stays running until one stops it.
    emit(
        &svc,
        &job,
        JobBody::Started {
            worker: "w".into(),
            attempt: 3,
        },
    )
    .await;
    svc.wait_job(&alice, &file, &jid, |j| j["status"] == "running")
        .await;
    let (code, v) = svc
        .post_json(&admin, &format!("/admin/jobs/{jid}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "cancel_requested");
    let (_, st) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert_eq!(support::find_job(&st, &jid).unwrap()["status"], "running");

    // Unknown and malformed job ids are 404 alike.
    for id in ["j0123456789abcdef0123456789abcdef", "nope", "..%2F..%2Fetc"] {
        assert_eq!(
            svc.post_json(&admin, &format!("/admin/jobs/{id}/retry"), &json!({}))
                .await
                .0,
            404,
            "{id}"
        );
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_that_failed_to_decode_cannot_be_processed() {
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let alice = svc.token("alice", &[]);
    let r = svc
        .upload(&alice, "notes.mp3", b"not audio at all".repeat(20))
        .await;
    let id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    svc.wait_for(&alice, &id, |v| v["file"]["status"] == "failed")
        .await;
    let (code, v) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": id, "model": "whisper"}),
        )
        .await;
    // The request is well formed; the file's state refuses it.
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("file_failed")),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("could not be decoded"),
        "{v}"
    );
    svc.stop().await;
}
