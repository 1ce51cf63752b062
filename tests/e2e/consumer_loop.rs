//! The shared consumer loop (`roar_common::kafka::run_consumer`) against a real broker: a
//! handler that panics on one message. The panic must not end the loop (a restarted loop would
//! meet the same message and crash again, blocking the partition): the message goes to the
//! dead-letter topic with kind `panicked`, the handler ends its work (`dead_lettered`), and the
//! messages after it are handled and committed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use roar_common::kafka::{
    ensure_topics, run_consumer, ConsumerSpec, Delivery, EventProducer, HandleError, Handler,
};
use roar_schemas::topics::{TopicSpec, DLQ};
use roar_schemas::{DeadLetter, DeadLetterKind};
use tokio_util::sync::CancellationToken;

use crate::support::{raw_producer, Infra};

const TOPIC: &str = "roar.test.consumer-loop.v1";
const GROUP: &str = "roar-test-consumer-loop";

/// Panics on offset 1, as a handler with a bug would; records what it saw.
#[derive(Default)]
struct PanicsOnSecond {
    handled: Mutex<Vec<i64>>,
    ended: Mutex<Vec<(i64, DeadLetterKind)>>,
}

#[async_trait]
impl Handler for PanicsOnSecond {
    async fn handle(&self, d: &Delivery, _: &CancellationToken) -> Result<(), HandleError> {
        if d.offset == 1 {
            panic!("handler bug at offset {}", d.offset);
        }
        self.handled.lock().unwrap().push(d.offset);
        Ok(())
    }

    async fn dead_lettered(
        &self,
        d: &Delivery,
        kind: DeadLetterKind,
        _reason: &str,
    ) -> Result<(), HandleError> {
        self.ended.lock().unwrap().push((d.offset, kind));
        Ok(())
    }
}

/// The group's committed position on partition 0, as a fresh client sees it.
fn committed(brokers: &str) -> Offset {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", GROUP)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(TOPIC, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.find_partition(TOPIC, 0).unwrap().offset()
}

async fn first_dead_letter(brokers: &str) -> DeadLetter {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-dlq-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[DLQ]).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("a dead letter within 30 s")
        .unwrap();
    roar_schemas::decode(rdkafka::Message::payload(&m).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_dead_letters_its_message_and_the_loop_goes_on() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    // No periodic commit within the test: only the loop's final commit moves the position.
    cfg.kafka.commit_interval_ms = 3_600_000;
    let mut specs = roar_schemas::topics::all(1);
    specs.retain(|s| s.name == DLQ);
    specs.push(TopicSpec {
        name: TOPIC.into(),
        key: "none",
        partitions: 1,
        retention_ms: -1,
    });
    ensure_topics(&cfg.kafka, &specs, Duration::from_secs(30))
        .await
        .unwrap();
    let raw = raw_producer(&infra);
    for i in 0..3 {
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
        fetch_wait_ms: cfg.processor.fetch_wait_ms,
    };
    let producer = EventProducer::new(&cfg.kafka).unwrap();
    let handler = Arc::new(PanicsOnSecond::default());
    let cancel = CancellationToken::new();
    let run = tokio::spawn(run_consumer(
        consumer,
        handler.clone(),
        producer,
        cancel.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handler.handled.lock().unwrap().len() < 2 {
        assert!(
            !run.is_finished(),
            "the loop ended early: the panic escaped"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message after the panic was not handled within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*handler.handled.lock().unwrap(), vec![0, 2]);
    assert_eq!(
        *handler.ended.lock().unwrap(),
        vec![(1, DeadLetterKind::Panicked)],
        "the panicked message's work is ended once"
    );

    let letter = first_dead_letter(&infra.broker.bootstrap()).await;
    assert_eq!(letter.source_topic, TOPIC);
    assert_eq!(letter.source_offset, 1);
    assert_eq!(letter.kind().unwrap(), DeadLetterKind::Panicked);
    assert!(
        letter.error.contains("handler bug at offset 1"),
        "{letter:?}"
    );
    assert_eq!(letter.payload.as_deref(), Some(&b"message 1"[..]));

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the loop stops on cancel")
        .expect("the loop did not panic")
        .unwrap();
    // Every message is settled (handled or dead-lettered): the position is past all three.
    assert_eq!(committed(&infra.broker.bootstrap()), Offset::Offset(3));
}
