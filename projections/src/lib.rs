//! The projection service: consumes `roar.files.v1`, `roar.job-events.v1` and every model's
//! `roar.jobs.<model>.v1` (a request is what queues a job) and keeps the
//! Postgres read model behind `/status`, `/songs` and the admin views. Each batch of events and
//! the consumed offsets are written in one transaction, and on start the projector seeks to the
//! offsets stored there, so every event takes effect exactly once; Kafka's committed offsets are
//! informational. The state machine ([`apply`]) tolerates duplicates and any arrival order.

pub mod apply;
pub mod db;
mod projector;
pub mod store;

pub use db::{connect, migrate};
pub use projector::{projected_topics, run, ProjectionError};
pub use store::ReadModel;

/// The Postgres channel notified after every committed batch (payload: the last history seq).
pub const NOTIFY_CHANNEL: &str = "roar_projection";
