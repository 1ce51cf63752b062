//! The wire format: Avro single-object encoding.
//!
//! Every Kafka message value is `C3 01` (the marker), the 8-byte little-endian CRC-64-AVRO
//! (Rabin) fingerprint of the writer's schema, then the Avro binary datum. A reader looks the
//! fingerprint up among the schema versions it knows (the current one and every committed earlier
//! version under `schemas/avro/history/`) and resolves the datum into the current schema, so old
//! data stays readable. An unknown fingerprint is a clear error, never a guess.

use apache_avro::to_avro_datum;

use crate::events::Event;
pub use crate::schema_set::{fingerprint, DecodeError, SchemaSet};

const MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// The most bytes, or items, that one length or count inside a message may claim. A message is
/// far smaller (brokers refuse more than a few MiB), so a larger claim is a lie. apache-avro's
/// own default, 512 Mi counted in items, let a 60-byte message make the decoder reserve tens of
/// GiB for an array and abort the process. The limit is process-wide and set before the first
/// decode.
pub const MAX_CLAIM: usize = 4 << 20;

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
    apache_avro::util::max_allocation_bytes(MAX_CLAIM);
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
