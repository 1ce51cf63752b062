//! The dead-letter topic as an operator sees it: every letter on it (read from the earliest
//! offset to the end, by a reader that joins no group and commits nothing) and the re-drive of
//! one letter, whose original key and payload go back to the topic they came from. Which
//! letters were re-driven is recorded by the caller (the read model's database), so a re-drive
//! happens once however often it is asked for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use roar_schemas::topics::DLQ;
use roar_schemas::DeadLetter;

use super::{consumer_config, EventProducer, KafkaError};
use crate::config::KafkaConfig;

/// The Kafka header a re-driven message carries: the id of the letter it came from, so a
/// consumer's log (and a reader of the topic) can tell a re-drive from the original.
pub const REDRIVE_HEADER: &str = "roar-redriven-from";

/// How long one broker request (metadata, watermarks) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading the whole topic may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One letter and where it sits on the dead-letter topic.
#[derive(Debug, Clone)]
pub struct StoredLetter {
    pub partition: i32,
    pub offset: i64,
    pub letter: DeadLetter,
}

impl StoredLetter {
    /// The letter's id, `dlq-<source topic>-<partition>-<offset>`: it names the source message,
    /// so a message dead-lettered twice (by a consumer that crashed before moving on) has one.
    pub fn id(&self) -> String {
        let l = &self.letter;
        format!(
            "dlq-{}-{}-{}",
            l.source_topic, l.source_partition, l.source_offset
        )
    }
}

/// Every letter on the dead-letter topic, oldest first. A record that is not a `DeadLetter`
/// is skipped with a warning (nothing could re-drive it).
pub async fn read_dead_letters(cfg: &KafkaConfig) -> Result<Vec<StoredLetter>, KafkaError> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || read_blocking(&cfg))
        .await
        .map_err(|e| KafkaError::Read {
            topic: DLQ.into(),
            reason: e.to_string(),
        })?
}

fn read_blocking(cfg: &KafkaConfig) -> Result<Vec<StoredLetter>, KafkaError> {
    let consumer: BaseConsumer = consumer_config(cfg)
        .set(
            "group.id",
            format!("roar-dlq-reader-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(DLQ), REQUEST_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == DLQ)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(DLQ, p, REQUEST_TIMEOUT)?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(DLQ, p, Offset::Offset(low))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + READ_TIMEOUT;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(KafkaError::Read {
                topic: DLQ.into(),
                reason: format!("not read to its end within {READ_TIMEOUT:?}"),
            });
        }
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            // Offsets may have gaps (removed by retention while we read): the position says
            // whether a partition is done.
            let position = consumer.position()?;
            ends.retain(|p, end| {
                !matches!(position.find_partition(DLQ, *p).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= *end)
            });
            continue;
        };
        let m = m?;
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
        match m.payload().map(roar_schemas::decode::<DeadLetter>) {
            Some(Ok(letter)) => out.push(StoredLetter {
                partition: m.partition(),
                offset: m.offset(),
                letter,
            }),
            Some(Err(e)) => {
                tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "a record on the dead-letter topic is not a dead letter; skipped")
            }
            None => {
                tracing::warn!(
                    partition = m.partition(),
                    offset = m.offset(),
                    "an empty record on the dead-letter topic; skipped"
                )
            }
        }
    }
    Ok(out)
}

/// Puts a letter's original key and payload back on its source topic (the same key, so the
/// same partition under the default partitioner); resolves to (partition, offset) once the
/// broker has it.
pub async fn redrive(
    producer: &EventProducer,
    letter: &StoredLetter,
) -> Result<(i32, i64), KafkaError> {
    let l = &letter.letter;
    let payload = l.payload.as_deref().unwrap_or_default();
    producer
        .send_with_header(
            &l.source_topic,
            l.key.as_deref().unwrap_or_default(),
            payload,
            (REDRIVE_HEADER, &letter.id()),
        )
        .await
}
