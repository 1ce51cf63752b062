//! Dead letters for operators: the list (`GET /admin/dlq`, `roar dlq list`) and the re-drive
//! of one letter back to its source topic (`POST /admin/dlq/{id}/redrive`,
//! `roar dlq redrive <id>`), for when the cause is fixed (a store back up, a bug fixed).
//!
//! A re-drive happens once: the letter's row in `dead_letter_redrives` is inserted in the same
//! transaction that waits for the broker to take the message, so two concurrent re-drives of
//! one letter send it once (the second waits on the first's row, then finds it), and a failed
//! send leaves no row (the re-drive may be asked again). A crash between the broker's ack and
//! the commit can send it a second time: every consumer handles a redelivery (job ids and
//! outputs are deterministic, a probe rewrites the same metadata).

use chrono::{DateTime, Utc};
use roar_common::config::KafkaConfig;
use roar_common::kafka::dlq::{self, StoredLetter};
use roar_common::kafka::{EventProducer, KafkaError};
use sqlx::PgPool;

use crate::views::{DeadLetterView, RedriveView};

/// Why a list or a re-drive failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// No letter with this id is on the dead-letter topic (never, or removed by retention).
    #[error("no dead letter {0}")]
    NotFound(String),
    /// The letter kept no payload: there is nothing to send again.
    #[error("dead letter {0} has no payload to re-drive")]
    Empty(String),
    /// The broker did not answer or refused (retryable).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The read model's database did not answer (retryable).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl DlqError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DlqError::Kafka(_) | DlqError::Db(_))
    }
}

/// A letter as operators see it.
#[derive(Debug, Clone)]
pub struct Letter {
    pub stored: StoredLetter,
    pub redriven: Option<Redrive>,
}

/// Where and when a letter was sent back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Redrive {
    pub letter_id: String,
    pub redriven_at: DateTime<Utc>,
    pub actor: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Every letter on the topic, newest first, once per id (the newest copy of a message that was
/// dead-lettered twice), each with its re-drive if it had one.
pub async fn list(kafka: &KafkaConfig, pool: &PgPool) -> Result<Vec<Letter>, DlqError> {
    let mut letters = dlq::read_dead_letters(kafka).await?;
    letters.reverse();
    let mut seen = std::collections::HashSet::new();
    letters.retain(|l| seen.insert(l.id()));
    let ids: Vec<String> = letters.iter().map(StoredLetter::id).collect();
    let done: Vec<Redrive> = sqlx::query_as(
        "SELECT letter_id, redriven_at, actor, topic, \"partition\", \"offset\"
         FROM dead_letter_redrives WHERE letter_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut done: std::collections::HashMap<String, Redrive> =
        done.into_iter().map(|r| (r.letter_id.clone(), r)).collect();
    Ok(letters
        .into_iter()
        .map(|stored| Letter {
            redriven: done.remove(&stored.id()),
            stored,
        })
        .collect())
}

/// Sends letter `id` back to its source topic, once. Returns the re-drive and whether this call
/// made it (`false`: it had been re-driven before, and nothing was sent now).
pub async fn redrive(
    kafka: &KafkaConfig,
    producer: &EventProducer,
    pool: &PgPool,
    id: &str,
    actor: &str,
) -> Result<(Redrive, bool), DlqError> {
    if let Some(done) = find_redrive(pool, id).await? {
        return Ok((done, false));
    }
    let letters = dlq::read_dead_letters(kafka).await?;
    let letter = letters
        .into_iter()
        .rev()
        .find(|l| l.id() == id)
        .ok_or_else(|| DlqError::NotFound(id.to_string()))?;
    if letter.letter.payload.is_none() {
        return Err(DlqError::Empty(id.to_string()));
    }
    let mut tx = pool.begin().await?;
    // The row is claimed before the send: a concurrent re-drive of this letter blocks here
    // until this transaction ends, then finds the row and sends nothing.
    let claimed = sqlx::query(
        "INSERT INTO dead_letter_redrives (letter_id, actor, topic, \"partition\", \"offset\")
         VALUES ($1, $2, $3, -1, -1) ON CONFLICT (letter_id) DO NOTHING",
    )
    .bind(id)
    .bind(actor)
    .bind(&letter.letter.source_topic)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        tx.rollback().await?;
        let done = find_redrive(pool, id)
            .await?
            .ok_or_else(|| DlqError::NotFound(id.to_string()))?;
        return Ok((done, false));
    }
    let (partition, offset) = dlq::redrive(producer, &letter).await?;
    let done: Redrive = sqlx::query_as(
        "UPDATE dead_letter_redrives SET \"partition\" = $2, \"offset\" = $3 WHERE letter_id = $1
         RETURNING letter_id, redriven_at, actor, topic, \"partition\", \"offset\"",
    )
    .bind(id)
    .bind(partition)
    .bind(offset)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(letter_id = %id, topic = %done.topic, partition, offset, %actor, "dead letter re-driven");
    Ok((done, true))
}

async fn find_redrive(pool: &PgPool, id: &str) -> Result<Option<Redrive>, sqlx::Error> {
    sqlx::query_as(
        "SELECT letter_id, redriven_at, actor, topic, \"partition\", \"offset\"
         FROM dead_letter_redrives WHERE letter_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

// The answers of `/admin/dlq` are made from these.
impl From<&Redrive> for RedriveView {
    fn from(r: &Redrive) -> Self {
        Self {
            redriven_at: r.redriven_at,
            actor: r.actor.clone(),
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
        }
    }
}

impl From<&Letter> for DeadLetterView {
    fn from(l: &Letter) -> Self {
        let d = &l.stored.letter;
        Self {
            letter_id: l.stored.id(),
            source_topic: d.source_topic.clone(),
            source_partition: d.source_partition,
            source_offset: d.source_offset,
            consumer_group: d.consumer_group.clone(),
            kind: d.error_kind.clone(),
            error: d.error.clone(),
            key: d
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            dead_lettered_at: d.meta.occurred_at,
            redrive: l.redriven.as_ref().map(RedriveView::from),
        }
    }
}
