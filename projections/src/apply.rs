//! The read model's state machine, as pure functions over rows, so it can be tested without a
//! database. Rules: a job never leaves a terminal state (completed, failed, canceled) because of
//! a late event (one that happened before the job ended); an event newer than a failure or
//! cancel (a re-request, a retry's start) reopens the job; progress never goes backwards within
//! a run; duplicates change nothing. See [`apply_job`] for why time, not arrival, decides.

use chrono::{DateTime, Utc};
use roar_schemas::{FileBody, FileEvent, FileStatus, JobBody, JobEvent, JobInput, JobStatus};
use serde_json::Value;

pub use crate::error::Invalid;

/// A file as the read model shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct FileRow {
    pub file_id: String,
    pub owner: String,
    pub filename: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
    #[sqlx(try_from = "String")]
    pub status: FileStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub probe: Option<Value>,
    pub request_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A generated song's request (prompt, job_id, model, variation, duration_seconds); null
    /// for uploads.
    pub generation: Option<Value>,
}

/// Error codes of a generation that ended without its song (`FileGenerationFailed`): unlike a
/// probe's verdict they do not settle the file, since a later attempt of the job may write it.
pub fn is_generation_failure(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("generation_"))
}

/// A job as the read model shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct JobRow {
    pub job_id: String,
    pub file_id: String,
    pub owner: String,
    pub model: String,
    pub variation: String,
    pub model_version: String,
    pub params: Value,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub skipped: bool,
    pub progress: f32,
    pub message: Option<String>,
    pub attempt: i32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retryable: Option<bool>,
    pub outputs: Value,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The newest request for this job (a failure older than it was superseded).
    pub requested_at: Option<DateTime<Utc>>,
    /// What the job reads, when not the upload: one output of another job on the file.
    pub input_job_id: Option<String>,
    pub input_model: Option<String>,
    pub input_variation: Option<String>,
    pub input_output: Option<String>,
}

impl JobRow {
    /// What the job reads: `None` for the upload.
    pub fn input(&self) -> Option<JobInput> {
        Some(JobInput {
            job_id: self.input_job_id.clone()?,
            model: self.input_model.clone()?,
            variation: self.input_variation.clone()?,
            output: self.input_output.clone()?,
        })
    }
}

/// What a `JobRequested` says beyond its `JobQueued`: the attempt it asks for (so a retry shows
/// as its attempt before a worker starts it) and what the job reads when not the upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub attempt: i32,
    pub input: Option<JobInput>,
}

/// Records what a request adds to its `JobQueued`: the attempt it asks for (never lowering
/// one seen already: requests and worker events interleave in any order) and what the job
/// reads. The job id covers its input, so a request without one (every request before inputs
/// existed) leaves a recorded input as it is.
pub fn apply_request(r: &mut JobRow, req: Option<&Request>) -> Result<(), Invalid> {
    let Some(req) = req else {
        return Ok(());
    };
    r.attempt = r.attempt.max(req.attempt);
    let Some(i) = &req.input else {
        return Ok(());
    };
    check_id('j', &i.job_id, "input job_id")?;
    r.input_job_id = Some(i.job_id.clone());
    r.input_model = Some(i.model.clone());
    r.input_variation = Some(i.variation.clone());
    r.input_output = Some(i.output.clone());
    Ok(())
}

fn check_id(prefix: char, id: &str, what: &str) -> Result<(), Invalid> {
    if roar_schemas::ids::is_valid_id(prefix, id) {
        Ok(())
    } else {
        Err(Invalid(format!("{what} {id:?} is not a roar id")))
    }
}

/// Applies a file event to the current row (if any).
pub fn apply_file(row: Option<FileRow>, ev: &FileEvent) -> Result<FileRow, Invalid> {
    check_id('f', &ev.file_id, "file_id")?;
    let at = ev.meta.occurred_at;
    let mut r = row.unwrap_or_else(|| FileRow {
        file_id: ev.file_id.clone(),
        owner: String::new(),
        filename: String::new(),
        mime: String::new(),
        size: 0,
        sha256: String::new(),
        storage_key: String::new(),
        status: FileStatus::PendingUpload,
        error_code: None,
        error_message: None,
        probe: None,
        request_ids: Vec::new(),
        created_at: at,
        updated_at: at,
        generation: None,
    });
    if !ev.meta.request_id.is_empty() && !r.request_ids.contains(&ev.meta.request_id) {
        r.request_ids.push(ev.meta.request_id.clone());
    }
    r.created_at = r.created_at.min(at);
    r.updated_at = r.updated_at.max(at);
    let fresh = r.sha256.is_empty() && r.status == FileStatus::PendingUpload && r.owner.is_empty();
    let generation_failed =
        r.status == FileStatus::Failed && is_generation_failure(r.error_code.as_deref());
    let settled = r.status.is_settled() && !generation_failed;
    match &ev.body {
        FileBody::Registered { info, .. } | FileBody::Uploaded(info) => {
            if !r.owner.is_empty() && r.owner != info.owner {
                return Err(Invalid(format!("file {} changes owner", ev.file_id)));
            }
            r.owner = info.owner.clone();
            // A generated song keeps the name it was given at its request.
            if r.generation.is_none() || r.filename.is_empty() {
                r.filename = info.filename.clone();
            }
            r.mime = info.mime.clone();
            r.size = info.size;
            r.sha256 = info.sha256.clone();
            r.storage_key = info.storage_key.clone();
            if matches!(ev.body, FileBody::Uploaded(_)) && !settled {
                r.status = FileStatus::Uploaded;
                r.error_code = None;
                r.error_message = None;
            }
        }
        FileBody::GenerationRequested(g) => {
            if !r.owner.is_empty() && r.owner != g.owner {
                return Err(Invalid(format!("file {} changes owner", ev.file_id)));
            }
            r.owner = g.owner.clone();
            if r.filename.is_empty() {
                r.filename = g.filename.clone();
            }
            r.generation = Some(serde_json::json!({
                "prompt": g.prompt,
                "job_id": g.job_id,
                "model": g.model,
                "variation": g.variation,
                "duration_seconds": g.duration_seconds,
            }));
            // A new request (or a new attempt after a failed one) generates again; a song
            // already written stays as it is.
            if fresh || r.status == FileStatus::Generating || generation_failed {
                r.status = FileStatus::Generating;
                r.error_code = None;
                r.error_message = None;
            }
        }
        FileBody::GenerationFailed {
            job_id: _,
            code,
            message,
        } => {
            if r.status == FileStatus::Generating {
                r.status = FileStatus::Failed;
                r.error_code = Some(code.clone());
                r.error_message = Some(message.clone());
            }
        }
        FileBody::Probed(p) => {
            if r.status != FileStatus::Deleted {
                r.status = FileStatus::Ready;
                r.error_code = None;
                r.error_message = None;
            }
            r.probe = Some(serde_json::to_value(p).unwrap_or(Value::Null));
        }
        FileBody::ProbeFailed { code, message } => {
            if r.status != FileStatus::Deleted && r.status != FileStatus::Ready {
                r.status = FileStatus::Failed;
                r.error_code = Some(code.clone());
                r.error_message = Some(message.clone());
            }
        }
        FileBody::Deleted { .. } => r.status = FileStatus::Deleted,
    }
    Ok(r)
}

/// Applies a job event to the current row (if any).
///
/// Events of one job come from two topics (requests from `roar.jobs.<model>.v1`, the rest from
/// `roar.job-events.v1`), so their interleaving differs between the live projector and a
/// rebuild. The rules therefore lean on `occurred_at` rather than on arrival order:
/// - `completed` (or skipped) is final: outputs exist.
/// - A failed or canceled job moves again only for an event newer than its end (a retry, or a
///   new request); older events are late and ignored.
/// - A failure or cancel older than the newest request was superseded by that request.
/// - Progress never goes backwards within a run.
pub fn apply_job(row: Option<JobRow>, ev: &JobEvent) -> Result<JobRow, Invalid> {
    check_id('j', &ev.job_id, "job_id")?;
    check_id('f', &ev.file_id, "file_id")?;
    if ev.model.is_empty() {
        return Err(Invalid("empty model".into()));
    }
    let at = ev.meta.occurred_at;
    let mut r = row.unwrap_or_else(|| JobRow {
        job_id: ev.job_id.clone(),
        file_id: ev.file_id.clone(),
        owner: String::new(),
        model: ev.model.clone(),
        variation: ev.variation.clone(),
        model_version: String::new(),
        params: Value::Object(Default::default()),
        status: JobStatus::Queued,
        skipped: false,
        progress: 0.0,
        message: None,
        attempt: 0,
        error_code: None,
        error_message: None,
        retryable: None,
        outputs: Value::Array(Vec::new()),
        request_id: Some(ev.meta.request_id.clone()),
        created_at: at,
        updated_at: at,
        started_at: None,
        finished_at: None,
        requested_at: None,
        input_job_id: None,
        input_model: None,
        input_variation: None,
        input_output: None,
    });
    if r.file_id != ev.file_id || r.model != ev.model || r.variation != ev.variation {
        return Err(Invalid(format!(
            "job {} changes file, model or variation",
            ev.job_id
        )));
    }
    let completed = r.status == JobStatus::Completed;
    let closed = r.status.is_closed();
    // Newer than the failure/cancel: the job was asked again and runs again.
    let after_close = closed && r.finished_at.is_some_and(|f| at > f);
    let moves = !completed && (!closed || after_close);
    match &ev.body {
        JobBody::Queued {
            owner,
            model_version,
            params_json,
        } => {
            if !r.owner.is_empty() && r.owner != *owner {
                return Err(Invalid(format!("job {} changes owner", ev.job_id)));
            }
            if !r.model_version.is_empty() && r.model_version != *model_version {
                return Err(Invalid(format!("job {} changes model version", ev.job_id)));
            }
            r.params = serde_json::from_str(params_json)
                .map_err(|e| Invalid(format!("params_json is not JSON: {e}")))?;
            r.owner = owner.clone();
            r.model_version = model_version.clone();
            if r.requested_at.is_none_or(|q| at >= q) {
                r.requested_at = Some(at);
                r.request_id = Some(ev.meta.request_id.clone());
            }
            if after_close {
                reopen(&mut r);
            }
        }
        JobBody::Started { attempt, .. } => {
            r.attempt = r.attempt.max(*attempt);
            r.started_at = Some(r.started_at.map_or(at, |s| s.min(at)));
            if moves {
                reopen_if(&mut r, after_close);
                r.status = JobStatus::Running;
            }
        }
        JobBody::Progress { percent, message } => {
            if !(0.0..=100.0).contains(percent) || percent.is_nan() {
                return Err(Invalid(format!("progress {percent} outside 0..=100")));
            }
            if moves {
                reopen_if(&mut r, after_close);
                r.status = JobStatus::Running;
                if *percent >= r.progress {
                    r.progress = *percent;
                    r.message = Some(message.clone());
                }
            }
        }
        JobBody::RetryScheduled {
            attempt, reason, ..
        } => {
            r.attempt = r.attempt.max(*attempt);
            if moves {
                reopen_if(&mut r, after_close);
                r.status = JobStatus::Queued;
                r.message = Some(format!("retry scheduled: {reason}"));
            }
        }
        JobBody::Completed { outputs, .. } | JobBody::Skipped { outputs } => {
            if moves {
                r.status = JobStatus::Completed;
                r.skipped = matches!(ev.body, JobBody::Skipped { .. });
                r.progress = 100.0;
                r.outputs = serde_json::to_value(outputs).unwrap_or(Value::Null);
                r.error_code = None;
                r.error_message = None;
                r.retryable = None;
                r.finished_at = Some(at);
            }
        }
        JobBody::Failed { .. } | JobBody::Canceled { .. } => {
            // A request newer than this end asked for another run; that run's own events
            // follow this one on the job-events partition, so nothing newer is lost here.
            let superseded = r.requested_at.is_some_and(|q| at < q);
            if moves && superseded {
                reopen(&mut r);
            } else if moves {
                close(&mut r, &ev.body, at);
            }
        }
    }
    r.created_at = r.created_at.min(at);
    r.updated_at = r.updated_at.max(at);
    Ok(r)
}

/// Ends a run as failed or canceled.
fn close(r: &mut JobRow, body: &JobBody, at: DateTime<Utc>) {
    match body {
        JobBody::Failed {
            code,
            message,
            retryable,
        } => {
            r.status = JobStatus::Failed;
            r.error_code = Some(code.clone());
            r.error_message = Some(message.clone());
            r.retryable = Some(*retryable);
            r.message = None;
        }
        JobBody::Canceled { reason } => {
            r.status = JobStatus::Canceled;
            r.message = Some(reason.clone());
            r.error_code = None;
            r.error_message = None;
            r.retryable = None;
        }
        _ => return,
    }
    r.finished_at = Some(at);
}

fn reopen_if(r: &mut JobRow, cond: bool) {
    if cond {
        reopen(r);
    }
}

/// A failed or canceled job asked again: back to queued, a fresh run.
fn reopen(r: &mut JobRow) {
    r.status = JobStatus::Queued;
    r.progress = 0.0;
    r.message = None;
    r.error_code = None;
    r.error_message = None;
    r.retryable = None;
    r.finished_at = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use roar_schemas::{EventMeta, Output};

    const F: &str = "f0123456789abcdef0123456789abcdef";
    const J: &str = "j0123456789abcdef0123456789abcdef";

    fn ev(secs: i64, body: JobBody) -> JobEvent {
        let mut meta = EventMeta::new("r", "t");
        meta.occurred_at = DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        JobEvent {
            meta,
            job_id: J.into(),
            file_id: F.into(),
            model: "pitch".into(),
            variation: "tiny".into(),
            body,
        }
    }

    fn run(events: &[JobEvent]) -> JobRow {
        events
            .iter()
            .fold(None, |row, e| Some(apply_job(row, e).unwrap()))
            .unwrap()
    }

    fn lifecycle() -> Vec<JobEvent> {
        let out = Output {
            path: "p".into(),
            kind: "f0".into(),
            content_type: "application/json".into(),
            size: 1,
            sha256: "x".into(),
        };
        vec![
            ev(
                0,
                JobBody::Queued {
                    owner: "a".into(),
                    model_version: "1".into(),
                    params_json: "{}".into(),
                },
            ),
            ev(
                1,
                JobBody::Started {
                    worker: "w".into(),
                    attempt: 1,
                },
            ),
            ev(
                2,
                JobBody::Progress {
                    percent: 30.0,
                    message: "a".into(),
                },
            ),
            ev(
                3,
                JobBody::Progress {
                    percent: 60.0,
                    message: "b".into(),
                },
            ),
            ev(
                4,
                JobBody::Completed {
                    outputs: vec![out],
                    duration_seconds: 1.0,
                },
            ),
        ]
    }

    #[test]
    fn every_order_ends_in_the_same_terminal_state() {
        let events = lifecycle();
        let expected = run(&events);
        assert_eq!(expected.status, JobStatus::Completed);
        assert_eq!(expected.progress, 100.0);
        // All 120 permutations of the five events, each also with every event duplicated.
        let mut idx: Vec<usize> = (0..events.len()).collect();
        let mut count = 0;
        permute(&mut idx, 0, &mut |order| {
            let seq: Vec<JobEvent> = order.iter().map(|&i| events[i].clone()).collect();
            let doubled: Vec<JobEvent> = seq.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
            for s in [&seq, &doubled] {
                let r = run(s);
                assert_eq!(r.status, JobStatus::Completed, "{order:?}");
                assert_eq!(r.progress, 100.0);
                assert_eq!(r.owner, "a");
                assert_eq!(r.outputs, expected.outputs);
            }
            count += 1;
        });
        assert_eq!(count, 120);
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }

    #[test]
    fn progress_never_goes_backwards_and_terminal_is_final() {
        let mut e = lifecycle();
        e.swap(2, 3);
        let r = run(&e[..4]);
        assert_eq!(r.progress, 60.0);
        assert_eq!(r.message.as_deref(), Some("b"));
        let failed = run(&[
            e[0].clone(),
            ev(
                5,
                JobBody::Failed {
                    code: "x".into(),
                    message: "m".into(),
                    retryable: false,
                },
            ),
            // Late: it happened before the failure, so it cannot end the job again.
            ev(
                4,
                JobBody::Completed {
                    outputs: vec![],
                    duration_seconds: 0.0,
                },
            ),
            ev(
                3,
                JobBody::Progress {
                    percent: 90.0,
                    message: "late".into(),
                },
            ),
        ]);
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(failed.progress, 0.0);
    }

    #[test]
    fn a_newer_requeue_reopens_a_failed_job_but_a_stale_one_does_not() {
        let q = |s| {
            ev(
                s,
                JobBody::Queued {
                    owner: "a".into(),
                    model_version: "1".into(),
                    params_json: "{}".into(),
                },
            )
        };
        let fail = ev(
            5,
            JobBody::Failed {
                code: "x".into(),
                message: "m".into(),
                retryable: true,
            },
        );
        assert_eq!(run(&[q(0), fail.clone(), q(1)]).status, JobStatus::Failed);
        assert_eq!(run(&[q(0), fail, q(9)]).status, JobStatus::Queued);
    }

    fn merges(a: &[JobEvent], b: &[JobEvent], out: &mut Vec<Vec<JobEvent>>, acc: Vec<JobEvent>) {
        if a.is_empty() || b.is_empty() {
            let mut done = acc;
            done.extend_from_slice(a);
            done.extend_from_slice(b);
            out.push(done);
            return;
        }
        let mut left = acc.clone();
        left.push(a[0].clone());
        merges(&a[1..], b, out, left);
        let mut right = acc;
        right.push(b[0].clone());
        merges(a, &b[1..], out, right);
    }

    #[test]
    fn a_retried_job_ends_the_same_whatever_the_interleaving_of_its_two_topics() {
        let q = |s| {
            ev(
                s,
                JobBody::Queued {
                    owner: "a".into(),
                    model_version: "1".into(),
                    params_json: "{}".into(),
                },
            )
        };
        let started = |s, attempt| {
            ev(
                s,
                JobBody::Started {
                    worker: "w".into(),
                    attempt,
                },
            )
        };
        let requests = vec![q(0), q(9)];
        let mut job_events = vec![
            started(1, 1),
            ev(
                2,
                JobBody::Progress {
                    percent: 70.0,
                    message: "x".into(),
                },
            ),
            ev(
                5,
                JobBody::Failed {
                    code: "oom".into(),
                    message: "m".into(),
                    retryable: true,
                },
            ),
            started(10, 2),
            ev(
                11,
                JobBody::Progress {
                    percent: 20.0,
                    message: "y".into(),
                },
            ),
        ];
        job_events.push(lifecycle().pop().unwrap());
        job_events.last_mut().unwrap().meta.occurred_at =
            DateTime::from_timestamp(1_800_000_015, 0).unwrap();
        let mut all = Vec::new();
        merges(&requests, &job_events, &mut all, Vec::new());
        assert_eq!(all.len(), 28);
        let expected = run(&all[0]);
        assert_eq!(expected.status, JobStatus::Completed);
        assert_eq!(expected.attempt, 2);
        assert_eq!(expected.error_code, None);
        for order in &all {
            // Duplicated deliveries of either stream change nothing either.
            let doubled: Vec<JobEvent> =
                order.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
            for s in [order, &doubled] {
                let r = run(s);
                assert_eq!(r, expected);
            }
        }
        // Before the retry ran, a request newer than the failure shows the job queued again.
        let pending = run(&[q(0), started(1, 1), job_events[2].clone(), q(9)]);
        assert_eq!(pending.status, JobStatus::Queued);
        let stale = run(&[q(0), started(1, 1), q(9), job_events[2].clone()]);
        assert_eq!(
            stale, pending,
            "a failure older than the newest request is superseded"
        );
    }

    #[test]
    fn a_job_cannot_change_owner_or_model_version() {
        let q = |owner: &str, v: &str| {
            ev(
                0,
                JobBody::Queued {
                    owner: owner.into(),
                    model_version: v.into(),
                    params_json: "{}".into(),
                },
            )
        };
        let first = apply_job(None, &q("a", "1")).unwrap();
        assert!(apply_job(Some(first.clone()), &q("b", "1")).is_err());
        assert!(apply_job(Some(first.clone()), &q("a", "2")).is_err());
        let mut other_file = q("a", "1");
        other_file.file_id = format!("f{}", "1".repeat(32));
        assert!(apply_job(Some(first), &other_file).is_err());
    }

    #[test]
    fn invalid_events_are_refused() {
        let mut e = ev(
            0,
            JobBody::Progress {
                percent: 300.0,
                message: String::new(),
            },
        );
        assert!(apply_job(None, &e).is_err());
        e.body = JobBody::Started {
            worker: "w".into(),
            attempt: 1,
        };
        e.job_id = "../x".into();
        assert!(apply_job(None, &e).is_err());
    }

    #[test]
    fn a_requested_attempt_shows_before_a_worker_starts_it_and_never_goes_back() {
        let queued = |s| {
            ev(
                s,
                JobBody::Queued {
                    owner: "a".into(),
                    model_version: "1".into(),
                    params_json: "{}".into(),
                },
            )
        };
        // The job's request at `s` asking for `attempt`, as the projector applies it.
        let request = |row: Option<JobRow>, s, attempt| {
            let mut row = apply_job(row, &queued(s)).unwrap();
            let req = Request {
                attempt,
                input: None,
            };
            apply_request(&mut row, Some(&req)).unwrap();
            row
        };
        let first = request(None, 0, 1);
        assert_eq!(first.attempt, 1);
        // Canceled before any worker started it, then asked again: attempt 2 at once, so the
        // next retry asks for attempt 3 (not for 2 once more).
        let cancel = ev(
            1,
            JobBody::Canceled {
                reason: "user".into(),
            },
        );
        let again = request(Some(apply_job(Some(first), &cancel).unwrap()), 2, 2);
        assert_eq!((again.status, again.attempt), (JobStatus::Queued, 2));
        // A late start of the first attempt, or a late copy of its request, lowers nothing.
        let start = ev(
            1,
            JobBody::Started {
                worker: "w".into(),
                attempt: 1,
            },
        );
        assert_eq!(apply_job(Some(again.clone()), &start).unwrap().attempt, 2);
        assert_eq!(request(Some(again), 0, 1).attempt, 2);
    }

    fn file_ev(body: FileBody) -> FileEvent {
        FileEvent {
            sealed: None,
            meta: EventMeta::new("r", "t"),
            file_id: F.into(),
            body,
        }
    }

    fn generation(owner: &str) -> FileBody {
        FileBody::GenerationRequested(roar_schemas::Generation {
            owner: owner.into(),
            filename: "calm piano.wav".into(),
            prompt: "calm piano".into(),
            job_id: J.into(),
            model: "musicgen".into(),
            variation: "small".into(),
            duration_seconds: 5.0,
        })
    }

    fn failure(code: &str) -> FileBody {
        FileBody::GenerationFailed {
            job_id: J.into(),
            code: code.into(),
            message: "m".into(),
        }
    }

    fn uploaded() -> FileBody {
        FileBody::Uploaded(roar_schemas::FileInfo {
            owner: "alice".into(),
            filename: "generated.wav".into(),
            mime: "audio/wav".into(),
            size: 10,
            sha256: "ab".repeat(32),
            storage_key: "uploads/f/original".into(),
        })
    }

    fn fold(bodies: Vec<FileBody>) -> Result<FileRow, Invalid> {
        bodies
            .into_iter()
            .try_fold(None, |row, b| apply_file(row, &file_ev(b)).map(Some))
            .map(|r| r.unwrap())
    }

    #[test]
    fn a_generated_song_is_generating_until_its_job_writes_it() {
        let r = fold(vec![generation("alice")]).unwrap();
        assert_eq!(r.status, FileStatus::Generating);
        assert_eq!(r.owner, "alice");
        assert_eq!(r.generation.as_ref().unwrap()["prompt"], "calm piano");
        let r = fold(vec![generation("alice"), uploaded()]).unwrap();
        assert_eq!(r.status, FileStatus::Uploaded);
        // The name given at the request stays; the content's facts come from the upload.
        assert_eq!((r.filename.as_str(), r.size), ("calm piano.wav", 10));
        // Asked again once written: nothing moves back.
        let r = fold(vec![generation("alice"), uploaded(), generation("alice")]).unwrap();
        assert_eq!(r.status, FileStatus::Uploaded);
        assert!(fold(vec![generation("alice"), generation("bob")]).is_err());
    }

    #[test]
    fn a_failed_generation_fails_the_song_until_a_new_attempt_writes_it() {
        let r = fold(vec![generation("alice"), failure("generation_canceled")]).unwrap();
        assert_eq!(r.status, FileStatus::Failed);
        assert_eq!(r.error_code.as_deref(), Some("generation_canceled"));
        let again = fold(vec![
            generation("alice"),
            failure("generation_canceled"),
            generation("alice"),
        ])
        .unwrap();
        assert_eq!(
            (again.status, again.error_code),
            (FileStatus::Generating, None)
        );
        // A late failure of an earlier attempt, then the new attempt's song: the song wins.
        let r = fold(vec![
            generation("alice"),
            failure("generation_canceled"),
            uploaded(),
        ])
        .unwrap();
        assert_eq!((r.status, r.error_code), (FileStatus::Uploaded, None));
        // A failure never touches a song already written, nor a probe's verdict.
        let r = fold(vec![
            generation("alice"),
            uploaded(),
            failure("generation_failed"),
        ])
        .unwrap();
        assert_eq!(r.status, FileStatus::Uploaded);
        let r = fold(vec![
            uploaded(),
            FileBody::ProbeFailed {
                code: "undecodable".into(),
                message: "m".into(),
            },
            uploaded(),
        ])
        .unwrap();
        assert_eq!(r.status, FileStatus::Failed);
    }
}
