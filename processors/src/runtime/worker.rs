//! One model's job handler: decode the request → skip if done → run → make the outputs durable
//! → emit the outcome. The consumer loop stores the offset only after [`Worker::handle`]
//! returns `Ok`, i.e. after the outcome event is acknowledged by the broker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use roar_common::kafka::{send_dead_letter, ControlFollower, Delivery, EventProducer, HandleError};
use roar_common::metrics::{INFERENCE_SECONDS, JOBS, JOBS_IN_FLIGHT, JOB_QUEUE_SECONDS};
use roar_common::storage::{job_output_dir, Storage};
use roar_schemas::topics::{jobs_topic, JOB_EVENTS};
use roar_schemas::{DeadLetterKind, JobBody, JobEvent, JobRequested, JobStatus, Output};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::input;
use super::manifest;
use super::model::{Input, Model, ModelError, RunContext};
use super::progress;
use super::song;
use crate::audio;

/// How a worker behaves; built from `processor.*` in the config.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Names this instance in events and announcements, e.g. `pitch@host-1234`.
    pub worker_id: String,
    /// Tries of a retryable failure, the first included.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
    /// How long a running job may go on after shutdown begins.
    pub shutdown_grace: Duration,
    /// Least time between two progress events of a job.
    pub progress_interval: Duration,
    /// What decoding an input may consume (seconds, bytes read, bytes of samples kept).
    pub limits: audio::Limits,
    /// Longest a retry waits for its `not_before` while holding the partition.
    pub max_retry_wait: Duration,
}

/// The handler of `roar.jobs.<model>.v1` for one model.
pub struct Worker {
    model: Arc<dyn Model>,
    storage: Storage,
    producer: EventProducer,
    control: Arc<ControlFollower>,
    opts: WorkerOptions,
    /// Model runs at once in this process (`processor.concurrency`).
    slots: Arc<Semaphore>,
}

/// The outcome a run came to, before it is made durable.
enum Outcome {
    Done(Vec<Output>, f64),
    Canceled,
    Abandoned,
    Failed {
        code: String,
        message: String,
        retryable: bool,
    },
}

impl Worker {
    pub fn new(
        model: Arc<dyn Model>,
        storage: Storage,
        producer: EventProducer,
        control: Arc<ControlFollower>,
        opts: WorkerOptions,
        concurrency: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            model,
            storage,
            producer,
            control,
            opts,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
        })
    }

    /// The model this worker runs.
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }

    fn event(&self, req: &JobRequested, body: JobBody) -> JobEvent {
        JobEvent {
            meta: req.meta.follow(format!("worker:{}", self.opts.worker_id)),
            job_id: req.job_id.clone(),
            file_id: req.file_id.clone(),
            model: req.model.clone(),
            variation: req.variation.clone(),
            body,
        }
    }

    fn actor(&self) -> String {
        format!("worker:{}", self.opts.worker_id)
    }

    async fn emit(&self, req: &JobRequested, body: JobBody) -> Result<(), HandleError> {
        let ev = self.event(req, body);
        self.producer
            .send(JOB_EVENTS, &req.file_id, &ev)
            .await
            .map(|_| ())
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        // A redelivery after a crash here emits both again: consumers expect duplicates.
        song::after(&self.producer, req, &self.actor(), &ev.body).await
    }

    async fn process(
        &self,
        d: &Delivery,
        req: &JobRequested,
        cancel: &CancellationToken,
        group: &str,
    ) -> Result<(), HandleError> {
        // A retry waits for its time while the loop keeps polling (bounded: the partition waits).
        if let Some(nb) = req.not_before {
            let wait = (nb - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait.min(self.opts.max_retry_wait)) => {}
                _ = cancel.cancelled() => return Err(HandleError::Abandoned),
            }
        }
        // Know every cancel sent so far before deciding to run (bounded wait).
        for _ in 0..100 {
            if self.control.caught_up() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self
            .control
            .is_canceled(&req.job_id, &req.file_id, req.meta.occurred_at)
        {
            let outcome = JobStatus::Canceled.as_str();
            metrics::counter!(JOBS, "model" => req.model.clone(), "outcome" => outcome)
                .increment(1);
            let reason = if self
                .control
                .is_song_canceled(&req.file_id, req.meta.occurred_at)
            {
                "its song was deleted before it started"
            } else {
                "canceled before it started"
            };
            return self
                .emit(
                    req,
                    JobBody::Canceled {
                        reason: reason.into(),
                    },
                )
                .await;
        }
        let dir = job_output_dir(&req.file_id, &req.model, &req.variation, &req.job_id);
        if let Some(m) = manifest::finished(&self.storage, &dir, &req.job_id).await? {
            tracing::info!("outputs exist; job skipped");
            if song::generates_song(&req.params_json) {
                song::register(
                    &self.storage,
                    &self.producer,
                    req,
                    &self.actor(),
                    &m.outputs,
                )
                .await?;
            }
            metrics::counter!(JOBS, "model" => req.model.clone(), "outcome" => "skipped")
                .increment(1);
            return self
                .emit(req, JobBody::Skipped { outputs: m.outputs })
                .await;
        }
        let queued_for = (Utc::now() - req.meta.occurred_at)
            .num_milliseconds()
            .max(0) as f64
            / 1e3;
        metrics::histogram!(JOB_QUEUE_SECONDS, "model" => req.model.clone()).record(queued_for);
        self.emit(
            req,
            JobBody::Started {
                worker: self.opts.worker_id.clone(),
                attempt: req.attempt,
            },
        )
        .await?;

        let outcome = self.run(req, &dir, cancel).await?;
        // The label is the job's final status where the job has one; `retried` and
        // `abandoned` (shut down mid-job) say what the worker did instead.
        let outcome_name = match &outcome {
            Outcome::Done(..) => JobStatus::Completed.as_str(),
            Outcome::Canceled => JobStatus::Canceled.as_str(),
            Outcome::Abandoned => "abandoned",
            Outcome::Failed {
                retryable: true, ..
            } if req.attempt < self.opts.max_attempts => "retried",
            Outcome::Failed { .. } => JobStatus::Failed.as_str(),
        };
        metrics::counter!(JOBS, "model" => req.model.clone(), "outcome" => outcome_name)
            .increment(1);
        match outcome {
            Outcome::Done(outputs, duration_seconds) => {
                self.emit(
                    req,
                    JobBody::Completed {
                        outputs,
                        duration_seconds,
                    },
                )
                .await
            }
            Outcome::Canceled => {
                self.emit(
                    req,
                    JobBody::Canceled {
                        reason: "canceled by request".into(),
                    },
                )
                .await
            }
            Outcome::Abandoned => Err(HandleError::Abandoned),
            Outcome::Failed {
                code,
                message,
                retryable,
            } => {
                tracing::warn!(%code, %message, retryable, attempt = req.attempt, "job failed");
                if retryable && req.attempt < self.opts.max_attempts {
                    self.schedule_retry(req, &format!("{code}: {message}"))
                        .await
                } else {
                    self.emit(
                        req,
                        JobBody::Failed {
                            code: code.clone(),
                            message: message.clone(),
                            retryable,
                        },
                    )
                    .await?;
                    // The request itself is kept for inspection and manual replay.
                    send_dead_letter(
                        &self.producer,
                        group,
                        d,
                        DeadLetterKind::JobFailed,
                        &format!("{code}: {message}"),
                    )
                    .await
                    .map_err(|e| HandleError::Retry(e.to_string()))
                }
            }
        }
    }

    /// Re-requests the job with `attempt + 1` after an exponential backoff.
    async fn schedule_retry(&self, req: &JobRequested, reason: &str) -> Result<(), HandleError> {
        let factor = 1u32 << (req.attempt - 1).clamp(0, 16);
        let delay = self.opts.retry_base.saturating_mul(factor);
        let not_before = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let next = JobRequested {
            meta: req.meta.follow(format!("worker:{}", self.opts.worker_id)),
            attempt: req.attempt + 1,
            not_before: Some(not_before),
            ..req.clone()
        };
        self.emit(
            req,
            JobBody::RetryScheduled {
                attempt: next.attempt,
                not_before,
                reason: reason.to_string(),
            },
        )
        .await?;
        self.producer
            .send(&jobs_topic(&req.model), &req.file_id, &next)
            .await
            .map(|_| ())
            .map_err(|e| HandleError::Retry(e.to_string()))
    }

    /// Fetches and decodes the input, runs the model off the executor, writes the outputs.
    async fn run(
        &self,
        req: &JobRequested,
        dir: &str,
        cancel: &CancellationToken,
    ) -> Result<Outcome, HandleError> {
        let failed = |code: &str, message: String, retryable| Outcome::Failed {
            code: code.into(),
            message,
            retryable,
        };
        if !self.model.variations().contains(&req.variation) {
            let valid = self.model.variations().join(", ");
            return Ok(failed(
                "unknown_variation",
                format!(
                    "variation {:?} is not served here (valid: {valid})",
                    req.variation
                ),
                false,
            ));
        }
        let mut params: serde_json::Value = match serde_json::from_str(&req.params_json) {
            Ok(p @ serde_json::Value::Object(_)) => p,
            _ => {
                return Ok(failed(
                    "invalid_params",
                    "params_json is not a JSON object".into(),
                    false,
                ))
            }
        };
        if let Err(u) = input::prompt(&self.storage, req, &mut params).await {
            return Ok(failed(u.code, u.message, u.retryable));
        }
        let generating = song::generates_song(&req.params_json);
        let audio = if generating {
            // It makes its file's content: there is nothing to read.
            audio::Decoded {
                codec: "none".into(),
                sample_rate: 0,
                channels: 0,
                samples: Vec::new(),
            }
        } else {
            // The upload, or the upstream job's output its manifest names (size and sha256
            // checked).
            let source = match input::open(&self.storage, req, &self.opts.limits).await? {
                Ok(s) => s,
                Err(u) => return Ok(failed(u.code, u.message, u.retryable)),
            };
            let limits = self.opts.limits.clone();
            // Only the decoded samples the model needs are held.
            let decoded =
                tokio::task::spawn_blocking(move || audio::decode_from(source, None, &limits))
                    .await
                    .map_err(|e| HandleError::Retry(format!("decoder thread: {e}")))?;
            match decoded {
                Ok(a) => a,
                Err(e) => return Ok(failed(e.code(), e.to_string(), e.is_retryable())),
            }
        };

        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| HandleError::Abandoned)?;
        let stop = Arc::new(AtomicBool::new(false));
        let abandoned = Arc::new(AtomicBool::new(false));
        let _registered = self.control.register(
            &req.job_id,
            &req.file_id,
            req.meta.occurred_at,
            stop.clone(),
        );
        // Shutdown lets the job finish within the grace period, then stops it at a checkpoint.
        let watcher = {
            let (stop, abandoned, cancel, grace) = (
                stop.clone(),
                abandoned.clone(),
                cancel.clone(),
                self.opts.shutdown_grace,
            );
            tokio::spawn(async move {
                cancel.cancelled().await;
                tokio::time::sleep(grace).await;
                abandoned.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            })
        };
        let (tx, rx) = mpsc::channel(8);
        let template = self.event(
            req,
            JobBody::Progress {
                percent: 0.0,
                message: String::new(),
            },
        );
        let emitter = progress::spawn_emitter(
            self.producer.clone(),
            template,
            rx,
            self.opts.progress_interval,
        );
        let input = Input {
            job_id: req.job_id.clone(),
            file_id: req.file_id.clone(),
            variation: req.variation.clone(),
            params,
            audio,
        };
        let model = self.model.clone();
        let mut ctx = RunContext::new(stop.clone(), progress::reporter(tx));
        let gauge = metrics::gauge!(JOBS_IN_FLIGHT, "model" => req.model.clone());
        gauge.increment(1.0);
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || model.run(&input, &mut ctx)).await;
        let seconds = started.elapsed().as_secs_f64();
        gauge.decrement(1.0);
        watcher.abort();
        let _ = emitter.await;
        metrics::histogram!(INFERENCE_SECONDS, "model" => req.model.clone()).record(seconds);

        let files = match result {
            Ok(Ok(files)) => files,
            Ok(Err(ModelError::Canceled)) if abandoned.load(Ordering::SeqCst) => {
                return Ok(Outcome::Abandoned)
            }
            Ok(Err(ModelError::Canceled)) => return Ok(Outcome::Canceled),
            Ok(Err(ModelError::Failed {
                code,
                message,
                retryable,
            })) => {
                return Ok(Outcome::Failed {
                    code,
                    message,
                    retryable,
                })
            }
            // A panic is a bug that would repeat: fail the job rather than loop on it.
            Err(e) => {
                return Ok(failed(
                    "model_panicked",
                    format!("the model crashed: {e}"),
                    false,
                ))
            }
        };
        // A model bug, not a bad request: fail the job rather than write outside its folder.
        if let Some(f) = files.iter().find(|f| !manifest::valid_output_name(&f.name)) {
            return Ok(failed(
                "bad_output",
                format!("the model produced an invalid output name {:?}", f.name),
                false,
            ));
        }
        let outputs = manifest::write_outputs(&self.storage, req, dir, files, seconds).await?;
        if generating {
            song::register(&self.storage, &self.producer, req, &self.actor(), &outputs).await?;
        }
        Ok(Outcome::Done(outputs, seconds))
    }
}

/// The consumer loop's side, called by the member of the group serving the request's
/// variation and version (`super::served`), which has decoded it.
impl Worker {
    pub(super) async fn handle(
        &self,
        d: &Delivery,
        req: JobRequested,
        cancel: &CancellationToken,
        group: &str,
    ) -> Result<(), HandleError> {
        if req.model != self.model.name() {
            return Err(HandleError::poison(
                DeadLetterKind::WrongModel,
                format!("a {} request on the {} topic", req.model, d.topic),
            ));
        }
        if !roar_schemas::ids::is_valid_id('j', &req.job_id)
            || !roar_schemas::ids::is_valid_id('f', &req.file_id)
        {
            return Err(HandleError::poison(
                DeadLetterKind::Invalid,
                "job_id or file_id is not a roar id",
            ));
        }
        let span = tracing::info_span!("job", job_id = %req.job_id, file_id = %req.file_id,
            model = %req.model, variation = %req.variation, attempt = req.attempt, request_id = %req.meta.request_id);
        // A child of the span that requested the job, so one trace runs from the HTTP request
        // through this run to the events it emits (they take this span's context).
        roar_common::trace::set_parent(&span, req.meta.traceparent.as_deref());
        async {
            // The same request again (not a new attempt or retry: those have their own event
            // ids): its outcome is on the log already, so running it again would run the job
            // twice.
            if manifest::handled(&self.storage, &req).await? {
                tracing::info!(event_id = %req.meta.event_id, "request handled before; dropped");
                metrics::counter!(JOBS, "model" => req.model.clone(), "outcome" => "duplicate")
                    .increment(1);
                return Ok(());
            }
            self.process(d, &req, cancel, group).await?;
            // No marker for a deleted song's job: one written now would outlive the song's
            // erased objects, and the request, if it came back, is canceled again by the song's
            // cancel (while the control topic keeps it; later it finds no input to run on).
            if !self
                .control
                .is_song_canceled(&req.file_id, req.meta.occurred_at)
            {
                manifest::mark_handled(&self.storage, &req).await;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// A request in the DLQ ends its job as failed, so its status never stays queued or
    /// running (a request whose ids are not roar ids names no job anyone can see).
    pub(super) async fn dead_lettered(
        &self,
        req: &JobRequested,
        kind: DeadLetterKind,
        reason: &str,
    ) -> Result<(), HandleError> {
        if !roar_schemas::ids::is_valid_id('j', &req.job_id)
            || !roar_schemas::ids::is_valid_id('f', &req.file_id)
        {
            return Ok(());
        }
        let outcome = JobStatus::Failed.as_str();
        metrics::counter!(JOBS, "model" => req.model.clone(), "outcome" => outcome).increment(1);
        self.emit(
            req,
            JobBody::Failed {
                code: crate::dead_letter_code(kind).into(),
                message: reason.to_string(),
                // Only a handler that kept failing on infrastructure may pass another time.
                retryable: kind == DeadLetterKind::Failed,
            },
        )
        .await
    }
}
