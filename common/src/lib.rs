//! Plumbing every roar service shares and none owns: the model catalogue, the typed
//! configuration (defaults → file → `ROAR_` environment), telemetry (logs, OpenTelemetry spans
//! whose W3C trace context travels in the events, Prometheus metrics with their names in one
//! place), the process-wide shutdown token, Kafka producer/consumer/admin helpers built on
//! rdkafka (idempotent producer, at-least-once consumer loop with pause/resume and a dead-letter
//! topic), object storage on `object_store`, JWT auth primitives, and which secrets each role may hold.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod device;
pub mod kafka;
pub mod metrics;
pub mod roles;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod trace;

pub use config::Config;
