//! `roar replay`: asks again for a model's jobs on the files that had them, with another
//! variation or model version. The job id includes both, so each request names a new job whose
//! outputs land beside the old ones, and the old job stays in `/status`. The files and their
//! old jobs come from the read model (a query); the requests go to `roar.jobs.<model>.v1` like
//! any other, with the job identity `/process` derives. A job that read another job's output
//! (a pipeline step) is asked for on the same output; its upstream job is not replayed.
//! A prompt is put aside as for any request ([`super::prompts`]); a job whose song was deleted
//! (and whose rows the projector has not removed yet) is refused, not requested.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use roar_common::catalog::{self, CatalogError};
use roar_common::kafka::{EventProducer, KafkaError};
use roar_common::storage::Storage;
use roar_projections::ReadModel;
use roar_schemas::topics::jobs_topic;
use roar_schemas::EventMeta;

use super::jobs::identity_reading;
use super::prompts::{put_aside, PromptError};

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplaySpec {
    pub model: String,
    /// Only jobs first requested at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only these files (all files when empty).
    pub files: Vec<String>,
    /// The variation to ask for (default: each old job's own).
    pub variation: Option<String>,
    /// The model version to record (default: the catalogue's for the variation).
    pub model_version: Option<String>,
    /// Who asks (`actor` of the events), e.g. `cli:replay`.
    pub actor: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// The request id shared by every event of this replay.
    pub request_id: String,
    /// (file_id, new job_id) of each job requested.
    pub requested: Vec<(String, String)>,
    /// Old jobs whose replay names a job that exists already (same variation and version).
    pub existing: usize,
    /// (old job_id, why) for old jobs whose parameters no longer fit the catalogue.
    pub refused: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The model or variation is not in the catalogue (not retryable).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A file id that is not a roar file id (not retryable).
    #[error("{0:?} is not a file id")]
    BadFileId(String),
    #[error("replay database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("replay: {0}")]
    Kafka(#[from] KafkaError),
    /// A prompt could not be put aside (the key table or the object store).
    #[error("replay: {0}")]
    Prompt(#[from] PromptError),
}

impl ReplayError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplayError::Db(_) | ReplayError::Kafka(_) => true,
            ReplayError::Prompt(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Emits one `JobRequested` per distinct new job; returns what it asked for.
pub async fn replay(
    read: &ReadModel,
    producer: &EventProducer,
    storage: &Storage,
    spec: &ReplaySpec,
) -> Result<ReplayReport, ReplayError> {
    // Fail on a bad model/variation before touching anything.
    catalog::resolve(&spec.model, spec.variation.as_deref(), None)?;
    if let Some(bad) = spec
        .files
        .iter()
        .find(|f| !roar_schemas::ids::is_valid_id('f', f))
    {
        return Err(ReplayError::BadFileId(bad.clone()));
    }
    let old = read
        .jobs_of_model(&spec.model, spec.since, &spec.files)
        .await?;

    let base = EventMeta::new("", spec.actor.clone());
    let mut report = ReplayReport {
        request_id: format!("replay-{}", base.event_id),
        ..Default::default()
    };
    let mut seen = HashSet::new();
    let mut to_send = Vec::new();
    for j in old {
        let variation = spec
            .variation
            .clone()
            .unwrap_or_else(|| j.variation.clone());
        let mut resolved = match catalog::resolve(&spec.model, Some(&variation), Some(&j.params)) {
            Ok(r) => r,
            Err(e) => {
                report.refused.push((j.job_id.clone(), e.to_string()));
                continue;
            }
        };
        if let Some(version) = &spec.model_version {
            resolved.model_version = version.clone();
        }
        // A job that read another job's output reads the same output again: the input is
        // part of the job's identity, and the upstream job is the same one.
        let identity = identity_reading(&j.file_id, &resolved, j.input());
        let id = identity.job_id().to_string();
        if !seen.insert(id.clone()) {
            continue;
        }
        if id == j.job_id || read.job(&id).await?.is_some() {
            report.existing += 1;
            continue;
        }
        let mut meta = base.follow(spec.actor.clone());
        meta.request_id = report.request_id.clone();
        let mut req = identity.request(meta, j.owner.clone(), 1);
        match put_aside(read.pool(), storage, &mut req).await {
            Ok(()) => to_send.push(req),
            Err(PromptError::Erased(_)) => {
                report
                    .refused
                    .push((j.job_id.clone(), "its song was deleted".into()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let topic = jobs_topic(&spec.model);
    for chunk in to_send.chunks(256) {
        let sends = chunk.iter().map(|r| producer.send(&topic, &r.file_id, r));
        futures::future::try_join_all(sends).await?;
        report
            .requested
            .extend(chunk.iter().map(|r| (r.file_id.clone(), r.job_id.clone())));
    }
    Ok(report)
}
