//! The wire format: Avro single-object encoding.
//!
//! Every Kafka message value is `C3 01` (the marker), the 8-byte little-endian CRC-64-AVRO
//! (Rabin) fingerprint of the writer's schema, then the Avro binary datum. A reader looks the
//! fingerprint up among the schema versions it knows (the current one and every committed earlier
//! version under `schemas/avro/history/`) and resolves the datum into the current schema, so old
//! data stays readable. An unknown fingerprint is a clear error, never a guess.

use apache_avro::types::Value;
use apache_avro::{to_avro_datum, Schema};

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
        let written = value.clone();
        let resolved = value
            .resolve(&set.current)
            .map_err(|e| DecodeError::Avro(e.to_string()))?;
        match set.writer(fp) {
            Some(writer) => keep_union_branches(writer, &written, &set.current, resolved)?,
            None => resolved,
        }
    };
    if !body.is_empty() {
        return Err(DecodeError::Avro(format!(
            "{} trailing bytes after the datum",
            body.len()
        )));
    }
    E::from_value(value)
}

/// apache-avro resolves a union value into the first reader branch it fits by shape, so a
/// record from an older writer can land in another record that has the same fields or fewer
/// (any record fits `FileDeleted`, whose one field has a default). Avro matches named branches
/// by name: each top-level union field whose resolved branch has another name than the written
/// one is resolved again, into the reader's branch of the written name.
fn keep_union_branches(
    writer: &Schema,
    written: &Value,
    reader: &Schema,
    resolved: Value,
) -> Result<Value, DecodeError> {
    let (Schema::Record(w), Schema::Record(r), Value::Record(wf)) = (writer, reader, written)
    else {
        return Ok(resolved);
    };
    let mut fields = match resolved {
        Value::Record(f) => f,
        other => return Ok(other),
    };
    for (name, value) in fields.iter_mut() {
        let name = name.as_str();
        let (Some(Schema::Union(wu)), Some(Schema::Union(ru))) =
            (field_schema(w, name), field_schema(r, name))
        else {
            continue;
        };
        let Some((_, Value::Union(wi, inner))) = wf.iter().find(|(n, _)| n.as_str() == name) else {
            continue;
        };
        let Some(want) = wu.variants().get(*wi as usize).and_then(branch_name) else {
            continue;
        };
        let Value::Union(ri, _) = value else {
            continue;
        };
        if ru.variants().get(*ri as usize).and_then(branch_name) == Some(want) {
            continue;
        }
        let j = ru
            .variants()
            .iter()
            .position(|v| branch_name(v) == Some(want))
            .ok_or_else(|| {
                DecodeError::Shape(format!("{name}: the current schema has no {want}"))
            })?;
        let branch = inner
            .as_ref()
            .clone()
            .resolve_schemata(&ru.variants()[j], vec![reader])
            .map_err(|e| DecodeError::Avro(e.to_string()))?;
        *value = Value::Union(j as u32, Box::new(branch));
    }
    Ok(Value::Record(fields))
}

fn field_schema<'a>(rec: &'a apache_avro::schema::RecordSchema, name: &str) -> Option<&'a Schema> {
    rec.fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| &f.schema)
}

/// The name of a named union branch (a record, inline or by reference).
fn branch_name(s: &Schema) -> Option<&str> {
    match s {
        Schema::Record(r) => Some(r.name.name.as_str()),
        Schema::Ref { name } => Some(name.name.as_str()),
        _ => None,
    }
}
