//! The shared consumer loop (`roar_common::kafka::run_consumer`) against a real broker: what it
//! commits when an iteration does not end normally. The loop's own final commit is skipped by a
//! panic; what commits then is the consumer's close (auto-commit on, offsets stored by hand).
//! This pins that: a change to the commit settings that lost finished work on a crash fails here.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use roar_common::kafka::{
    ensure_topics, run_consumer, ConsumerSpec, Delivery, EventProducer, HandleError, Handler,
};
use roar_schemas::topics::TopicSpec;
use tokio_util::sync::CancellationToken;

use crate::support::{raw_producer, Infra};

const TOPIC: &str = "roar.test.consumer-loop.v1";
const GROUP: &str = "roar-test-consumer-loop";

/// Handles the first message and panics on the second, as a handler with a bug would.
struct PanicsOnSecond;

#[async_trait]
impl Handler for PanicsOnSecond {
    async fn handle(&self, d: &Delivery, _: &CancellationToken) -> Result<(), HandleError> {
        if d.offset >= 1 {
            panic!("handler bug at offset {}", d.offset);
        }
        Ok(())
    }
}

/// The group's committed position on partition 0, as a fresh client sees it.
fn committed(brokers: &str) -> Offset {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", GROUP)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(TOPIC, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.find_partition(TOPIC, 0).unwrap().offset()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_still_leaves_the_finished_messages_committed() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No periodic commit within the test: only the loop's final commit can move the position.
    cfg.kafka.commit_interval_ms = 3_600_000;
    let spec = TopicSpec {
        name: TOPIC.into(),
        key: "none",
        partitions: 1,
        retention_ms: -1,
    };
    ensure_topics(&cfg.kafka, &[spec], Duration::from_secs(30))
        .await
        .unwrap();
    let raw = raw_producer(&infra);
    for i in 0..2 {
        let payload = format!("message {i}");
        raw.send(
            rdkafka::producer::FutureRecord::to(TOPIC)
                .key("k")
                .payload(&payload)
                .partition(0),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }

    let consumer = ConsumerSpec {
        group: GROUP.into(),
        topics: vec![TOPIC.into()],
        kafka: cfg.kafka.clone(),
    };
    let producer = EventProducer::new(&cfg.kafka).unwrap();
    let run = tokio::spawn(run_consumer(
        consumer,
        Arc::new(PanicsOnSecond),
        producer,
        CancellationToken::new(),
    ));
    let ended = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the loop ends when its handler panics");
    assert!(ended.is_err_and(|e| e.is_panic()), "the panic propagates");

    // Message 0 was handled and its offset stored; message 1 was not finished.
    assert_eq!(committed(&infra.broker.bootstrap()), Offset::Offset(1));
}
