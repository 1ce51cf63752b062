//! Pipelines through HTTP against the real stack (no model workers: jobs stay queued unless the
//! test reports them done as a worker would): a preset becomes one `PipelineRequested` whose
//! steps carry the job ids `ids::step_identity` derives, and the read model shows the whole DAG
//! at once; an `input` on a completed job is one `JobRequested` carrying the input, on a job
//! not done yet a two-step pipeline; cancel records `PipelineCancelRequested`; admin retry keeps
//! a job's input; every bad request says what is wrong and emits nothing.

use roar_common::catalog;
use roar_schemas::ids::{self, JobIdentity};
use roar_schemas::topics::{jobs_topic, CONTROL, JOB_EVENTS, PIPELINES};
use roar_schemas::{
    ControlBody, ControlEvent, EventMeta, JobBody, JobEvent, JobInput, JobRequested, Output,
    PipelineBody, PipelineEvent,
};
use serde_json::{json, Value};

use crate::support::{self, fixture, read_topic, topic_len, Infra, Services};

fn pipeline_events(svc: &Services) -> Vec<PipelineEvent> {
    read_topic(&svc.cfg.kafka.brokers, PIPELINES)
        .iter()
        .map(|d| roar_schemas::decode(d.payload.as_deref().unwrap()).unwrap())
        .collect()
}

/// Every topic a pipeline request could write to, and how long each is.
fn lengths(svc: &Services) -> Vec<(String, i64)> {
    let mut topics = vec![PIPELINES.to_string(), JOB_EVENTS.to_string()];
    topics.extend(["demucs", "whisper", "pitch"].map(jobs_topic));
    topics
        .into_iter()
        .map(|t| {
            let n = topic_len(&svc.cfg.kafka.brokers, &t);
            (t, n)
        })
        .collect()
}

/// Reports a job completed with `names` (wav files) as its worker would.
pub(crate) async fn complete(svc: &Services, job: &Value, names: &[&str]) {
    let (file, model, variation, jid) = (
        job["file_id"].as_str().unwrap(),
        job["model"].as_str().unwrap(),
        job["variation"].as_str().unwrap(),
        job["job_id"].as_str().unwrap(),
    );
    let outputs = names
        .iter()
        .map(|n| Output {
            path: format!("outputs/{file}/{model}/{variation}/{jid}/{n}.wav"),
            kind: "stem".into(),
            content_type: "audio/wav".into(),
            size: 4,
            sha256: "ab".repeat(32),
        })
        .collect();
    let ev = JobEvent {
        meta: EventMeta::new("test", "worker:test"),
        job_id: jid.into(),
        file_id: file.into(),
        model: model.into(),
        variation: variation.into(),
        body: JobBody::Completed {
            outputs,
            duration_seconds: 1.0,
        },
    };
    svc.producer().send(JOB_EVENTS, file, &ev).await.unwrap();
}

/// Reports a job failed for good (out of memory) as its worker would.
async fn fail(svc: &Services, file: &str, model: &str, job_id: &str, variation: &str) {
    let ev = JobEvent {
        meta: EventMeta::new("test", "worker:test"),
        job_id: job_id.into(),
        file_id: file.into(),
        model: model.into(),
        variation: variation.into(),
        body: JobBody::Failed {
            code: "oom".into(),
            message: "out of memory".into(),
            retryable: false,
        },
    };
    svc.producer().send(JOB_EVENTS, file, &ev).await.unwrap();
}

pub(crate) fn no_workers(infra: &Infra) -> roar_common::Config {
    let mut cfg = infra.config();
    let none = infra.dir.path().join("no-models");
    std::fs::create_dir_all(&none).unwrap();
    cfg.processor.models_dir = none;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_preset_is_one_pipeline_request_and_the_status_shows_every_step_at_once() {
    let infra = Infra::start().await;
    let svc = Services::start(no_workers(&infra)).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;

    // The catalogue lists the presets, in /presets and /models.
    let (code, presets) = svc.get_json(&alice, "/presets").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = presets["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["karaoke", "lyrics", "stems", "transcribe-vocals"]);
    let (_, models) = svc.get_json(&alice, "/models").await;
    assert_eq!(models["presets"], presets["presets"]);

    let (code, p) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "preset": "karaoke"}),
        )
        .await;
    assert_eq!(code, 202, "{p:#}");
    let pid = p["pipeline_id"].as_str().unwrap().to_string();
    assert_eq!(p["status"], "queued");
    assert_eq!(p["steps"].as_array().unwrap().len(), 4);

    // One event, whose steps name the jobs the process manager will request.
    let events = pipeline_events(&svc);
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(ev.pipeline_id, pid);
    assert_eq!(ev.owner, "alice");
    let PipelineBody::Requested { preset, steps } = &ev.body else {
        panic!("{ev:?}");
    };
    assert_eq!(preset.as_deref(), Some("karaoke"));
    let sep = catalog::resolve("demucs", None, Some(&json!({"two_stems": "vocals"}))).unwrap();
    let sep_id = JobIdentity::new(
        &file,
        "demucs",
        &sep.variation,
        &sep.params,
        &sep.model_version,
    );
    assert_eq!(steps[0].job_id, sep_id.job_id());
    assert!(steps[0].input.is_none());
    let whisper =
        catalog::resolve("whisper", None, Some(&json!({"word_timestamps": true}))).unwrap();
    let vocals = JobInput {
        job_id: sep_id.job_id().into(),
        model: "demucs".into(),
        variation: sep.variation.clone(),
        output: "vocals".into(),
    };
    let tr_id = JobIdentity::new(
        &file,
        "whisper",
        &whisper.variation,
        &whisper.params,
        &whisper.model_version,
    )
    .reading(vocals.clone());
    assert_eq!(steps[1].job_id, tr_id.job_id());
    assert_eq!(steps[1].input.as_ref().unwrap().step, "separate");
    for s in steps {
        assert_eq!(
            ids::step_identity(&file, steps, s).unwrap().job_id(),
            s.job_id
        );
    }
    assert_eq!(
        pid,
        ids::pipeline_id("alice", &file, steps.iter().map(|s| s.job_id.as_str()))
    );

    // The read model shows the pipeline and every step's job, with inputs, at once.
    let token = p["consistency_token"].as_str().unwrap();
    let (_, st) = svc
        .get_json(&alice, &format!("/status/{file}?after={token}"))
        .await;
    assert_eq!(st["consistent"], true);
    let shown = &st["pipelines"][0];
    assert_eq!(shown["pipeline_id"], pid.as_str());
    assert_eq!(shown["preset"], "karaoke");
    assert_eq!(shown["progress"], 0.0);
    for s in steps {
        let job = support::find_job(&st, &s.job_id).expect("every step's job is shown");
        assert_eq!(job["status"], "queued");
        match &s.input {
            None => assert!(job["input"].is_null()),
            Some(_) => {
                assert_eq!(job["input"]["job_id"], sep_id.job_id());
                assert_eq!(job["input"]["output"], "vocals");
            }
        }
    }
    let (code, one) = svc.get_json(&alice, &format!("/pipelines/{pid}")).await;
    assert_eq!(code, 200);
    assert_eq!(
        one["steps"][2]["input"],
        json!({"step": "separate", "output": "vocals"})
    );
    assert_eq!(one["steps"][2]["status"], "queued");
    // Another user sees no such pipeline.
    let bob = svc.token("bob", &[]);
    assert_eq!(
        svc.get_json(&bob, &format!("/pipelines/{pid}")).await.0,
        404
    );
    assert_eq!(
        svc.post_json(&bob, &format!("/pipelines/{pid}/cancel"), &json!({}))
            .await
            .0,
        404
    );

    // Asking again is the same pipeline, and nothing is emitted (the process manager requests
    // the first step meanwhile, on the job topic: only the pipelines topic is the API's here).
    let before = topic_len(&svc.cfg.kafka.brokers, PIPELINES);
    let (code, again) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "preset": "karaoke"}),
        )
        .await;
    assert_eq!(code, 200, "{again:#}");
    assert_eq!(again["pipeline_id"], pid.as_str());
    assert_eq!(topic_len(&svc.cfg.kafka.brokers, PIPELINES), before);

    // Progress: the separation completes; the pipeline is through one of its four steps.
    let sep_job = support::find_job(&st, sep_id.job_id()).unwrap().clone();
    complete(&svc, &sep_job, &["vocals", "no_vocals"]).await;
    svc.wait_job(&alice, &file, sep_id.job_id(), |j| {
        j["status"] == "completed"
    })
    .await;
    let (_, one) = svc.get_json(&alice, &format!("/pipelines/{pid}")).await;
    assert_eq!(one["steps"][0]["status"], "completed");
    assert!(
        (one["progress"].as_f64().unwrap() - 100.0 / 4.0).abs() < 0.01,
        "{one:#}"
    );

    // The manager requests the three steps that read the vocals. Waiting for their requests
    // fixes the order the manager sees the completion and the cancel in (the two come on
    // different topics): the cancel below then always meets requested steps.
    for model in ["whisper", "pitch", "gemma3n"] {
        let topic = jobs_topic(model);
        let mut waited = 0;
        while topic_len(&svc.cfg.kafka.brokers, &topic) < 1 {
            assert!(waited < 300, "the manager never requested the {model} step");
            waited += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    // Cancel: recorded on the pipelines topic; the steps not yet requested are the process
    // manager's to cancel, so no job is named here.
    let (code, c) = svc
        .post_json(&alice, &format!("/pipelines/{pid}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202, "{c:#}");
    assert_eq!(c["status"], "cancel_requested");
    let events = pipeline_events(&svc);
    assert!(matches!(
        events.last().unwrap().body,
        PipelineBody::CancelRequested { .. }
    ));
    let token = c["consistency_token"].as_str().unwrap();
    let (_, st) = svc
        .get_json(&alice, &format!("/status/{file}?after={token}"))
        .await;
    assert!(st["pipelines"][0]["canceled_at"].is_string(), "{st:#}");
    let (code, twice) = svc
        .post_json(&alice, &format!("/pipelines/{pid}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 409, "{twice:#}");
    assert_eq!(twice["code"], "pipeline_canceled");

    // The requested steps are their workers' to stop: the manager asks on the control topic,
    // and (no workers here) the test answers as each worker would, with JobCanceled.
    let downstream: Vec<&str> = steps[1..].iter().map(|s| s.job_id.as_str()).collect();
    let mut asked = Vec::new();
    for _ in 0..300 {
        asked = read_topic(&svc.cfg.kafka.brokers, CONTROL)
            .iter()
            .filter_map(|d| roar_schemas::decode::<ControlEvent>(d.payload.as_deref()?).ok())
            .filter(|c| matches!(c.body, ControlBody::CancelRequested { .. }))
            .map(|c| c.job_id)
            .collect();
        if downstream.iter().all(|j| asked.iter().any(|a| a == j)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for jid in &downstream {
        assert!(
            asked.iter().any(|a| a == jid),
            "no cancel asked for {jid}: {asked:?}"
        );
        let job = support::find_job(&st, jid).unwrap();
        let ev = JobEvent {
            meta: EventMeta::new("test", "worker:test"),
            job_id: (*jid).into(),
            file_id: file.clone(),
            model: job["model"].as_str().unwrap().into(),
            variation: job["variation"].as_str().unwrap().into(),
            body: JobBody::Canceled {
                reason: "pipeline canceled".into(),
            },
        };
        svc.producer().send(JOB_EVENTS, &file, &ev).await.unwrap();
    }

    // A rebuild reproduces the pipelines and the steps' inputs, once every step has ended
    // (nothing moves during the comparison).
    let st_before = svc
        .wait_for(&alice, &file, |v| {
            v["pipelines"][0]["status"] != "queued" && v["pipelines"][0]["status"] != "running"
        })
        .await;
    roar_projections::rebuild(
        &svc.cfg,
        &roar_projections::connect(
            svc.cfg.database.url.expose(),
            2,
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap(),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let (_, st_after) = svc.get_json(&alice, &format!("/status/{file}")).await;
    assert_eq!(st_after["pipelines"], st_before["pipelines"]);
    for s in steps {
        let a = support::find_job(&st_after, &s.job_id).unwrap();
        let b = support::find_job(&st_before, &s.job_id).unwrap();
        assert_eq!(a["input"], b["input"]);
        assert_eq!(a["status"], b["status"]);
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_input_chains_on_another_job_and_bad_inputs_emit_nothing() {
    let infra = Infra::start().await;
    let svc = Services::start(no_workers(&infra)).await;
    let alice = svc.token("alice", &[]);
    let bob = svc.token("bob", &[]);
    let admin = svc.token("root", &["admin"]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;
    let other = svc
        .ready_file(
            &alice,
            "tone.wav",
            support::melody_wav(&[(440.0, 1.0)], 16_000, 1),
        )
        .await;
    let bobs = svc.ready_file(&bob, "sine.wav", fixture("sine.wav")).await;

    // An upstream job on the upload, completed with its two stems.
    let (code, sep) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "demucs", "params": {"two_stems": "vocals"}}),
        )
        .await;
    assert_eq!(code, 202, "{sep:#}");
    complete(&svc, &sep, &["vocals", "no_vocals"]).await;
    let sep_id = sep["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &sep_id, |j| j["status"] == "completed")
        .await;
    // Bob's job, and a job on alice's other file.
    let (_, bob_job) = svc
        .post_json(
            &bob,
            "/process",
            &json!({"file_id": bobs, "model": "demucs"}),
        )
        .await;
    let (_, other_job) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": other, "model": "demucs"}),
        )
        .await;

    // Both projected, so the broker has their requests before the topics are measured.
    for (t, f, j) in [(&bob, &bobs, &bob_job), (&alice, &other, &other_job)] {
        svc.wait_job(t, f, j["job_id"].as_str().unwrap(), |_| true)
            .await;
    }
    let before = lengths(&svc);
    let on = |input: Value| json!({"file_id": file, "model": "whisper", "input": input});
    for (body, code, hint) in [
        (
            json!({"file_id": file, "preset": "karaoky"}),
            422,
            "karaoke, lyrics, stems, transcribe-vocals",
        ),
        (
            json!({"file_id": file, "preset": "stems", "model": "pitch"}),
            422,
            "only `file_id` and `preset`",
        ),
        (
            on(json!({"job_id": sep_id, "output": "drums"})),
            422,
            "vocals, no_vocals",
        ),
        (
            on(json!({"job_id": sep_id, "output": "vocals", "extra": 1})),
            422,
            "extra",
        ),
        (
            on(json!({"model": "demucs", "params": {"two_stems": "vocals"}, "output": "bass"})),
            422,
            "vocals, no_vocals",
        ),
        (
            on(json!({"model": "pitch", "output": "f0"})),
            422,
            "not audio",
        ),
        (
            on(json!({"model": "karaoke", "output": "vocals"})),
            422,
            "valid models",
        ),
        (on(json!("vocals")), 422, "{job_id, output}"),
        (
            on(json!({"job_id": other_job["job_id"], "output": "vocals"})),
            422,
            "on file",
        ),
        (
            on(json!({"job_id": bob_job["job_id"], "output": "vocals"})),
            404,
            "",
        ),
        (
            on(json!({"job_id": format!("j{}", "0".repeat(32)), "output": "vocals"})),
            404,
            "",
        ),
        (
            json!({"file_id": file, "models": ["pitch"], "input": {"job_id": sep_id, "output": "vocals"}}),
            422,
            "not `models`",
        ),
        (
            json!([{"file_id": file, "model": "pitch", "input": {"job_id": sep_id, "output": "vocals"}}]),
            422,
            "single request",
        ),
        (json!({"file_id": bobs, "preset": "stems"}), 404, ""),
    ] {
        let (got, v) = svc.post_json(&alice, "/process", &body).await;
        assert_eq!(got, code, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(hint),
            "{body}: {v}"
        );
    }
    assert_eq!(lengths(&svc), before, "a refused request emits nothing");
    // A completed job that lacks the output it should have: the input is refused.
    let (_, partial) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "demucs", "params": {"two_stems": "bass"}}),
        )
        .await;
    complete(&svc, &partial, &["no_bass"]).await;
    let partial_id = partial["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &partial_id, |j| j["status"] == "completed")
        .await;
    let before = lengths(&svc);
    let (code, v) = svc
        .post_json(
            &alice,
            "/process",
            &on(json!({"job_id": partial_id, "output": "bass"})),
        )
        .await;
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("completed without an output \"bass\""),
        "{v}"
    );
    assert_eq!(lengths(&svc), before, "a refused request emits nothing");

    // On a completed job's output: one JobRequested that carries the input.
    let (code, tr) = svc
        .post_json(
            &alice,
            "/process",
            &on(json!({"job_id": sep_id, "output": "vocals"})),
        )
        .await;
    assert_eq!(code, 202, "{tr:#}");
    assert!(tr.get("pipeline_id").is_none());
    assert_eq!(tr["input"]["job_id"], sep_id.as_str());
    let tr_id = tr["job_id"].as_str().unwrap().to_string();
    let requests: Vec<JobRequested> = read_topic(&svc.cfg.kafka.brokers, &jobs_topic("whisper"))
        .iter()
        .map(|d| roar_schemas::decode(d.payload.as_deref().unwrap()).unwrap())
        .collect();
    let req = requests
        .iter()
        .find(|r| r.job_id == tr_id)
        .expect("requested");
    assert_eq!(req.input.as_ref().unwrap().output, "vocals");
    assert_eq!(req.input.as_ref().unwrap().model, "demucs");
    // The read model keeps the input, and an admin retry asks for the same job with it.
    let job = svc
        .wait_job(&alice, &file, &tr_id, |j| j["input"]["output"] == "vocals")
        .await;
    assert_eq!(job["input"]["job_id"], sep_id.as_str());
    fail(
        &svc,
        &file,
        "whisper",
        &tr_id,
        tr["variation"].as_str().unwrap(),
    )
    .await;
    svc.wait_job(&alice, &file, &tr_id, |j| j["status"] == "failed")
        .await;
    let (code, retry) = svc
        .post_json(&admin, &format!("/admin/jobs/{tr_id}/retry"), &json!({}))
        .await;
    assert_eq!(code, 202, "{retry:#}");
    let retried: Vec<JobRequested> = read_topic(&svc.cfg.kafka.brokers, &jobs_topic("whisper"))
        .iter()
        .map(|d| roar_schemas::decode(d.payload.as_deref().unwrap()).unwrap())
        .filter(|r: &JobRequested| r.job_id == tr_id && r.attempt == 2)
        .collect();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].input, req.input);

    // On a job that has not run yet (named by its model request): a two-step pipeline.
    let pipelines_before = pipeline_events(&svc).len();
    let (code, chained) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "pitch", "input": {"model": "demucs", "output": "vocals"}}),
        )
        .await;
    assert_eq!(code, 202, "{chained:#}");
    let pid = chained["pipeline_id"].as_str().unwrap();
    let events = pipeline_events(&svc);
    assert_eq!(events.len(), pipelines_before + 1);
    let PipelineBody::Requested { steps, preset } = &events.last().unwrap().body else {
        panic!("not a request");
    };
    assert!(preset.is_none());
    assert_eq!(events.last().unwrap().pipeline_id, pid);
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].model, "demucs");
    assert_eq!(steps[1].job_id, chained["job_id"].as_str().unwrap());
    assert_eq!(steps[1].input.as_ref().unwrap().output, "vocals");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_input_job_still_waiting_on_its_own_input_joins_the_pipeline_with_its_ancestors() {
    let infra = Infra::start().await;
    let svc = Services::start(no_workers(&infra)).await;
    let alice = svc.token("alice", &[]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;
    let vocals = json!({"two_stems": "vocals"});
    // A separation on the upload (no worker runs it), then one on its vocals: two steps.
    let (code, sep) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "demucs", "params": vocals}),
        )
        .await;
    assert_eq!(code, 202, "{sep:#}");
    let sep_id = sep["job_id"].as_str().unwrap().to_string();
    // An input job must be in the read model to be named.
    svc.wait_job(&alice, &file, &sep_id, |_| true).await;
    let (code, again) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "model": "demucs", "params": vocals,
                    "input": {"job_id": sep_id, "output": "vocals"}}),
        )
        .await;
    assert_eq!(code, 202, "{again:#}");
    assert!(again["pipeline_id"].is_string(), "{again:#}");
    let again_id = again["job_id"].as_str().unwrap().to_string();
    svc.wait_job(&alice, &file, &again_id, |j| {
        j["input"]["job_id"] == sep_id.as_str()
    })
    .await;

    // Pitch on the second separation, which has not run and itself waits on the first: both
    // separations join the new pipeline, upstream first, each reading the one before.
    let before = pipeline_events(&svc).len();
    let body = json!({"file_id": file, "model": "pitch", "input": {"job_id": again_id, "output": "vocals"}});
    let (code, pitch) = svc.post_json(&alice, "/process", &body).await;
    assert_eq!(code, 202, "{pitch:#}");
    let pid = pitch["pipeline_id"].as_str().unwrap();
    let events = pipeline_events(&svc);
    assert_eq!(events.len(), before + 1);
    let ev = events.last().unwrap();
    assert_eq!(ev.pipeline_id, pid);
    let PipelineBody::Requested { steps, preset } = &ev.body else {
        panic!("{ev:?}");
    };
    assert!(preset.is_none());
    let jobs: Vec<&str> = steps.iter().map(|s| s.job_id.as_str()).collect();
    let pitch_id = pitch["job_id"].as_str().unwrap();
    assert_eq!(jobs, [sep_id.as_str(), again_id.as_str(), pitch_id]);
    assert!(steps[0].input.is_none());
    for i in 1..steps.len() {
        let input = steps[i].input.as_ref().unwrap();
        assert_eq!(input.step, steps[i - 1].name, "{steps:?}");
        assert_eq!(input.output, "vocals");
        let id = ids::step_identity(&file, steps, &steps[i]).unwrap();
        assert_eq!(id.job_id(), steps[i].job_id);
    }
    // The job's id covers its input: the second separation's vocals.
    let p = catalog::resolve("pitch", None, None).unwrap();
    let expect = JobIdentity::new(&file, "pitch", &p.variation, &p.params, &p.model_version)
        .reading(JobInput {
            job_id: again_id.clone(),
            model: "demucs".into(),
            variation: "htdemucs".into(),
            output: "vocals".into(),
        });
    assert_eq!(pitch_id, expect.job_id());
    assert_eq!(pitch["input"]["job_id"], again_id.as_str());

    // Asked again once projected: the same job, nothing emitted.
    svc.wait_job(&alice, &file, pitch_id, |j| {
        j["input"]["job_id"] == again_id.as_str()
    })
    .await;
    // `?as_of=` now folds the same jobs as the live view, the steps only a pipeline names
    // (queued, never requested) included.
    let (_, live) = svc.get_json(&alice, &format!("/status/{file}")).await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (code, past) = svc
        .get_json(
            &alice,
            &format!("/status/{file}?as_of={}", now.replace('+', "%2B")),
        )
        .await;
    assert_eq!(code, 200, "{past:#}");
    let jobs = |v: &Value| -> Vec<(String, String, String)> {
        let mut out: Vec<_> = v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                let input = j["input"]["job_id"].as_str().unwrap_or_default();
                (
                    j["job_id"].to_string(),
                    j["status"].to_string(),
                    input.into(),
                )
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(jobs(&past), jobs(&live), "{past:#}");
    assert!(jobs(&past).iter().any(|(j, _, _)| j.contains(pitch_id)));
    // (The manager may still be requesting the first separation again, so only the topics
    // this request could write are compared.)
    let (code, twice) = svc.post_json(&alice, "/process", &body).await;
    assert_eq!(code, 200, "{twice:#}");
    assert_eq!(twice["job_id"], pitch_id);
    assert_eq!(pipeline_events(&svc).len(), before + 1);
    assert_eq!(topic_len(&svc.cfg.kafka.brokers, &jobs_topic("pitch")), 0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_retry_of_a_failed_step_that_completes_revives_the_steps_failed_for_it() {
    let infra = Infra::start().await;
    let svc = Services::start(no_workers(&infra)).await;
    let alice = svc.token("alice", &[]);
    let admin = svc.token("root", &["admin"]);
    let file = svc
        .ready_file(&alice, "sine.wav", fixture("sine.wav"))
        .await;
    let (code, p) = svc
        .post_json(
            &alice,
            "/process",
            &json!({"file_id": file, "preset": "transcribe-vocals"}),
        )
        .await;
    assert_eq!(code, 202, "{p:#}");
    let sep_id = p["steps"][0]["job_id"].as_str().unwrap().to_string();
    let tr_id = p["steps"][1]["job_id"].as_str().unwrap().to_string();
    let sep = json!({"file_id": file, "model": "demucs", "job_id": sep_id,
                     "variation": p["steps"][0]["variation"]});
    let requests_of = |model: &str, job: &str| -> Vec<JobRequested> {
        read_topic(&svc.cfg.kafka.brokers, &jobs_topic(model))
            .iter()
            .map(|d| roar_schemas::decode(d.payload.as_deref().unwrap()).unwrap())
            .filter(|r: &JobRequested| r.job_id == job)
            .collect()
    };
    // The manager requests the separation (so the failure below is its step's); then its
    // worker fails it for good, and the manager fails the transcription for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while requests_of("demucs", &sep_id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the manager never requested {sep_id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    fail(
        &svc,
        &file,
        "demucs",
        &sep_id,
        sep["variation"].as_str().unwrap(),
    )
    .await;
    let tr = svc
        .wait_job(&alice, &file, &tr_id, |j| {
            j["error"]["code"] == "upstream_failed"
        })
        .await;
    assert_eq!(tr["status"], "failed", "{tr:#}");
    svc.wait_job(&alice, &file, &sep_id, |j| j["status"] == "failed")
        .await;
    assert!(requests_of("whisper", &tr_id).is_empty());

    // An admin retries the separation and it completes: the transcription is requested after
    // all, on the separation's vocals, and its row is queued again.
    let (code, retry) = svc
        .post_json(&admin, &format!("/admin/jobs/{sep_id}/retry"), &json!({}))
        .await;
    assert_eq!(code, 202, "{retry:#}");
    complete(&svc, &sep, &["vocals", "no_vocals"]).await;
    let tr = svc
        .wait_job(&alice, &file, &tr_id, |j| j["status"] == "queued")
        .await;
    assert!(tr["error"].is_null(), "{tr:#}");
    let reqs = requests_of("whisper", &tr_id);
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let input = reqs[0].input.as_ref().unwrap();
    assert_eq!(
        (input.job_id.as_str(), input.output.as_str()),
        (sep_id.as_str(), "vocals")
    );
    let (_, one) = svc
        .get_json(
            &alice,
            &format!("/pipelines/{}", p["pipeline_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(one["steps"][0]["status"], "completed", "{one:#}");
    assert_eq!(one["steps"][1]["status"], "queued", "{one:#}");
    svc.stop().await;
}
