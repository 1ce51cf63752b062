//! The events the projector applies, decoded by the topic they came from. A `JobRequested` on a
//! model's job topic stands for the job's `JobQueued` event: that variant exists only here, in
//! the projection (nobody sends it), so that one write by the orchestrator makes a job visible.

use roar_common::kafka::Delivery;
use roar_schemas::topics::{jobs_topic, FILES, JOB_EVENTS, MODELS, PIPELINES};
use roar_schemas::{
    EventMeta, FileBody, FileEvent, JobBody, JobEvent, JobInput, JobRequested, PipelineBody,
    PipelineEvent,
};

use crate::apply::Request;

/// The files, job-event and pipeline topics, and every model's job topic: a `JobRequested` is
/// what makes a job `queued`, so the orchestrator writes one event per request and never two;
/// a `PipelineRequested` makes every step's job `queued` at once.
pub fn projected_topics() -> Vec<String> {
    let mut t = vec![
        FILES.to_string(),
        JOB_EVENTS.to_string(),
        PIPELINES.to_string(),
    ];
    t.extend(MODELS.iter().map(|m| jobs_topic(m)));
    t
}

/// An event as the state machine takes it.
pub(crate) enum Decoded {
    File(FileEvent),
    /// A job event; for a request (its `JobQueued`), what the request adds to it.
    Job(JobEvent, Option<Request>),
    Pipeline(PipelineEvent),
}

impl Decoded {
    /// Decodes a delivery by the topic it came from.
    pub(crate) fn from_delivery(d: &Delivery) -> Result<Self, String> {
        decode(&d.topic, d.payload.as_deref())
    }

    pub(crate) fn meta(&self) -> &EventMeta {
        match self {
            Decoded::File(e) => &e.meta,
            Decoded::Job(e, _) => &e.meta,
            Decoded::Pipeline(e) => &e.meta,
        }
    }

    /// The file the event is about.
    pub(crate) fn file_id(&self) -> &str {
        match self {
            Decoded::File(e) => &e.file_id,
            Decoded::Job(e, _) => &e.file_id,
            Decoded::Pipeline(e) => &e.file_id,
        }
    }

    /// The history's `kind` (and the SSE event name): `file_uploaded`, `queued`, `progress`, ...
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Decoded::File(e) => match e.body {
                FileBody::Registered { .. } => "file_registered",
                FileBody::Uploaded(_) => "file_uploaded",
                FileBody::Probed(_) => "file_probed",
                FileBody::ProbeFailed { .. } => "file_probe_failed",
                FileBody::Deleted { .. } => "file_deleted",
                FileBody::GenerationRequested(_) => "file_generation_requested",
                FileBody::GenerationFailed { .. } => "file_generation_failed",
            },
            Decoded::Job(e, _) => e.body.kind(),
            Decoded::Pipeline(e) => match e.body {
                PipelineBody::Requested { .. } => "pipeline_requested",
                PipelineBody::CancelRequested { .. } => "pipeline_cancel_requested",
            },
        }
    }
}

/// Decodes an event stored by `topic` (a delivery, or a history row's payload).
pub(crate) fn decode(topic: &str, payload: Option<&[u8]>) -> Result<Decoded, String> {
    let bytes = payload.ok_or("empty payload")?;
    let ev = if topic == FILES {
        roar_schemas::decode::<FileEvent>(bytes).map(Decoded::File)
    } else if topic == JOB_EVENTS {
        roar_schemas::decode::<JobEvent>(bytes).map(|e| Decoded::Job(e, None))
    } else if topic == PIPELINES {
        roar_schemas::decode::<PipelineEvent>(bytes).map(Decoded::Pipeline)
    } else {
        roar_schemas::decode::<JobRequested>(bytes).map(|r| {
            let queued = queued_from_request(&r);
            let req = Request {
                attempt: r.attempt,
                input: r.input,
            };
            Decoded::Job(queued, Some(req))
        })
    };
    ev.map_err(|e| e.to_string())
}

/// A job request as the job event it stands for: the job is queued (or re-queued) by it.
pub fn queued_from_request(r: &JobRequested) -> JobEvent {
    JobEvent {
        meta: r.meta.clone(),
        job_id: r.job_id.clone(),
        file_id: r.file_id.clone(),
        model: r.model.clone(),
        variation: r.variation.clone(),
        body: JobBody::Queued {
            owner: r.owner.clone(),
            model_version: r.model_version.clone(),
            params_json: r.params_json.clone(),
        },
    }
}

/// The `JobQueued` of every step of a requested pipeline, with each step's input: the read
/// model shows the whole pipeline as soon as it is asked for, before the process manager has
/// requested the steps that wait on others.
pub(crate) fn queued_steps(p: &PipelineEvent) -> Vec<(JobEvent, Option<JobInput>)> {
    let PipelineBody::Requested { steps, .. } = &p.body else {
        return Vec::new();
    };
    steps
        .iter()
        .map(|s| {
            let input = s.input.as_ref().and_then(|i| {
                let up = steps.iter().find(|u| u.name == i.step)?;
                Some(JobInput {
                    job_id: up.job_id.clone(),
                    model: up.model.clone(),
                    variation: up.variation.clone(),
                    output: i.output.clone(),
                })
            });
            let ev = JobEvent {
                meta: p.meta.clone(),
                job_id: s.job_id.clone(),
                file_id: p.file_id.clone(),
                model: s.model.clone(),
                variation: s.variation.clone(),
                body: JobBody::Queued {
                    owner: p.owner.clone(),
                    model_version: s.model_version.clone(),
                    params_json: s.params_json.clone(),
                },
            };
            (ev, input)
        })
        .collect()
}
