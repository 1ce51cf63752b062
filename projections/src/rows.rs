//! Writing read-model rows: file and job upserts and the batch's history rows.

use roar_common::kafka::Delivery;
use serde_json::Value;
use sqlx::{Postgres, Transaction};

use crate::apply::{FileRow, JobRow};
use crate::event::Decoded;

const FILE_COLUMNS: &[&str] = &[
    "owner",
    "filename",
    "mime",
    "size",
    "sha256",
    "storage_key",
    "status",
    "error_code",
    "error_message",
    "probe",
    "request_ids",
    "created_at",
    "updated_at",
    "generation",
];
const JOB_COLUMNS: &[&str] = &[
    "owner",
    "model_version",
    "params",
    "status",
    "skipped",
    "progress",
    "message",
    "attempt",
    "error_code",
    "error_message",
    "retryable",
    "outputs",
    "request_id",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "requested_at",
    "input_job_id",
    "input_model",
    "input_variation",
    "input_output",
];

/// `INSERT … SELECT * FROM jsonb_populate_recordset(…) ON CONFLICT DO UPDATE`: every row of a
/// batch in one statement, however many there are. Rows go in key order so that two writers
/// never wait on each other in opposite orders.
fn upsert_sql(table: &str, key: &str, columns: &[&str]) -> String {
    let cols = columns.join(", ");
    let excluded = columns
        .iter()
        .map(|c| format!("EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb)
         ORDER BY {key}
         ON CONFLICT ({key}) DO UPDATE SET ({cols}) = ROW({excluded})"
    )
}

pub(crate) async fn upsert_files(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&FileRow],
) -> Result<(), sqlx::Error> {
    upsert(tx, &upsert_sql("files", "file_id", FILE_COLUMNS), rows).await
}

pub(crate) async fn upsert_jobs(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&JobRow],
) -> Result<(), sqlx::Error> {
    upsert(tx, &upsert_sql("jobs", "job_id", JOB_COLUMNS), rows).await
}

async fn upsert<T: serde::Serialize>(
    tx: &mut Transaction<'_, Postgres>,
    sql: &str,
    rows: &[&T],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut json = serde_json::to_value(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    scrub_json(&mut json);
    sqlx::query(sql).bind(json).execute(&mut **tx).await?;
    Ok(())
}

/// PostgreSQL text and jsonb cannot hold NUL (U+0000): a row carrying one fails its whole
/// batch, and alone it would be dead-lettered although the event is valid. The read model
/// shows U+FFFD in its place; the history's `payload` keeps the event's exact bytes.
fn scrub(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// [`scrub`] over every string and object key of a JSON value.
fn scrub_json(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => *s = scrub(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_json),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (scrub(&k), v))
                    .collect();
            }
            map.values_mut().for_each(scrub_json);
        }
        _ => {}
    }
}

/// The history rows of a batch, inserted with one statement.
#[derive(Default)]
pub(crate) struct History {
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    event_id: Vec<String>,
    file_id: Vec<String>,
    job_id: Vec<Option<String>>,
    kind: Vec<String>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    request_id: Vec<String>,
    body: Vec<String>,
    payload: Vec<Vec<u8>>,
}

impl History {
    pub(crate) fn push(&mut self, d: &Delivery, ev: &Decoded) {
        let meta = ev.meta();
        let (file_id, job_id, body) = match ev {
            Decoded::File(e) => (&e.file_id, None, serde_json::to_value(&e.body)),
            Decoded::Job(e, _) => (&e.file_id, Some(e.job_id.clone()), serde_json::to_value(e)),
            Decoded::Pipeline(e) => (&e.file_id, None, serde_json::to_value(e)),
        };
        let body = body.map(|mut v| {
            scrub_json(&mut v);
            v.to_string()
        });
        self.topic.push(scrub(&d.topic));
        self.partition.push(d.partition);
        self.offset.push(d.offset);
        self.event_id.push(scrub(&meta.event_id));
        self.file_id.push(scrub(file_id));
        self.job_id.push(job_id.as_deref().map(scrub));
        self.kind.push(ev.kind().to_string());
        self.occurred_at.push(meta.occurred_at);
        self.request_id.push(scrub(&meta.request_id));
        self.body.push(body.unwrap_or_else(|_| "null".into()));
        self.payload.push(d.payload.clone().unwrap_or_default());
    }

    pub(crate) async fn insert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), sqlx::Error> {
        if self.topic.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO events (topic, partition, \"offset\", event_id, file_id, job_id, kind, occurred_at, request_id, body, payload)
             SELECT t, p, o, e, f, j, k, a, r, b::jsonb, y FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::text[],
               $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::bytea[])
               AS x(t,p,o,e,f,j,k,a,r,b,y)
             ON CONFLICT (topic, partition, \"offset\") DO NOTHING",
        )
        .bind(&self.topic)
        .bind(&self.partition)
        .bind(&self.offset)
        .bind(&self.event_id)
        .bind(&self.file_id)
        .bind(&self.job_id)
        .bind(&self.kind)
        .bind(&self.occurred_at)
        .bind(&self.request_id)
        .bind(&self.body)
        .bind(&self.payload)
        .execute(&mut **tx)
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_replaced_everywhere_and_nothing_else_changes() {
        let mut v = json!({
            "a\u{0}": ["x\u{0}y", 1, null, {"k": "\u{0}"}],
            "b": "naïve\ttext",
        });
        scrub_json(&mut v);
        assert_eq!(
            v,
            json!({
                "a\u{FFFD}": ["x\u{FFFD}y", 1, null, {"k": "\u{FFFD}"}],
                "b": "naïve\ttext",
            })
        );
        assert!(!v.to_string().contains("\\u0000"));
        assert_eq!(scrub("ok"), "ok");
    }
}
