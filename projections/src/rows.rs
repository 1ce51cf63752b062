//! Writing read-model rows: file and job upserts and the batch's history rows.

use roar_common::kafka::Delivery;
use roar_schemas::FileEvent;
use sqlx::{Postgres, Transaction};

use crate::apply::{FileRow, JobRow};
use crate::batch::Decoded;

pub(crate) async fn upsert_file(tx: &mut Transaction<'_, Postgres>, r: &FileRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO files (file_id, owner, filename, mime, size, sha256, storage_key, status, error_code,
                            error_message, probe, request_ids, created_at, updated_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)
         ON CONFLICT (file_id) DO UPDATE SET owner=$2, filename=$3, mime=$4, size=$5, sha256=$6,
           storage_key=$7, status=$8, error_code=$9, error_message=$10, probe=$11, request_ids=$12,
           created_at=$13, updated_at=$14",
    )
    .bind(&r.file_id)
    .bind(&r.owner)
    .bind(&r.filename)
    .bind(&r.mime)
    .bind(r.size)
    .bind(&r.sha256)
    .bind(&r.storage_key)
    .bind(&r.status)
    .bind(&r.error_code)
    .bind(&r.error_message)
    .bind(&r.probe)
    .bind(&r.request_ids)
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

pub(crate) async fn upsert_job(tx: &mut Transaction<'_, Postgres>, r: &JobRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO jobs (job_id, file_id, owner, model, variation, model_version, params, status, skipped,
                           progress, message, attempt, error_code, error_message, retryable, outputs,
                           request_id, created_at, started_at, finished_at, updated_at, requested_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)
         ON CONFLICT (job_id) DO UPDATE SET owner=$3, model_version=$6, params=$7, status=$8, skipped=$9,
           progress=$10, message=$11, attempt=$12, error_code=$13, error_message=$14, retryable=$15,
           outputs=$16, request_id=$17, created_at=$18, started_at=$19, finished_at=$20, updated_at=$21,
           requested_at=$22",
    )
    .bind(&r.job_id)
    .bind(&r.file_id)
    .bind(&r.owner)
    .bind(&r.model)
    .bind(&r.variation)
    .bind(&r.model_version)
    .bind(&r.params)
    .bind(&r.status)
    .bind(r.skipped)
    .bind(r.progress)
    .bind(&r.message)
    .bind(r.attempt)
    .bind(&r.error_code)
    .bind(&r.error_message)
    .bind(r.retryable)
    .bind(&r.outputs)
    .bind(&r.request_id)
    .bind(r.created_at)
    .bind(r.started_at)
    .bind(r.finished_at)
    .bind(r.updated_at)
    .bind(r.requested_at)
    .execute(&mut **tx)
    .await
    .map(|_| ())
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
        let (meta, file_id, job_id, kind, body) = match ev {
            Decoded::File(e) => (
                &e.meta,
                &e.file_id,
                None,
                file_kind(e),
                serde_json::to_string(&e.body),
            ),
            Decoded::Job(e) => (
                &e.meta,
                &e.file_id,
                Some(e.job_id.clone()),
                e.body.kind().to_string(),
                serde_json::to_string(e),
            ),
        };
        self.topic.push(d.topic.clone());
        self.partition.push(d.partition);
        self.offset.push(d.offset);
        self.event_id.push(meta.event_id.clone());
        self.file_id.push(file_id.clone());
        self.job_id.push(job_id);
        self.kind.push(kind);
        self.occurred_at.push(meta.occurred_at);
        self.request_id.push(meta.request_id.clone());
        self.body.push(body.unwrap_or_else(|_| "null".into()));
        self.payload.push(d.payload.clone().unwrap_or_default());
    }

    pub(crate) async fn insert(&self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
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

pub(crate) fn file_kind(e: &FileEvent) -> String {
    use roar_schemas::FileBody::*;
    match e.body {
        Registered { .. } => "file_registered",
        Uploaded(_) => "file_uploaded",
        Probed(_) => "file_probed",
        ProbeFailed { .. } => "file_probe_failed",
        Deleted { .. } => "file_deleted",
    }
    .to_string()
}

