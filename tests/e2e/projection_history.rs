//! The read model's history against a real broker and Postgres: status "as of" a past time,
//! `roar replay` putting a new model version's job beside the old one, and the lag probe.

use std::time::Duration;

use roar_common::catalog;
use roar_orchestrator::commands::replay::{ReplayError, ReplaySpec};
use roar_projections::ReadModel;
use roar_schemas::ids::JobIdentity;
use roar_schemas::{EventMeta, FileBody, FileEvent, FileStatus, JobInput, JobStatus, ProbeSummary};
use serde_json::json;

use crate::support::projection::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_as_of_a_past_time_folds_the_history_up_to_it() {
    let env = Env::start().await;
    let up = uploaded("erin", 1, 0);
    let mut meta = EventMeta::new("probe", "test");
    meta.occurred_at = at(10);
    let probed = FileEvent {
        sealed: None,
        meta,
        file_id: up.file_id.clone(),
        body: FileBody::Probed(ProbeSummary {
            metadata_key: "m".into(),
            codec: "flac".into(),
            duration_seconds: 2.0,
            sample_rate: 44100,
            channels: 1,
            frames: 88200,
            peak_dbfs: -1.0,
            rms_dbfs: -12.0,
        }),
    };
    let r = request(&up.file_id, "erin", "pitch", "tiny", "v1", 20);
    env.send_file(&up).await;
    env.send_file(&probed).await;
    env.send_request(&r).await;
    env.send_job(&job_event(&r, 21, started(1))).await;
    env.send_job(&job_event(&r, 22, progress(50.0))).await;
    env.send_job(&job_event(&r, 30, completed("outputs/x.json")))
        .await;

    // Nothing applied yet: the lag probe sees all six.
    let behind = roar_projections::lag::events_behind(&env.cfg.kafka, &env.pool)
        .await
        .unwrap();
    assert_eq!(behind, 6);
    let p = env.spawn_projector();
    env.wait_history(6).await;
    assert_eq!(
        roar_projections::lag::events_behind(&env.cfg.kafka, &env.pool)
            .await
            .unwrap(),
        0
    );

    let read = ReadModel::new(env.pool.clone());
    let f = &up.file_id;
    assert_eq!(read.file_as_of(f, at(-1)).await.unwrap(), None);
    assert_eq!(
        read.file_as_of(f, at(5)).await.unwrap().unwrap().status,
        FileStatus::Uploaded
    );
    let ready = read.file_as_of(f, at(15)).await.unwrap().unwrap();
    assert_eq!(ready.status, FileStatus::Ready);
    assert_eq!(ready.probe.as_ref().unwrap()["codec"], "flac");
    assert!(read.jobs_as_of(f, at(19)).await.unwrap().is_empty());
    let queued = read.jobs_as_of(f, at(20)).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].status, JobStatus::Queued);
    let running = read.jobs_as_of(f, at(25)).await.unwrap();
    assert_eq!(running[0].status, JobStatus::Running);
    assert_eq!(running[0].progress, 50.0);
    // As of now, the fold equals the live rows exactly.
    assert_eq!(
        read.jobs_as_of(f, at(1000)).await.unwrap(),
        read.jobs_for_file(f).await.unwrap()
    );
    assert_eq!(
        read.file_as_of(f, at(1000)).await.unwrap(),
        read.file(f).await.unwrap()
    );
    p.stop().await;
}

async fn wait_jobs(
    read: &ReadModel,
    file_id: &str,
    n: usize,
) -> Vec<roar_projections::apply::JobRow> {
    for _ in 0..300 {
        let jobs = read.jobs_for_file(file_id).await.unwrap();
        if jobs.len() >= n {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{file_id} never had {n} jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_requests_a_new_version_beside_the_old_job() {
    let env = Env::start().await;
    let p = env.spawn_projector();
    let read = ReadModel::new(env.pool.clone());
    let (a, b) = (uploaded("finn", 1, 0), uploaded("finn", 2, 0));
    env.send_file(&a).await;
    env.send_file(&b).await;
    let ra = request(&a.file_id, "finn", "pitch", "tiny", "v1", 1);
    let rb = request(&b.file_id, "finn", "pitch", "tiny", "v1", 1);
    let other_model = request(&a.file_id, "finn", "demucs", "htdemucs", "v1", 1);
    for r in [&ra, &rb, &other_model] {
        env.send_request(r).await;
    }
    env.send_job(&job_event(&ra, 2, completed("outputs/a/tiny.json")))
        .await;
    env.wait_history(5).await;

    let spec = ReplaySpec {
        model: "pitch".into(),
        files: vec![a.file_id.clone()],
        model_version: Some("crepe-tiny-v2".into()),
        actor: "test".into(),
        ..Default::default()
    };
    let report = roar::replay::replay(&env.cfg, spec.clone()).await.unwrap();
    assert_eq!(report.requested.len(), 1, "{report:?}");
    assert_eq!(report.requested[0].0, a.file_id);
    let jobs = wait_jobs(&read, &a.file_id, 3).await;
    let pitch: Vec<_> = jobs.iter().filter(|j| j.model == "pitch").collect();
    assert_eq!(pitch.len(), 2, "{jobs:#?}");
    let old = pitch.iter().find(|j| j.job_id == ra.job_id).unwrap();
    let new = pitch.iter().find(|j| j.job_id != ra.job_id).unwrap();
    assert_eq!(old.status, JobStatus::Completed);
    assert_eq!(old.model_version, "v1");
    assert_eq!(new.status, JobStatus::Queued);
    assert_eq!(new.model_version, "crepe-tiny-v2");
    assert_eq!(new.variation, "tiny");
    assert_eq!(new.owner, "finn");
    assert_eq!(new.job_id, report.requested[0].1);
    assert_eq!(new.request_id.as_deref(), Some(report.request_id.as_str()));
    // File b was not asked for.
    assert_eq!(read.jobs_for_file(&b.file_id).await.unwrap().len(), 1);

    // Asking again names the same job: nothing new.
    let again = roar::replay::replay(&env.cfg, spec).await.unwrap();
    assert_eq!((again.requested.len(), again.existing), (0, 1));

    // Another variation for every file: one new job per file, however many old ones it had.
    let full = ReplaySpec {
        model: "pitch".into(),
        variation: Some("full".into()),
        actor: "test".into(),
        ..Default::default()
    };
    let report = roar::replay::replay(&env.cfg, full).await.unwrap();
    assert_eq!(report.requested.len(), 2, "{report:?}");
    assert_eq!(wait_jobs(&read, &a.file_id, 4).await.len(), 4);
    let b_jobs = wait_jobs(&read, &b.file_id, 2).await;
    assert!(b_jobs
        .iter()
        .any(|j| j.variation == "full" && j.status == JobStatus::Queued));

    // Jobs since a time after all of them: nothing to do. A bad variation or file id: an error.
    let later = ReplaySpec {
        model: "pitch".into(),
        since: Some(at(10_000)),
        model_version: Some("x".into()),
        actor: "test".into(),
        ..Default::default()
    };
    assert!(roar::replay::replay(&env.cfg, later)
        .await
        .unwrap()
        .requested
        .is_empty());
    let read_err = |spec| {
        let read = read.clone();
        let producer = env.producer.clone();
        let storage = roar_common::storage::Storage::from_config(&env.cfg.storage).unwrap();
        async move {
            roar_orchestrator::commands::replay::replay(&read, &producer, &storage, &spec).await
        }
    };
    let bogus = ReplaySpec {
        model: "pitch".into(),
        variation: Some("huge".into()),
        ..Default::default()
    };
    let e = read_err(bogus).await.unwrap_err();
    assert!(
        matches!(e, ReplayError::Catalog(_)) && !e.is_retryable(),
        "{e}"
    );
    let bad_file = ReplaySpec {
        model: "pitch".into(),
        files: vec!["../etc".into()],
        ..Default::default()
    };
    assert!(matches!(
        read_err(bad_file).await,
        Err(ReplayError::BadFileId(_))
    ));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_of_a_job_on_another_jobs_output_reads_that_output_again() {
    let env = Env::start().await;
    let p = env.spawn_projector();
    let read = ReadModel::new(env.pool.clone());
    let a = uploaded("gil", 1, 0);
    env.send_file(&a).await;
    let sep = request(&a.file_id, "gil", "demucs", "htdemucs", "v1", 1);
    let vocals = JobInput {
        job_id: sep.job_id.clone(),
        model: "demucs".into(),
        variation: "htdemucs".into(),
        output: "vocals".into(),
    };
    let mut on_vocals = request(&a.file_id, "gil", "pitch", "tiny", "v1", 2);
    on_vocals.job_id = JobIdentity::new(&a.file_id, "pitch", "tiny", &json!({}), "v1")
        .reading(vocals.clone())
        .job_id()
        .into();
    on_vocals.input = Some(vocals.clone());
    env.send_request(&sep).await;
    env.send_request(&on_vocals).await;
    let jobs = wait_jobs(&read, &a.file_id, 2).await;
    let old = jobs.iter().find(|j| j.job_id == on_vocals.job_id).unwrap();
    assert_eq!(old.input(), Some(vocals.clone()));

    let spec = ReplaySpec {
        model: "pitch".into(),
        files: vec![a.file_id.clone()],
        model_version: Some("crepe-tiny-v2".into()),
        actor: "test".into(),
        ..Default::default()
    };
    let report = roar::replay::replay(&env.cfg, spec).await.unwrap();
    assert_eq!(report.requested.len(), 1, "{report:?}");
    let jobs = wait_jobs(&read, &a.file_id, 3).await;
    let new = jobs
        .iter()
        .find(|j| j.job_id == report.requested[0].1)
        .unwrap_or_else(|| panic!("{jobs:#?}"));
    assert_eq!(new.input(), Some(vocals.clone()), "{new:#?}");
    let r = catalog::resolve("pitch", Some("tiny"), Some(&json!({}))).unwrap();
    let expect =
        JobIdentity::new(&a.file_id, "pitch", "tiny", &r.params, "crepe-tiny-v2").reading(vocals);
    assert_eq!(new.job_id, expect.job_id());
    // The upstream job was not asked for again.
    assert_eq!(jobs.iter().filter(|j| j.model == "demucs").count(), 1);
    p.stop().await;
}
