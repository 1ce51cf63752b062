//! The projector's consumer positions, `projector_offsets`: one row per (topic, partition)
//! holding the next offset to apply, written in the same transaction as the rows it covers.
//! Every statement on that table is in this file.

use std::collections::{BTreeMap, HashMap};

use roar_common::kafka::Delivery;
use sqlx::{PgPool, Postgres, Transaction};

/// The table's name (the rebuild moves it with the other tables).
pub(crate) const TABLE: &str = "projector_offsets";

/// (topic, partition) → next offset to apply.
pub(crate) type Positions = HashMap<(String, i32), i64>;

/// Creates a row at position 0 for every partition that has none, so every batch can lock
/// its partitions' rows.
pub(crate) async fn ensure(pool: &PgPool, partitions: &[(String, i32)]) -> Result<(), sqlx::Error> {
    let (topics, parts): (Vec<String>, Vec<i32>) = partitions.iter().cloned().unzip();
    sqlx::query(
        "INSERT INTO projector_offsets (topic, partition, next_offset)
         SELECT t, p, 0 FROM UNNEST($1::text[], $2::int[]) AS x(t, p)
         ON CONFLICT (topic, partition) DO NOTHING",
    )
    .bind(&topics)
    .bind(&parts)
    .execute(pool)
    .await
    .map(|_| ())
}

/// The positions stored in `pool`'s schema.
pub(crate) async fn stored(pool: &PgPool) -> Result<Positions, sqlx::Error> {
    let rows: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition, next_offset FROM projector_offsets")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// Events applied in all: the sum of the stored positions (every topic starting empty). One
/// row per partition, so polling it costs nothing like a `count(*)` over the history.
pub(crate) async fn applied_total(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(sum(next_offset), 0)::bigint FROM projector_offsets")
        .fetch_one(pool)
        .await
}

/// The positions as `tx` sees them.
pub(crate) async fn stored_in_tx(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<Positions, sqlx::Error> {
    let rows: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition, next_offset FROM projector_offsets")
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// Whether the message at (`topic`, `partition`, `offset`) has been applied.
pub(crate) async fn has_applied(
    pool: &PgPool,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<bool, sqlx::Error> {
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT next_offset FROM projector_offsets WHERE topic = $1 AND partition = $2",
    )
    .bind(topic)
    .bind(partition)
    .fetch_optional(pool)
    .await?;
    Ok(next.is_some_and(|n| n > offset))
}

/// Holds every live batch until `tx` ends: batches lock their offset rows first, so they wait,
/// while plain reads of the model go on.
pub(crate) async fn hold_batches(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("LOCK TABLE projector_offsets IN EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Locks the batch's offset rows and returns the deliveries the model does not hold yet.
pub(crate) async fn lock_and_filter<'a>(
    tx: &mut Transaction<'_, Postgres>,
    batch: &'a [Delivery],
) -> Result<Vec<&'a Delivery>, sqlx::Error> {
    let mut keys: Vec<(String, i32)> = batch
        .iter()
        .map(|d| (d.topic.clone(), d.partition))
        .collect();
    keys.sort();
    keys.dedup();
    let topics: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
    let parts: Vec<i32> = keys.iter().map(|k| k.1).collect();
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT o.topic, o.partition, o.next_offset FROM projector_offsets o
         JOIN UNNEST($1::text[], $2::int[]) AS k(topic, partition) USING (topic, partition)
         ORDER BY o.topic, o.partition FOR UPDATE OF o",
    )
    .bind(&topics)
    .bind(&parts)
    .fetch_all(&mut **tx)
    .await?;
    let next: Positions = rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
    Ok(batch
        .iter()
        .filter(|d| {
            next.get(&(d.topic.clone(), d.partition))
                .is_none_or(|n| d.offset >= *n)
        })
        .collect())
}

/// Moves each partition of `batch` past its last delivery (never backwards).
pub(crate) async fn store(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[Delivery],
) -> Result<(), sqlx::Error> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for d in batch {
        let e = next.entry((d.topic.clone(), d.partition)).or_insert(0);
        *e = (*e).max(d.offset + 1);
    }
    let (keys, offsets): (Vec<_>, Vec<i64>) = next.into_iter().unzip();
    let (topics, parts): (Vec<String>, Vec<i32>) = keys.into_iter().unzip();
    sqlx::query(
        "INSERT INTO projector_offsets (topic, partition, next_offset, updated_at)
         SELECT t, p, o, now() FROM UNNEST($1::text[], $2::int[], $3::bigint[]) AS x(t, p, o)
         ON CONFLICT (topic, partition) DO UPDATE
           SET next_offset = GREATEST(projector_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()",
    )
    .bind(&topics)
    .bind(&parts)
    .bind(&offsets)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves a partition past one delivery without applying it (after it went to the DLQ).
pub(crate) async fn skip(pool: &PgPool, d: &Delivery) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    store(&mut tx, std::slice::from_ref(d)).await?;
    tx.commit().await
}
