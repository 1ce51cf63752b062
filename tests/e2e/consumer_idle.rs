//! The idle pause of the shared consumer loop (`kafka.idle_pause_ms`) against a real broker.
//! An idle member pauses its partitions, so an event another process produced waits for the
//! next peek, while an event this process produces wakes the member at once: the pause costs
//! `roar dev` (one process) no latency.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use roar_common::kafka::{
    ensure_topics, run_consumer, ConsumerSpec, Delivery, EventProducer, HandleError, Handler,
};
use roar_schemas::topics::TopicSpec;
use tokio_util::sync::CancellationToken;

use crate::support::{raw_producer, Infra};

const TOPIC: &str = "roar.test.consumer-idle.v1";

#[derive(Default)]
struct Records(Mutex<Vec<Vec<u8>>>);

#[async_trait]
impl Handler for Records {
    async fn handle(&self, d: &Delivery, _: &CancellationToken) -> Result<(), HandleError> {
        self.0
            .lock()
            .unwrap()
            .push(d.payload.clone().unwrap_or_default());
        Ok(())
    }
}

impl Records {
    fn seen(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    async fn wait_for(&self, n: usize, within: Duration, what: &str) {
        let deadline = tokio::time::Instant::now() + within;
        while self.0.lock().unwrap().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: handled only {:?}",
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_member_pauses_and_this_process_s_event_wakes_it() {
    let infra = Infra::start().await;
    let mut cfg = infra.config();
    cfg.kafka.idle_pause_ms = Some(1000);
    // Far beyond the test: only a wake-up can deliver an event to the paused member.
    cfg.kafka.idle_peek_ms = 600_000;
    let spec = TopicSpec {
        name: TOPIC.into(),
        key: "none",
        partitions: 1,
        retention_ms: -1,
    };
    ensure_topics(&cfg.kafka, &[spec], Duration::from_secs(30))
        .await
        .unwrap();
    let producer = EventProducer::new(&cfg.kafka).unwrap();
    let handler = Arc::new(Records::default());
    let cancel = CancellationToken::new();
    let run = tokio::spawn(run_consumer(
        ConsumerSpec {
            group: "roar-test-consumer-idle".into(),
            topics: vec![TOPIC.into()],
            kafka: cfg.kafka.clone(),
            fetch_wait_ms: cfg.processor.fetch_wait_ms,
        },
        handler.clone(),
        producer.clone(),
        cancel.clone(),
    ));

    // Joined and fetching: the first event arrives.
    producer.send_raw(TOPIC, b"k", b"first").await.unwrap();
    handler
        .wait_for(1, Duration::from_secs(60), "the first event")
        .await;

    // Idle for five pause periods: paused (the first event's own wake-up costs one more
    // period). An event from another producer (as from another process) is not fetched while
    // paused.
    tokio::time::sleep(Duration::from_secs(5)).await;
    raw_producer(&infra)
        .send(
            rdkafka::producer::FutureRecord::to(TOPIC)
                .key("k")
                .payload("foreign"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        handler.seen(),
        ["first"],
        "the idle member kept fetching: it was not paused"
    );

    // This process produces: the member wakes and reads both, in order.
    producer.send_raw(TOPIC, b"k", b"woken").await.unwrap();
    handler
        .wait_for(3, Duration::from_secs(20), "after the wake-up")
        .await;
    assert_eq!(handler.seen(), ["first", "foreign", "woken"]);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the loop stops on cancel")
        .expect("the loop did not panic")
        .unwrap();
}
