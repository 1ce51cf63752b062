//! The projection service: consumes `roar.files.v1`, `roar.job-events.v1` and every model's
//! `roar.jobs.<model>.v1` (a request is what queues a job) and keeps the Postgres read model
//! behind `/status`, `/songs` and the admin views. Each batch of events and the consumed offsets
//! are written in one transaction, and on start the projector seeks to the offsets stored there,
//! so every event takes effect exactly once; Kafka's committed offsets are informational. The
//! state machine ([`apply`]) tolerates duplicates and any arrival order.

pub mod apply;
mod batch;
pub mod db;
pub mod lag;
mod projector;
mod rebuild;
pub mod replay;
mod rows;
pub mod store;

pub use db::{connect, migrate};
pub use projector::{projected_topics, run, ProjectionError};
pub use rebuild::{rebuild, RebuildReport, REBUILD_SCHEMA, RETIRED_SCHEMA};
pub use store::ReadModel;

/// The Postgres channel notified after every committed batch.
pub const NOTIFY_CHANNEL: &str = "roar_projection";

/// The projector's name in Kafka (committed offsets, dead letters).
pub const GROUP: &str = "roar-projector";
