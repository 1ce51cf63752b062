//! What operations watch on the broker: whether it answers (readiness), how far a consumer
//! group is behind on a topic (its committed offsets against the high watermarks), and how
//! many messages a topic holds. Every call here blocks on the network: callers run it off the
//! async executor.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{consumer_config, KafkaError};
use crate::config::KafkaConfig;

/// Clients kept between rounds: one without a group for metadata and watermarks, one per
/// watched group for its committed offsets (a group's offsets are read as that group, which
/// does not join it).
pub struct BrokerWatch {
    kafka: KafkaConfig,
    plain: BaseConsumer,
    groups: HashMap<String, BaseConsumer>,
    timeout: Duration,
}

impl BrokerWatch {
    pub fn new(kafka: &KafkaConfig, timeout: Duration) -> Result<Self, KafkaError> {
        Ok(Self {
            kafka: kafka.clone(),
            plain: consumer_config(kafka).create()?,
            groups: HashMap::new(),
            timeout,
        })
    }

    /// The broker answers a metadata request for `topic`.
    pub fn ping(&self, topic: &str) -> Result<(), KafkaError> {
        self.plain.fetch_metadata(Some(topic), self.timeout)?;
        Ok(())
    }

    /// (partition, low, high) watermarks of every partition of `topic`.
    pub fn watermarks(&self, topic: &str) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
        let md = self.plain.fetch_metadata(Some(topic), self.timeout)?;
        let mut out = Vec::new();
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = self.plain.fetch_watermarks(topic, p.id(), self.timeout)?;
            out.push((p.id(), low, high));
        }
        Ok(out)
    }

    /// Messages held on `topic` (retention and deleted records excluded).
    pub fn depth(&self, topic: &str) -> Result<i64, KafkaError> {
        Ok(self
            .watermarks(topic)?
            .iter()
            .map(|(_, low, high)| (high - low).max(0))
            .sum())
    }

    /// Messages on `topic` past what `group` has committed, summed over partitions. A partition
    /// the group never committed counts from its low watermark (where `earliest` starts).
    pub fn group_lag(&mut self, group: &str, topic: &str) -> Result<i64, KafkaError> {
        let marks = self.watermarks(topic)?;
        if !self.groups.contains_key(group) {
            let c: BaseConsumer = consumer_config(&self.kafka)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .create()?;
            self.groups.insert(group.to_string(), c);
        }
        let consumer = &self.groups[group];
        // Drains the client's event queue (errors, logs): nothing else polls it.
        let _ = consumer.poll(Duration::ZERO);
        let mut tpl = TopicPartitionList::new();
        for (p, _, _) in &marks {
            tpl.add_partition(topic, *p);
        }
        let committed = consumer.committed_offsets(tpl, self.timeout)?;
        Ok(marks
            .iter()
            .map(|(p, low, high)| {
                let at = committed
                    .find_partition(topic, *p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(*low);
                (high - at.max(*low)).max(0)
            })
            .sum())
    }
}
