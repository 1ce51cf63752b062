//! The projection service: consumes `roar.files.v1`, `roar.job-events.v1`, `roar.pipelines.v1` and every model's
//! `roar.jobs.<model>.v1` (a request is what queues a job) and keeps the Postgres read model
//! behind `/status`, `/songs` and the admin views. Each batch of events and the consumed offsets
//! are written in one transaction, and on start the projector seeks to the offsets stored there,
//! so every event takes effect exactly once; Kafka's committed offsets are informational. The
//! state machine ([`apply`]) tolerates duplicates and any arrival order. It also reports what it
//! sees of the whole pipeline ([`observe`]: queue depth, consumer lag, dead letters).
//! [`pipeline`] is the pipelines' process manager (`roar pipeline`): it keeps its own state in
//! the same database (its tables, migrated with the read model's) and turns job outcomes into
//! the next steps' requests.

//!
//! Modules, each using only those above it (no cycles): [`db`], [`error`]; `event` (what a
//! delivery decodes to); [`apply`] (the state machine over rows); `offsets` (every statement on
//! `projector_offsets`); [`keys`] (per-file data keys: sealing and crypto-shredding); `rows`
//! (upserts and history rows); `batch` (one transaction per batch, with its offsets); [`lag`];
//! `projector` (the loop); `rebuild`; [`store`] (the read side, [`ReadModel`]). The crate emits
//! nothing but its own bookkeeping: `roar replay`'s requests come from the orchestrator's
//! commands.

pub mod apply;
mod batch;
pub mod db;
pub mod error;
mod event;
pub mod keys;
pub mod lag;
pub mod observe;
mod offsets;
pub mod pipeline;
pub mod pipelines;
mod projector;
mod rebuild;
mod rows;
pub mod store;

pub use apply::{FileRow, JobRow};
pub use batch::{GROUP, NOTIFY_CHANNEL};
pub use db::{connect, migrate};
pub use error::ProjectionError;
pub use event::{projected_topics, queued_from_request};
pub use pipelines::{PipelineRow, PipelineStepRow};
pub use projector::run;
pub use rebuild::{purge_retired, rebuild, RebuildReport, REBUILD_SCHEMA, RETIRED_SCHEMA};
pub use store::{Commits, ReadModel};
