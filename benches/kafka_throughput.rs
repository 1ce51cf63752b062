//! Producer and consumer-loop throughput through a real broker (tansu, in memory) on loopback.
//!
//!   cargo bench --bench kafka_throughput [-- EVENTS]
//!
//! Measures, side by side in one run: the idempotent producer awaiting each acknowledgement
//! (what a request handler does) vs. many sends in flight; then roar's at-least-once consumer
//! loop (decode → handler → store offset, partitions paused around each handler) vs. a bare
//! rdkafka consumer that only counts messages, over the same topic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use roar::stack::{find_tansu, free_port, Broker, TansuFlavor};
use roar_common::kafka::{
    ensure_topics, run_consumer, ConsumerSpec, Delivery, EventProducer, HandleError, Handler,
};
use roar_common::Config;
use roar_schemas::topics::TopicSpec;
use roar_schemas::{EventMeta, JobBody, JobEvent};
use tokio_util::sync::CancellationToken;

fn event(i: usize) -> JobEvent {
    JobEvent {
        meta: EventMeta::new(format!("req-{i}"), "bench"),
        job_id: format!("j{:032x}", i),
        file_id: format!("f{:032x}", i % 64),
        model: "pitch".into(),
        variation: "tiny".into(),
        body: JobBody::Progress {
            percent: (i % 100) as f32,
            message: "tracking pitch".into(),
        },
    }
}

struct Count(Arc<AtomicU64>);

#[async_trait]
impl Handler for Count {
    async fn handle(&self, d: &Delivery, _c: &CancellationToken) -> Result<(), HandleError> {
        let _ev: JobEvent = d.decode()?;
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn rate(n: usize, t: Duration) -> String {
    format!(
        "{:>9.0} events/s ({n} in {:.2} s)",
        n as f64 / t.as_secs_f64(),
        t.as_secs_f64()
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let tansu = find_tansu("", TansuFlavor::Memory)
        .ok_or_else(|| anyhow::anyhow!("run {}", TansuFlavor::Memory.install_command()))?;
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(
        &tansu,
        free_port()?,
        "memory://tansu/",
        &dir.path().join("log"),
    )?;
    let mut cfg = Config::default();
    cfg.kafka.brokers = broker.bootstrap();
    let topic = "bench.events.v1";
    ensure_topics(
        &cfg.kafka,
        &[TopicSpec {
            name: topic.into(),
            key: "file_id",
            partitions: 3,
            retention_ms: -1,
        }],
        Duration::from_secs(30),
    )
    .await?;
    let producer = EventProducer::new(&cfg.kafka)?;
    println!("broker: tansu (memory) on loopback; {n} JobProgress events, 3 partitions");

    let seq = n / 10;
    let t = Instant::now();
    for i in 0..seq {
        let ev = event(i);
        producer.send(topic, &ev.file_id, &ev).await?;
    }
    println!(
        "producer, one at a time (await each ack): {}",
        rate(seq, t.elapsed())
    );

    let t = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for i in seq..seq + n {
        let ev = event(i);
        let p = producer.clone();
        inflight.push(async move { p.send(topic, &ev.file_id, &ev).await });
        if inflight.len() >= 1000 {
            inflight.next().await.transpose()?;
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    println!(
        "producer, up to 1000 in flight:           {}",
        rate(n, t.elapsed())
    );
    let total = seq + n;

    let count = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let spec = ConsumerSpec {
        group: "bench-roar-loop".into(),
        topics: vec![topic.into()],
        kafka: cfg.kafka.clone(),
        fetch_wait_ms: cfg.processor.fetch_wait_ms,
    };
    let t = Instant::now();
    let task = tokio::spawn(run_consumer(
        spec,
        Arc::new(Count(count.clone())),
        producer.clone(),
        cancel.clone(),
    ));
    while count.load(Ordering::Relaxed) < total as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let loop_time = t.elapsed();
    cancel.cancel();
    task.await??;
    println!(
        "roar consumer loop (decode, store offset): {}",
        rate(total, loop_time)
    );

    let bare: StreamConsumer = roar_common::kafka::consumer_config(&cfg.kafka)
        .set("group.id", "bench-bare")
        .set("auto.offset.reset", "earliest")
        .create()?;
    bare.subscribe(&[topic])?;
    let t = Instant::now();
    let mut seen = 0;
    while seen < total {
        let m = bare.recv().await?;
        let _ev: JobEvent =
            roar_schemas::decode(rdkafka::Message::payload(&m).unwrap_or_default())?;
        seen += 1;
    }
    println!(
        "bare rdkafka consumer (decode only):       {}",
        rate(total, t.elapsed())
    );
    Ok(())
}
