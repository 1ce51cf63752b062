//! The shared consumer loop under shutdown and rebalance, against a real tansu broker: a
//! retryable failure during shutdown stays on its partition (not in the DLQ), a member never
//! commits offsets of a partition it lost, and messages it fetched for a lost partition are
//! dropped rather than processed (the new owner reads them).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use roar::stack::{find_tansu, free_port, Broker, TansuFlavor};
use roar_common::config::KafkaConfig;
use roar_common::kafka::{
    ensure_topics, run_consumer, ConsumerSpec, Delivery, EventProducer, HandleError, Handler,
};
use roar_schemas::topics::{TopicSpec, DLQ};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "loop.test.v1";
const GROUP: &str = "loop-test";

struct Kafka {
    broker: Broker,
    _dir: tempfile::TempDir,
}

impl Kafka {
    async fn start(partitions: i32) -> Kafka {
        let dir = tempfile::tempdir().unwrap();
        let tansu = find_tansu(
            &std::env::var("ROAR_DEV__TANSU_BIN").unwrap_or_default(),
            TansuFlavor::Memory,
        )
        .expect("tansu is installed (scripts/install-tansu.sh)");
        let broker = start_broker(&tansu, dir.path());
        let k = Kafka { broker, _dir: dir };
        let specs = [TOPIC, DLQ].map(|name| TopicSpec {
            name: name.into(),
            key: "test",
            partitions: if name == TOPIC { partitions } else { 1 },
            retention_ms: -1,
        });
        ensure_topics(&k.config(), &specs, Duration::from_secs(30))
            .await
            .unwrap();
        k
    }

    fn config(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.broker.bootstrap(),
            session_timeout_ms: 6000,
            commit_interval_ms: 200,
            max_handler_attempts: 3,
            ..KafkaConfig::default()
        }
    }

    fn producer(&self) -> FutureProducer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap())
            .create()
            .unwrap()
    }

    async fn produce(&self, topic: &str, partition: i32, payload: &str) -> i64 {
        let rec = FutureRecord::to(topic)
            .partition(partition)
            .key("k")
            .payload(payload);
        self.producer()
            .send(rec, Duration::from_secs(10))
            .await
            .unwrap()
            .1
    }

    /// Runs the shared loop as one member of `GROUP`.
    fn member(&self, handler: Arc<dyn Handler>) -> Member {
        let spec = ConsumerSpec {
            group: GROUP.into(),
            topics: vec![TOPIC.into()],
            kafka: self.config(),
            fetch_wait_ms: 10,
        };
        let producer = EventProducer::new(&self.config()).unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_consumer(spec, handler, producer, cancel.clone()));
        Member { cancel, task }
    }

    /// The group's committed offset of `partition` (None: nothing committed).
    fn committed(&self, partition: i32) -> Option<i64> {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap())
            .set("group.id", GROUP)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(TOPIC, partition);
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        match got.find_partition(TOPIC, partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Every payload of `topic`, read from the start until `last` is seen.
    async fn read_until(&self, topic: &str, last: &str) -> Vec<Vec<u8>> {
        let c: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap())
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
                .await
                .expect("the reader gets the sentinel within 30 s")
                .unwrap();
            let p = m.payload().unwrap_or_default().to_vec();
            let done = p == last.as_bytes();
            out.push(p);
            if done {
                return out;
            }
        }
    }
}

fn start_broker(tansu: &Path, dir: &Path) -> Broker {
    let mut last = None;
    for _ in 0..3 {
        let port = free_port().unwrap();
        match Broker::start(tansu, port, "memory://tansu/", &dir.join("tansu.log")) {
            Ok(b) => return b,
            Err(e) => last = Some(e),
        }
    }
    panic!("tansu did not start: {:#}", last.unwrap());
}

struct Member {
    cancel: CancellationToken,
    task: JoinHandle<Result<(), roar_common::kafka::KafkaError>>,
}

impl Member {
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the loop stops within 60 s")
            .unwrap()
            .unwrap();
    }
}

/// Records what it handled; optionally holds its first message until the test releases it.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(i32, i64)>>,
    hold_first: Option<Semaphore>,
    holding: AtomicBool,
}

impl Recorder {
    fn holding_first() -> Self {
        Self {
            hold_first: Some(Semaphore::new(0)),
            ..Self::default()
        }
    }

    fn seen(&self) -> Vec<(i32, i64)> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, d: &Delivery, _c: &CancellationToken) -> Result<(), HandleError> {
        let first = !self.holding.swap(true, Ordering::SeqCst);
        self.seen.lock().unwrap().push((d.partition, d.offset));
        if let (true, Some(gate)) = (first, &self.hold_first) {
            let _ = gate.acquire().await.map(|p| p.forget());
        }
        Ok(())
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Fails retryably, and starts the shutdown while it does.
struct FailsAtShutdown;

#[async_trait]
impl Handler for FailsAtShutdown {
    async fn handle(&self, _d: &Delivery, cancel: &CancellationToken) -> Result<(), HandleError> {
        cancel.cancel();
        Err(HandleError::Retry("storage unreachable".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_during_shutdown_stays_on_its_partition() {
    let k = Kafka::start(1).await;
    k.produce(TOPIC, 0, "job").await;
    let m = k.member(Arc::new(FailsAtShutdown));
    tokio::time::timeout(Duration::from_secs(60), m.task)
        .await
        .expect("the loop stops once shutdown begins")
        .unwrap()
        .unwrap();

    // Nothing but our sentinel is in the DLQ.
    k.produce(DLQ, 0, "sentinel").await;
    let dlq = k.read_until(DLQ, "sentinel").await;
    assert_eq!(
        dlq.len(),
        1,
        "the DLQ holds {} letters before the sentinel",
        dlq.len() - 1
    );
    // And the message was not committed: the next member gets it.
    assert_eq!(k.committed(0), None);
    let rec = Arc::new(Recorder::default());
    let next = k.member(rec.clone());
    wait_until("the message is redelivered", || rec.seen() == [(0, 0)]).await;
    next.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_never_commits_offsets_of_a_partition_it_lost() {
    let k = Kafka::start(2).await;
    for i in 0..5 {
        for p in 0..2 {
            k.produce(TOPIC, p, &format!("m{i}")).await;
        }
    }
    let a_rec = Arc::new(Recorder::default());
    let a = k.member(a_rec.clone());
    wait_until("A handled everything", || a_rec.seen().len() == 10).await;

    // B joins; once it handles a fresh message, the rebalance has given it one partition.
    let b_rec = Arc::new(Recorder::default());
    let b = k.member(b_rec.clone());
    let mut marker = 0;
    let b_part = loop {
        if let Some((p, _)) = b_rec.seen().first() {
            break *p;
        }
        assert!(marker < 120, "B never got a partition");
        for p in 0..2 {
            k.produce(TOPIC, p, "marker").await;
        }
        marker += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut end = 0;
    for _ in 0..5 {
        end = k.produce(TOPIC, b_part, "for-b").await + 1;
    }
    wait_until("B committed its partition", || {
        k.committed(b_part) == Some(end)
    })
    .await;

    // A leaves: its last offset of B's partition (from before the rebalance) must not land.
    a.stop().await;
    assert_eq!(
        k.committed(b_part),
        Some(end),
        "A's shutdown moved the committed offset of a partition it no longer owns"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_fetched_for_a_lost_partition_are_not_processed() {
    let k = Kafka::start(2).await;
    for i in 0..20 {
        for p in 0..2 {
            k.produce(TOPIC, p, &format!("m{i}")).await;
        }
    }
    // A takes its first message and holds it; meanwhile it fetches (and buffers) the rest.
    let a_rec = Arc::new(Recorder::holding_first());
    let a = k.member(a_rec.clone());
    wait_until("A holds its first message", || !a_rec.seen().is_empty()).await;
    let in_flight = a_rec.seen()[0];
    // Give A's fetches time to fill its buffer: the case the test is about.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // B joins and, once it has handled something, owns a partition.
    let b_rec = Arc::new(Recorder::default());
    let b = k.member(b_rec.clone());
    wait_until("B handles a message", || !b_rec.seen().is_empty()).await;
    a_rec.hold_first.as_ref().unwrap().add_permits(1);

    let all: HashSet<(i32, i64)> = (0..2).flat_map(|p| (0..20).map(move |o| (p, o))).collect();
    wait_until("every message is handled", || {
        let seen: HashSet<_> = a_rec.seen().into_iter().chain(b_rec.seen()).collect();
        seen == all
    })
    .await;
    a.stop().await;
    b.stop().await;

    let mut count: HashMap<(i32, i64), usize> = HashMap::new();
    for m in a_rec.seen().into_iter().chain(b_rec.seen()) {
        *count.entry(m).or_default() += 1;
    }
    let twice: Vec<_> = count
        .iter()
        .filter(|(m, n)| **n > 1 && **m != in_flight)
        .map(|(m, _)| *m)
        .collect();
    assert!(
        twice.is_empty(),
        "handled more than once (besides the in-flight {in_flight:?}): {twice:?}"
    );
}
