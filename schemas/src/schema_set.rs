//! The schemas an event type can be read with, and why a message could not be decoded: what
//! the event types (`events`) and the wire format ([`crate::wire`]) both need, so neither
//! depends on the other for it.

use apache_avro::rabin::Rabin;
use apache_avro::{GenericSingleObjectReader, Schema};

/// Why a message could not be decoded. None of these can succeed on retry: the message belongs
/// in the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an avro single-object message (need marker C3 01 and a fingerprint)")]
    NotSingleObject,
    #[error("unknown schema fingerprint {fingerprint} for {expected}: written by a newer or foreign producer")]
    UnknownSchema {
        fingerprint: String,
        expected: &'static str,
    },
    #[error("avro datum does not match its schema: {0}")]
    Avro(String),
    #[error("event shape: {0}")]
    Shape(String),
    #[error("unknown event variant {0}")]
    UnknownVariant(String),
}

impl DecodeError {
    /// Decoding is deterministic: retrying the same bytes never helps.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The current schema of one event type and every schema version it can read.
pub struct SchemaSet {
    pub current: Schema,
    pub current_fingerprint: [u8; 8],
    /// Each readable version with a reader that resolved its named types once: resolving them
    /// again for every message was a measurable share of the projector's CPU.
    writers: Vec<([u8; 8], Schema, GenericSingleObjectReader)>,
}

impl SchemaSet {
    /// Parses compiled-in schema texts. They are committed files covered by tests, so a parse
    /// failure is a build defect, not a runtime condition.
    pub(crate) fn new(current: &str, history: &[&str]) -> Self {
        let current = Schema::parse_str(current).expect("committed avro schema parses");
        let current_fingerprint = fingerprint(&current);
        let reader = |s: &Schema| {
            GenericSingleObjectReader::new(s.clone()).expect("committed avro schema resolves")
        };
        let mut writers = vec![(current_fingerprint, current.clone(), reader(&current))];
        for text in history {
            let s = Schema::parse_str(text).expect("committed avro history schema parses");
            let fp = fingerprint(&s);
            if !writers.iter().any(|(f, _, _)| *f == fp) {
                let r = reader(&s);
                writers.push((fp, s, r));
            }
        }
        Self {
            current,
            current_fingerprint,
            writers,
        }
    }

    /// Every schema version this build can read, current first.
    pub fn readable(&self) -> impl Iterator<Item = &Schema> {
        self.writers.iter().map(|(_, s, _)| s)
    }

    /// The writer schema of fingerprint `fp`, if this build can read it.
    pub(crate) fn writer(&self, fp: &[u8]) -> Option<&Schema> {
        self.writers
            .iter()
            .find(|(f, _, _)| f.as_slice() == fp)
            .map(|(_, s, _)| s)
    }

    pub(crate) fn reader(&self, fp: &[u8]) -> Option<&GenericSingleObjectReader> {
        self.writers
            .iter()
            .find(|(f, _, _)| f.as_slice() == fp)
            .map(|(_, _, r)| r)
    }
}

/// The CRC-64-AVRO fingerprint of a schema's parsing canonical form, little-endian.
pub fn fingerprint(schema: &Schema) -> [u8; 8] {
    let fp = schema.fingerprint::<Rabin>();
    let mut out = [0u8; 8];
    out.copy_from_slice(&fp.bytes[..8]);
    out
}
