//! The runtime every model worker shares: consume a job request, run the model off the async
//! executor, write the outputs and their manifest, emit the job's events, and only then let the
//! consumer loop store the offset. Models plug in through the [`Model`] trait; cancellation and
//! worker liveness travel on the control topic.

pub mod gpu;
mod input;
mod loaded;
pub mod manifest;
mod model;
mod progress;
mod serve;
mod served;
mod song;
mod worker;

pub use loaded::Loaded;
pub use manifest::Manifest;
pub use model::{Input, Model, ModelError, OutputFile, ProgressFn, RunContext};
pub use serve::{options, serve, worker_id, RuntimeError};
pub use served::{served, Member, Served};
pub use worker::{Worker, WorkerOptions};
