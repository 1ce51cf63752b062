//! The events the projector applies, decoded by the topic they came from. A `JobRequested` on a
//! model's job topic stands for the job's `JobQueued` event: that variant exists only here, in
//! the projection (nobody sends it), so that one write by the orchestrator makes a job visible.

use roar_common::kafka::Delivery;
use roar_schemas::topics::{jobs_topic, FILES, JOB_EVENTS, MODELS};
use roar_schemas::{EventMeta, FileBody, FileEvent, JobBody, JobEvent, JobRequested};

/// The files and job-event topics, and every model's job topic: a `JobRequested` is what makes
/// a job `queued`, so the orchestrator writes one event per request and never two.
pub fn projected_topics() -> Vec<String> {
    let mut t = vec![FILES.to_string(), JOB_EVENTS.to_string()];
    t.extend(MODELS.iter().map(|m| jobs_topic(m)));
    t
}

/// An event as the state machine takes it.
pub(crate) enum Decoded {
    File(FileEvent),
    Job(JobEvent),
}

impl Decoded {
    /// Decodes a delivery by the topic it came from.
    pub(crate) fn from_delivery(d: &Delivery) -> Result<Self, String> {
        decode(&d.topic, d.payload.as_deref())
    }

    pub(crate) fn meta(&self) -> &EventMeta {
        match self {
            Decoded::File(e) => &e.meta,
            Decoded::Job(e) => &e.meta,
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
            },
            Decoded::Job(e) => e.body.kind(),
        }
    }
}

/// Decodes an event stored by `topic` (a delivery, or a history row's payload).
pub(crate) fn decode(topic: &str, payload: Option<&[u8]>) -> Result<Decoded, String> {
    let bytes = payload.ok_or("empty payload")?;
    let ev = if topic == FILES {
        roar_schemas::decode::<FileEvent>(bytes).map(Decoded::File)
    } else if topic == JOB_EVENTS {
        roar_schemas::decode::<JobEvent>(bytes).map(Decoded::Job)
    } else {
        roar_schemas::decode::<JobRequested>(bytes).map(|r| Decoded::Job(queued_from_request(&r)))
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
