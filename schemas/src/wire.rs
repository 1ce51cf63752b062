//! The wire format: Avro single-object encoding.
//!
//! Every Kafka message value is `C3 01` (the marker), the 8-byte little-endian CRC-64-AVRO
//! (Rabin) fingerprint of the writer's schema, then the Avro binary datum. A reader looks the
//! fingerprint up among the schema versions it knows (the current one and every committed earlier
//! version under `schemas/avro/history/`) and resolves the datum into the current schema, so old
//! data stays readable. An unknown fingerprint is a clear error, never a guess.

use apache_avro::rabin::Rabin;
use apache_avro::{to_avro_datum, GenericSingleObjectReader, Schema};

use crate::events::Event;

const MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

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

    fn reader(&self, fp: &[u8]) -> Option<&GenericSingleObjectReader> {
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

/// Encodes an event with its current schema.
pub fn encode<E: Event>(event: &E) -> Vec<u8> {
    let set = E::schemas();
    let datum = to_avro_datum(&set.current, event.to_value())
        // The value is built by our own code from typed fields: a mismatch is a programming
        // error that the round-trip tests catch for every event.
        .expect("event value matches its own schema");
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&set.current_fingerprint);
    out.extend_from_slice(&datum);
    out
}

/// Decodes an event written with the current schema or any committed earlier version.
pub fn decode<E: Event>(bytes: &[u8]) -> Result<E, DecodeError> {
    if bytes.len() < HEADER_LEN || bytes[..2] != MARKER {
        return Err(DecodeError::NotSingleObject);
    }
    let set = E::schemas();
    let fp = &bytes[2..HEADER_LEN];
    let reader = set.reader(fp).ok_or_else(|| DecodeError::UnknownSchema {
        fingerprint: hex::encode(fp),
        expected: E::NAME,
    })?;
    // The reader checks the header again and decodes the datum after it.
    let mut body = bytes;
    let value = reader
        .read_value(&mut body)
        .map_err(|e| DecodeError::Avro(e.to_string()))?;
    // Resolution is needed only for older writers; skipping it for the current schema is both
    // faster and keeps union branches exactly as written.
    let value = if fp == set.current_fingerprint.as_slice() {
        value
    } else {
        value
            .resolve(&set.current)
            .map_err(|e| DecodeError::Avro(e.to_string()))?
    };
    if !body.is_empty() {
        return Err(DecodeError::Avro(format!(
            "{} trailing bytes after the datum",
            body.len()
        )));
    }
    E::from_value(value)
}
