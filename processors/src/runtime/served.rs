//! Which jobs a worker runs: the (variation, version) pairs its weights are, one consumer
//! group per pair. A job names the version it asks for (the catalogue's, or another one
//! `roar replay --model-version` chose); only a worker serving exactly that version of the
//! variation may run it, so outputs labelled with a version were made by it.
//!
//! Every group reads the model's whole job topic. The member of the group of a job's own pair
//! runs it; every other group stores its offset past the job without a word (it is not theirs:
//! no failure, no dead letter). A job whose pair no live worker serves therefore waits on the
//! topic; the first worker that serves it starts a new group, which reads the topic from the
//! beginning (`auto.offset.reset = earliest`) and runs it. Two generations of one version share
//! a group, so a job runs once; two versions side by side (a rollout, a replay) each run only
//! their own jobs.

use std::sync::Arc;

use async_trait::async_trait;
use roar_common::kafka::{Delivery, HandleError, Handler};
use roar_common::Config;
use roar_schemas::topics::version_group;
use roar_schemas::{DeadLetterKind, JobRequested};
use tokio_util::sync::CancellationToken;

use super::model::Model;
use super::worker::Worker;

/// One variation as a worker serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub variation: String,
    pub version: String,
}

impl Served {
    /// The consumer group of the workers serving this pair of `model`.
    pub fn group(&self, model: &str) -> String {
        version_group(model, &self.variation, &self.version)
    }
}

/// What `model` serves under `cfg`: each of its variations at the version
/// `processor.model_versions` names for it, else the catalogue's; a variation the catalogue
/// does not know (a model outside it) at the model's own [`Model::version`]; each as
/// [`Model::weights_version`] says for the weights loaded.
pub fn served(model: &dyn Model, cfg: &Config) -> Vec<Served> {
    model
        .variations()
        .into_iter()
        .map(|variation| {
            let version = roar_common::catalog::served_version(
                model.name(),
                &variation,
                &cfg.processor.model_versions,
            )
            .map(|v| model.weights_version(v))
            .unwrap_or_else(|| model.version());
            Served { variation, version }
        })
        .collect()
}

/// A member of one pair's group: hands the worker the requests for its pair, passes the rest.
pub struct Member {
    worker: Arc<Worker>,
    served: Served,
    group: String,
}

impl Member {
    pub fn new(worker: Arc<Worker>, served: Served) -> Arc<Self> {
        let group = served.group(worker.model().name());
        Arc::new(Self {
            worker,
            served,
            group,
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    fn mine(&self, req: &JobRequested) -> bool {
        req.variation == self.served.variation && req.model_version == self.served.version
    }
}

#[async_trait]
impl Handler for Member {
    async fn handle(&self, d: &Delivery, cancel: &CancellationToken) -> Result<(), HandleError> {
        // Undecodable: every group says so (each letter names its group); nothing is run.
        let req: JobRequested = d.decode()?;
        if !self.mine(&req) {
            return Ok(());
        }
        self.worker.handle(d, req, cancel, &self.group).await
    }

    async fn dead_lettered(
        &self,
        d: &Delivery,
        kind: DeadLetterKind,
        reason: &str,
    ) -> Result<(), HandleError> {
        match d.decode::<JobRequested>() {
            Ok(req) if self.mine(&req) => self.worker.dead_lettered(&req, kind, reason).await,
            _ => Ok(()),
        }
    }
}
