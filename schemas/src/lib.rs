//! The roar event contract. This crate owns the Avro schemas (`schemas/avro/*.avsc`), the Rust
//! types for every event, the wire format (Avro single-object encoding, see [`wire`]), the topic
//! registry and the id derivations. It depends on little, so downstream analytics consumers can
//! decode roar's topics with this crate alone. `README.md` says which role produces and which
//! consumes each event.

mod avro;
pub mod events;
pub mod ids;
pub mod pipeline;
mod schema_set;
pub mod topics;
pub mod trace;
pub mod vocab;
pub mod wire;

pub use events::*;
pub use pipeline::*;
pub use vocab::{DeadLetterKind, FileStatus, JobEventKind, JobStatus, UnknownWord};
pub use wire::{decode, encode, DecodeError};

/// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
